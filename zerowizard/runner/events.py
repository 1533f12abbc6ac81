"""The event stream: one JSON object per line in ``events.jsonl``.

Rank 0 writes ``start``, ``step``, ``checkpoint``, ``eval`` and ``end``; any rank may write
``error``; the launcher writes ``end`` itself when the ranks could not (crash, interrupt).
The headless printer and the TUI's run screen both read this one stream.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

KINDS = ("start", "step", "checkpoint", "eval", "error", "end")


class EventWriter:
    """Append events to a JSONL file; each line is written and flushed in one call."""

    def __init__(self, path: str | Path, source: str = "rank0"):
        self.path = Path(path)
        self.source = source
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, kind: str, /, **fields) -> dict:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}; use one of {', '.join(KINDS)}")
        event = {"event": kind, "time": round(time.time(), 3), "source": self.source, **fields}
        line = json.dumps(event, default=_jsonable, separators=(",", ":")) + "\n"
        # O_APPEND + one write: lines from several ranks never interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
        return event


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return repr(value)


def read_events(path: str | Path) -> list[dict]:
    """Every complete event in the file (a torn last line is skipped)."""
    return list(EventTail(path).poll())


class EventTail:
    """Follow a growing events file: ``poll()`` yields the events added since the last call."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""

    def poll(self) -> Iterator[dict]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            if not raw.strip():
                continue
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                continue
