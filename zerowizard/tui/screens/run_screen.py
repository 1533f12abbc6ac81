"""The run screen: launch the runner, tail its output and its event stream.

The runner is a subprocess (``python -m zerowizard run --headless``); its output (the launcher's
lines from the first second, then the ranks' and one line per event) goes to the log pane, and
rank 0's ``events.jsonl`` drives the progress bar, the loss chart and the memory bars (one
stream, read with the runner's own :class:`EventTail`). Stop sends SIGINT; the runner stops its
ranks and writes an ``end`` event. ``replay`` shows a recorded events file instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import ProgressBar, RichLog, Static

from zerowizard.runner.events import EventTail, read_events

from .. import files
from ..widgets.keybar import KeyBar
from ..widgets.run_widgets import DeviceMemory, LossChart
from .run_status import RunRecord, fmt_s, status_text

LOG_LINES = 2000
STOP_WAIT_S = 30.0  # after SIGINT, how long quitting waits for the runner's clean stop


class RunScreen(Screen):
    """Progress, loss, memory per device and the ranks' log for one run."""

    BINDINGS = [
        Binding("s", "stop", "Stop", tooltip="SIGINT: the runner stops every rank and ends the event stream"),
        Binding("escape,b", "back", "Back", tooltip="back to the plan (once the run has ended)"),
    ]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    def __init__(
        self,
        plan,
        analysis,
        output: str | Path,
        *,
        replay: str | Path | None = None,
        replay_log: list[str] | None = None,
        resume: bool = False,
    ):
        super().__init__()
        self.plan, self.analysis, self.output = plan, analysis, Path(output)
        self.replay, self.replay_log, self.resume = replay, replay_log or [], resume
        self.proc: asyncio.subprocess.Process | None = None
        self.tail: EventTail | None = None
        self.record = RunRecord()
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.events: list[dict] = []
        self.last_step: dict = {}
        sel = analysis.selected if analysis is not None else None
        self.predicted = sel.per_gpu.total if sel else None
        t = (getattr(analysis, "times", None) or {}).get(sel.variant) if sel else None
        world = analysis.hardware.world_size if analysis is not None else 1
        # tokens/s of the whole run, predicted by the time model (the start event brings the runner's)
        self.predicted_tps: float | None = t.tokens_per_s_per_gpu * world if t is not None else None

    # the record's fields, read by the tests and the app
    @property
    def state(self) -> str:
        return self.record.state

    @property
    def error(self) -> str:
        return self.record.error

    @property
    def returncode(self) -> int | None:
        return self.record.returncode

    def compose(self) -> ComposeResult:
        with Vertical(id="run-top"):
            yield Static(id="run-title")
            with Horizontal(id="run-progress"):
                yield ProgressBar(id="progress", show_eta=False)
                yield Static(id="run-stats")
            yield Static(id="run-status")
        with Horizontal(id="run-mid"):
            yield LossChart(id="loss")
            yield DeviceMemory(id="devmem")
        yield RichLog(id="log", max_lines=LOG_LINES, markup=False, highlight=False, wrap=True)
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        v = self.analysis.selected.variant.label if self.analysis and self.analysis.selected else ""
        what = "Resume " if self.resume else "Run "
        self.query_one("#run-title", Static).update(
            Text.assemble(
                (what, "bold"), f"{self.plan.model.name} {self.plan.method.type} · {v} · ", (str(self.output), "dim")
            )
        )
        self.query_one("#devmem", DeviceMemory).predicted = self.predicted
        self.query_one("#loss", LossChart).show([], [])
        self.query_one("#log", RichLog).border_title = "log · launcher and all ranks"
        if self.replay is not None:
            self.call_after_refresh(self.play_recording)
            return
        self.record.started_at = time.time()
        self.show_status()
        self.launch()
        self.set_interval(0.25, self.poll_events)
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        if self.record.state == "starting" or (self.record.state == "running" and self.record.step is None):
            self.show_status()  # the start-up clock: the first run must not look hung

    def log_line(self, line: str) -> None:
        """Append to the log pane, wrapped at the pane's width (RichLog alone wraps at 80)."""
        log = self.query_one("#log", RichLog)
        width = log.scrollable_content_region.width - 1
        log.write(Text(line), width=width if width > 20 else None)

    def play_recording(self) -> None:
        """Show a recorded run (after the first layout, so the log wraps at its real width)."""
        assert self.replay is not None
        for line in self.replay_log:
            self.log_line(line)
        for ev in read_events(self.replay):
            self.handle_event(ev)
        if self.record.end is not None:
            self.record.finish(0 if self.record.end.get("status") == "completed" else 1, stopping=False)
        elif self.record.state == "starting":
            self.record.state = "running"
        self.settle_progress()
        self.show_status()

    # ---- the runner process --------------------------------------------------------------
    def command(self, plan_file: Path | None) -> list[str]:
        cmd = [sys.executable, "-m", "zerowizard", "run", "--headless"]
        if plan_file is not None:
            cmd += ["--plan", str(plan_file)]
        if self.resume:
            cmd += ["--resume", str(self.output)]
        return [*cmd, "--output", str(self.output)]

    @work(exclusive=True, group="runner")
    async def launch(self) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        events = self.output / "events.jsonl"
        self.tail = EventTail(events)
        self.tail.offset = events.stat().st_size if events.exists() else 0  # a reused folder
        # a resumed run replays its own saved plan; a new one gets the plan as edited here
        plan_file = None if self.resume else files.save(self.plan, self.output / "plan.yaml")
        cmd = self.command(plan_file)
        self.log_line("$ " + " ".join(cmd))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            self.record.error = f"could not start the runner: {exc}"
            self.record.state = "crashed"
            self.settle_progress()
            self.show_status()
            return
        self.refresh_bindings()
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.log_line(raw.decode("utf-8", errors="replace").rstrip("\n"))
        rc = await self.proc.wait()
        self.poll_events()
        self.record.finish(rc, stopping=self.record.state == "stopping")
        self.log_line(f"[runner exited with status {rc}]")
        self.settle_progress()
        self.show_status()

    def poll_events(self) -> None:
        if self.tail is None:
            return
        for ev in self.tail.poll():
            self.handle_event(ev)

    # ---- events --------------------------------------------------------------------------
    def handle_event(self, ev: dict) -> None:
        self.events.append(ev)
        self.record.see(ev)
        kind = ev.get("event")
        bar = self.query_one("#progress", ProgressBar)
        if kind == "start":
            if ev.get("total_steps"):
                bar.update(total=ev["total_steps"], progress=ev.get("start_step") or 0)
            self.predicted_tps = ev.get("predicted_tokens_per_s")  # the time model, all ranks
            if ev.get("predicted_per_gpu_bytes"):
                self.predicted = ev["predicted_per_gpu_bytes"]
                self.query_one("#devmem", DeviceMemory).predicted = self.predicted
            if self.record.state == "starting":
                self.record.state = "running"
        elif kind == "step":
            if self.record.state == "starting":
                self.record.state = "running"
            self.last_step = ev
            bar.update(total=ev.get("total_steps") or bar.total, progress=ev.get("step", 0))
            if ev.get("loss") is not None:
                self.steps.append(ev["step"])
                self.losses.append(float(ev["loss"]))
                self.query_one("#loss", LossChart).show(self.steps, self.losses)
            dev = self.query_one("#devmem", DeviceMemory)
            dev.kind = ev.get("memory_kind", "")
            dev.memory = tuple(ev.get("memory_bytes") or ())
            if ev.get("peak_bytes_per_rank"):
                dev.peak_kind = ev.get("peak_kind", "")
                dev.peak = tuple(ev["peak_bytes_per_rank"])
        elif kind == "end" and ev.get("status") == "completed" and ev.get("total_steps"):
            bar.update(total=ev["total_steps"], progress=ev.get("step") or ev["total_steps"])
        self.show_status()

    def settle_progress(self) -> None:
        """A run that ended leaves the bar where it got to (an indeterminate bar would pulse on)."""
        bar = self.query_one("#progress", ProgressBar)
        if bar.total is None:
            bar.update(total=max(self.record.total or 0, self.record.step or 0, 1), progress=self.record.step or 0)

    def _step_stats(self, s: dict, predicted: str | None) -> Text:
        """predicted: the label of the predicted tok/s ('' leaves it out; None leaves tok/s out)."""
        stats = Text()
        stats.append(f" step {s.get('step')}/{s.get('total_steps')}", "bold")
        stats.append(f" · ETA {fmt_s(s.get('eta_s'))}")
        if predicted is not None:
            stats.append(f" · {s.get('tokens_per_s') or 0:,.0f} tok/s")
        if self.predicted_tps and predicted:
            stats.append(f" ({predicted}{self.predicted_tps:,.0f})", "dim")
        if s.get("loss") is not None:
            stats.append(f" · loss {s['loss']:.4f}")
        return stats

    def show_status(self) -> None:
        s = self.last_step
        box = self.query_one("#run-stats", Static)
        stats = Text()
        if s:
            # the fullest form that fits beside the bar: the prediction shortens, then goes, then tok/s
            # (the log's lines keep it); step, ETA and loss stay
            for predicted in ("predicted ", "pred. ", "", None):
                stats = self._step_stats(s, predicted)
                if not box.size.width or stats.cell_len <= box.size.width:
                    break
        elif self.record.state in ("starting", "running"):
            stats.append(" waiting for the first step…", "dim")
        box.update(stats)
        widget = self.query_one("#run-status", Static)
        widget.update(status_text(self.record, self.output, time.time()))
        widget.set_class(self.record.state == "crashed", "-error")
        self.refresh_bindings()

    # ---- actions -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "stop":
            return True if self.running and self.record.state != "stopping" else None
        return True

    def action_stop(self) -> None:
        if self.running and self.proc is not None:
            self.record.state = "stopping"
            self.proc.send_signal(signal.SIGINT)
            self.log_line("[SIGINT sent to the runner]")
            self.show_status()

    async def stop_and_wait(self, timeout: float = STOP_WAIT_S) -> None:
        """Stop the run cleanly and wait for the runner to exit (quitting during a run)."""
        if not self.running or self.proc is None:
            return
        if self.record.state != "stopping":
            self.action_stop()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.poll_events()

    def action_back(self) -> None:
        if self.running:
            self.notify("the run is still going: press s to stop it first", severity="warning")
            return
        self.app.pop_screen()

    def on_unmount(self) -> None:
        if self.running and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
