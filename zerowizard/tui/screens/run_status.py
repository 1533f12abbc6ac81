"""What the run screen says about a run, from what it has seen (events, exit status, the folder).

Pure text, no textual: the status line must tell the truth after a stop or a crash (no
"step None/None"), and say whether there is a checkpoint to resume from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text

STATES = {
    "starting": ("◌ starting", "#e5c07b"),
    "running": ("● running", "#61d68a"),
    "stopping": ("◌ stopping (SIGINT sent)…", "#e5c07b"),
    "completed": ("✔ completed", "bold #61d68a"),
    "stopped": ("■ stopped", "bold #e5c07b"),
    "crashed": ("✖ crashed", "bold #ff6b6b"),
}
FIRST_RUN_HINT = "the ranks load torch and DeepSpeed; a first run also compiles DeepSpeed's CPU ops (about a minute)"


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


@dataclass
class RunRecord:
    """What one run has shown so far."""

    state: str = "starting"  # starting | running | stopping | completed | stopped | crashed
    started_at: float | None = None  # wall time the runner was launched (for the start-up clock)
    phase: str = ""  # the latest start-up phase the runner reported
    step: int | None = None
    total: int | None = None
    elapsed_s: float | None = None
    checkpoints: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error: str = ""
    returncode: int | None = None
    end: dict | None = None
    final_model: str | None = None

    def see(self, ev: dict) -> None:
        """Fold one event in."""
        kind = ev.get("event")
        if ev.get("total_steps"):
            self.total = ev["total_steps"]
        if kind == "start":
            if ev.get("start_step") and self.step is None:
                self.step = ev["start_step"]
        elif kind == "step":
            self.step = ev.get("step", self.step)
            self.elapsed_s = ev.get("elapsed_s", self.elapsed_s)
        elif kind == "checkpoint" and ev.get("step") is not None:
            self.checkpoints.append(int(ev["step"]))
        elif kind == "error":
            # the first error is the cause; other ranks then fail on the closed connection
            self.errors.append(f"rank {ev.get('rank', '?')}: {ev.get('error') or ev.get('message') or ev}")
            self.error = self.errors[0] + (f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else "")
        elif kind == "end":
            self.end = ev
            if ev.get("step") is not None:
                self.step = ev["step"]
            self.elapsed_s = ev.get("elapsed_s", self.elapsed_s)
            self.final_model = ev.get("final_model")
            if ev.get("error") and not self.error:
                self.error = str(ev["error"])
        elif kind == "phase":  # start-up progress (zerowizard.runner.phases): the message is for people
            self.phase = str(ev.get("message") or ev.get("phase") or "")
        elif kind == "fallback":  # out of memory: the launcher restarts with a smaller footprint
            self.phase = f"out of memory: attempt {ev.get('attempt', '?')} with {ev.get('change') or 'less memory'}"
            self.step = None

    def finish(self, returncode: int | None, stopping: bool) -> None:
        """The runner exited: completed, stopped (SIGINT) or crashed."""
        self.returncode = returncode
        status = (self.end or {}).get("status")
        if stopping or status == "interrupted":
            self.state = "stopped"
        elif returncode == 0 and status in (None, "completed"):
            self.state = "completed"
        else:
            self.state = "crashed"
            if not self.error:
                self.error = f"the runner exited with status {returncode}"

    def where(self) -> str:
        if self.step is None:
            return "before the first step"
        return f"at step {self.step}/{self.total}" if self.total else f"at step {self.step}"


def latest_checkpoint_step(output: Path) -> int | None:
    """The newest checkpoint-N folder of a run (what --resume would continue from)."""
    from zerowizard.runner.prepare import latest_checkpoint

    ckpt = latest_checkpoint(output)
    return int(ckpt.name.split("-")[-1]) if ckpt is not None else None


def status_text(r: RunRecord, output: Path, now: float) -> Text:
    label, style = STATES[r.state]
    out = Text()
    out.append(label, style)
    if r.state == "starting" and r.started_at is not None:
        out.append(f" {fmt_s(now - r.started_at)}", style)
        out.append(f": {r.phase or FIRST_RUN_HINT}", "dim")
    elif r.state in ("running", "stopping") and r.phase and r.step is None:
        out.append(f": {r.phase}", "dim")
    elif r.state == "completed":
        out.append(f" {r.where()}", "dim")
        if r.elapsed_s is not None:
            out.append(f" in {fmt_s(r.elapsed_s)}", "dim")
        if r.final_model:
            out.append(f" · model: {r.final_model}", "dim")
    elif r.state in ("stopped", "crashed"):
        out.append(f" {r.where()}", style)
        if r.elapsed_s is not None and r.step is not None:
            out.append(f" after {fmt_s(r.elapsed_s)}", "dim")
        if r.state == "crashed" and r.error:
            out.append(f": {r.error}", "#ff6b6b")
        ckpt = latest_checkpoint_step(output)
        if ckpt is not None:
            out.append(f" · last checkpoint: step {ckpt} (Runs, F6 on the plan, resumes it)", "dim")
        elif r.step is not None:
            out.append(" · no checkpoint yet: nothing to resume (Save steps sets how often one is written)", "dim")
    return out
