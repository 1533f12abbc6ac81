"""Writing the files of one export: all of them appear, or none does; nothing else is touched.

Every export (``--export``, ``--save-plan``, ``--export-sbatch``, the TUI's Export and Save)
writes through :func:`write_all`:

- The target is checked first (:func:`resolve_target`): an empty name, a directory, a device, a
  FIFO or a socket is refused with an :class:`~zerowizard.core.validation.InputError` (exit 2),
  before anything is written. ``--export /dev/stdout`` must not turn a device into a file (as
  root it would), and a FIFO would block the export forever.
- A symbolic link is written *through*: its target file gets the new content and the link stays
  a link, as ``echo > link``, vim and most editors do. People keep configurations as links into a
  dotfiles or experiment repository; replacing the link with a plain file would silently cut it
  off from the file it pointed at. A dangling link creates the file it names.
- Each file is written to a temporary file beside its target and flushed to disk; only when all
  of them are written are they renamed over their targets. A failure while writing (a full disk,
  a quota, a signal) removes the temporary files and leaves every target as it was. A rename that
  fails part-way (rare: same folder, same file system) is undone from hard-link backups of the
  files it replaced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .text import excerpt
from .validation import InputError, path_kind, text_problem


@dataclass(frozen=True)
class Output:
    """One file of an export: where, what, and (optionally) its permission bits."""

    path: str | Path
    text: str
    mode: int | None = None  # default: an existing file's mode, else 0o666 less the umask


def resolve_target(path: str | Path, what: str = "export") -> Path:
    """The regular file an export of ``path`` writes (symbolic links followed), or InputError."""
    raw = str(path)
    if not raw.strip():
        raise InputError(f"{what}: the file name is empty; give a file name")
    problem = text_problem(raw, max_len=4096)
    if problem:
        raise InputError(f"{what}: the file name {problem}")
    shown = excerpt(raw, 120)
    kind = path_kind(raw)
    if kind.startswith("invalid"):
        raise InputError(f"{what}: {shown}: {kind[len('invalid: ') :]}; give another file name")
    if kind == "directory":
        raise InputError(f"{what}: {shown} is a directory; give a file name, e.g. {excerpt(str(Path(raw) / 'x'), 120)}")
    if kind not in ("file", "missing"):
        raise InputError(f"{what}: {shown} is a {kind}, not a regular file; zerowizard writes only regular files")
    real = Path(os.path.realpath(raw))
    if kind == "missing":
        folder = path_kind(real.parent)
        if folder != "directory":
            raise InputError(f"{what}: the folder of {shown} does not exist; create it first")
    return real


def _write_temp(target: Path, text: str, mode: int | None) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is None:
            try:
                mode = target.stat().st_mode & 0o7777
            except OSError:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
        os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _backup(target: Path) -> str | None:
    """A hard link to the file about to be replaced (None: nothing there, or no hard links here)."""
    if not target.exists():
        return None
    for _ in range(8):  # a fresh name: os.link never replaces an existing file
        name = os.path.join(target.parent, f".{target.name[:100]}.{secrets.token_hex(6)}.bak")
        try:
            os.link(target, name)
        except FileExistsError:
            continue
        except OSError:  # no hard links on this file system: the rename is still atomic, just not undoable
            return None
        return name
    return None


def write_all(outputs: Sequence[Output], what: str = "export") -> list[Path]:
    """Write every file of one export, all or nothing; returns the files written (the real
    targets). InputError (nothing written) for a bad target or two outputs naming one file;
    OSError (nothing written) when the disk refuses."""
    targets = [resolve_target(o.path, what) for o in outputs]
    seen: dict[Path, str] = {}
    for out, target in zip(outputs, targets):
        if target in seen:
            raise InputError(
                f"{what}: {excerpt(str(out.path), 120)} and {excerpt(seen[target], 120)} are the same file; "
                "give each output its own name"
            )
        seen[target] = str(out.path)
    temps: list[str] = []
    try:
        for out, target in zip(outputs, targets):
            temps.append(_write_temp(target, out.text, out.mode))
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    _commit(temps, targets)
    return targets


def _commit(temps: list[str], targets: list[Path]) -> None:
    backups: list[str | None] = []
    done = 0
    try:
        for tmp, target in zip(temps, targets):
            backups.append(_backup(target))
            os.replace(tmp, target)
            done += 1
    except BaseException:
        for i in range(done - 1, -1, -1):  # undo the renames already made, newest first
            backup = backups[i]
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, targets[i])
                    backups[i] = None
                else:
                    os.unlink(targets[i])
        for tmp in temps[done:]:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    finally:
        for leftover in backups:
            if leftover is not None:
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
