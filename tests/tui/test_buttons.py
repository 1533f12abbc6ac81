"""Every button does what its key does (issue 13, item 1: clicking Export, Save, Load or Run used to
open nothing: a coroutine nobody awaited). Each test clicks, as a person does."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from zerowizard.core.plan import load_plan, update
from zerowizard.tui.screens.dialogs import ConfirmDialog, PathsDialog
from zerowizard.tui.screens.run_screen import RunScreen

from .conftest import SIZE, pinned_plan, wait_for

pytestmark = pytest.mark.anyio


async def test_export_button_and_its_dialog_buttons(make, tmp_path):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        await pilot.click("#export")
        await pilot.pause()
        assert isinstance(app.screen, PathsDialog)
        await pilot.click("#cancel")
        await pilot.pause()
        assert app.screen is screen
        await pilot.click("#export")
        await pilot.pause()
        app.screen.query_one("#path-ds", Input).value = str(tmp_path / "ds.json")
        app.screen.query_one("#path-plan", Input).value = str(tmp_path / "plan.yaml")
        await pilot.click("#ok")
        await pilot.pause()
        assert app.screen is screen
        assert (tmp_path / "ds.json").is_file() and load_plan(tmp_path / "plan.yaml") == screen.plan


async def test_save_and_load_buttons(make, tmp_path):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        await pilot.click("#save")
        await pilot.pause()
        assert isinstance(app.screen, PathsDialog)
        app.screen.query_one("#path-plan", Input).value = str(tmp_path / "saved.yaml")
        await pilot.click("#ok")
        await pilot.pause()
        assert load_plan(tmp_path / "saved.yaml") == screen.plan
        (tmp_path / "other.yaml").write_text("model: qwen2.5-7b\nmethod: lora\n")
        await pilot.click("#load")
        await pilot.pause()
        app.screen.query_one("#path-plan", Input).value = str(tmp_path / "other.yaml")
        await pilot.click("#ok")
        await pilot.pause()
        assert screen.plan.model.name == "qwen2.5-7b" and screen.plan.method.type == "lora"


async def test_run_button_starts_the_runner(make, tmp_path):
    """The runner refuses this plan at once (its data file does not exist): a real, quick run."""
    plan = update(update(pinned_plan(), "data", path=str(tmp_path / "missing.jsonl")), None, output=str(tmp_path / "r"))
    app = make(plan)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#run")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        assert await wait_for(pilot, lambda: screen.state == "crashed", 60)
        assert screen.returncode == 2
        assert screen.query_one("#progress").total is not None  # not pulsing on


async def test_the_key_bar_is_clickable(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        keybar = app.screen.query_one("#keys")
        start = next(s for s, _e, action, _n in keybar.spans if action == "export")
        await pilot.click("#keys", offset=(start + 1, 0))
        await pilot.pause()
        assert isinstance(app.screen, PathsDialog)


async def test_confirm_dialog_buttons(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        answers = []
        await app.push_screen(ConfirmDialog("sure?"), answers.append)
        await pilot.click("#no")
        await pilot.pause()
        await app.push_screen(ConfirmDialog("sure?"), answers.append)
        await pilot.click("#yes")
        await pilot.pause()
        assert answers == [False, True]
