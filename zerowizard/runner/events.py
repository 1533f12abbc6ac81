"""The event stream: one JSON object per line in ``events.jsonl``, typed below.

Rank 0 writes ``start``, ``phase``, ``step``, ``checkpoint``, ``eval`` and ``end``; any rank may write
``error``; the launcher writes ``phase`` (its own start-up), ``fallback`` (an out-of-memory retry),
``error`` (a fault it saw) and ``end`` itself when the ranks could not (crash, interrupt, fault).
The headless printer and the TUI's run screen both read this one stream.

Each kind is a TypedDict: the one schema the writers, the headless printer and the TUI share.
Every event carries ``event``, ``time``, ``source`` and ``v`` (:data:`EVENTS_VERSION`); keys are
only ever added, never renamed. :func:`schema_problems` checks an event against its kind (the
tests run it over every event of every real run).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypedDict, get_type_hints

EVENTS_VERSION = 1


class _Common(TypedDict, total=False):
    event: str  # the kind: start | phase | step | checkpoint | eval | error | fallback | end
    time: float  # Unix time, seconds
    source: str  # "rank0", "rank1", ... or "launcher"
    v: int  # EVENTS_VERSION of the writer


class StartEvent(_Common, total=False):
    """Rank 0, when the first optimizer step is about to run."""

    plan: dict[str, Any]  # the plan the ranks run (plan.yaml, as a mapping)
    ds_config: str  # path of the DeepSpeed JSON
    world_size: int
    predicted_per_gpu_bytes: int | None
    predicted_step_s: float | None  # the time model (zerowizard.core.speed) for the plan's variant
    predicted_tokens_per_s: float | None  # all ranks
    accelerator: str  # cuda | cpu
    precision: str  # bf16 | fp16 | fp32
    total_steps: int
    start_step: int  # > 0 when resumed
    resumed_from: str | None  # checkpoint folder
    output: str  # run folder
    zero3_partitioned: bool
    method: str  # full | lora | qlora
    setup_s: float  # rank start to the first step
    setup_phases_s: dict[str, float] | None  # seconds per start-up phase
    attempt: int  # 1, then 2, 3, ... after an out-of-memory fallback


Phase = Literal["prepare", "launch", "imports", "tokenizer", "data", "model", "op", "engine", "ready"]


class PhaseEvent(_Common, total=False):
    """Start-up progress, from the launcher's first line to the first step."""

    phase: str  # one of Phase
    message: str  # what is happening, for people: "building DeepSpeed op deepspeed_shm_comm ..."
    rank: int | None  # None: the launcher
    elapsed_s: float  # seconds since this process started


class StepEvent(_Common, total=False):
    """Rank 0, every ``logging_steps`` optimizer steps."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float | None
    grad_norm: float | None
    tokens_per_s: float
    tokens_seen: int
    elapsed_s: float
    eta_s: float | None
    memory_bytes: list[int | None]  # per rank, as memory_kind says
    memory_kind: str  # "cuda_max_allocated" (peak allocated by PyTorch) | "rss" (resident set, CPU)
    step_times_s: list[float]  # wall seconds of each optimizer step since the last step event
    peak_bytes_per_rank: list[int | None]  # per rank, as peak_kind says
    peak_kind: str  # "cuda_max_reserved" | "rss_peak"
    memory_detail: list[dict[str, Any] | None]  # per rank: zerowizard.runner.memlimit.measure()


class CheckpointEvent(_Common, total=False):
    step: int
    path: str


class EvalEvent(_Common, total=False):
    step: int
    metrics: dict[str, Any]


class ErrorEvent(_Common, total=False):
    """A rank's exception, or a fault the launcher saw."""

    rank: int | None
    error: str  # one line
    traceback: str  # the tail of the rank's traceback
    kind: str  # "oom" | "disk" | "crash" (any other exception)
    path: str | None  # the file or folder a disk fault is about
    limit_bytes: int  # oom under --memory-limit: the rank's limit
    peak_bytes: int | None  # oom under --memory-limit: the rank's peak (cgroup max usage)


