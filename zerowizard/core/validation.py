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
import os
from pathlib import Path
from typing import Any

from .text import excerpt

MAX_FILE_BYTES = 16 * 1024**2  # a plan, a DeepSpeed JSON or a config.json is a few KiB
MAX_DEPTH = 32  # nesting of mappings and lists; real configs stay under 6
MAX_ALIASES = 100  # YAML anchors referenced
MAX_EXPANDED = 100_000  # values a YAML document may stand for once its aliases are written out


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
    """Parse YAML safely and boundedly; InputError names ``source`` and the line.

    Bounded three ways: nesting depth (:data:`MAX_DEPTH`), aliases referenced
    (:data:`MAX_ALIASES`) and the size the document would have with every alias written out
    (:data:`MAX_EXPANDED`): a "billion laughs" needs only 81 aliases to stand for 387 million
    values, and any later walk over it (an error message, a copy) would never end."""
    import yaml

    loader = None
    try:
        loader = _bounded_loader()(text)  # the reader refuses some characters right away
        node = loader.get_single_node()
        if node is not None:
            size = _expanded_size(node, {})
            if size > MAX_EXPANDED:
                raise InputError(
                    f"aliases (*name) expand it to more than {MAX_EXPANDED:,} values; write the values out"
                )
        return loader.construct_document(node) if node is not None else None
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{source}: not valid YAML{at}: {excerpt(problem, 80, quote=False)}") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # an integer of more than 4300 digits, a bad date
        raise InputError(f"{source}: {_number_error(exc)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """How many nodes ``node`` stands for with every alias written out (a DAG walk, memoised)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_EXPANDED + 1  # a cycle (a recursive alias) counts as too large
    size = 1
    value = node.value
    if isinstance(value, list):
        for item in value:
            if isinstance(item, tuple):  # a mapping's (key, value) pair
                size += _expanded_size(item[0], memo) + _expanded_size(item[1], memo)
            else:
                size += _expanded_size(item, memo)
            if size > MAX_EXPANDED:
                break
    memo[key] = size
    return size


def _reject_constant(name: str) -> Any:
    raise InputError(f"{name} is not a number JSON allows; write a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"{excerpt(text, 24, quote=False)} is too large for a number; write a finite number")
    return value


def load_json(text: str, source: str) -> Any:
    """Parse strict JSON (no NaN/Infinity, no number that overflows, bounded nesting);
    InputError names ``source``."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise InputError(f"{source}: {_number_error(exc)}") from None
    if _depth(data) > MAX_DEPTH:
        raise InputError(f"{source}: nested more than {MAX_DEPTH} levels deep")
    return data


def _number_error(exc: Exception) -> str:
    if "digits" in str(exc):
        return "a number of more than 4,300 digits; write a smaller number"
    return f"a value that cannot be read ({excerpt(str(exc), 60, quote=False)})"


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
        return f"{excerpt(value)} is below the minimum {_bound(minimum)}"
    if maximum is not None and value > maximum:
        return f"{excerpt(value)} is above the maximum {_bound(maximum)}"
    return None


def _bound(x: float) -> str:
    """1 -> '1', 16777216 -> '16,777,216', 0.001 -> '0.001', 1e15 -> '1e+15'."""
    if float(x).is_integer() and abs(x) < 1e12:
        return f"{int(x):,}"
    return f"{x:g}"


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
    if not isinstance(text, str):
        raise InputError(f"expected a {'whole number' if integer else 'number'}, got {excerpt(text)}")
    s = text.strip()
    if not s:
        raise InputError("expected a number, got an empty value")
    if len(s) > 64:
        raise InputError(f"expected a number, got {len(s):,} characters ({excerpt(s, 24)})")
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


def text_problem(value: Any, *, max_len: int = 4096, multiline: bool = False) -> str | None:
    """Why ``value`` is not acceptable one-line text (None when it is): not a string, longer
    than ``max_len``, or holding a control character (a newline would add a line to a script
    or a log; a NUL cannot be part of a path)."""
    if not isinstance(value, str):
        return f"expected text, got {excerpt(value)}"
    if len(value) > max_len:
        return f"{len(value):,} characters long; at most {max_len:,}"
    for ch in value:
        code = ord(ch)
        if (code < 32 and not (multiline and ch in "\n\t")) or 127 <= code < 160:
            return f"contains a control character ({ch!r}) in {excerpt(value)}; remove it"
    return None


def path_kind(path: str | Path) -> str:
    """What is at ``path``, following symlinks, never raising: ``missing``, ``file``,
    ``directory``, ``fifo``, ``device``, ``socket``, ``other``, or ``invalid: <why>`` (a name too
    long, a NUL byte, a symlink loop, no permission to look)."""
    import errno
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    except ValueError:  # an embedded NUL byte
        return "invalid: the name contains a NUL byte"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "invalid: a loop of symbolic links"
        return f"invalid: {exc.strerror or exc}"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "other"


def is_directory(path: str | Path) -> bool:
    """``Path.is_dir()`` that answers False for names the system refuses (too long, NUL bytes)
    instead of raising."""
    return path_kind(path) == "directory"


def check_data_file(path: str | Path, what: str = "data.path") -> Path:
    """A training-data file that can be read: a regular file (not a directory, device or pipe).
    Its size is not limited (data sets are large); InputError says what is wrong."""
    kind = path_kind(path)
    shown = excerpt(str(path), 120)
    if kind == "file":
        return Path(path)
    if kind == "missing":
        raise InputError(f"{what}: no such file {shown}; give a JSON or JSONL file")
    if kind == "directory":
        raise InputError(f"{what}: {shown} is a directory; give a JSON or JSONL file")
    if kind.startswith("invalid"):
        raise InputError(f"{what}: {shown}: {kind[len('invalid: ') :]}")
    raise InputError(f"{what}: {shown} is a {kind}, not a regular file; give a JSON or JSONL file")


def env_number(
    name: str,
    default: int | float | None = None,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> int | float | None:
    """A number from the environment variable ``name`` (``default`` when unset or empty), or
    InputError naming the variable: ``NPROC_PER_NODE: expected a whole number, got 'eight'``."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return parse_number(raw, integer=integer, minimum=minimum, maximum=maximum)
    except InputError as exc:
        raise InputError(f"{name}: {exc}; fix or unset the environment variable") from None


# -- model config.json ---------------------------------------------------------------------------

# The sizes a transformers config.json gives, with the largest value any real model comes near
# (x10 or more): a value past these is a typo or a hostile file, and would make the memory model's
# figures meaningless.
MODEL_SIZES: dict[str, int] = {
    "hidden_size": 1 << 20,
    "intermediate_size": 1 << 22,
    "num_hidden_layers": 10_000,
    "num_attention_heads": 1 << 16,
    "num_key_value_heads": 1 << 16,
    "head_dim": 1 << 16,
    "vocab_size": 1 << 24,
    "max_position_embeddings": 1 << 28,
}
MODEL_NULLABLE = ("head_dim", "num_key_value_heads", "max_position_embeddings")  # null: derived or absent
MODEL_FLAGS = ("tie_word_embeddings", "attention_bias", "bias")


def check_model_config(cfg: Any, source: str) -> dict:
    """A model's config.json (parsed) checked for what zerowizard reads from it: a JSON object;
    sizes are whole numbers (not floats, not booleans, not text) from 1 up to a sane maximum;
    heads divide evenly; flags are true/false. Returns ``cfg``; InputError names the file and
    the first problem (and how many more there are). A nested ``text_config`` (multimodal
    models) is checked the same way."""
    if not isinstance(cfg, dict):
        raise InputError(f"{source}: a model config is a JSON object ({{...}}), not a {type(cfg).__name__}")
    problems = _model_config_problems(cfg, "")
    sub = cfg.get("text_config")
    if isinstance(sub, dict):
        problems += _model_config_problems(sub, "text_config.")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{source}: {problems[0]}{more}")
    return cfg


def _model_config_problems(cfg: dict, prefix: str) -> list[str]:
    problems = []
    for key, most in MODEL_SIZES.items():
        if key not in cfg or (cfg[key] is None and key in MODEL_NULLABLE):
            continue
        value = cfg[key]
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            problem: str | None = f"expected a whole number, got {value!r} (write it without a decimal point)"
        else:
            problem = number_problem(value, integer=True, minimum=1, maximum=most)
            if problem is None and isinstance(value, float):
                problem = f"expected a whole number, got {value!r}"
        if problem:
            problems.append(f"{prefix}{key}: {problem}; fix the config.json")
    for key in MODEL_FLAGS:
        if key in cfg and not isinstance(cfg[key], bool):
            problems.append(f"{prefix}{key}: expected true or false, got {excerpt(cfg[key])}; fix the config.json")
    for key in ("model_type", "family"):
        if key in cfg and cfg[key] is not None:
            problem = text_problem(cfg[key], max_len=100)
            if problem:
                problems.append(f"{prefix}{key}: {problem}")
    if not problems:
        problems += _head_problems(cfg, prefix)
    return problems


def _head_problems(cfg: dict, prefix: str) -> list[str]:
    heads, kv = cfg.get("num_attention_heads"), cfg.get("num_key_value_heads")
    hidden, head_dim = cfg.get("hidden_size"), cfg.get("head_dim")
    problems = []
    if isinstance(heads, int) and isinstance(kv, int) and heads % kv:
        problems.append(
            f"{prefix}num_key_value_heads: {kv} does not divide num_attention_heads {heads}; "
            "grouped-query attention needs a divisor"
        )
    if isinstance(heads, int) and isinstance(hidden, int) and head_dim is None and hidden % heads:
        problems.append(
            f"{prefix}num_attention_heads: {heads} does not divide hidden_size {hidden}; "
            "fix the config.json or give head_dim"
        )
    return problems
