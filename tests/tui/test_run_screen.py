"""The run screen with the real runner on the tiny model (two CPU ranks): a run to its end, a
crash, a stop, quitting during a run, the start-up lines, a resume from the list of past runs."""

from __future__ import annotations

import json

import pytest

from zerowizard.tui.screens.dialogs import ConfirmDialog
from zerowizard.tui.screens.run_screen import RunScreen
from zerowizard.tui.screens.runs_screen import RunsScreen

from .conftest import SIZE, tiny_plan, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real runs: the CI tier
ENDED = ("completed", "crashed", "stopped")


def log_text(screen) -> str:
    return "\n".join(str(line.text) for line in screen.query_one("#log").lines)


def events(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


async def test_run_reaches_its_end_event_and_shows_start_up(make, tmp_path):
    plan = tiny_plan(tmp_path / "run", 2)
    app = make(plan)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        # before the first step: the launcher's own lines, and a start-up clock (not a frozen screen)
        assert await wait_for(pilot, lambda: "run folder:" in log_text(screen) or screen.steps, 60)
        if not screen.steps:
            assert "starting" in str(screen.query_one("#run-status").render())
        assert await wait_for(pilot, lambda: screen.state in ENDED, 300)
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
        assert await wait_for(pilot, lambda: screen.state in ENDED, 300)
        assert screen.state == "crashed"
        assert "injected crash" in screen.error
        text = str(screen.query_one("#run-status").render())
        assert "crashed" in text and "None" not in text
        assert screen.returncode != 0
        assert screen.query_one("#progress").total is not None  # the bar does not pulse on


async def test_stop_before_the_first_checkpoint(make, tmp_path):
    plan = tiny_plan(tmp_path / "run", 500)
    app = make(plan)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        screen = app.screen
        assert await wait_for(pilot, lambda: bool(screen.steps) or screen.state in ENDED, 300)
        await pilot.press("escape")  # still running: Back refuses
        assert app.screen is screen
        await pilot.press("s")
        assert await wait_for(pilot, lambda: screen.state in ENDED, 120)
        assert screen.state == "stopped", screen.error
        assert screen.steps[-1] < 500
        text = str(screen.query_one("#run-status").render())
        assert "None" not in text and "no checkpoint yet" in text
        assert screen.query_one("#progress").total is not None


async def test_quit_during_a_run_asks_then_stops_it_cleanly(make, tmp_path):
    folder = tmp_path / "run"
    app = make(tiny_plan(folder, 500))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        screen = app.screen
        assert await wait_for(pilot, lambda: bool(screen.steps) or screen.state in ENDED, 300)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # keep running
        await pilot.pause()
        assert app.screen is screen and screen.running
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("y")
        assert await wait_for(pilot, lambda: not screen.running, 120)
    assert app.return_code == 0 or app.return_code is None
    ends = [e for e in events(folder) if e["event"] == "end"]
    assert ends and ends[-1]["status"] == "interrupted"  # the stream got its end


async def test_resume_from_the_list_of_past_runs(make, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROWIZARD_TEST_STOP_AT", "2")  # the runner's test hook: a clean stop, saved
    folder = tmp_path / "work_dirs" / "first"
    app = make(tiny_plan("work_dirs/first", 4, save_steps=2))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.state in ENDED, 300)
        assert (folder / "checkpoints" / "checkpoint-2").is_dir(), log_text(screen)
        monkeypatch.delenv("ZEROWIZARD_TEST_STOP_AT")
        await pilot.press("b")
        await pilot.press("f6")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen) and app.screen.runs[0].checkpoint == 2
        await pilot.press("r")
        await pilot.pause()
        resumed = app.screen
        assert isinstance(resumed, RunScreen) and resumed.resume
        assert await wait_for(pilot, lambda: resumed.state in ENDED, 300)
        assert resumed.state == "completed", resumed.error
        starts = [e for e in events(folder) if e["event"] == "start"]
        assert starts[-1]["start_step"] == 2 and resumed.steps[-1] == 4
