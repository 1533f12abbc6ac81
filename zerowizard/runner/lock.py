"""One run per output folder: ``DIR/.zerowizard.lock`` names the run that owns the folder.

The launcher that leads the job (node rank 0 under torchrun, task 0 under SLURM) holds an exclusive
``flock`` on the file for the whole run and writes its pid, host and job key into it. The kernel
drops the lock when that process ends, however it ends (SIGKILL included), so a lock that can be
taken is stale: it is taken over with a note naming the run that left it. Where the file system
has no ``flock`` (some cluster mounts), the recorded pid and its start time decide instead.

The other launchers of the same job (node ranks > 0, SLURM tasks > 0, on shared storage) join
without taking the lock: they carry the same job key (the rendezvous address and port, or the SLURM
job id) and are refused only by a live lock of another job.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zerowizard.runner.lifeline import alive, start_time

LOCK_NAME = ".zerowizard.lock"


class LockError(RuntimeError):
    """Another run owns the folder; the message names it and the fix."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: str  # /proc start time of pid, to tell a reused pid apart
    job: str  # the job key: every launcher of one job shares it
    since: float

    def describe(self) -> str:
        if not self.pid:
            return "an unreadable lock file"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on {self.host}, started {when}"

    def pid_alive(self) -> bool | None:
        """Without flock: True/False on this host; None on another host (cannot tell)."""
        if self.host != socket.gethostname():
            return None
        return bool(self.pid) and alive(self.pid, self.started or None)


def _holder(text: str) -> Holder:
    try:
        raw = json.loads(text)
        return Holder(int(raw["pid"]), str(raw["host"]), str(raw["started"]), str(raw["job"]), float(raw["since"]))
    except (ValueError, KeyError, TypeError):
        return Holder(0, "?", "", "", 0.0)


def job_key(launcher: str, addr: str | None, port: int | None) -> str:
    """What every launcher of one job shares: the SLURM job step, or the rendezvous address and port."""
    if launcher == "slurm":
        return f"slurm:{os.environ.get('SLURM_JOB_ID', '?')}.{os.environ.get('SLURM_STEP_ID', '?')}"
    return f"rdzv:{addr or '127.0.0.1'}:{port}" if port else f"local:{socket.gethostname()}:{os.getpid()}"


class RunLock:
    """``with RunLock(workdir, job, leads, notice):`` holds (or joins) the folder for the run."""

    def __init__(self, workdir: Path, job: str, leads: bool, notice: Callable[[str], None] = print):
        self.path = Path(workdir) / LOCK_NAME
        self.job, self.leads, self.notice = job, leads, notice
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _refuse(self, other: Holder, live: bool | None) -> None:
        where = self.path.parent
        if live is None:
            raise LockError(
                f"--output {where}: locked by a run on another host ({other.describe()}); use another --output, "
                f"or delete {self.path} once that run is over"
            )
        raise LockError(
            f"--output {where}: another run is using this folder ({other.describe()}); wait for it, stop it "
            f"(kill -INT {other.pid}), or choose another --output"
        )

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                got = self._try_flock(fd)
                text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
                other = _holder(text) if text.strip() else None
                if got is None:  # no flock here: the recorded pid decides
                    got = other is None or other.pid_alive() is False
                if not got:
                    if other is None:  # the holder is about to write its name: look again
                        os.close(fd)
                        time.sleep(0.05)
                        continue
                    if self.leads or other.job != self.job:
                        self._refuse(other, True if other.host == socket.gethostname() else None)
                    os.close(fd)
                    return  # a follower of the live job: joins without the lock
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    os.close(fd)  # the file was replaced between open and flock: try again
                    continue
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            if not self.leads:
                os.close(fd)  # nobody live holds it: a follower does not take it
                return
            if other is not None:
                self.notice(
                    f"note: {self.path.parent}: taking over from a run that is no longer running ({other.describe()})"
                )
            self._write(fd)
            self.fd = fd
            return
        raise LockError(f"--output {self.path.parent}: could not take {self.path}; another run keeps replacing it")

    @staticmethod
    def _try_flock(fd: int) -> bool | None:
        """True: locked; False: another process holds it; None: this file system has no flock."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                return None
            raise

    def _write(self, fd: int) -> None:
        me = os.getpid()
        body = {"pid": me, "host": socket.gethostname(), "started": start_time(me) or "", "job": self.job}
        body["since"] = round(time.time(), 3)
        data = (json.dumps(body) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        os.close(fd)  # drops the flock
