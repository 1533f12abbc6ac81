"""The out-of-memory fallback (``run --on-oom retry``, the default): what to try next.

First half the micro batch and twice the gradient accumulation: the global batch
(micro × accumulation × world size) and the samples each optimizer step sees stay the same, since
the sampler's order does not depend on the batch size. At micro batch 1, the next ZeRO variant
that the memory model predicts to need less per device: a higher stage, then offload (the
guide's order, :data:`zerowizard.core.memory.ALL_VARIANTS`). After the last one, give up.

Pure: no torch, no processes; the launcher applies the change and restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

from zerowizard.core.analysis import Analysis, analyze
from zerowizard.core.memory import ALL_VARIANTS, Variant, variants_for
from zerowizard.core.plan import Plan, update
from zerowizard.core.text import fmt_gib


@dataclass(frozen=True)
class Fallback:
    plan: Plan
    analysis: Analysis
    change: str  # one line: what changed

    @property
    def variant(self) -> str:
        sel = self.analysis.selected
        return sel.variant.label if sel else "?"


def smaller_micro_batch(micro: int) -> int:
    """The largest divisor of ``micro`` that is at most half of it (so micro × accumulation stays)."""
    return next(d for d in range(micro // 2, 0, -1) if micro % d == 0)


def global_batch(plan: Plan, world: int) -> int:
    return plan.batch.micro_batch * plan.batch.grad_accum * world


def _halve(plan: Plan) -> tuple[Plan, str]:
    b = plan.batch
    micro = smaller_micro_batch(b.micro_batch)
    accum = b.grad_accum * (b.micro_batch // micro)
    change = f"micro batch {b.micro_batch} -> {micro}, gradient accumulation {b.grad_accum} -> {accum}"
    return update(plan, "batch", micro_batch=micro, grad_accum=accum), change


def flags(plan: Plan, nxt: Fallback) -> str:
    """The command-line flags that select ``nxt`` (for a job the launcher cannot restart itself)."""
    b, n = plan.batch, nxt.plan.batch
    if (b.micro_batch, b.grad_accum) != (n.micro_batch, n.grad_accum):
        return f"--micro-batch {n.micro_batch} --grad-accum {n.grad_accum}"
    return nxt.analysis.selected.variant.flags if nxt.analysis.selected else nxt.change


def _variant(a: Analysis) -> Variant | None:
    return a.selected.variant if a.selected is not None else None


def next_fallback(plan: Plan, analysis: Analysis) -> Fallback | None:
    """The next thing to try after an out-of-memory error with ``plan``, or None: nothing left."""
    if plan.batch.micro_batch > 1:
        new, change = _halve(plan)
        a = analyze(new)
        if not a.errors:
            return Fallback(new, a, change)
    current = _variant(analysis)
    if current is None or analysis.selected is None:
        return None
    now = analysis.selected.per_gpu.total
    allow_nvme = bool(plan.zero.nvme_path)
    valid = set(variants_for(plan.method.type, nvme=allow_nvme))
    later = ALL_VARIANTS[ALL_VARIANTS.index(current) + 1 :] if current in ALL_VARIANTS else ()
    for v in later:
        if v not in valid or (v.stage < current.stage):
            continue
        new = update(plan, "zero", stage=v.stage, offload_optimizer=v.offload_optimizer, offload_param=v.offload_param)
        a = analyze(new)
        if a.errors or a.selected is None or a.selected.per_gpu.total >= now:
            continue
        after = a.selected.per_gpu.total
        return Fallback(
            new, a, f"{current.label} -> {v.label} (predicted {fmt_gib(now)} -> {fmt_gib(after)} per device)"
        )
    return None