class FallbackEvent(_Common, total=False):
    """The launcher restarts after an out-of-memory error with a smaller footprint."""

    reason: str  # "oom"
    attempt: int  # the attempt that starts now (2, 3, ...)
    change: str  # one line: "micro batch 4 -> 2, gradient accumulation 1 -> 2"
    micro_batch: int
    grad_accum: int
    global_batch: int  # unchanged by every fallback
    variant: str  # ZeRO variant label, e.g. "ZeRO-3 opt→cpu"
    resume_from: str | None  # checkpoint the next attempt starts from


class EndEvent(_Common, total=False):
    status: str  # completed | interrupted | failed
    step: int
    total_steps: int
    loss: float | None
    final_model: str
    method: str
    elapsed_s: float
    tokens: int
    signal: str  # interrupted: SIGINT | SIGTERM
    exit_code: int  # failed
    rank: int | None  # failed: the rank that failed first
    error: str | None  # failed: one line
    kind: str  # failed: as ErrorEvent.kind
    steps_timed: int  # completed: optimizer steps timed
    step_s_first: float | None  # completed: the first step (warm-up included)
    step_s_median: float | None  # completed: the median of the others
    peak_bytes_per_rank: list[int | None]  # as in StepEvent
    peak_kind: str
    memory_detail: list[dict[str, Any] | None]


SCHEMAS: dict[str, type] = {
    "start": StartEvent,
    "phase": PhaseEvent,
    "step": StepEvent,
    "checkpoint": CheckpointEvent,
    "eval": EvalEvent,
    "error": ErrorEvent,
    "fallback": FallbackEvent,
    "end": EndEvent,
}
KINDS = tuple(SCHEMAS)
Event = StartEvent | PhaseEvent | StepEvent | CheckpointEvent | EvalEvent | ErrorEvent | FallbackEvent | EndEvent


def schema_keys(kind: str) -> frozenset[str]:
    """Every key an event of this kind may carry."""
    return frozenset(get_type_hints(SCHEMAS[kind]))


def schema_problems(ev: Mapping[str, Any]) -> list[str]:
    """Why ``ev`` does not follow its kind's schema (keys and top-level JSON types); [] when it does."""
    kind = ev.get("event")
    if kind not in SCHEMAS:
        return [f"unknown event kind {kind!r}"]
    hints = get_type_hints(SCHEMAS[kind])
    out = [f"{kind}: unknown key {k!r}" for k in ev if k not in hints]
    for key, value in ev.items():
        if key in hints and not _json_fits(value, hints[key]):
            out.append(f"{kind}.{key}: {value!r} is not {hints[key]}")
    return out


def _json_fits(value: Any, hint: Any) -> bool:
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_json_fits(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    base = origin or hint
    return isinstance(value, base) and not (isinstance(value, bool) and base is int)


class EventWriter:
    """Append events to a JSONL file; each line is written and flushed in one call."""

    def __init__(self, path: str | Path, source: str = "rank0", *, create_folder: bool = True):
        self.path = Path(path)
        self.source = source
        if create_folder:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Write one event (keys per :data:`SCHEMAS`); OSError when the file cannot be written."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}; use one of {', '.join(KINDS)}")
        event = {"event": kind, "time": round(time.time(), 3), "source": self.source, "v": EVENTS_VERSION, **fields}
        line = json.dumps(event, default=_jsonable, separators=(",", ":")) + "\n"
        # O_APPEND + one write: lines from several ranks never interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
        return event


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return repr(value)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Every complete event in the file (a torn last line is skipped)."""
    return list(EventTail(path).poll())


class EventTail:
    """Follow a growing events file: ``poll()`` yields the events added since the last call."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""

    def poll(self) -> Iterator[dict[str, Any]]:
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
                ev = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(ev, dict):
                yield ev
