"""The time model: seconds per optimizer step for every ZeRO stage x offload variant.

Per optimizer step on one rank (``A`` micro steps of gradient accumulation; every term is in
docs/speed-model.md with its source):

- compute: ``A x tokens x FLOPs/token`` (:mod:`.flops`) over the device's achieved rate (dense peak
  for the precision x an efficiency factor, or this machine's calibrated rate), plus per-layer and
  per-micro-step framework time; QLoRA adds the dequantisation traffic;
- communication: the collectives DeepSpeed 0.19 issues (:func:`collectives`), each
  ``latency + factor x bytes / bus bandwidth`` over the right link (NVLink/PCIe in a node, the
  node's network across nodes), less what ``overlap_comm`` hides behind backward (GPUs only);
- offload: gradients to the host and parameters back over PCIe, the host's Adam step, NVMe traffic;
- other: the on-device optimizer step (memory-bound) and the per-step framework overhead.

Pure Python and cheap (no imports beyond the core): the TUI calls :func:`step_times` on every keystroke.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .flops import Flops
from .memory import Variant

# -- stated defaults (docs/speed-model.md gives each one's source) ----------------------------------
EFFICIENCY = 0.40  # achieved share of the dense tensor peak in a transformers + DeepSpeed fine-tune
MEM_EFFICIENCY = 0.80  # achieved share of device memory bandwidth (memory-bound kernels)
LINK_EFFICIENCY = {"nvlink": 0.80, "pcie": 0.70}  # NCCL bus bandwidth / link bandwidth (nccl-tests)
NETWORK_EFFICIENCY = 0.80  # achieved share of the node's network (Gbit/s -> bytes/s)
HOST_EFFICIENCY = 0.80  # pinned host<->device copies / PCIe per direction
NCCL_LATENCY_S = (20e-6, 60e-6)  # per collective call: inside a node, across nodes
LAUNCH_S_PER_LAYER = 0.4e-3  # GPU kernel launches of one decoder layer's forward + backward (~80 x 5 us)
STEP_OVERHEAD_S = 0.02  # per optimizer step: Trainer + engine bookkeeping, scheduler, logging
ADAM_BYTES_PER_PARAM = 36  # fused Adam: read p, g, m, v (fp32), write p, m, v, a 16-bit copy: 20 + 2 x its
# 8 state bytes; another optimizer moves 20 + 2 x its own (core/optimizers.py), at the same rate
CPU_ADAM_PARAMS_PER_CORE_S = 1.0e8  # host Adam per core (calibrate: `zerowizard calibrate`)
DEQUANT_BYTES_PER_PARAM = 4.5  # QLoRA: read 0.5 B (NF4) + write 2 B + read 2 B per use
ALLREDUCE_BUCKET = 500_000_000  # engine.py MEMORY_OPT_ALLREDUCE_SIZE: stage 0's all-reduce bucket (elements)


@dataclass(frozen=True)
class StepTime:
    """One variant's predicted optimizer step on one rank (step_s = compute + comm + offload + other)."""

    step_s: float
    compute_s: float
    comm_s: float
    offload_s: float
    tokens_per_s_per_gpu: float
    mfu: float | None
    source: str  # "formula" | "calibrated (N runs on this machine)" ...
    other_s: float = 0.0  # on-device optimizer step + per-step framework overhead
    correction: float = 1.0  # measured / formula from earlier runs here (step_s / correction: the formula's)

    def as_dict(self) -> dict:
        return {
            "step_s": round(self.step_s, 6),
            "tokens_per_s_per_gpu": round(self.tokens_per_s_per_gpu, 3),
            "compute_s": round(self.compute_s, 6),
            "comm_s": round(self.comm_s, 6),
            "offload_s": round(self.offload_s, 6),
            "other_s": round(self.other_s, 6),
            "mfu": None if self.mfu is None else round(self.mfu, 4),
            "source": self.source,
        }


