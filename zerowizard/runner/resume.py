"""``--resume`` decided before any rank starts: which checkpoint, on how many ranks, with which batch.

:func:`find_resume_point` picks the newest intact checkpoint (checkpoints.resumable), says which
newer ones it passed over, and, when the run now has a different number of ranks than the one
that wrote the checkpoint, keeps the global batch (micro batch x accumulation x ranks) by
changing the accumulation (and, if it must, the micro batch). :func:`convert` then turns the
checkpoint into DeepSpeed's universal format in a subprocess (torch and DeepSpeed stay out of the
launcher), and the ranks load it with ``checkpoint.load_universal``.

Light: imported by the launcher.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerowizard.runner import checkpoints
from zerowizard.runner.prepare import PrepareError, resume_dir


@dataclass(frozen=True)
class ResumePoint:
    workdir: Path
    checkpoint: Path
    info: checkpoints.CheckpointInfo
    world_size: int  # ranks of the resumed run
    plan: Any  # the plan to run (the batch adapted when the rank count changed)
    notes: tuple[str, ...] = field(default=())
    analysis: Any = None  # the adapted plan's analysis (None: the plan is unchanged)

    @property
    def reshard(self) -> bool:
        """The checkpoint was written by another number of ranks: load it as a universal one."""
        return self.info.world_size is not None and self.info.world_size != self.world_size

    def convert(self, accelerator: str, notice: Callable[[str], None] = print) -> bool:
        """Before the ranks start: DeepSpeed's universal checkpoint when the rank count changed
        (see :func:`convert`). True when the ranks must load the universal form."""
        if not self.reshard:
            return False
        env = dict(os.environ)
        if accelerator == "cpu":
            env["DS_ACCELERATOR"] = "cpu"
        notice(f"converting {self.checkpoint.name} to DeepSpeed's universal checkpoint for {_ranks(self.world_size)}")
        convert(self, env, self.workdir / "logs" / "reshard.log")
        return True


def _ranks(n: int) -> str:
    return f"{n} rank" if n == 1 else f"{n} ranks"


def keep_global_batch(micro: int, accum: int, old_world: int, new_world: int) -> tuple[int, int]:
    """(micro batch, accumulation) on ``new_world`` ranks with the global batch of ``old_world``:
    the micro batch stays when it divides the new per-rank share, else the largest one that does."""
    total = micro * accum * old_world
    if total % new_world:
        raise ValueError(
            f"the global batch of {total} (micro batch {micro} x accumulation {accum} x {_ranks(old_world)}) "
            f"cannot be split evenly over {_ranks(new_world)}"
        )
    per_rank = total // new_world
    if per_rank % micro:
        micro = math.gcd(micro, per_rank)
    return micro, per_rank // micro


def find_resume_point(
    resume: str, plan: Any, root: Path, world_size: int, notice: Callable[[str], None] = print
) -> ResumePoint:
    """The checkpoint to resume and the plan to resume it with (each note goes to ``notice``);
    PrepareError (exit 2, nothing started) when the run has no intact checkpoint or its batch
    cannot be kept."""
    point = _find(resume, plan, root, world_size)
    for note in point.notes:
        notice(f"note: {note}")
    return point


def _find(resume: str, plan: Any, root: Path, world_size: int) -> ResumePoint:
    from zerowizard.core.analysis import analyze
    from zerowizard.core.plan import update

    workdir = resume_dir(resume, plan.output, root)
    ckpt, notes = checkpoints.resumable(workdir)
    if ckpt is None:
        where = checkpoints.checkpoints_dir(workdir)
        if not notes:
            raise PrepareError(f"--resume: no checkpoint in {where}; start the run without --resume")
        raise PrepareError(
            f"--resume: no intact checkpoint in {where} ({'; '.join(notes)}); start the run again without --resume"
        )
    info = checkpoints.info(ckpt)
    point = ResumePoint(workdir, ckpt, info, world_size, plan, tuple(notes))
    if not point.reshard:
        return point
    b = plan.batch
    old = info.world_size or world_size
    micro0 = info.micro_batch or b.micro_batch
    accum0 = info.grad_accum or b.grad_accum
    try:
        micro, accum = keep_global_batch(micro0, accum0, old, world_size)
    except ValueError as exc:
        raise PrepareError(
            f"--resume: {ckpt.name} was written by {_ranks(old)} and {exc}; resume with {_ranks(old)} "
            f"(--nproc-per-node {old}) or a rank count that divides the global batch"
        ) from None
    new_plan = update(plan, "batch", micro_batch=micro, grad_accum=accum)
    analysis = analyze(new_plan)
    if analysis.errors:
        p = analysis.errors[0]
        raise PrepareError(f"--resume on {_ranks(world_size)}: {p.field}: {p.message} — {p.fix}")
    note = (
        f"{ckpt.name} was written by {_ranks(old)}, resuming on {world_size}: micro batch {micro0} -> {micro}, "
        f"accumulation {accum0} -> {accum} (global batch {micro0 * accum0 * old} kept)"
    )
    return ResumePoint(workdir, ckpt, info, world_size, new_plan, (*notes, note), analysis)


def convert(point: ResumePoint, env: dict, log: Path) -> None:
    """DeepSpeed's universal checkpoint beside the original (``TAG_universal``, once; later
    resumes reuse it), in a subprocess; PrepareError with DeepSpeed's reason when it fails."""
    if not point.reshard:
        return
    cmd = [sys.executable, "-m", "zerowizard.runner.reshard", str(point.checkpoint)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        reason = _last_error(log)
        raise PrepareError(
            f"--resume: {point.checkpoint.name} (written by {_ranks(point.info.world_size or 0)}) cannot be "
            f"converted for {_ranks(point.world_size)}: {reason}; resume with {_ranks(point.info.world_size or 0)} "
            f"(--nproc-per-node {point.info.world_size}), or see {log}"
        )


def _last_error(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "the converter failed"
    for line in reversed(lines):
        if line.startswith("zerowizard-reshard: "):
            return line.removeprefix("zerowizard-reshard: ")
    return lines[-1][:300] if lines else "the converter failed"
