"""The run screen: launch the runner, tail its output and its event stream.

The runner is a subprocess (``python -m zerowizard run --headless``); its stdout/stderr go to the
log pane and rank 0's ``events.jsonl`` drives the progress bar, the loss chart and the memory
bars (one stream, read with the runner's own :class:`EventTail`). Stop sends SIGINT; the runner
stops its ranks and writes an ``end`` event. ``replay`` shows a recorded events file instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, ProgressBar, RichLog, Static

from zerowizard.runner.events import EventTail, read_events

from .. import files
from ..widgets.memory_bars import gib
from ..widgets.run_widgets import DeviceMemory, LossChart

LOG_LINES = 2000


def fmt_s(seconds) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


class RunScreen(Screen):
    """Progress, loss, memory per device and the ranks' log for one run."""

    BINDINGS = [
        Binding("s", "stop", "Stop (SIGINT)"),
        Binding("escape,b", "back", "Back to plan"),
    ]

    def __init__(
        self, plan, analysis, output: str, *, replay: str | Path | None = None, replay_log: list[str] | None = None
    ):
        super().__init__()
        self.plan, self.analysis, self.output = plan, analysis, Path(output)
        self.replay, self.replay_log = replay, replay_log or []
        self.proc: asyncio.subprocess.Process | None = None
        self.tail: EventTail | None = None
        self.state = "starting"  # starting | running | stopping | completed | stopped | crashed
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.events: list[dict] = []
        self.last_step: dict = {}
        self.error = ""
        self.errors: list[str] = []
        self.returncode: int | None = None
        sel = analysis.selected if analysis is not None else None
        self.predicted = sel.per_gpu.total if sel else None

    def compose(self) -> ComposeResult:
        yield Header(icon="⚡")
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
        yield Footer()

    def on_mount(self) -> None:
        self.title = "zerowizard · run"
        v = self.analysis.selected.variant.label if self.analysis and self.analysis.selected else ""
        self.query_one("#run-title", Static).update(
            Text.assemble(
                ("Run ", "bold"), f"{self.plan.model.name} {self.plan.method.type} · {v} · ", (str(self.output), "dim")
            )
        )
        dev = self.query_one("#devmem", DeviceMemory)
        dev.predicted = self.predicted
        self.query_one("#loss", LossChart).show([], [])
        self.query_one("#log", RichLog).border_title = "log · all ranks"
        if self.replay is not None:
            self.call_after_refresh(self.play_recording)
            return
        self.show_status()
        self.launch()
        self.set_interval(0.25, self.poll_events)

    def log_line(self, line: str) -> None:
        """Append to the log pane, wrapped at the pane's width (RichLog alone wraps at 80)."""
        log = self.query_one("#log", RichLog)
        width = log.scrollable_content_region.width - 1
        log.write(Text(line), width=width if width > 20 else None)

    def play_recording(self) -> None:
        """Show a recorded run (after the first layout, so the log wraps at its real width)."""
        for line in self.replay_log:
            self.log_line(line)
        for ev in read_events(self.replay):
            self.handle_event(ev)
        if self.state == "starting":
            self.state = "running"
        self.show_status()

    # ---- the runner process --------------------------------------------------------------
    def command(self, plan_file: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "zerowizard",
            "run",
            "--headless",
            "--plan",
            str(plan_file),
            "--output",
            str(self.output),
        ]

    @work(exclusive=True, group="runner")
    async def launch(self) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        events = self.output / "events.jsonl"
        self.tail = EventTail(events)
        self.tail.offset = events.stat().st_size if events.exists() else 0  # a reused folder
        plan_file = files.save(self.plan, self.output.parent / f"{self.output.name}.plan.yaml")
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
            self.error = f"could not start the runner: {exc}"
            self.state = "crashed"
            self.show_status()
            return
        self.state = "running"
        self.show_status()
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.log_line(raw.decode("utf-8", errors="replace").rstrip("\n"))
        self.returncode = await self.proc.wait()
        self.poll_events()
        self.finished(self.returncode)

    def finished(self, rc: int) -> None:
        end = next((e for e in reversed(self.events) if e.get("event") == "end"), None)
        status = (end or {}).get("status")
        if self.state == "stopping" or status == "interrupted":
            self.state = "stopped"
        elif rc == 0 and status in (None, "completed"):
            self.state = "completed"
        else:
            self.state = "crashed"
            if not self.error:
                self.error = (end or {}).get("error") or f"the runner exited with status {rc}"
        self.log_line(f"[runner exited with status {rc}]")
        self.show_status()

    def poll_events(self) -> None:
        if self.tail is None:
            return
        for ev in self.tail.poll():
            self.handle_event(ev)

    # ---- events --------------------------------------------------------------------------
    def handle_event(self, ev: dict) -> None:
        self.events.append(ev)
        kind = ev.get("event")
        bar = self.query_one("#progress", ProgressBar)
        if kind == "start":
            if ev.get("total_steps"):
                bar.update(total=ev["total_steps"], progress=ev.get("start_step") or 0)
            if ev.get("predicted_per_gpu_bytes"):
                self.predicted = ev["predicted_per_gpu_bytes"]
                self.query_one("#devmem", DeviceMemory).predicted = self.predicted
            self.state = "running" if self.state == "starting" else self.state
        elif kind == "step":
            self.last_step = ev
            bar.update(total=ev.get("total_steps") or bar.total, progress=ev.get("step", 0))
            if ev.get("loss") is not None:
                self.steps.append(ev["step"])
                self.losses.append(float(ev["loss"]))
                self.query_one("#loss", LossChart).show(self.steps, self.losses)
            dev = self.query_one("#devmem", DeviceMemory)
            dev.kind = ev.get("memory_kind", "")
            dev.memory = tuple(ev.get("memory_bytes") or ())
        elif kind == "error":
            # the first error is the cause; other ranks then fail on the closed connection
            self.errors.append(f"rank {ev.get('rank', '?')}: {ev.get('error') or ev.get('message') or ev}")
            self.error = self.errors[0] + (f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else "")
        elif kind == "end":
            status = ev.get("status")
            if status == "completed" and ev.get("total_steps"):
                bar.update(total=ev["total_steps"], progress=ev.get("step") or ev["total_steps"])
            if self.replay is not None:
                self.state = {"completed": "completed", "interrupted": "stopped"}.get(status, "crashed")
                if self.state == "crashed" and not self.error:
                    self.error = ev.get("error") or f"the run ended: {status}"
        elif kind == "checkpoint" and self.replay is None:
            self.log_line(f"[checkpoint] step {ev.get('step')}: {ev.get('path')}")
        self.show_status()

    def show_status(self) -> None:
        s = self.last_step
        stats = Text()
        if s:
            stats.append(f" step {s.get('step')}/{s.get('total_steps')}", "bold")
            stats.append(f" · ETA {fmt_s(s.get('eta_s'))}")
            stats.append(f" · {s.get('tokens_per_s') or 0:,.0f} tok/s")
            stats.append(f" · loss {s.get('loss', float('nan')):.4f}")
        else:
            stats.append(" waiting for the first step…", "dim")
        self.query_one("#run-stats", Static).update(stats)
        styles = {
            "starting": ("◌ starting the runner…", "#e5c07b"),
            "running": ("● running", "#61d68a"),
            "stopping": ("◌ stopping (SIGINT sent)…", "#e5c07b"),
            "completed": ("✔ completed", "bold #61d68a"),
            "stopped": ("■ stopped cleanly (SIGINT); the last checkpoint can be resumed", "bold #e5c07b"),
            "crashed": ("✖ crashed", "bold #ff6b6b"),
        }
        label, style = styles[self.state]
        status = Text()
        status.append(label, style)
        end = next((e for e in reversed(self.events) if e.get("event") == "end"), None)
        if end and self.state in ("completed", "stopped"):
            status.append(
                f" at step {end.get('step')}/{end.get('total_steps')} in {fmt_s(end.get('elapsed_s'))}", "dim"
            )
        if self.state == "crashed" and self.error:
            status.append(f": {self.error}", "#ff6b6b")
        if self.predicted:
            status.append(f"   predicted {gib(self.predicted)} per device", "dim")
        widget = self.query_one("#run-status", Static)
        widget.update(status)
        widget.set_class(self.state == "crashed", "-error")
        self.refresh_bindings()

    # ---- actions -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "stop":
            return True if self.running and self.state != "stopping" else None
        return True

    def action_stop(self) -> None:
        if self.running:
            self.state = "stopping"
            self.proc.send_signal(signal.SIGINT)
            self.log_line("[SIGINT sent to the runner]")
            self.show_status()

    def action_back(self) -> None:
        if self.running:
            self.notify("the run is still going: press s to stop it first", severity="warning")
            return
        self.app.pop_screen()

    def on_unmount(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGINT)
