"""Past runs in ./work_dirs: what each one is, how it ended, where it can resume from.

Read from each run folder's own files (``plan.yaml``, the tail of ``events.jsonl``,
``checkpoints/``); no textual here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class PastRun:
    path: Path
    status: str  # completed | interrupted | failed | unfinished
    step: int | None
    total: int | None
    loss: float | None
    checkpoint: int | None  # the newest checkpoint's step (what Resume continues from)
    model: str
    method: str
    modified: float

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.modified))

    @property
    def progress(self) -> str:
        if self.step is None:
            return "no step"
        return f"{self.step}/{self.total}" if self.total else str(self.step)


def _tail_events(path: Path) -> list[dict]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            chunk = fh.read()
    except OSError:
        return []
    lines = chunk.split(b"\n")
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first is cut
    out = []
    for raw in lines:
        try:
            ev = json.loads(raw)
        except ValueError:
            continue
        if isinstance(ev, dict):
            out.append(ev)
    return out


def read_run(folder: Path) -> PastRun | None:
    """A run folder's summary (None: not a run folder)."""
    from zerowizard.runner.prepare import latest_checkpoint

    events_file = folder / "events.jsonl"
    plan_file = folder / "plan.yaml"
    if not events_file.is_file() and not plan_file.is_file():
        return None
    events = _tail_events(events_file)
    end = next((e for e in reversed(events) if e.get("event") == "end"), None)
    last = next((e for e in reversed(events) if e.get("event") == "step"), None)
    status = "unfinished"
    if end is not None:
        status = {"completed": "completed", "interrupted": "interrupted"}.get(str(end.get("status")), "failed")
    step = (end or {}).get("step") if end and end.get("step") is not None else (last or {}).get("step")
    total = next((e["total_steps"] for e in reversed(events) if e.get("total_steps")), None)
    model = method = "?"
    try:
        from zerowizard.core.plan import load_plan

        plan = load_plan(plan_file)
        model, method = plan.model.name, plan.method.type
    except Exception:  # noqa: BLE001 - a folder without a readable plan is still listed
        pass
    ckpt = latest_checkpoint(folder)
    modified = max((p.stat().st_mtime for p in (events_file, plan_file) if p.exists()), default=0.0)
    return PastRun(
        path=folder,
        status=status,
        step=step,
        total=total,
        loss=(last or {}).get("loss"),
        checkpoint=int(ckpt.name.split("-")[-1]) if ckpt is not None else None,
        model=model,
        method=method,
        modified=modified,
    )


def past_runs(root: str | Path = "work_dirs") -> list[PastRun]:
    """Every run under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [r for p in root.iterdir() if p.is_dir() and (r := read_run(p)) is not None]
    return sorted(runs, key=lambda r: r.modified, reverse=True)
