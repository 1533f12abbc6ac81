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
    """A short, one-line rendering of a (possibly huge or hostile) value for an error message.

    Bounded in time as well as in length: a list that expands through YAML aliases to millions of
    items, or an integer of a million digits, is rendered from its first few parts only."""
    if quote or not isinstance(value, str):
        text = _short_repr(value, limit + 1)
    else:
        text = value[: limit + 1]
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) > limit:
        text = text[: max(1, limit - 1)] + "…"
    return text


def _short_repr(value: object, budget: int) -> str:
    """repr() of ``value`` cut after about ``budget`` characters, never walking more than that."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 4 * budget + 64:  # too long to print anyway (and repr may refuse)
            digits = int(value.bit_length() * 0.30103) + 1
            return f"{'-' if value < 0 else ''}<a number of about {digits:,} digits>"
        return repr(value)
    if isinstance(value, (str, bytes)):
        return repr(value[: budget + 1])
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if budget <= 0:
            return "..."
        brackets = {list: "[]", tuple: "()", dict: "{}"}.get(type(value), "{}")
        items = value.items() if isinstance(value, dict) else value
        parts: list[str] = []
        used = 1
        for item in items:
            if used > budget:
                parts.append("...")
                break
            if isinstance(value, dict):
                k, v = item
                part = f"{_short_repr(k, budget - used)}: {_short_repr(v, budget - used)}"
            else:
                part = _short_repr(item, budget - used)
            parts.append(part)
            used += len(part) + 2
        return brackets[0] + ", ".join(parts) + brackets[1]
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still shown by its type
        return f"<{type(value).__name__}>"
    return text[: budget + 1]
