"""DeepSpeed's own verdict on DeepSpeed configs, in a child process (``python -m
zerowizard.runner.dsparse``), so that the core never imports DeepSpeed.

Reads ``{"world_size": N, "configs": {name: config}}`` on stdin and prints one line
``ZW-VERDICT {json}`` on stdout (DeepSpeed may log there too)::

    {"version": "0.19.8",
     "known_keys": [...],                       # the top-level keys this version reads
     "results": {name: {"errors": [...]}},      # empty: DeepSpeedConfig accepted it
     "error": null}                             # why nothing could be checked (no DeepSpeed)

``DeepSpeedConfig(dict)`` is built without a process group; the world size is faked by patching
DeepSpeed's ``dist.get_world_size``/``get_rank`` so the batch arithmetic is checked for N ranks.
The top-level keys a version knows are found by parsing a minimal config through a dict that
records every key DeepSpeed looks up: DeepSpeed silently ignores a key it never looks up.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

MARK = "ZW-VERDICT "


class _KeysView:
    def __init__(self, owner: _Recording) -> None:
        self.owner = owner

    def __contains__(self, key: object) -> bool:
        return self.owner.__contains__(key)

    def __iter__(self) -> Iterator[Any]:
        return iter(dict.keys(self.owner))

    def __len__(self) -> int:
        return dict.__len__(self.owner)


class _Recording(dict):
    """A dict that notes every key looked up (``get``, ``[]``, ``in``, ``keys()``-membership)."""

    reads: set

    def __getitem__(self, key: Any) -> Any:
        self.reads.add(key)
        return dict.__getitem__(self, key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.reads.add(key)
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        self.reads.add(key)
        return dict.__contains__(self, key)

    def keys(self) -> Any:  # `KEY in param_dict.keys()` is how some getters ask
        return _KeysView(self)


def _one_line(exc: BaseException) -> str:
    lines = []
    for line in str(exc).splitlines():
        line = re.sub(r"\s*\[type=[^\]]*\]", "", line).strip()
        if line and not line.startswith("For further information"):
            lines.append(line)
    text = "; ".join(lines) or exc.__class__.__name__
    text = f"{exc.__class__.__name__}: {text}"
    return text if len(text) <= 400 else text[:399] + "…"


def _parse(dsc: Any, config: dict, world_size: int) -> tuple[list[str], set]:
    from unittest import mock

    reads: set = set()
    rec = _Recording(config)
    rec.reads = reads
    with (
        mock.patch.object(dsc.dist, "get_world_size", return_value=world_size),
        mock.patch.object(dsc.dist, "get_rank", return_value=0),
        mock.patch.object(dsc.dist, "is_initialized", return_value=True),
    ):
        try:
            parsed = dsc.DeepSpeedConfig(rec)
        except Exception as exc:  # noqa: BLE001 - DeepSpeed raises AssertionError, ValueError, pydantic errors
            return [_one_line(exc)], reads
    errors = []
    expected = config.get("train_micro_batch_size_per_gpu")
    if isinstance(expected, int) and parsed.train_micro_batch_size_per_gpu != expected:
        errors.append("DeepSpeed read a different micro batch size")
    return errors, reads


def deepspeed_errors(config: dict, world_size: int) -> list[str]:
    """DeepSpeed's errors for ``config`` at ``world_size``, in this process (imports DeepSpeed).
    Empty: DeepSpeedConfig accepted it."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed.runtime.config as dsc

    return _parse(dsc, config, world_size)[0]


def verdict(configs: dict[str, dict], world_size: int) -> dict:
    """DeepSpeed's verdict on each config (imports DeepSpeed)."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        import deepspeed
        import deepspeed.runtime.config as dsc
    except Exception as exc:  # noqa: BLE001 - not installed, or broken: say which
        return {"version": None, "known_keys": [], "results": {}, "error": _one_line(exc)}
    _, known = _parse(dsc, {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1}, 1)
    results = {}
    for name, config in configs.items():
        errors, _ = _parse(dsc, config, world_size)
        results[name] = {"errors": errors}
    return {
        "version": deepspeed.__version__,
        "known_keys": sorted(k for k in known if isinstance(k, str)),
        "results": results,
        "error": None,
    }


def main() -> int:
    request = json.loads(sys.stdin.read())
    out = verdict(request["configs"], int(request["world_size"]))
    sys.stdout.write("\n" + MARK + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
