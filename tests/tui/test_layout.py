"""The layout at the sizes people use (issue 13, items 4-5): every figure and verdict on screen at
80×24, the form collapsible, the run log never squeezed to nothing, focus visible everywhere."""

from __future__ import annotations

import pytest

from zerowizard.core.analysis import analyze
from zerowizard.tui.screens.run_screen import RunScreen
from zerowizard.tui.widgets.memory_bars import gib

from .conftest import DATA, NO_NVML, field, screen_text, tiny_plan

pytestmark = pytest.mark.anyio


def assert_every_row_shown(app) -> None:
    text = "\n".join(screen_text(app))
    a = app.plan_screen.analysis
    for e in a.estimates:
        total = gib(e.per_gpu.total)
        verdict = "fits" if e.fits else ("OVER" if not e.fits_gpu else "host")
        assert f"{total:>5} {verdict}" in text, (e.variant.label, text)
        if e.variant.offload_optimizer != "none":
            assert gib(e.per_node_host) in text


@pytest.mark.parametrize("size", [(80, 24), (120, 36), (200, 60), (60, 20)])
async def test_every_figure_and_verdict_is_on_screen(make, size):
    app = make()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        assert_every_row_shown(app)
        keys = screen_text(app)[-1]
        assert "Help" in keys and "Quit" in keys  # the key bar keeps help and quit


async def test_the_form_collapses_and_comes_back(make):
    app = make()
    async with app.run_test(size=(60, 20)) as pilot:
        screen = app.plan_screen
        assert not screen.query_one("#form").display or screen.query_one("#form").region.width == 0
        await pilot.press("f4")  # tiny terminal: the form instead of the bars
        await pilot.pause()
        assert screen.query_one("#form").region.width > 40
        assert "GPUs/node" in "\n".join(screen_text(app))
        await pilot.press("f4")
        await pilot.pause()
        assert_every_row_shown(app)
    app = make()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.plan_screen
        width = screen.query_one("#bars").region.width
        await pilot.press("f4")
        await pilot.pause()
        assert screen.query_one("#bars").region.width > width + 30


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
async def test_the_run_log_keeps_its_height(make, size):
    app = make()
    async with app.run_test(size=size) as pilot:
        plan = tiny_plan("work_dirs/tiny-llama_full_demo", 40)
        await app.push_screen(
            RunScreen(plan, analyze(plan, detection=NO_NVML), plan.output, replay=DATA / "run_events.jsonl")
        )
        await pilot.pause()
        assert app.screen.query_one("#log").region.height >= 6


async def test_focus_is_visible_on_lists_and_switches(make):
    app = make()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.plan_screen
        for path in ("method.type", "batch.grad_checkpointing"):
            ctl, other = field(screen, path), field(screen, "precision")
            ctl.focus()
            await pilot.pause()
            assert ctl.styles.background != other.styles.background  # not one shade of grey
            group = next(g for g in screen.query(".group") if ctl in g.fields)
            assert "▸" + ctl.label in str(group._labels.render())  # and the label is marked
        toggle = field(screen, "batch.grad_checkpointing")
        assert "on" in str(toggle.render())
        await pilot.press("space")
        await pilot.pause()
        assert "off" in str(toggle.render()) and screen.plan.batch.grad_checkpointing is False
