"""Run the rank processes, follow their events and logs, and never leave one behind.

The child (torchrun, or the rank itself) dies with the launcher however the launcher dies
(:mod:`zerowizard.runner.lifeline`). SIGINT/SIGTERM stop the whole process tree (SIGTERM, then
SIGKILL after a grace period). A rank that reports an error stops the others (at once for an
out-of-memory error, after a short grace otherwise, so every rank's error reaches the log).
The supervisor only watches: what the outcome means (retry, report, exit status) is the
launcher's call (:mod:`zerowizard.runner.launch`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerowizard.runner import faults, lifeline, memlimit
from zerowizard.runner.events import EventTail
from zerowizard.runner.headless import Printer, interesting

TERM_GRACE_S = 5.0
CRASH_GRACE_S = 5.0
TAIL_LINES = 20
RESERVE_EVERY_S = 2.0


class _LogTail:
    """New lines of a rank's log. A traceback is shown by its last line only (the exception): the
    whole of it stays in the log file and in the failure report's last lines."""

    def __init__(self, path: Path):
        self.path, self.partial = path, ""
        self.offset = path.stat().st_size if path.exists() else 0
        self.in_traceback = False

    def shown(self) -> list[str]:
        out = []
        for line in self.lines():
            if line.startswith("Traceback (most recent call last)"):
                self.in_traceback = True
            elif self.in_traceback and (not line.strip() or line[0].isspace() or line.startswith("[rank")):
                continue  # a frame, or torchrun's "[rankN]:" prefix of the same traceback
            elif self.in_traceback:
                self.in_traceback = False
                out.append(line)
            elif interesting(line):
                out.append(line)
        return out

    def lines(self) -> list[str]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return []
        text = (self.partial + chunk).replace("\r", "\n")
        parts = text.split("\n")
        self.partial = parts.pop()
        return parts


def kill_tree(pid: int, grace: float = TERM_GRACE_S) -> None:
    """SIGTERM the process and every descendant; SIGKILL whatever is left after ``grace``."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=2)


def last_lines(path: Path, n: int = TAIL_LINES) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    except OSError:
        return []
    return [line for line in text.splitlines() if interesting(line)][-n:]


@dataclass
class Outcome:
    """How one launch of the ranks ended."""

    rc: int  # the child's exit status (torchrun's, or the single rank's)
    error: dict[str, Any] | None = None  # the first error event of a rank
    ended: dict[str, Any] | None = None  # rank 0's end event
    signum: int | None = None  # the signal that stopped the launcher
    checkpoints: tuple[str, ...] = ()  # complete checkpoints reported by this launch
    oom_killed: dict[str, Any] | None = None  # error fields for a rank the kernel OOM-killed (--memory-limit)


class Supervisor:
    def __init__(
        self, cmd: list[str], env: dict[str, str], workdir: Path, printer: Printer, ranks: list[int], leads: bool = True
    ):
        self.cmd, self.env, self.workdir, self.printer = cmd, env, workdir, printer
        self.ranks, self.leads = ranks, leads
        self.signum: int | None = None
        self.error: dict[str, Any] | None = None
        self.error_at: float | None = None
        self.ended: dict[str, Any] | None = None
        self.checkpoints: list[str] = []
        self.reserved_at = 0.0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def run(self) -> Outcome:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        events = self.workdir / "events.jsonl"
        tail = EventTail(events)
        tail.offset = events.stat().st_size if events.exists() else 0
        logtails = {r: _LogTail(logs / f"rank{r}.log") for r in self.ranks}
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with open(logs / "launcher.log", "a", encoding="utf-8") as out:
                proc = subprocess.Popen(
                    self.cmd,
                    env={**self.env, **lifeline.launcher_env()},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=lifeline.preexec(parent=os.getpid()),
                )
                rc = self._loop(proc, tail, logtails)
                # a rank the kernel OOM-killed in its --memory-limit cgroup wrote nothing: that is the
                # cause (the other ranks' errors on the closed connection follow from it)
                killed = memlimit.oom_error_fields(self.workdir) if rc != 0 else None
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            memlimit.cleanup(self.workdir)  # --memory-limit: the ranks' cgroups, once they have gone
        return Outcome(rc, self.error, self.ended, self.signum, tuple(self.checkpoints), killed)

    def _pump(self, tail: EventTail, logtails: dict[int, _LogTail]) -> None:
        for r, t in logtails.items():
            for line in t.shown():
                self.printer.log(r, line)
        for ev in tail.poll():
            # one printer per job (N SLURM tasks must not print every line N times); the
            # launcher prints its own events as it writes them
            if self.leads and ev.get("source") != "launcher":
                self.printer.event(ev)
            kind = ev.get("event")
            if kind == "error" and self.error is None:
                self.error, self.error_at = ev, time.time()
            elif kind == "end" and ev.get("source") != "launcher":
                self.ended = ev
            elif kind == "checkpoint" and ev.get("path"):
                self.checkpoints.append(str(ev["path"]))
        if self.leads and time.time() - self.reserved_at > RESERVE_EVERY_S:
            faults.reserve(self.workdir / "events.jsonl")  # room for the last events on a full disk
            self.reserved_at = time.time()

    def _loop(self, proc: subprocess.Popen[bytes], tail: EventTail, logtails: dict[int, _LogTail]) -> int:
        while True:
            self._pump(tail, logtails)
            if self.signum is not None:
                name = signal.Signals(self.signum).name
                self.printer.notice(f"{name}: stopping every rank ...")
                kill_tree(proc.pid)
                self._pump(tail, logtails)
                return 128 + self.signum
            rc = proc.poll()
            if rc is not None:
                break
            if self.error is not None and self.error_at is not None:
                grace = 0.0 if self.error.get("kind") == "oom" else CRASH_GRACE_S
                if time.time() - self.error_at > grace:
                    kill_tree(proc.pid)
            time.sleep(0.2)
        kill_tree(proc.pid, grace=1.0)  # nothing may outlive the launcher process
        self._pump(tail, logtails)
        return rc
