"""How many optimizer steps a plan trains for, so a step time becomes an ETA and GPU-hours.

``train.max_steps`` when set; else the data's size: a local JSON list or JSON-lines file (or the
shipped sample when the plan names none) is counted once per file version (path, size, mtime),
without tokenising. Without packing every record is one sequence, as the runner builds them; with
packing the sequences are the data's tokens over the sequence length, its tokens estimated at
4 characters per token (the usual English BPE ratio; stated, not measured). A hub dataset's size is
unknown here: no ETA.

:func:`batch_tokens` gives the time model the tokens a micro batch really carries: without packing
the collator pads a batch to its longest example, not to the sequence length, so a short-example
dataset (alpaca: ~100 tokens) trains many times faster per step than ``micro batch x seq_len``
tokens would. Example lengths are estimated from the data's characters (4 per token, plus a few
for the prompt template), capped at the sequence length (the runner truncates there).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from .paths import PRESETS

CHARS_PER_TOKEN = 4.0
TEMPLATE_TOKENS = 8  # role markers, separators and the end token the prompt format adds per example
DEFAULT_DATA = PRESETS / "data" / "alpaca_sample.json"


@lru_cache(maxsize=16)
def _count(path: str, size: int, mtime_ns: int) -> tuple[int, int, tuple[int, ...]]:
    """(records, characters of their text, each record's characters sorted) of a JSON list or
    JSON-lines file."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    records: list[Any]
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except ValueError:
            return 0, 0, ()
    else:
        records = []
        for line in text.splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    if not isinstance(records, list):
        return 0, 0, ()
    lengths = tuple(sorted(_chars(r) for r in records))
    return len(records), sum(lengths), lengths


def _chars(obj: Any) -> int:
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, dict):
        return sum(_chars(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_chars(v) for v in obj)
    return 0


def _stats(data_path: str | None) -> tuple[int, int, tuple[int, ...]] | None:
    path = Path(data_path) if data_path else DEFAULT_DATA
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    stats = _count(str(path), st.st_size, st.st_mtime_ns)
    return stats if stats[0] else None


def data_size(data_path: str | None) -> tuple[int, int] | None:
    """(records, characters) of the plan's local data, or None (a hub id, a missing file)."""
    stats = _stats(data_path)
    return (stats[0], stats[1]) if stats else None


@lru_cache(maxsize=64)
def _expected_batch(lengths: tuple[int, ...], micro_batch: int, seq_len: int) -> tuple[float, float]:
    """(padded, real) tokens of one micro batch of ``micro_batch`` examples drawn from ``lengths``
    (characters, sorted): the real tokens are their sum, the padded ones ``micro_batch`` times the
    longest, whose expectation over random draws is sum_i len_i (F_i^b - F_(i-1)^b)."""
    n = len(lengths)
    tokens = [min(seq_len, math.ceil(c / CHARS_PER_TOKEN) + TEMPLATE_TOKENS) for c in lengths]
    real = micro_batch * sum(tokens) / n
    longest = sum(t * (((i + 1) / n) ** micro_batch - (i / n) ** micro_batch) for i, t in enumerate(tokens))
    return micro_batch * longest, real


def batch_tokens(plan: Any) -> tuple[float, float] | None:
    """(padded, real) tokens of one rank's micro batch for the local data the plan names, without
    packing; None when every micro batch counts as ``micro batch x seq_len`` tokens: packing, a hub
    dataset, or no data named (planning for data not given: the full length; the runner times its
    run on the shipped sample it then reads)."""
    if plan.data.packing or not plan.data.path:
        return None
    stats = _stats(plan.data.path)
    if stats is None:
        return None
    return _expected_batch(stats[2], plan.batch.micro_batch, plan.batch.seq_len)


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
