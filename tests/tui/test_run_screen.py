"""The run screen: a recorded event stream, and the real runner on the tiny model (two CPU ranks)."""

from __future__ import annotations

import time

import pytest

from zerowizard.core.analysis import analyze
from zerowizard.core.plan import Plan, update
from zerowizard.tui.screens.run_screen import RunScreen

from .conftest import DATA, NO_NVML, SIZE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real runs: the CI tier


def tiny_plan(output, steps: int) -> Plan:
    """The default plan (tiny-llama, CPU) cut down to a few short steps."""
    plan = update(Plan(), "train", max_steps=steps, save_steps=0)
    plan = update(plan, "batch", seq_len=96, micro_batch=2, grad_checkpointing=False)
    plan = update(plan, "hardware", gpu="cpu", gpus_per_node=2)
    return update(plan, None, output=str(output))


async def wait_for(pilot, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(0.2)
    return predicate()


async def test_replay_shows_progress_loss_and_memory(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        plan = tiny_plan("work_dirs/tiny-llama_full_demo", 40)
        screen = RunScreen(plan, analyze(plan, detection=NO_NVML), plan.output, replay=DATA / "run_events.jsonl")
        await app.push_screen(screen)
        await pilot.pause()
        assert screen.state == "completed"
        assert len(screen.losses) == 40 and screen.steps[-1] == 40
        bar = screen.query_one("#progress")
        assert bar.progress == bar.total == 40
        assert len(screen.query_one("#devmem").memory) == 2
        await pilot.press("escape")
        assert app.screen is app.plan_screen


async def test_run_reaches_its_end_event(make, tmp_path):
    plan = tiny_plan(tmp_path / "run", 2)
    app = make(plan)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        assert await wait_for(pilot, lambda: screen.state in ("completed", "crashed", "stopped"), 240)
        assert screen.state == "completed", screen.error
        ends = [e for e in screen.events if e["event"] == "end"]
        assert ends and ends[-1]["status"] == "completed"
        assert screen.steps == [1, 2]
        await pilot.press("b")
        assert app.screen is app.plan_screen


async def test_a_crash_shows_the_error(make, tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROWIZARD_TEST_CRASH", "0:1")  # the runner's test hook: rank 0 raises at step 1
    plan = tiny_plan(tmp_path / "run", 5)
    app = make(plan)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.state in ("completed", "crashed", "stopped"), 240)
        assert screen.state == "crashed"
        assert "injected crash" in screen.error
        assert "crashed" in str(screen.query_one("#run-status").render())
        assert screen.returncode != 0


async def test_stop_sends_sigint_and_shows_a_clean_stop(make, tmp_path):
    plan = tiny_plan(tmp_path / "run", 500)
    app = make(plan)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        screen = app.screen
        assert await wait_for(pilot, lambda: bool(screen.steps) or screen.state == "crashed", 240)
        await pilot.press("escape")  # still running: Back refuses
        assert app.screen is screen
        await pilot.press("s")
        assert await wait_for(pilot, lambda: screen.state in ("stopped", "crashed", "completed"), 120)
        assert screen.state == "stopped", screen.error
        assert screen.steps[-1] < 500
