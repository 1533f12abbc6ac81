"""Training data: alpaca, chat (messages) and oasst1 text, tokenised with prompt masking.

Every record becomes a list of chat messages first; the tokenizer's chat template (or the
Human/Assistant fallback) renders it, and only assistant text carries labels. Bad data is a
:class:`DataError` naming the file and line, raised before any training starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

IGNORE = -100
FORMATS = ("alpaca", "chat", "oasst1")
_TURN = re.compile(r"###\s*(Human|Assistant)\s*:", re.I)


class DataError(ValueError):
    """A problem in the training data, naming where it is."""


class Record(dict[str, Any]):
    """A raw record remembering where it came from (``where`` = 'file line N')."""

    where: str = ""


def _records_from_text(text: str, name: str) -> list[Record]:
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"{name}: the file is empty; expected a JSON list or JSON lines of records")
    out = _records_from_list(text, name) if stripped[0] == "[" else _records_from_lines(text, name)
    if not out:
        raise DataError(f"{name}: no records found")
    return out


def _records_from_list(text: str, name: str) -> list[Record]:
    out: list[Record] = []
    dec = json.JSONDecoder()
    i = text.index("[") + 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n:
            raise DataError(f"{name} line {text.count(chr(10), 0, i) + 1}: the JSON list is not closed")
        if text[i] == "]":
            return out
        line = text.count("\n", 0, i) + 1
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name} line {exc.lineno}: not valid JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting 1000 deep
            raise DataError(f"{name} line {line}: a value JSON cannot hold ({_why(exc)})") from None
        out.append(_record(obj, f"{name} line {line}"))


def _records_from_lines(text: str, name: str) -> list[Record]:
    out: list[Record] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name} line {lineno}: not valid JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting 1000 deep
            raise DataError(f"{name} line {lineno}: a value JSON cannot hold ({_why(exc)})") from None
        out.append(_record(obj, f"{name} line {lineno}"))
    return out


def _why(exc: BaseException) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else "a number of more than 4,300 digits"


def _record(obj, where: str) -> Record:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object with fields, got {type(obj).__name__}")
    rec = Record(obj)
    rec.where = where
    return rec


def load_records(path: str | Path) -> list[Record]:
    """Records of a local JSON (list) or JSONL file."""
    from zerowizard.core.validation import InputError, check_data_file, path_kind

    if path_kind(path) == "missing":
        raise DataError(f"{path}: no such data file; pass --data FILE (JSON or JSONL)")
    try:
        path = check_data_file(path, "data")  # not a directory, a FIFO (would block) or a device
        text = path.read_text(encoding="utf-8")
    except InputError as exc:
        raise DataError(f"{exc}; pass --data FILE (JSON or JSONL)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file; expected JSON or JSONL") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _records_from_text(text, str(path))


def load_hub_records(dataset_id: str, split: str = "train") -> list[Record]:
    """Records of a hub dataset (only on machines that reach the hub or have it cached)."""
    import datasets

    ds = datasets.load_dataset(dataset_id, split=split)
    out = []
    for i, row in enumerate(ds):
        out.append(_record(dict(row), f"{dataset_id} row {i + 1}"))
    return out


def detect_format(rec: Record) -> str:
    if "messages" in rec or "conversations" in rec:
        return "chat"
    if "instruction" in rec or "output" in rec:
        return "alpaca"
    if "text" in rec:
        return "oasst1"
    raise DataError(
        f"{rec.where}: cannot tell the format from the fields {sorted(rec)}; expected "
        "alpaca (instruction, input, output), chat (messages: role/content) or "
        "oasst1 (text with '### Human:' and '### Assistant:')"
    )


def to_messages(rec: Record, fmt: str = "auto") -> list[dict]:
    """The record as chat messages; a DataError names the record on any missing piece."""
    fmt = detect_format(rec) if fmt == "auto" else fmt
    where = getattr(rec, "where", "record")
    parse = _PARSERS.get(fmt)
    if parse is None:
        raise DataError(f"unknown data format {fmt!r}; use one of auto, {', '.join(FORMATS)}")
    return parse(rec, where)


def _alpaca_messages(rec: Record, where: str) -> list[dict]:
    for key in ("instruction", "output"):
        if not isinstance(rec.get(key), str) or not rec[key].strip():
            raise DataError(
                f"{where}: alpaca record without a text '{key}' field (needs instruction and output; input is optional)"
            )
    prompt = rec["instruction"].strip()
    extra = rec.get("input") or ""
    if not isinstance(extra, str):
        raise DataError(f"{where}: alpaca 'input' must be text")
    if extra.strip():
        prompt += "\n\n" + extra.strip()
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": rec["output"]}]


_ROLE_ALIASES = {"human": "user", "gpt": "assistant"}  # ShareGPT's from/value records


def _chat_messages(rec: Record, where: str) -> list[dict]:
    msgs = rec.get("messages", rec.get("conversations"))
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: chat record needs a non-empty 'messages' list")
    out = []
    for j, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise DataError(f"{where}: message {j + 1} is not an object with role/content")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if isinstance(role, str):
            role = _ROLE_ALIASES.get(role, role)
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise DataError(f"{where}: message {j + 1} needs role (system/user/assistant) and text content")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise DataError(f"{where}: chat record has no assistant message to learn from")
    return out


def _oasst1_messages(rec: Record, where: str) -> list[dict]:
    text = rec.get("text")
    if not isinstance(text, str):
        raise DataError(f"{where}: oasst1 record needs a 'text' field")
    parts = _TURN.split(text)
    out = [
        {"role": "user" if role.lower() == "human" else "assistant", "content": content.strip()}
        for role, content in zip(parts[1::2], parts[2::2])
    ]
    if not any(m["role"] == "assistant" for m in out):
        raise DataError(f"{where}: oasst1 text has no '### Assistant:' turn")
    return out


_PARSERS: dict[str, Callable[[Record, str], list[dict]]] = {
    "alpaca": _alpaca_messages,
    "chat": _chat_messages,
    "oasst1": _oasst1_messages,
}


def encode(tok, messages: list[dict], seq_len: int) -> dict:
    """input_ids and labels for one conversation; only assistant turns are learnt."""
    text, spans = "", []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            prompt = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
            full = tok.apply_chat_template(messages[: i + 1], tokenize=False)
            spans.append((len(prompt), len(full)))
            text = full
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=seq_len)
    labels = []
    for tid, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        learn = any(start < b and end > a for a, b in spans)  # overlap: BPE tokens carry the space
        labels.append(tid if learn else IGNORE)
    return {"input_ids": list(enc["input_ids"]), "labels": labels}


def build_examples(tok, records, seq_len: int, fmt: str = "auto", packing: bool = False) -> list[dict]:
    """Tokenised examples; validates every record first so errors come before training."""
    fmt = detect_format(records[0]) if fmt == "auto" else fmt
    convs = [to_messages(r, fmt) for r in records]
    examples = [encode(tok, c, seq_len) for c in convs]
    examples = [e for e in examples if any(label != IGNORE for label in e["labels"])]
    if not examples:
        raise DataError("no example keeps an answer token within the sequence length; raise seq_len")
    return pack(examples, seq_len) if packing else examples


def pack(examples: list[dict], seq_len: int) -> list[dict]:
    """Concatenate examples and cut the stream into seq_len chunks (last partial kept)."""
    ids, labels, out = [], [], []
    for e in examples:
        ids += e["input_ids"]
        labels += e["labels"]
        while len(ids) >= seq_len:
            out.append({"input_ids": ids[:seq_len], "labels": labels[:seq_len]})
            ids, labels = ids[seq_len:], labels[seq_len:]
    if ids:
        out.append({"input_ids": ids, "labels": labels})
    return out


class Collator:
    """Pads a batch to its longest example (labels with IGNORE, attention mask zero)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
