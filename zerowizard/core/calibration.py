"""The calibration store: what this machine measured, per device, as plain JSON files.

One file per machine and device under ``$ZEROWIZARD_CACHE/calibration/`` (default
``~/.cache/zerowizard/calibration/``; ``$ZEROWIZARD_CALIBRATION`` names the folder itself, as the
tests do), named ``<host>--<device>.json``:

    {"version": 1, "machine": "node7", "device": "cpu",
     "bench": {...},        # `zerowizard calibrate` (zerowizard/runner/calibrate.py): achieved FLOP/s,
                            # per-layer and per-micro-step time, collectives (latency, bytes/s), copy
                            # bandwidth, Adam params/s, the ranks and threads it ran with
     "runs": [{...}, ...]}  # every finished run: variant, world size, the formula's step time, the
                            # measured step time and per-rank peak memory (the last MAX_RUNS kept)

The core reads a file at most once per process (:func:`load`); writers (the calibration command, the
launcher after a run) replace it atomically and call :func:`invalidate`. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

VERSION = 1
MAX_RUNS = 50


def store_dir() -> Path:
    """``$ZEROWIZARD_CALIBRATION``, else ``$ZEROWIZARD_CACHE/calibration``, else ~/.cache/zerowizard/calibration."""
    explicit = os.environ.get("ZEROWIZARD_CALIBRATION")
    if explicit:
        return Path(explicit)
    base = os.environ.get("ZEROWIZARD_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "zerowizard"
    return root / "calibration"


@lru_cache(maxsize=1)
def machine_name() -> str:
    try:
        host = os.uname().nodename  # no socket import on the estimate path
    except AttributeError:  # not POSIX
        import socket

        host = socket.gethostname()
    return re.sub(r"[^A-Za-z0-9_.-]", "_", host or "localhost")[:64]


def device_key(hw: Any) -> str:
    """'cpu' for the CPU accelerator, else the GPU's catalog (or NVML) name."""
    return "cpu" if getattr(hw, "is_cpu", False) else re.sub(r"[^A-Za-z0-9_.-]", "_", str(hw.name))[:64]


def path_for(device: str, machine: str | None = None) -> Path:
    return store_dir() / f"{machine or machine_name()}--{device}.json"


@dataclass(frozen=True)
class Calibration:
    machine: str
    device: str
    bench: dict = field(default_factory=dict)
    runs: tuple[dict, ...] = ()

    def correction(self, variant: Any, world_size: int) -> tuple[float, int]:
        """(measured / formula step time, runs used): the same variant and world size if recorded,
        else every run on this device (the median, robust to one slow run)."""
        key = _variant_key(variant)
        same = [r for r in self.runs if r.get("variant") == key and r.get("world_size") == world_size]
        pool = same or list(self.runs)
        ratios = [
            float(r["measured_step_s"]) / float(r["formula_step_s"])
            for r in pool
            if _positive(r.get("measured_step_s")) and _positive(r.get("formula_step_s"))
        ]
        if not ratios:
            return 1.0, 0
        ratios.sort()
        mid = len(ratios) // 2
        median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
        return median, len(ratios)


TOKENS_AGREE = 2.0  # a run whose tokens a step differ more than this from the prediction's is not its run


def tokens_agree(measured: float, predicted: float) -> bool:
    """Whether a run processed about the tokens its prediction assumed (within TOKENS_AGREE x)."""
    return predicted / TOKENS_AGREE <= measured <= predicted * TOKENS_AGREE


def _comparable(run: dict) -> bool:
    """A recorded run the formula described: tokens that agree with the prediction's (runs recorded
    before that check may hold a prediction made for other data), or no token counts at all."""
    got, want = run.get("measured_tokens_per_step"), run.get("predicted_tokens_per_step")
    if isinstance(got, (int, float)) and isinstance(want, (int, float)) and _positive(got) and _positive(want):
        return tokens_agree(float(got), float(want))
    return True


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 and x == x and x != float("inf")


def _variant_key(v: Any) -> str:
    return f"{v.stage}/{v.offload_optimizer}/{v.offload_param}"


_CACHE: dict[Path, Calibration | None] = {}


def load(device: str, machine: str | None = None) -> Calibration | None:
    """This machine's calibration for a device (read once per process; None when there is none)."""
    path = path_for(device, machine)
    if path not in _CACHE:
        _CACHE[path] = _read(path, device, machine or machine_name())
    return _CACHE[path]


def invalidate() -> None:
    _CACHE.clear()


def _read(path: Path, device: str, machine: str) -> Calibration | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None
    raw = data.get("bench")
    bench: dict = raw if isinstance(raw, dict) else {}
    # runs the formula did not describe (recorded before that check) are dropped once, here
    runs = tuple(r for r in data.get("runs") or () if isinstance(r, dict) and _comparable(r))
    return Calibration(machine=machine, device=device, bench=bench, runs=runs)


def _write(path: Path, data: dict) -> None:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    invalidate()


def _current(device: str) -> dict:
    path = path_for(device)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("version") == VERSION:
            return data
    except (OSError, ValueError):
        pass
    return {"version": VERSION, "machine": machine_name(), "device": device, "bench": {}, "runs": []}


def save_bench(device: str, bench: dict) -> Path:
    """Store `zerowizard calibrate`'s measurements (the runs recorded so far are kept)."""
    data = _current(device)
    data["bench"] = {**bench, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = path_for(device)
    _write(path, data)
    return path


def record_run(device: str, run: dict) -> Path:
    """Append one finished run's measurement (the newest MAX_RUNS are kept)."""
    data = _current(device)
    runs = [r for r in data.get("runs") or [] if isinstance(r, dict)]
    runs.append({**run, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    data["runs"] = runs[-MAX_RUNS:]
    path = path_for(device)
    _write(path, data)
    return path


def variant_key(v: Any) -> str:
    """How a run names its variant in the store ('2/cpu/none')."""
    return _variant_key(v)