@dataclass(frozen=True)
class Job:
    """The variant-independent facts of a plan the time model needs (built once per analysis)."""

    flops: Flops  # per token
    tokens_per_micro: int  # one rank's micro batch as computed: micro batch x its (padded) length
    grad_accum: int
    num_layers: int
    total_params: int
    trainable_params: int
    trainable_tensors: int  # parameter tensors with gradients (DeepSpeed's per-parameter hooks)
    quantized_params: int  # QLoRA: 4-bit weights dequantised at every use
    gathered_params: int  # ZeRO-3: parameters all-gathered per pass (above the persistence threshold)
    gathered_modules: int  # ZeRO-3: modules fetched per pass
    modules: int  # every submodule (ZeRO-3 hooks each one's forward and backward)
    precision: str
    world_size: int
    gpus_per_node: int
    nodes: int
    grad_checkpointing: bool
    reduce_bucket_size: int = 500_000_000
    overlap_comm: bool = False
    prefetch_bucket_size: int = 50_000_000
    elements: float = 0.0  # activation elements per token the memory-bound ops pass over (flops.py)
    optimizer_bytes: int = ADAM_BYTES_PER_PARAM  # memory traffic per parameter of one optimizer step
    real_tokens_per_micro: float | None = None  # the tokens that are not padding (None: no padding)

    @property
    def wbytes(self) -> int:
        return 4 if self.precision == "fp32" else 2


@dataclass(frozen=True)
class Rates:
    """What one rank's device, links and host achieve (catalog x efficiency, or calibrated)."""

    flops: float  # achieved FLOP/s of the matmuls in a model's forward/backward
    peak_flops: float | None  # dense peak (the MFU denominator); None on the CPU accelerator
    mem_bps: float  # device memory bytes/s achieved
    coll: dict[str, tuple[float, float]]  # op -> (latency s, bus bytes/s); ops: all_reduce, reduce,
    # all_gather, reduce_scatter
    host_bps: float  # device <-> host bytes/s per rank
    adam_params_per_s: float  # host Adam, one rank's share of the cores
    device_adam_params_per_s: float  # the optimizer on the device (the CPU accelerator: the host's)
    nvme_bps: float  # one rank's share of the node's NVMe
    layer_s: float  # per decoder layer per micro step (launch / Python), added or a floor
    micro_s: float  # per micro step (embedding, loss, data)
    step_s: float  # per optimizer step
    hook_s: float  # DeepSpeed per-parameter gradient hook, per tensor per micro step (ZeRO 1-3)
    module_s: float  # ZeRO-3 fetch + release per module per pass
    overlap: bool  # comm runs beside compute (GPU streams); False on the CPU accelerator
    launch_floor: bool  # GPU: framework time is a floor under compute (async launches), not added
    source: str = "formula"
    notes: tuple[str, ...] = field(default=())
    attn_flops: float = 0.0  # achieved FLOP/s of fused attention (0: the matmul rate)
    elem_s: float = 0.0  # seconds per activation element of the memory-bound ops (0: in the efficiency)


@dataclass(frozen=True)
class Collective:
    """One collective DeepSpeed issues per optimizer step (docs/speed-model.md cites the lines)."""

    op: str  # all_reduce | reduce | all_gather | reduce_scatter
    bytes: int  # total payload per occurrence (the unpartitioned tensor)
    calls: int  # calls per occurrence (buckets; ZeRO-1/2: one reduce per destination rank)
    times: int  # occurrences per optimizer step (A: once per micro step; 1: at the boundary)
    phase: str  # forward | backward | step
    why: str


def _buckets(elements: int, bucket: int) -> int:
    return max(1, math.ceil(elements / max(1, bucket)))


