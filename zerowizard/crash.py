"""The last line of defence: an unexpected exception becomes one line and a log file.

Bad input never gets here (the validation layer answers it with exit 2); what does is a bug.
The user sees one line saying so and where the traceback was saved; the traceback goes to
``$ZEROWIZARD_CACHE/crash/`` (default ``~/.cache/zerowizard/crash/``, or under
``$XDG_CACHE_HOME``), never to the terminal.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .core.text import excerpt

EXIT_CRASH = 1


def crash_dir() -> Path:
    """Where crash logs go (created on first use)."""
    base = os.environ.get("ZEROWIZARD_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = os.path.join(xdg, "zerowizard") if xdg else os.path.join(Path.home(), ".cache", "zerowizard")
    return Path(base) / "crash"


def _write_log(exc: BaseException, argv: list[str]) -> Path | None:
    from . import __version__

    text = (
        f"zerowizard {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
        f"argv: {[excerpt(a, 300, quote=False) for a in argv]}\n"
        f"cwd: {os.getcwd() if os.path.exists('.') else '?'}\n"
        f"time: {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n\n"
        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    )
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (crash_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return None


def report(exc: BaseException, argv: list[str]) -> int:
    """Save the traceback of ``exc``, print one line pointing at it, return the exit code (1)."""
    path = _write_log(exc, argv)
    where = f"the traceback is in {path}" if path else "the traceback could not be saved"
    message = excerpt(str(exc), 160, quote=False)
    print(
        f"zerowizard: internal error: {type(exc).__name__}: {message} (a bug in zerowizard, not in your input); "
        f"{where}; please report it with that file",
        file=sys.stderr,
    )
    return EXIT_CRASH
