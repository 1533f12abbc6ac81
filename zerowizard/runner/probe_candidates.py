"""Which configurations ``zerowizard probe`` measures: stage × offload variants at the plan's micro
batch and at smaller ones (the gradient accumulation raised to keep the global batch), each with
the memory model's prediction for it. Pure Python (the core only): the TUI lists them instantly.

``--candidates`` takes ``auto`` (the variants the model says may fit, fastest first, a few),
``all`` (every valid variant at every micro batch), or a list: ``z2,z3+opt@1,deepspeed_zero3_offload@*``
where ``zN`` is a ZeRO stage, ``+opt``/``+param`` offload the optimizer/parameters to the CPU,
``+nvme`` both to NVMe, a preset name is that preset's variant, and ``@N`` the micro batch
(``@*``: the plan's and every smaller one; default: the plan's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from zerowizard.core import memory
from zerowizard.core.analysis import Analysis, analyze
from zerowizard.core.memory import Variant, VariantEstimate, Workload
from zerowizard.core.plan import Plan, update
from zerowizard.core.validation import InputError

AUTO_MAX = 4  # auto keeps this many candidates
MAY_FIT = 1.10  # auto tries what the model predicts up to 10% over the capacity: it may be pessimistic

_PRESETS = {v.preset: v for v in memory.ALL_VARIANTS if v.preset}
_TOKEN = re.compile(r"(?:z|zero|stage)?([0-3])((?:\+(?:opt|param|nvme))*)")


@dataclass(frozen=True)
class Candidate:
    variant: Variant
    micro_batch: int
    grad_accum: int
    plan: Plan  # the user's plan with this variant's ZeRO fields and this batch split
    predicted: VariantEstimate | None
    predicted_step_s: float | None = None  # zerowizard.core.speed, when it is there

    @property
    def label(self) -> str:
        return f"{self.variant.label} mb{self.micro_batch}×{self.grad_accum}"


def micro_batches(b: int) -> list[int]:
    """The plan's micro batch and the smaller ones the probe tries: exact halvings, then 1."""
    out, x = [b], b
    while x > 1 and x % 2 == 0:
        x //= 2
        out.append(x)
    if out[-1] != 1:
        out.append(1)
    return out


def limited_workload(w: Workload, limit_bytes: int | None) -> Workload:
    """The workload sized for a device of ``limit_bytes`` (a rank's whole resident set on the CPU)."""
    if not limit_bytes:
        return w
    if w.is_cpu:
        return replace(w, host_ram_bytes=limit_bytes * w.gpus_per_node)
    return replace(w, gpu_memory_bytes=limit_bytes)


def capacity_bytes(a: Analysis, limit_bytes: int | None) -> int:
    """What one rank may use: the limit, else the device (a share of host RAM on the CPU)."""
    return int(limit_bytes or a.hardware.memory_bytes)


