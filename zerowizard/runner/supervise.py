"""Run the rank processes, follow their events and logs, and never leave one behind.

SIGINT/SIGTERM stop the whole process tree (SIGTERM, then SIGKILL after a grace period) and the
run exits 130/143. A rank that reports an error stops the others; its error and the last lines
of its log are shown and the exit status is non-zero.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

from zerowizard.runner import memlimit
from zerowizard.runner.events import EventTail, EventWriter
from zerowizard.runner.headless import interesting

TERM_GRACE_S = 5.0
CRASH_GRACE_S = 5.0
TAIL_LINES = 20


class _LogTail:
    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, ""

    def lines(self):
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
    """SIGTERM the process, its session and every descendant; SIGKILL whatever is left."""
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
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if interesting(line)][-n:]


class Supervisor:
    def __init__(self, cmd: list[str], env: dict, workdir: Path, printer, ranks: list[int], writes_events: bool = True):
        self.cmd, self.env, self.workdir, self.printer = cmd, env, workdir, printer
        self.ranks = ranks
        self.writes_events = writes_events
        self.signum = None
        self.error = None
        self.error_at = None
        self.ended = None
        self.pid = None

    def _on_signal(self, signum, _frame):
        self.signum = signum

    def run(self) -> int:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        tail = EventTail(self.workdir / "events.jsonl")
        tail.offset = (self.workdir / "events.jsonl").stat().st_size if (self.workdir / "events.jsonl").exists() else 0
        logtails = {r: _LogTail(logs / f"rank{r}.log") for r in self.ranks}
        for t in logtails.values():
            t.offset = t.path.stat().st_size if t.path.exists() else 0
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with open(logs / "launcher.log", "a", encoding="utf-8") as out:
                proc = subprocess.Popen(
                    self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
                self.pid = proc.pid
                rc = self._loop(proc, tail, logtails)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            memlimit.cleanup(self.workdir)  # --memory-limit: the ranks' cgroups, once they have gone
        return rc

    def _pump(self, tail, logtails):
        for r, t in logtails.items():
            for line in t.lines():
                if interesting(line):
                    self.printer.log(r, line)
        for ev in tail.poll():
            if self.writes_events:  # one printer per job: N SLURM tasks must not print every line N times
                self.printer.event(ev)
            if ev.get("event") == "error" and self.error is None:
                self.error, self.error_at = ev, time.time()
            elif ev.get("event") == "end":
                self.ended = ev

    def _loop(self, proc, tail, logtails) -> int:
        while True:
            self._pump(tail, logtails)
            if self.signum is not None:
                name = signal.Signals(self.signum).name
                self.printer.notice(f"{name}: stopping every rank ...")
                kill_tree(proc.pid)
                self._pump(tail, logtails)
                self._end("interrupted", signal=name)
                self.printer.notice(
                    f"stopped by {name}; checkpoints so far are in {self.workdir / 'checkpoints'} (--resume continues)"
                )
                return 128 + self.signum
            rc = proc.poll()
            if rc is not None:
                break
            if self.error_at is not None and time.time() - self.error_at > CRASH_GRACE_S:
                kill_tree(proc.pid)
            time.sleep(0.2)
        kill_tree(proc.pid, grace=1.0)  # nothing may outlive the launcher process
        self._pump(tail, logtails)
        if rc == 0 and (self.ended is not None or not self.writes_events):
            return 0  # a launcher that writes no events (node rank > 0, SLURM rank > 0): its exit is the verdict
        self._report_failure(rc)
        return 1 if (self.error or {}).get("kind") == memlimit.OOM else rc or 1

    def _report_failure(self, rc) -> None:
        # a rank the kernel OOM-killed in its --memory-limit cgroup wrote nothing: that is the cause
        # (the other ranks' errors on the closed connection follow from it)
        oom = memlimit.report_oom(self.workdir)
        if oom is not None:
            self.error = oom
        err = self.error
        rank = err.get("rank") if err else None
        if err is None:
            for r in self.ranks:  # no error event: find a rank whose log shows a traceback
                if any(
                    "Traceback" in line or "Error" in line
                    for line in last_lines(self.workdir / "logs" / f"rank{r}.log")
                ):
                    rank = r
                    break
        self.printer.notice(f"training failed (exit {rc})" + (f" on rank {rank}" if rank is not None else ""))
        if err:
            self.printer.notice(f"error: {err.get('error')}")
        src = self.workdir / "logs" / (f"rank{rank}.log" if rank is not None else "launcher.log")
        self.printer.notice(f"last lines of {src}:")
        for line in last_lines(src):
            self.printer.notice(f"  {line}")
        self._end("failed", exit_code=rc, rank=rank, error=err.get("error") if err else None)

    def _end(self, status: str, **fields) -> None:
        if self.ended is None and self.writes_events:
            self.ended = EventWriter(self.workdir / "events.jsonl", source="launcher").emit(
                "end", status=status, **fields
            )
