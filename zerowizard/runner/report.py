"""What the launcher says and writes: its own events (printed and appended to the stream), and the
end of a run: the summary, an interruption, a crash, a disk fault.

Every way a run ends leaves ``end`` as the last event of the stream; when the stream itself cannot
be written (a full or read-only disk), stderr says so instead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from zerowizard.runner import faults
from zerowizard.runner.events import EVENTS_VERSION, EventWriter, read_events
from zerowizard.runner.headless import Printer
from zerowizard.runner.supervise import Outcome, last_lines


class LauncherEvents:
    """The launcher's events: printed at once, and appended to ``events.jsonl`` once the run folder
    exists (``attach``) by the launcher that leads the job. A write that fails is said once on
    stderr and the run goes on: the fault itself is reported by whatever it breaks."""

    def __init__(self, printer: Printer, leads: bool = True):
        self.printer, self.leads = printer, leads
        self.writer: EventWriter | None = None
        self.started = time.time()
        self.broken: str | None = None

    def attach(self, workdir: Path) -> None:
        self.writer = EventWriter(workdir / "events.jsonl", source="launcher", create_folder=False)

    def emit(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        ev = {"event": kind, "time": round(time.time(), 3), "source": "launcher", "v": EVENTS_VERSION, **fields}
        if self.writer is not None and self.leads:
            try:
                ev = self.writer.emit(kind, **fields)
            except OSError as exc:
                self._broken(exc)
        if self.leads:
            self.printer.event(ev)
        return ev

    def phase(self, phase: str, message: str) -> None:
        self.emit("phase", phase=phase, message=message, rank=None, elapsed_s=round(time.time() - self.started, 2))

    def _broken(self, exc: OSError) -> None:
        if self.broken is None and self.writer is not None:
            self.broken = faults.what_went_wrong(exc.errno)[0] if exc.errno in faults.DISK_ERRNOS else exc.strerror
            print(
                f"zerowizard: the event stream {self.writer.path} cannot be written either ({self.broken})",
                file=sys.stderr,
                flush=True,
            )


def error(line: str) -> None:
    print(f"zerowizard: error: {line}", file=sys.stderr, flush=True)


def last_checkpoint(workdir: Path, outcome: Outcome | None = None) -> str | None:
    """The newest checkpoint whose save completed (a ``checkpoint`` event follows a finished save)."""
    done = list(outcome.checkpoints) if outcome else []
    if not done:
        done = [e["path"] for e in read_events(workdir / "events.jsonl") if e.get("event") == "checkpoint"]
    done = [p for p in done if Path(p).is_dir()]
    return done[-1] if done else None


def interrupted(sink: LauncherEvents, outcome: Outcome, workdir: Path) -> int:
    import signal

    name = signal.Signals(outcome.signum or signal.SIGINT).name
    sink.emit("end", status="interrupted", signal=name)
    sink.printer.notice(f"stopped by {name}; checkpoints so far are in {workdir / 'checkpoints'} (--resume continues)")
    return outcome.rc


def disk_fault(sink: LauncherEvents, outcome: Outcome | None, workdir: Path, exc: OSError | None = None) -> int:
    """A full, read-only or unwritable output folder: one line, the last complete checkpoint, exit 1."""
    err = outcome.error if outcome else None
    if exc is not None:
        line, path = faults.describe(exc, workdir), str(exc.filename or workdir)
    else:
        path = (err or {}).get("path") or faults.path_in((err or {}).get("error", "")) or str(workdir)
        what, fix = faults.what_went_wrong(faults.probe_folder(workdir) or _errno_in(err))
        line = f"cannot write {path}: {what}; {fix}"
    error(line)
    if outcome is not None:  # during the run: what is left to resume from
        ckpt = last_checkpoint(workdir, outcome)
        sink.printer.notice(
            f"the last complete checkpoint is kept: {ckpt} (--resume continues from it)"
            if ckpt
            else "no checkpoint was complete yet"
        )
    rank = err.get("rank") if err else None
    sink.emit("error", rank=rank, error=line, kind="disk", path=path)
    sink.emit("end", status="failed", exit_code=1, rank=rank, error=line, kind="disk")
    return 1


def _errno_in(err: dict[str, Any] | None) -> int | None:
    import errno

    text = (err or {}).get("error", "")
    for name in ("ENOSPC", "EROFS", "EACCES"):
        code = getattr(errno, name)
        if f"[Errno {code}]" in text:
            return code
    if "No space left" in text or "write failed" in text:
        return errno.ENOSPC
    return errno.EROFS if "Read-only" in text else errno.EACCES if "Permission denied" in text else None


def out_of_memory(sink: LauncherEvents, outcome: Outcome, fallbacks: int, why: str) -> int:
    """A rank ran out of memory and the run stops: one line with what was tried and what is left."""
    err = outcome.error or {}
    rank = err.get("rank")
    who = f"rank {rank}" if rank is not None else "a rank"
    after = f" after {fallbacks} smaller attempt{'s' if fallbacks > 1 else ''}" if fallbacks else ""
    error(f"out of memory: {who}{after}; {why}")
    sink.emit("end", status="failed", exit_code=1, rank=rank, error=err.get("error"), kind="oom")
    return 1


def crashed(sink: LauncherEvents, outcome: Outcome, workdir: Path, ranks: list[int]) -> int:
    """A rank failed: which one, its error, the last lines of its log; ``end`` failed."""
    rc, err = outcome.rc, outcome.error
    rank = err.get("rank") if err else None
    if err is None:
        for r in ranks:  # no error event: find a rank whose log shows a traceback
            if any("Traceback" in line or "Error" in line for line in last_lines(workdir / "logs" / f"rank{r}.log")):
                rank = r
                break
    out = sink.printer
    out.notice("training failed" + (f" (exit {rc})" if rc else "") + (f" on rank {rank}" if rank is not None else ""))
    if err:
        out.notice(f"error: {err.get('error')}")
    src = workdir / "logs" / (f"rank{rank}.log" if rank is not None else "launcher.log")
    out.notice(f"last lines of {src}:")
    for line in last_lines(src):
        out.notice(f"  {line}")
    fields: dict[str, Any] = {"exit_code": rc, "rank": rank, "error": err.get("error") if err else None}
    if err and err.get("kind"):
        fields["kind"] = err["kind"]
    sink.emit("end", status="failed", **fields)
    return 1 if fields.get("kind") == "oom" else rc or 1


def summary(printer: Printer, workdir: Path) -> None:
    events = read_events(workdir / "events.jsonl")
    steps = [e for e in events if e.get("event") == "step"]
    end: dict[str, Any] = next((e for e in reversed(events) if e.get("event") == "end"), {})
    ckpts = [e["path"] for e in events if e.get("event") == "checkpoint"]
    if steps:
        printer.notice(f"loss {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f} over {steps[-1]['step']} steps")
    printer.notice(f"final model:   {end.get('final_model', workdir / 'final')}")
    if ckpts:
        printer.notice(f"checkpoint:    {ckpts[-1]}")
    printer.notice(f"DeepSpeed JSON: {workdir / 'ds_config.json'}")
    printer.notice(f"plan:          {workdir / 'plan.yaml'}")
    printer.notice(f"events:        {workdir / 'events.jsonl'}")
    printer.notice(f"rank logs:     {workdir / 'logs'}")
