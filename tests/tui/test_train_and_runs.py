"""The Train section (saved in the plan, used by Run) and the list of past runs (issue 13, item 12)."""

from __future__ import annotations

import shutil

import pytest
from textual.widgets import Input, OptionList

from zerowizard.core.plan import dump_plan, load_plan
from zerowizard.tui.runs import past_runs
from zerowizard.tui.screens.run_screen import RunScreen
from zerowizard.tui.screens.runs_screen import RunsScreen

from .conftest import DATA, SIZE, field, tiny_plan, wait_for
from .test_plan_screen import pick

pytestmark = pytest.mark.anyio


async def type_into(pilot, screen, path: str, text: str) -> None:
    box = field(screen, path)
    box.focus()
    await pilot.pause()
    box.action_end()
    await pilot.press("ctrl+u", *text, "enter")
    await pilot.pause()


@pytest.mark.slow  # launches a real two-rank run
async def test_train_fields_are_saved_and_run_uses_them(make, tmp_path):
    app = make(tiny_plan(tmp_path / "elsewhere", 40))
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        await type_into(pilot, screen, "train.max_steps", "3")
        await type_into(pilot, screen, "train.epochs", "2")
        await type_into(pilot, screen, "train.learning_rate", "1e-4")
        await type_into(pilot, screen, "train.save_steps", "1")
        await type_into(pilot, screen, "train.logging_steps", "2")
        await type_into(pilot, screen, "data.path", str(tmp_path / "missing.jsonl"))
        await pick(pilot, screen, "data.format", "alpaca")
        await type_into(pilot, screen, "output", str(tmp_path / "run"))
        assert not screen.input_errors
        t = screen.plan.train
        assert (t.max_steps, t.epochs, t.learning_rate, t.save_steps, t.logging_steps) == (3, 2.0, 1e-4, 1, 2)
        await pilot.press("ctrl+s")
        await pilot.pause()
        app.screen.query_one("#path-plan", Input).value = str(tmp_path / "p.yaml")
        await pilot.press("enter")
        await pilot.pause()
        saved = load_plan(tmp_path / "p.yaml")
        assert saved.train == screen.plan.train and saved.data == screen.plan.data
        assert saved.output == str(tmp_path / "run")
        await pilot.press("ctrl+r")  # the runner reads the same plan, and refuses the missing file
        await pilot.pause()
        run = app.screen
        assert isinstance(run, RunScreen) and run.output == tmp_path / "run"
        assert await wait_for(pilot, lambda: run.state == "crashed", 60)
        assert load_plan(tmp_path / "run" / "plan.yaml").train == screen.plan.train
        assert "missing.jsonl" in "\n".join(str(line.text) for line in run.query_one("#log").lines)


def make_run(root, name, *, status_events=True, checkpoint=None):
    """A run folder as the runner leaves it: its plan, its recorded events, its checkpoints."""
    folder = root / name
    (folder / "logs").mkdir(parents=True)
    (folder / "plan.yaml").write_text(dump_plan(tiny_plan(folder, 40)))
    events = (DATA / "run_events.jsonl").read_text().splitlines()
    if not status_events:
        events = events[:10]  # it stopped being written: a run that never ended
    (folder / "events.jsonl").write_text("\n".join(events) + "\n")
    if checkpoint is not None:
        (folder / "checkpoints" / f"checkpoint-{checkpoint}").mkdir(parents=True)
    return folder


async def test_past_runs_are_listed_viewed_and_refused_resume_without_checkpoint(make, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path / "work_dirs", "done", checkpoint=40)
    make_run(tmp_path / "work_dirs", "cut", status_events=False)
    runs = {r.name: r for r in past_runs()}
    assert runs["done"].status == "completed" and runs["done"].checkpoint == 40 and runs["done"].progress == "40/40"
    assert runs["cut"].status == "unfinished" and runs["cut"].checkpoint is None
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunsScreen) and screen.query_one(OptionList).option_count == 2
        names = [r.name for r in screen.runs]
        screen.query_one(OptionList).highlighted = names.index("cut")
        await pilot.press("r")
        await pilot.pause()
        assert app.screen is screen  # nothing to resume from
        assert any("no checkpoint" in str(n.message) for n in app._notifications)
        screen.query_one(OptionList).highlighted = names.index("done")
        await pilot.press("enter")
        await pilot.pause()
        view = app.screen
        assert isinstance(view, RunScreen) and view.replay is not None
        assert view.state == "completed" and view.steps[-1] == 40
        await pilot.press("escape")
        await pilot.press("l")  # load its plan into the form
        await pilot.pause()
        assert app.screen is app.plan_screen
        assert app.plan_screen.plan.train.max_steps == 40


def test_a_copy_of_the_recording_is_a_run(tmp_path):
    folder = make_run(tmp_path, "x")
    shutil.rmtree(folder / "logs")
    assert past_runs(tmp_path)[0].model == "tiny-llama"