def collectives(job: Job, v: Variant) -> list[Collective]:
    """The collectives of one optimizer step, as DeepSpeed 0.19 issues them (nothing at N = 1)."""
    n, a, wb, t = job.world_size, job.grad_accum, job.wbytes, job.trainable_params
    if n <= 1:
        return []
    out: list[Collective] = []
    if v.stage == 0:
        # engine.py allreduce_gradients: only at the accumulation boundary, buffered_allreduce_fallback
        out.append(
            Collective("all_reduce", t * wb, _buckets(t, ALLREDUCE_BUCKET), 1, "step", "gradients, once per step")
        )
        return out
    calls = _buckets(t, job.reduce_bucket_size) * n  # average_tensor: a dist.reduce per destination rank
    if v.stage == 1:
        # stage_1_and_2.py:2294 reduces only at the boundary; all_gather_dp_groups after the step
        out.append(Collective("reduce", t * wb, calls, 1, "backward", "gradients to their owners, at the boundary"))
        out.append(Collective("all_gather", t * wb, 1, 1, "step", "updated 16-bit partitions"))
    elif v.stage == 2:
        out.append(Collective("reduce", t * wb, calls, a, "backward", "gradients to their owners, every micro step"))
        out.append(Collective("all_gather", t * wb, 1, 1, "step", "updated 16-bit partitions"))
    else:
        g, mods = job.gathered_params, job.gathered_modules
        if g:
            # every module's parameters before its forward, and again before its backward: measured
            # with transformers' Llama on DeepSpeed 0.19.8 (two all-gathers per gathered module per
            # micro step; stage3_max_reuse_distance keeps none across the turn in practice)
            out.append(Collective("all_gather", g * wb, mods, a, "forward", "parameters before each module"))
            out.append(Collective("all_gather", g * wb, mods, a, "backward", "parameters again in backward"))
        rs_calls = _buckets(t, job.reduce_bucket_size)
        out.append(Collective("reduce_scatter", t * wb, rs_calls, a, "backward", "gradients, every micro step"))
    return out


def _factor(op: str, n: int) -> float:
    """Bytes each rank moves per payload byte: ring all-reduce 2(N-1)/N, gather/scatter (N-1)/N;
    ZeRO's per-destination reduces move about the payload once."""
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op == "reduce":
        return 1.0
    return (n - 1) / n


def collective_s(c: Collective, rates: Rates, n: int) -> float:
    latency, bps = rates.coll.get(c.op) or rates.coll["all_reduce"]
    return c.times * (c.calls * latency + _factor(c.op, n) * c.bytes / bps)


def _comm(job: Job, v: Variant, rates: Rates, compute_fwd: float, compute_bwd: float) -> float:
    """Exposed communication per optimizer step: what overlap_comm cannot hide behind compute."""
    n = job.world_size
    by_phase = {"forward": 0.0, "backward": 0.0, "step": 0.0}
    tail = 0.0  # the last gradient bucket of a backward has nothing left to hide behind
    for c in collectives(job, v):
        t = collective_s(c, rates, n)
        by_phase[c.phase] += t
        if c.op in ("reduce", "reduce_scatter"):
            tail = t / (c.times * _buckets(job.trainable_params, job.reduce_bucket_size))
    if not (rates.overlap and job.overlap_comm):
        return sum(by_phase.values())
    a = job.grad_accum
    exposed = by_phase["step"]
    if v.stage == 1:  # only the boundary micro step's backward hides the reduce
        exposed += max(by_phase["backward"] - compute_bwd / a, tail)
    else:
        exposed += max(by_phase["backward"] - compute_bwd, tail)
    if v.stage == 3 and job.prefetch_bucket_size > 0:  # prefetch hides all but the first module's gather
        exposed += max(by_phase["forward"] - compute_fwd, by_phase["forward"] / max(1, job.gathered_modules))
    else:
        exposed += by_phase["forward"]
    return exposed


