"""The launcher owns its ranks: when the ``zerowizard`` launcher dies, by any signal including
SIGKILL, torchrun and every rank end within seconds.

Two mechanisms, each enough on its own:

- the parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``, which fires when the parent *thread*
  dies: the launcher starts its child from its main thread, torchrun from its own). The launcher's
  child (torchrun, or the rank itself under ``single``/``slurm``) gets SIGTERM when the launcher
  dies: torchrun then stops its ranks' process groups (a rank's compiler children included);
  set before ``exec`` in the child (:func:`preexec`), so no window is left between fork and prctl.
  Each rank also asks for SIGKILL when its own parent (torchrun) dies;
- a watchdog thread in each rank (:func:`guard`) that checks the launcher's pid, and that pid's
  start time (a reused pid is not the launcher), twice a second, and kills the rank's process
  group: it covers a parent that died before the rank could set its parent-death signal, and
  platforms without prctl.

The parent-death signal is not inherited across fork: a compiler that a rank started while it was
building a DeepSpeed op (single/slurm launchers only) finishes on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

ENV_PID = "ZEROWIZARD_LAUNCHER_PID"
ENV_START = "ZEROWIZARD_LAUNCHER_START"
PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_S = 0.5

_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent thread dies."""
    return _prctl is not None and _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None
    when there is no such process. Two processes that share a pid never share a start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def launcher_env() -> dict[str, str]:
    """The variables that tell a rank which launcher owns it (this process)."""
    return {ENV_PID: str(os.getpid()), ENV_START: start_time(os.getpid()) or ""}


def preexec(parent: int, sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for Popen: the child gets ``sig`` when ``parent`` (the launcher) dies."""

    def child() -> None:
        set_parent_death_signal(sig)
        if os.getppid() != parent:  # the launcher died between fork and prctl
            os._exit(1)

    return child


def alive(pid: int, started: str | None) -> bool:
    now = start_time(pid)
    if now is None:
        return False
    return not started or now == started


def guard() -> threading.Thread | None:
    """In a rank: die with the parent (torchrun or the launcher) and with the launcher itself."""
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() == 1:  # orphaned already: the parent died before prctl
        os._exit(1)
    pid = os.environ.get(ENV_PID, "")
    if not pid.isdigit():
        return None
    started = os.environ.get(ENV_START) or None
    if not alive(int(pid), started):
        os._exit(1)

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(WATCH_INTERVAL_S):
            if not alive(int(pid), started):
                if os.getpgrp() == os.getpid():  # this rank leads its group: its children go too
                    os.killpg(os.getpgrp(), signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

    t = threading.Thread(target=watch, name="zerowizard-launcher-watchdog", daemon=True)
    t.start()
    return t
