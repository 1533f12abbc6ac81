"""The one validation layer every entry point shares: files, YAML, JSON and numbers.

Plans (YAML), DeepSpeed JSONs, model config.json files, data files, flags, run options and
environment variables all come through here, so a bad value gets the same answer everywhere:
one line naming the field and the fix, never a traceback, never a hang. Hostile input is bounded
before it is parsed (file size) and while it is parsed (nesting depth, YAML aliases), and an error
quotes at most a short excerpt of the offending value (:func:`zerowizard.core.text.excerpt`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .text import excerpt

MAX_FILE_BYTES = 16 * 1024**2  # a plan, a DeepSpeed JSON or a config.json is a few KiB
MAX_DEPTH = 32  # nesting of mappings and lists; real configs stay under 6
MAX_ALIASES = 100  # YAML anchors referenced; a "billion laughs" document needs thousands


class InputError(ValueError):
    """A file or value that cannot be used; the message names the field (or file) and the fix."""


def read_text(path: str | Path, what: str, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file, or InputError saying why not (missing, a directory, a
    device or FIFO, too large, not UTF-8)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{what}: no such file {excerpt(str(p), 120)}; check the path") from None
    except OSError as exc:
        raise InputError(f"{what}: cannot read {excerpt(str(p), 120)} ({exc.strerror or exc})") from None
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what}: {excerpt(str(p), 120)} is a directory; give a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what}: {excerpt(str(p), 120)} is not a regular file (a device or a pipe); give a file")
    if st.st_size > max_bytes:
        raise InputError(f"{what}: {excerpt(str(p), 120)} is {st.st_size:,} bytes; at most {max_bytes:,} are read")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{what}: cannot read {excerpt(str(p), 120)} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what}: {excerpt(str(p), 120)} is not UTF-8 text (byte {exc.start})") from None


def _bounded_loader() -> type:
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader that refuses deep nesting and alias-heavy documents while composing."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._depth = 0
            self._aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                if self._aliases > MAX_ALIASES:
                    raise InputError(f"more than {MAX_ALIASES} YAML aliases (*name); write the values out")
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    raise InputError(f"nested more than {MAX_DEPTH} levels deep")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return BoundedLoader


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely and boundedly; InputError names ``source`` and the line."""
    import yaml

    try:
        return yaml.load(text, Loader=_bounded_loader())
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{source}: not valid YAML{at}: {excerpt(problem, 80, quote=False)}") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply") from None


def _reject_constant(name: str) -> Any:
    raise InputError(f"{name} is not a number JSON allows; write a finite number")


def load_json(text: str, source: str) -> Any:
    """Parse strict JSON (no NaN/Infinity, bounded nesting); InputError names ``source``."""
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply") from None
    if _depth(data) > MAX_DEPTH:
        raise InputError(f"{source}: nested more than {MAX_DEPTH} levels deep")
    return data


def _depth(node: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(node, dict):
        return max((_depth(v, level + 1) for v in node.values()), default=level + 1)
    if isinstance(node, list):
        return max((_depth(v, level + 1) for v in node), default=level + 1)
    return level


def number_problem(
    value: Any,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> str | None:
    """Why ``value`` is not an acceptable number (None when it is). Booleans are not numbers;
    NaN and infinities never are; a float is a whole number only when it has no fraction."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a {'whole number' if integer else 'number'}, got {excerpt(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, got {value}"
    if integer and isinstance(value, float) and not value.is_integer():
        return f"expected a whole number, got {value}"
    if minimum is not None and value < minimum:
        return f"{excerpt(value)} is below the minimum {minimum:g}"
    if maximum is not None and value > maximum:
        return f"{excerpt(value)} is above the maximum {maximum:g}"
    return None


def parse_number(
    text: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> int | float:
    """A number typed by a user (a flag, an environment variable, a form field), or InputError
    with the reason. Accepts ``8``, ``8.0`` (for a whole number), ``1e-4``; refuses ``nan``,
    ``inf``, ``1e999``, ``--``, empty text."""
    s = str(text).strip()
    if not s:
        raise InputError("expected a number, got an empty value")
    value: int | float
    try:
        value = int(s)
    except ValueError:
        try:
            value = float(s)
        except ValueError:
            raise InputError(f"expected a {'whole number' if integer else 'number'}, got {excerpt(s)}") from None
    problem = number_problem(value, integer=integer, minimum=minimum, maximum=maximum)
    if problem:
        raise InputError(problem)
    if integer:
        return int(value)
    return value
