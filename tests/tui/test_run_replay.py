"""The run screen on recorded event streams (fast): progress, loss, memory, and the status it
gives after a completed, a stopped and a crashed run (issue 13, items 8 and 13)."""

from __future__ import annotations

import json

import pytest

from zerowizard.core.analysis import analyze
from zerowizard.tui.screens.run_screen import RunScreen

from .conftest import DATA, NO_NVML, SIZE, tiny_plan

pytestmark = pytest.mark.anyio
EVENTS = [json.loads(line) for line in (DATA / "run_events.jsonl").read_text().splitlines()]


async def replay(app, pilot, events: list[dict], folder) -> RunScreen:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    plan = tiny_plan(folder, 40)
    screen = RunScreen(plan, analyze(plan, detection=NO_NVML), folder, replay=path)
    await app.push_screen(screen)
    await pilot.pause()
    return screen


def status(screen) -> str:
    return str(screen.query_one("#run-status").render())


async def test_replay_shows_progress_loss_and_memory(make, tmp_path):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = await replay(app, pilot, EVENTS, tmp_path / "run")
        assert screen.state == "completed"
        assert len(screen.losses) == 40 and screen.steps[-1] == 40
        bar = screen.query_one("#progress")
        assert bar.progress == bar.total == 40
        assert len(screen.query_one("#devmem").memory) == 2
        assert "completed at step 40/40" in status(screen)
        await pilot.press("escape")
        assert app.screen is app.plan_screen


async def test_gpu_memory_is_labelled_as_the_runner_sends_it(make, tmp_path):
    """The runner says memory_kind "gpu" on CUDA (the screen used to wait for another name)."""
    events = [dict(e, memory_kind="gpu") if e["event"] == "step" else e for e in EVENTS]
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = await replay(app, pilot, events, tmp_path / "run")
        assert "GPU peak allocated" in str(screen.query_one("#devmem").render())


async def test_a_stop_before_any_checkpoint_says_so(make, tmp_path):
    """The launcher's end event after SIGINT has no step: the status used to read
    "resumed at step None/None in ?"."""
    cut = [e for e in EVENTS if e["event"] != "step" or e["step"] <= 7]
    cut = [e for e in cut if e["event"] not in ("checkpoint", "end")]
    cut.append({"event": "end", "source": "launcher", "status": "interrupted", "signal": "SIGINT"})
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = await replay(app, pilot, cut, tmp_path / "run")
        text = status(screen)
        assert screen.state == "stopped"
        assert "None" not in text and "?" not in text.split("predicted")[0]
        assert "at step 7/40" in text and "no checkpoint yet" in text
        (tmp_path / "run" / "checkpoints" / "checkpoint-5").mkdir(parents=True)
        screen.show_status()
        assert "last checkpoint: step 5" in status(screen)


async def test_start_up_phases_show_in_the_status(make, tmp_path):
    """The runner's phase events (zerowizard.runner.phases) say what the start-up is doing."""
    events = [
        {"event": "phase", "source": "launcher", "phase": "launch", "message": "starting 2 ranks", "rank": None},
        {"event": "phase", "source": "rank0", "phase": "op", "message": "building DeepSpeed op shm_comm", "rank": 0},
    ]
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = await replay(app, pilot, events, tmp_path / "run")
        assert "building DeepSpeed op shm_comm" in status(screen)


async def test_a_crash_during_start_up_stops_the_bar_pulsing(make, tmp_path):
    events = [
        {"event": "error", "rank": 0, "error": "RuntimeError: injected"},
        {"event": "end", "source": "launcher", "status": "failed", "exit_code": 1, "rank": 0},
    ]
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = await replay(app, pilot, events, tmp_path / "run")
        assert screen.state == "crashed"
        assert screen.query_one("#progress").total is not None  # a bar without a total pulses forever
        text = status(screen)
        assert "before the first step" in text and "injected" in text and "None" not in text


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (200, 60)])
async def test_the_step_line_keeps_the_loss_and_shortens_the_prediction(make, tmp_path, size):
    """Beside the bar: step, ETA, tok/s with the prediction, loss. Where that does not fit, the
    prediction shortens and then goes; the loss stays on screen at every size."""
    app = make()
    async with app.run_test(size=size) as pilot:
        screen = await replay(app, pilot, EVENTS, tmp_path / "run")
        box = screen.query_one("#run-stats")
        text = str(box.render())
        assert "loss 5.6748" in text and "step 40/40" in text
        assert len(text) <= box.size.width
        if size[0] >= 200:
            assert "(predicted 814)" in text
