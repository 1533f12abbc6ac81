"""Start-up phases of a rank, visible from the first second: ``phase`` events (rank 0) and the
seconds each phase took (``setup_phases_s`` in the ``start`` event).

A first run on a fresh machine spends a minute compiling a DeepSpeed op before the first step;
:func:`watch_op_builds` turns that into a ``phase`` event that says so, instead of silence.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from zerowizard.runner.events import EventWriter


class Phases:
    """``phases.begin("model", "loading the model")``: ends the previous phase, emits the next."""

    def __init__(self, writer: EventWriter | None, rank: int, started: float):
        self.writer, self.rank, self.started = writer, rank, started
        self.current: str | None = None
        self.message = ""
        self.at = started
        self.seconds: dict[str, float] = {}

    def _close(self, now: float) -> None:
        if self.current is not None:
            self.seconds[self.current] = round(self.seconds.get(self.current, 0.0) + now - self.at, 2)
        self.at = now

    def begin(self, phase: str, message: str) -> None:
        now = time.time()
        self._close(now)
        self.current, self.message = phase, message
        if self.writer is not None:
            with contextlib.suppress(OSError):  # a full disk is reported by whatever fails next
                self.writer.emit(
                    "phase", phase=phase, message=message, rank=self.rank, elapsed_s=round(now - self.started, 2)
                )

    def resume(self, phase: str, message: str) -> None:
        """Back to an earlier phase, silently (the user saw it begin)."""
        self._close(time.time())
        self.current, self.message = phase, message

    def end(self) -> dict[str, float]:
        """The seconds per phase so far (the current one included)."""
        if self.current != "ready":
            self.begin("ready", "ready: the first step is next")
        return dict(self.seconds)


def _op_cached(name: str) -> bool:
    """Whether torch's JIT cache already holds a build of this op (then loading takes seconds)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return (Path(_get_build_directory(name, verbose=False)) / f"{name}.so").is_file()
    except Exception:  # noqa: BLE001 - a private helper: when it moves, say "building" to be safe
        return False


def lock_held_open(lock: Path) -> bool:
    """Whether any process has ``lock`` open. torch's FileBaton keeps the lock file's descriptor open
    for as long as it builds, so a lock nobody holds was left by a build that was killed. Where /proc
    cannot tell (another OS), the lock counts as held."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    target = str(lock.resolve())
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                try:
                    if os.readlink(fd) == target:
                        return True
                except OSError:
                    continue
        except OSError:  # a process that ended, or one we may not look into
            continue
    return False


def clear_stale_build_lock(lock: Path) -> bool:
    """Remove torch's JIT build lock when no process holds it (a build killed part-way, e.g. by a
    kill -9 or an out-of-memory kill, leaves it behind, and every later run would wait on it
    forever). True when a stale lock was removed."""
    if not lock.exists() or lock_held_open(lock):
        return False
    try:
        lock.unlink()
    except FileNotFoundError:  # another rank removed it first
        return False
    return True


def _clear_stale_lock_of(name: str, phases: Phases) -> None:
    try:
        from torch.utils.cpp_extension import _get_build_directory

        lock = Path(_get_build_directory(name, verbose=False)) / "lock"
    except Exception:  # noqa: BLE001 - a private helper: when it moves, leave the lock to torch
        return
    if clear_stale_build_lock(lock):
        phases.begin("op", f"removed a stale build lock of DeepSpeed op {name} left by a build that was killed: {lock}")


def watch_op_builds(phases: Phases) -> None:
    """Emit a phase event each time DeepSpeed JIT-loads an op (building it when not cached)."""
    from deepspeed.ops.op_builder.builder import OpBuilder

    original = OpBuilder.jit_load
    if getattr(original, "_zerowizard", False):
        return

    def jit_load(self: Any, verbose: bool = True) -> Any:
        name = getattr(self, "name", "?")
        before = (phases.current, phases.message)
        if _op_cached(name):
            what = f"loading DeepSpeed op {name} (built before; compiled again if stale: about a minute)"
        else:
            what = (
                f"building DeepSpeed op {name}: the first run on this machine compiles it (about a minute; "
                "cached in ~/.cache/torch_extensions afterwards)"
            )
        _clear_stale_lock_of(name, phases)
        phases.begin("op", what)
        t0 = time.time()
        try:
            return original(self, verbose)
        finally:
            phases.begin("op", f"DeepSpeed op {name} ready after {time.time() - t0:.0f}s")
            if before[0] is not None:
                phases.resume(before[0], before[1])

    jit_load._zerowizard = True  # type: ignore[attr-defined]  # a marker on the function: patched once
    OpBuilder.jit_load = jit_load
