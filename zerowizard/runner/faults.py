"""Disk and permission faults: one line naming the path and the fix, never a traceback.

A read-only or full output folder is found at start (the launcher cannot write the run files) or
during the run (a rank cannot write a checkpoint, a log or an event). Either way the run stops
with exit 1, the last complete checkpoint is kept, and the event stream ends with an ``error``
event (``kind: "disk"``) and then ``end``. Space for those last lines is reserved beside the
events file (:func:`reserve`), so they can still be written when the disk is full.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import sys
from pathlib import Path

DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
RESERVE_BYTES = 64 * 1024
LOW_SPACE_BYTES = 4 * 1024**2
# what a rank's exception says when the cause is the disk (torch's writer does not keep the errno)
_DISK_TEXT = re.compile(
    r"No space left on device|Disk quota exceeded|Read-only file system|Permission denied|"
    r"\[Errno (28|30|13|122)\]|PytorchStreamWriter failed writing|file write failed|unexpected pos",
)
_PATH_TEXT = re.compile(r"""(?:'|")(/[^'"]+)(?:'|")""")

_fallocate = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _fallocate = ctypes.CDLL(None, use_errno=True).fallocate
        _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
FALLOC_FL_KEEP_SIZE = 1


def is_disk_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


def what_went_wrong(err: int | None) -> tuple[str, str]:
    """(what, fix) for a disk errno."""
    if err in FULL_ERRNOS:
        return "the disk is full", "free some space or choose another --output"
    if err == errno.EROFS:
        return "the file system is read-only", "choose a writable --output"
    if err in (errno.EACCES, errno.EPERM):
        return "permission denied", "choose a folder you can write (--output) or fix its permissions"
    return "an I/O error", "check the disk, or choose another --output"


def describe(exc: OSError, fallback: Path | None = None) -> str:
    """``cannot write /path: the disk is full; free some space or choose another --output``."""
    path = exc.filename or fallback or "?"
    what, fix = what_went_wrong(exc.errno)
    if exc.errno not in DISK_ERRNOS:
        what = exc.strerror or str(exc)
    return f"cannot write {path}: {what}; {fix}"


def disk_fault_in(text: str) -> bool:
    """Whether a rank's error message reads like a disk or permission fault."""
    return bool(_DISK_TEXT.search(text or ""))


def path_in(text: str) -> str | None:
    m = _PATH_TEXT.search(text or "")
    return m.group(1) if m else None


def probe_folder(folder: Path) -> int | None:
    """The errno that writing into ``folder`` now gives (None: writable with room to spare)."""
    try:
        if shutil.disk_usage(folder).free < LOW_SPACE_BYTES:
            return errno.ENOSPC
    except OSError as exc:
        return exc.errno
    probe = folder / f".zerowizard-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return exc.errno
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


def reserve(path: Path, nbytes: int = RESERVE_BYTES) -> None:
    """Allocate ``nbytes`` past the end of ``path`` without changing its size (Linux fallocate with
    KEEP_SIZE), so the next appends need no new blocks even on a full disk. Best effort."""
    if _fallocate is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return
    try:
        _fallocate(fd, FALLOC_FL_KEEP_SIZE, os.fstat(fd).st_size, nbytes)
    finally:
        os.close(fd)
