"""File actions behind Export / Save / Load (no textual here: the tests call them directly too).

A plan is read from wherever it is later used (``zerowizard validate``, ``run --plan`` from
another folder, a SLURM job), so the files it names are written as absolute paths: a relative
path would be resolved against that other folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from zerowizard.core.analysis import Analysis
from zerowizard.core.dsconfig import write_text_atomic
from zerowizard.core.plan import PRESET_NAMES, Plan, dump_plan, load_plan, update
from zerowizard.core.writer import Output, write_all


def anchored(plan: Plan, base: Path | None = None) -> Plan:
    """``plan`` with the local files it names (a DeepSpeed JSON, a data file, a model directory)
    made absolute, resolved against ``base`` (default: the current folder) where they exist."""
    base = base or Path.cwd()

    def absolute(value: str | None) -> str | None:
        if not value or Path(value).is_absolute():
            return value
        p = base / Path(value).expanduser()
        return str(p.resolve()) if p.exists() else value

    if plan.deepspeed not in PRESET_NAMES:
        plan = update(plan, None, deepspeed=absolute(plan.deepspeed))
    if plan.data.path:
        plan = update(plan, "data", path=absolute(plan.data.path))
    if Path(plan.model.name).is_dir():
        plan = update(plan, "model", name=absolute(plan.model.name))
    return plan


def export(analysis: Analysis, ds_path: str | Path, plan_path: str | Path) -> list[Path]:
    """Write the final DeepSpeed JSON and the plan YAML, both or neither (the core's writer:
    symlinks written through; a directory, device or FIFO refused with InputError, a ValueError).
    Refuses on errors."""
    if analysis.errors or analysis.ds is None:
        raise ValueError("the plan has errors; fix them before exporting")
    ds_path, plan_path = Path(ds_path), Path(plan_path)
    for p in (ds_path, plan_path):
        if str(p).strip():
            p.parent.mkdir(parents=True, exist_ok=True)
    ds_text = json.dumps(analysis.ds.config, indent=2, allow_nan=False) + "\n"
    write_all([Output(ds_path, ds_text), Output(plan_path, dump_plan(anchored(analysis.plan)))], "export")
    return [ds_path, plan_path]


def save(plan: Plan, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, dump_plan(anchored(plan)))
    return path


def load(path: str | Path) -> Plan:
    """A plan from YAML (PlanError listing every problem)."""
    return load_plan(path)
