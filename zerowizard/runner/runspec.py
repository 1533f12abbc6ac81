"""``runner.json``: what the launcher hands every rank beside ``plan.yaml`` and ``ds_config.json``.

One typed record shared by the writer (the launcher) and the reader (each rank); keys are only
ever added, never renamed; ``v`` is the version of the writer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

SPEC_VERSION = 1
SPEC_NAME = "runner.json"


class DataSource(TypedDict):
    path: str  # a local JSON/JSONL file (resolved) or a hub dataset id
    hub: bool


class MemoryLimit(TypedDict):
    bytes: int  # per rank
    gib: float  # as given
    token: str  # names this launch's cgroups (CPU), new for every attempt


class RunnerSpec(TypedDict, total=False):
    v: int  # SPEC_VERSION
    model_path: str  # a directory or a hub id for from_pretrained
    trust_remote_code: bool
    data: DataSource
    precision: str  # bf16 | fp16 | fp32
    accelerator: str  # cuda | cpu
    resume_from: str | None  # the checkpoint folder to continue from
    resume_universal: bool  # resume_from was written by another rank count: load its universal form
    predicted_per_gpu_bytes: int | None  # the memory model's figure for the selected variant
    # the time model's figures for the selected variant (zerowizard.runner.record.predicted)
    predicted_step_s: float
    predicted_tokens_per_s: float  # all ranks
    predicted_tokens_per_s_per_gpu: float
    predicted_source: str  # formula | calibrated ...
    formula_step_s: float  # before any calibration from earlier runs
    predicted_tokens_per_step: int
    attempt: int  # 1; 2, 3, ... after an out-of-memory fallback
    memory_limit: MemoryLimit | None  # run --memory-limit (zerowizard.runner.memlimit)
    save: bool  # False (run --no-save): no checkpoint, no final model
    # filled in by the rank while it runs (never written back)
    zero3_partitioned: bool
    setup_phases_s: dict[str, float]


def write_spec(workdir: Path, spec: RunnerSpec) -> None:
    from zerowizard.core.dsconfig import write_json_atomic

    write_json_atomic(workdir / SPEC_NAME, {"v": SPEC_VERSION, **spec})


def read_spec(workdir: Path) -> RunnerSpec:
    raw: Any = json.loads((workdir / SPEC_NAME).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{workdir / SPEC_NAME}: expected a JSON object")
    return RunnerSpec(**raw)