def candidate_plan(plan: Plan, v: Variant, micro: int) -> Plan:
    global_per_rank = plan.batch.micro_batch * plan.batch.grad_accum
    p = update(plan, "zero", stage=v.stage, offload_optimizer=v.offload_optimizer, offload_param=v.offload_param)
    return update(p, "batch", micro_batch=micro, grad_accum=global_per_rank // micro)


def make_candidate(plan: Plan, v: Variant, micro: int, limit_bytes: int | None) -> tuple[Candidate, Analysis]:
    p = candidate_plan(plan, v, micro)
    a = analyze(p)
    est = None
    if a.workload is not None:
        est = memory.estimate_variant(limited_workload(a.workload, limit_bytes), v)
    return Candidate(v, micro, p.batch.grad_accum, p, est, _predicted_step_s(a, v)), a


def _predicted_step_s(a: Analysis, v: Variant) -> float | None:
    """``Analysis.times[variant].step_s`` from the speed model, where the core has one."""
    times = getattr(a, "times", None)
    if not times:
        return None
    st = times.get(v) if hasattr(times, "get") else None
    step = getattr(st, "step_s", None)
    return float(step) if isinstance(step, (int, float)) else None


def _variants(plan: Plan, a: Analysis) -> list[Variant]:
    nvme = bool(a.zero.nvme_path) and not a.hardware.is_cpu  # no libaio on the CPU accelerator
    return list(memory.variants_for(plan.method.type, nvme=nvme))


def parse_list(text: str, plan: Plan) -> list[tuple[Variant, int]]:
    """``z2,z3+opt@1,deepspeed_zero2_offload@*`` → (variant, micro batch) pairs; InputError on a bad item."""
    b, chain = plan.batch.micro_batch, micro_batches(plan.batch.micro_batch)
    total = plan.batch.micro_batch * plan.batch.grad_accum
    out: list[tuple[Variant, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        name, _, mb = item.partition("@")
        v = _PRESETS.get(name.strip())
        m = _TOKEN.fullmatch(name.strip().lower()) if v is None else None
        if v is None and m is not None:
            flags = m.group(2)
            off = "nvme" if "+nvme" in flags else "cpu"
            v = Variant(
                int(m.group(1)),
                off if ("+opt" in flags or "+nvme" in flags) else "none",
                off if ("+param" in flags or "+nvme" in flags) else "none",
            )
        if v is None:
            raise InputError(
                f"--candidates: {item!r} is not a candidate; "
                "use auto, all, or a list like z1,z2@1,z3+opt,z3+opt+param@*"
            )
        if mb in ("", None):
            sizes = [b]
        elif mb == "*":
            sizes = chain
        elif mb.isdigit() and int(mb) >= 1 and total % int(mb) == 0:
            sizes = [int(mb)]
        else:
            raise InputError(
                f"--candidates: {item!r}: micro batch {mb!r} must divide micro batch × accumulation "
                f"({total}) so the global batch stays the same"
            )
        out.extend((v, s) for s in sizes if (v, s) not in out)
    return out


def _speed_key(c: Candidate) -> tuple:
    """Fastest first: the speed model's step time where there is one, else less offload, a lower
    stage and a larger micro batch (offload moves every step's states over PCIe; ZeRO-3 gathers
    every layer twice a step; a smaller micro batch runs more, smaller kernels)."""
    v = c.variant
    heuristic = (v.offload_param != "none", v.offload_optimizer != "none", v.stage, -c.micro_batch)
    return (c.predicted_step_s is None, c.predicted_step_s or 0.0, heuristic)


def candidates(plan: Plan, which: str = "auto", limit_bytes: int | None = None) -> list[Candidate]:
    """The candidates to measure, in the order they run. InputError for a bad ``--candidates``."""
    base = analyze(plan)
    which = (which or "auto").strip()
    if which == "auto" or which == "all":
        pairs = [(v, mb) for v in _variants(plan, base) for mb in micro_batches(plan.batch.micro_batch)]
    else:
        pairs = parse_list(which, plan)
    made = []
    for v, mb in pairs:
        cand, a = make_candidate(plan, v, mb, limit_bytes)
        if which in ("auto", "all") and a.errors and not _only_memory_errors(a):
            continue  # a combination the rules refuse (e.g. QLoRA with ZeRO-3) is not a candidate
        made.append(cand)
    if which != "auto":
        return made
    cap = capacity_bytes(base, limit_bytes)
    may = [c for c in made if c.predicted is not None and c.predicted.per_gpu.total <= cap * MAY_FIT]
    best: dict[Variant, Candidate] = {}
    for c in may:  # per variant, the largest micro batch that may fit
        if c.variant not in best or c.micro_batch > best[c.variant].micro_batch:
            best[c.variant] = c
    picked = sorted(best.values(), key=_speed_key)[:AUTO_MAX]
    if not picked:  # nothing may fit: measure the two the model finds smallest; it may be pessimistic
        picked = sorted(made, key=lambda c: c.predicted.per_gpu.total if c.predicted else 0)[:2]
    return picked


def _only_memory_errors(a: Analysis) -> bool:
    """Refused only for the predicted memory (``run`` says so itself when the probe launches it)."""
    return all(
        (p.field == "zero.stage" and "out of memory" in p.message) or p.field == "hardware.host_ram_gb"
        for p in a.errors
    )
