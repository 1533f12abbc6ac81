"""What one probe candidate measured, read back from its run folder's ``events.jsonl``.

- status: ``ok`` (an ``end`` event that says completed), ``oom`` (any ``error`` event with
  ``"kind": "oom"``: torch's OutOfMemoryError on a GPU, the cgroup's OOM kill on the CPU),
  else ``failed`` with the first error (or the run's own refusal, or its last log lines);
- peak memory per rank from the ``end`` event (``peak_bytes_per_rank``: CPU peak resident set,
  CUDA ``max_memory_reserved``), and on CUDA the allocator's peak and the context NVML sees;
- the median wall time of the timed steps (``step_times_s`` of the step events, the first
  ``warmup`` steps dropped) and tokens/s per GPU over those steps.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from zerowizard.runner.events import read_events


@dataclass
class Measured:
    peak_bytes_per_rank: list[int | None] = field(default_factory=list)
    peak_kind: str | None = None
    device_peak_bytes: list[int | None] = field(default_factory=list)  # + the CUDA context (NVML)
    step_s: float | None = None
    step_times_s: list[float] = field(default_factory=list)  # the timed ones
    tokens_per_s_per_gpu: float | None = None
    steps_done: int = 0
    setup_s: float | None = None
    first_step_s: float | None = None  # from the launch to the end of the first step
    wall_s: float | None = None
    detail: list[dict | None] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "peak_bytes_per_rank": self.peak_bytes_per_rank,
            "peak_kind": self.peak_kind,
            "device_peak_bytes_per_rank": self.device_peak_bytes,
            "step_s": self.step_s,
            "step_times_s": self.step_times_s,
            "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "steps": self.steps_done,
            "setup_s": self.setup_s,
            "first_step_s": self.first_step_s,
            "wall_s": self.wall_s,
            "memory_detail": self.detail,
        }


def _device_peak(peak: int | None, detail: dict | None) -> int | None:
    """CUDA: the allocator's peak reservation plus what the process holds outside it (context,
    cuBLAS workspace: NVML's figure for the process minus the reservation). CPU: the peak RSS."""
    if peak is None or not detail or detail.get("nvml_process") is None:
        return peak
    return peak + max(0, int(detail["nvml_process"]) - int(detail.get("reserved") or 0))


def _tail(log: Path | None, n: int = 4) -> str:
    if log is None:
        return ""
    try:
        lines = [x for x in log.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def measure_run(
    run: Path, exit_code: int | None, warmup: int, log: Path | None = None, launched_at: float | None = None
) -> tuple[str, str | None, Measured]:
    """(status, reason, measurement) of one candidate's run folder (``launched_at``: when its
    launcher started, for the time to the first step)."""
    evs = read_events(run / "events.jsonl")
    m = Measured()
    steps = [e for e in evs if e.get("event") == "step"]
    start = next((e for e in evs if e.get("event") == "start"), None)
    end = next((e for e in reversed(evs) if e.get("event") == "end"), None)
    errors = [e for e in evs if e.get("event") == "error"]
    m.steps_done = max((int(e.get("step") or 0) for e in steps), default=0)
    if start is not None:
        m.setup_s = start.get("setup_s")
    times = [t for e in steps for t in (e.get("step_times_s") or [])]
    timed = times[warmup:] if len(times) > warmup else []
    m.step_times_s = [round(t, 4) for t in timed]
    m.step_s = round(statistics.median(timed), 4) if timed else None
    if launched_at is not None and steps:
        m.first_step_s = round(float(steps[0]["time"]) - launched_at, 2)
    if len(steps) > warmup and timed:
        base = steps[warmup - 1] if warmup > 0 else None
        tokens = int(steps[-1].get("tokens_seen") or 0) - int((base or {}).get("tokens_seen") or 0)
        world = int((start or {}).get("world_size") or 1)
        m.tokens_per_s_per_gpu = round(tokens / sum(timed) / world, 1) if sum(timed) > 0 else None
    last = end if end is not None and end.get("peak_bytes_per_rank") else (steps[-1] if steps else None)
    if last is not None:
        m.peak_bytes_per_rank = list(last.get("peak_bytes_per_rank") or [])
        m.peak_kind = last.get("peak_kind")
        m.detail = list(last.get("memory_detail") or [])
        details = m.detail or [None] * len(m.peak_bytes_per_rank)
        m.device_peak_bytes = [_device_peak(p, d) for p, d in zip(m.peak_bytes_per_rank, details, strict=False)]
    oom = next((e for e in errors if e.get("kind") == "oom"), None)
    if oom is not None:
        return "oom", str(oom.get("error") or "out of memory"), m
    if end is not None and end.get("status") == "completed" and exit_code == 0:
        return "ok", None, m
    if errors:
        return "failed", str(errors[0].get("error")), m
    if end is not None and end.get("error"):
        return "failed", str(end["error"]), m
    if exit_code == 2:
        return "failed", "refused before launch: " + (_tail(log, 2) or "the plan check failed"), m
    return "failed", f"exit {exit_code}" + (f": {_tail(log)}" if _tail(log) else ""), m
