"""Wording and number formats shared by every message: one place for each.

"did you mean" hints, compute capabilities, GiB figures and short excerpts of bad values are
written the same way by the plan parser, the rules, the DeepSpeed checks, the CLI and the TUI.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

GIB = 1024**3


def closest(name: object, options: Iterable[object]) -> str | None:
    """The closest valid spelling of ``name`` among ``options``, if one is close enough."""
    match = difflib.get_close_matches(excerpt(name, 80, quote=False), [str(o) for o in options], n=1, cutoff=0.6)
    return match[0] if match else None


def did_you_mean(name: object, options: Iterable[object], otherwise: str | None = None) -> str:
    """``did you mean 'x'?``, or ``otherwise`` (default: the valid options listed)."""
    options = list(options)
    best = closest(name, options)
    if best:
        return f"did you mean '{best}'?"
    if otherwise is not None:
        return otherwise
    return "use one of: " + ", ".join(sorted(str(o) for o in options))


def fmt_cc(cc: tuple[int, int] | None, missing: str = "?") -> str:
    """Compute capability (8, 0) as '8.0'."""
    return ".".join(map(str, cc)) if cc else missing


def fmt_gib(n: int | float) -> str:
    """Bytes as '12.3 GiB' (whole GiB from 100 GiB up)."""
    return f"{n / GIB:.1f} GiB" if n < 100 * GIB else f"{n / GIB:.0f} GiB"


def gib_figure(n: int | float) -> str:
    """Bytes as a bare GiB figure with one decimal, for tables whose header says GiB."""
    return f"{n / GIB:.1f}"


def excerpt(value: object, limit: int = 40, *, quote: bool = True) -> str:
    """A short, one-line rendering of a (possibly huge or hostile) value for an error message."""
    text = repr(value) if quote else str(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) > limit:
        text = text[: max(1, limit - 1)] + "…"
    return text