def _offload(job: Job, v: Variant, rates: Rates) -> float:
    """Host traffic and the host's Adam step, per optimizer step (serial: DeepSpeed's offload path)."""
    if v.offload_optimizer == "none" and v.offload_param == "none":
        return 0.0
    n, a, wb = job.world_size, job.grad_accum, job.wbytes
    tp = job.trainable_params / n
    s = 0.0
    if v.offload_optimizer != "none":
        copies = a if v.stage >= 2 else 1  # ZeRO-1 reduces (and so copies) at the boundary only
        s += copies * 4 * tp / rates.host_bps  # fp32 gradient partition to the host (accumulated there)
        s += tp / rates.adam_params_per_s * job.optimizer_bytes / ADAM_BYTES_PER_PARAM  # on the host's cores
        s += wb * tp / rates.host_bps  # the updated 16-bit partition back
        if v.offload_optimizer == "nvme":  # optimizer states swapped in and out (ZeRO-Infinity)
            s += (16 + 12) * tp / rates.nvme_bps
    if v.offload_param != "none" and v.stage == 3:
        part = wb * job.total_params / n
        s += a * 2 * part / rates.host_bps  # each fetch (forward, backward) brings the partition over first
        if v.offload_param == "nvme":
            s += a * 2 * part / rates.nvme_bps
    return s


def step_time(job: Job, v: Variant, rates: Rates, correction: float = 1.0, source: str = "") -> StepTime:
    """One variant's optimizer step (``correction``: measured / formula from earlier runs here)."""
    a, n = job.grad_accum, job.world_size
    tok = job.tokens_per_micro
    f = job.flops
    attn_rate = rates.attn_flops or rates.flops
    fwd = tok * ((f.forward - f.attention_forward) / rates.flops + f.attention_forward / attn_rate)
    rest = f.backward + f.recompute - (f.attention - f.attention_forward)
    bwd = tok * (rest / rates.flops + (f.attention - f.attention_forward) / attn_rate)
    elem = tok * job.elements * rates.elem_s
    fwd, bwd = fwd + elem / 3, bwd + elem * 2 / 3
    # framework time per micro step: launches / Python per layer and DeepSpeed's per-parameter
    # hooks (on a GPU they run ahead of the queued kernels: a floor, not a sum)
    framework = job.num_layers * rates.layer_s * (1.33 if job.grad_checkpointing else 1.0)
    if v.stage >= 2 or (v.stage == 1 and a == 1):
        framework += job.trainable_tensors * rates.hook_s
    if rates.launch_floor:
        micro = max(fwd + bwd, framework) + rates.micro_s
    else:
        micro = fwd + bwd + framework + rates.micro_s
    if v.stage == 3:  # ZeRO-3's hooks on every submodule wait for their gathers: they add, on GPUs too
        micro += job.modules * rates.module_s
    if job.quantized_params:
        uses = 3 if job.grad_checkpointing else 2
        micro += uses * job.quantized_params * DEQUANT_BYTES_PER_PARAM / rates.mem_bps
    compute = a * micro
    if v.stage == 1 and a > 1:  # ZeRO-1's hooks reduce at the boundary only
        compute += job.trainable_tensors * rates.hook_s
    comm = _comm(job, v, rates, a * fwd, a * bwd)
    offload = _offload(job, v, rates)
    other = rates.step_s
    if v.offload_optimizer == "none":
        part = job.trainable_params if v.stage == 0 else job.trainable_params / n
        other += part / rates.device_adam_params_per_s * job.optimizer_bytes / ADAM_BYTES_PER_PARAM
    k = correction if correction > 0 else 1.0
    compute, comm, offload, other = compute * k, comm * k, offload * k, other * k
    total = compute + comm + offload + other
    # throughput and MFU count the tokens trained on, not the padding (the runner's tokens/s counts
    # the attention mask)
    tokens = a * (job.real_tokens_per_micro if job.real_tokens_per_micro is not None else tok)
    mfu = tokens * f.model / (total * rates.peak_flops) if rates.peak_flops else None
    return StepTime(
        step_s=total,
        compute_s=compute,
        comm_s=comm,
        offload_s=offload,
        tokens_per_s_per_gpu=tokens / total if total > 0 else 0.0,
        mfu=mfu,
        source=source or rates.source,
        other_s=other,
        correction=k,
    )


def fmt_seconds(s: float) -> str:
    """A step time or an ETA: '85 ms', '2.4 s', '3.5 min', '7.2 h', '3.1 d'."""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"
