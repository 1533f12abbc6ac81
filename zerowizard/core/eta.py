"""How many optimizer steps a plan trains for, so a step time becomes an ETA and GPU-hours.

``train.max_steps`` when set; else the data's size: a local JSON list or JSON-lines file (or the
shipped sample when the plan names none) is counted once per file version (path, size, mtime),
without tokenising. Without packing every record is one sequence, as the runner builds them; with
packing the sequences are the data's tokens over the sequence length, its tokens estimated at
4 characters per token (the usual English BPE ratio; stated, not measured). A hub dataset's size is
unknown here: no ETA.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from .paths import PRESETS

CHARS_PER_TOKEN = 4.0
DEFAULT_DATA = PRESETS / "data" / "alpaca_sample.json"


@lru_cache(maxsize=16)
def _count(path: str, size: int, mtime_ns: int) -> tuple[int, int]:
    """(records, characters of their text) of a JSON list or JSON-lines file."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    records: list[Any]
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except ValueError:
            return 0, 0
    else:
        records = []
        for line in text.splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    if not isinstance(records, list):
        return 0, 0
    chars = sum(_chars(r) for r in records)
    return len(records), chars


def _chars(obj: Any) -> int:
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, dict):
        return sum(_chars(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_chars(v) for v in obj)
    return 0


def data_size(data_path: str | None) -> tuple[int, int] | None:
    """(records, characters) of the plan's local data, or None (a hub id, a missing file)."""
    path = Path(data_path) if data_path else DEFAULT_DATA
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    n, chars = _count(str(path), st.st_size, st.st_mtime_ns)
    return (n, chars) if n else None


def total_steps(plan: Any, world_size: int) -> int | None:
    """Optimizer steps of the whole run (the Trainer's arithmetic), or None when unknown."""
    t, b = plan.train, plan.batch
    if t.max_steps:
        return int(t.max_steps)
    size = data_size(plan.data.path)
    if size is None:
        return None
    records, chars = size
    sequences = math.ceil(chars / CHARS_PER_TOKEN / b.seq_len) if plan.data.packing else records
    batches = math.ceil(sequences / (b.micro_batch * max(1, world_size)))  # per rank's dataloader
    per_epoch = max(1, batches // b.grad_accum)
    return max(1, math.ceil(per_epoch * t.epochs))
