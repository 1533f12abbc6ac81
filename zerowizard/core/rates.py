"""What a rank achieves: the time model's rates from the hardware, its catalog entry and calibration.

A GPU's rates are its catalog figures times the stated efficiencies of :mod:`.speed`; a generic card
gets :data:`.gpus.GENERIC`'s and says so. The CPU accelerator's come from this machine's calibration
(`zerowizard calibrate`, :mod:`zerowizard.runner.calibrate`), or rough stated defaults until then.
A GPU calibrated on this machine (`zerowizard calibrate` with CUDA) replaces the efficiency factor.
"""

from __future__ import annotations

from typing import Any

from . import speed as sp
from .calibration import Calibration
from .gpus import GENERIC

# The CPU accelerator before `zerowizard calibrate`: what the calibration measured on the project's
# reference machine (AMD EPYC, one thread per rank, torch 2.13, DeepSpeed 0.19.8); every figure is
# replaced by this machine's own once it is calibrated
CPU_FLOPS_PER_CORE = 1.9e11  # bf16 nn.Linear forward + backward (fp32: about half)
CPU_ATTN_FLOPS_PER_CORE = 2.3e10  # causal SDPA forward + backward, bf16
CPU_ELEM_S = 8e-9  # per activation element (flops.activation_elements)
CPU_LAYER_S = 4e-3  # per decoder layer per micro step
CPU_MICRO_S = 12e-3  # per micro step: embedding, loss, Python
CPU_COLL = (3e-4, 8e8)  # gloo on one host: latency s, bytes/s
CPU_ADAM_PER_CORE = 5.5e8  # DeepSpeed's partition step with a fused AdamW, parameters/s
CPU_COPY_BPS = 2e10  # a bf16 -> fp32 host copy, bytes/s
CPU_HOOK_S = 1e-5  # DeepSpeed's gradient hook per parameter tensor
CPU_MODULE_S = 2.3e-4  # ZeRO-3's hooks per module per micro step
CPU_STEP_S = 0.01  # per optimizer step: the engine's bookkeeping
GPU_HOOK_S = 20e-6  # the same hooks on a GPU host (hidden behind the device unless it idles)
GPU_MODULE_S = 150e-6
GPU_MICRO_S = 2e-3


def _b(bench: dict, key: str, default: float, zero_ok: bool = False) -> float:
    value = bench.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (value > 0 or (zero_ok and value == 0)):
        return float(value)
    return default


def cpu_rates(hw: Any, precision: str, cal: Calibration | None) -> sp.Rates:
    """The CPU accelerator: every rank computes on cpu_cores / ranks threads (the launcher's OMP split)."""
    ranks = max(1, hw.gpus_per_node)
    threads = max(1, hw.cpu_cores // ranks)
    bench = cal.bench if cal is not None else {}
    if bench:
        scale = threads / max(1, int(_b(bench, "threads_per_rank", 1)))
        # fp32 runs at the calibrated fp32 rate when measured, else at the bf16 rate's half
        fkey = "fp32_flops_per_rank" if precision == "fp32" else "flops_per_rank"
        flops = _b(bench, fkey, _b(bench, "flops_per_rank", CPU_FLOPS_PER_CORE) / 2) * scale
        coll = {
            op: (_b(c, "latency_s", CPU_COLL[0]), _b(c, "bytes_per_s", CPU_COLL[1]))
            for op, c in (bench.get("collectives") or {}).items()
            if isinstance(c, dict)
        }
        source = "calibrated (this machine's benchmarks)"
    else:
        flops = CPU_FLOPS_PER_CORE * threads * (0.5 if precision == "fp32" else 1.0)
        coll = {}
        scale = float(threads)
        source = "formula (a reference CPU's figures: run `zerowizard calibrate` to measure this one)"
    for op in ("all_reduce", "reduce", "all_gather", "reduce_scatter"):
        coll.setdefault(op, coll.get("all_reduce", CPU_COLL))
    copy = _b(bench, "copy_bytes_per_s", CPU_COPY_BPS)
    adam = _b(bench, "adam_params_per_s", CPU_ADAM_PER_CORE) * scale
    return sp.Rates(
        flops=flops,
        peak_flops=None,
        mem_bps=copy,
        coll=coll,
        host_bps=copy,
        adam_params_per_s=adam,
        device_adam_params_per_s=adam,
        nvme_bps=hw.nvme_gbs * 1e9 / ranks,
        layer_s=_b(bench, "layer_s", CPU_LAYER_S, zero_ok=True),
        micro_s=_b(bench, "micro_s", CPU_MICRO_S, zero_ok=True),
        step_s=_b(bench, "step_s", CPU_STEP_S, zero_ok=True),
        hook_s=_b(bench, "hook_s", CPU_HOOK_S, zero_ok=True),
        module_s=_b(bench, "module_s", CPU_MODULE_S, zero_ok=True),
        overlap=False,
        launch_floor=False,
        source=source,
        attn_flops=_b(bench, "attn_flops_per_rank", CPU_ATTN_FLOPS_PER_CORE) * scale,
        elem_s=_b(bench, "elem_s", CPU_ELEM_S, zero_ok=True) / scale,
    )


def gpu_rates(hw: Any, precision: str, cal: Calibration | None) -> sp.Rates:
    """A GPU: the catalog's peaks x the stated efficiencies, over NVLink/PCIe and the node's network."""
    gpu = hw.gpu or GENERIC
    notes = []
    if hw.gpu is None:
        notes.append(f"{hw.name} is not in the catalog: compute and links {GENERIC.source.removeprefix('assumed: ')}")
    peak = gpu.peak_tflops(precision) * 1e12
    bench = cal.bench if cal is not None else {}
    eff = _b(bench, "efficiency", sp.EFFICIENCY)
    kind = "nvlink" if gpu.interconnect.startswith("nvlink") else "pcie"
    intra = gpu.link_gbs * 1e9 * sp.LINK_EFFICIENCY[kind]
    latency = sp.NCCL_LATENCY_S[0]
    if hw.nodes > 1:
        intra = min(intra, hw.network_gbps / 8 * 1e9 * sp.NETWORK_EFFICIENCY)
        latency = sp.NCCL_LATENCY_S[1]
    mem = gpu.memory_gbs * 1e9 * sp.MEM_EFFICIENCY
    ranks = max(1, hw.gpus_per_node)
    source = "calibrated (this machine's benchmarks)" if "efficiency" in bench else "formula"
    return sp.Rates(
        flops=peak * eff,
        peak_flops=peak,
        mem_bps=mem,
        coll=dict.fromkeys(("all_reduce", "reduce", "all_gather", "reduce_scatter"), (latency, intra)),
        host_bps=gpu.host_gbs * 1e9 * sp.HOST_EFFICIENCY,
        adam_params_per_s=sp.CPU_ADAM_PARAMS_PER_CORE_S * max(1, hw.cpu_cores) / ranks,
        device_adam_params_per_s=mem / sp.ADAM_BYTES_PER_PARAM,
        nvme_bps=hw.nvme_gbs * 1e9 / ranks,
        layer_s=sp.LAUNCH_S_PER_LAYER,
        micro_s=GPU_MICRO_S,
        step_s=sp.STEP_OVERHEAD_S,
        hook_s=GPU_HOOK_S,
        module_s=GPU_MODULE_S,
        overlap=True,
        launch_floor=True,
        source=source,
        notes=tuple(notes),
    )


def rates_for(hw: Any, precision: str, cal: Calibration | None) -> sp.Rates:
    return cpu_rates(hw, precision, cal) if hw.is_cpu else gpu_rates(hw, precision, cal)
