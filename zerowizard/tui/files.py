"""File actions behind Export / Save / Load (no textual here: the tests call them directly too)."""

from __future__ import annotations

import json
from pathlib import Path

from zerowizard.core.dsconfig import write_text_atomic
from zerowizard.core.plan import Plan, dump_plan, load_plan
from zerowizard.core.writer import Output, write_all


def export(analysis, ds_path: str | Path, plan_path: str | Path) -> list[Path]:
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
    write_all([Output(ds_path, ds_text), Output(plan_path, dump_plan(analysis.plan))], "export")
    return [ds_path, plan_path]


def save(plan: Plan, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, dump_plan(plan))
    return path


def load(path: str | Path) -> Plan:
    """A plan from YAML (PlanError listing every problem)."""
    return load_plan(path)
