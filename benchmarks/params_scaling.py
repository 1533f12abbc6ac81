"""`--params` far outside the catalog: the architecture it implies, and ZeRO-3's memory per GPU.

For each size, the dense card nearest in size lends its proportions and every dimension is scaled
(zerowizard/core/scaling.py); beside it, the old way (the same card's shapes, every count scaled
linearly; before issue 15 the nearest card to 1T was Llama-3-70B, whose embedding scaled 14x).
Prints, on 1024 A100-80GB (128 nodes of 8)
with ZeRO-3, the model states per GPU against the ZeRO paper's 16·Ψ/N (15.6 GB at 1T), the buffers
(reduction bucket, gathered modules, the embedding's pending gradient) and the largest module.

    python benchmarks/params_scaling.py
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zerowizard.core import analysis, memory
from zerowizard.core.hardware import resolve_hardware
from zerowizard.core.modelcards import card_spec, resolve_model
from zerowizard.core.plan import plan_from_dict

SIZES = {"1B": 10**9, "7B": 7 * 10**9, "70B": 70 * 10**9, "405B": 405 * 10**9, "1T": 10**12, "3T": 3 * 10**12}
GIB = 1024**3


def zero3(spec, plan) -> memory.VariantEstimate:
    hw = resolve_hardware(plan.hardware)
    zs = analysis.dsconfig.zero_settings(plan, analysis.dsconfig.load_base(plan.deepspeed), spec.hidden_size)
    w = analysis.workload_for(plan, spec, hw, "bf16", zs)
    return memory.estimate_variant(w, memory.Variant(3))


def main() -> int:
    plan = plan_from_dict(
        {
            "hardware": {"gpu": "A100-80GB", "gpus_per_node": 8, "nodes": 128},
            "deepspeed": "deepspeed_zero3",
            "batch": {"micro_batch": 1, "seq_len": 2048},
        }
    )
    print(
        f"{'size':>5} {'borrowed from':30} {'hidden':>7} {'layers':>6} {'largest (B)':>11} "
        f"{'states GB':>9} {'16P/N GB':>8} {'buffers GiB':>11} | "
        f"same card, linear: {'largest (B)':>11} {'buffers GiB':>11}"
    )
    for label, n in SIZES.items():
        spec = resolve_model(f"custom-{label}", n)
        e = zero3(spec, plan)
        donor = card_spec(spec.card["borrowed_from"])
        old = replace(donor, raw_params=n, source="params")
        o = zero3(old, plan)
        print(
            f"{label:>5} {donor.name:30} {spec.hidden_size:>7} {spec.num_layers:>6} "
            f"{spec.largest_layer_params / 1e9:>11.2f} {e.per_gpu.model_states / 1e9:>9.2f} "
            f"{16 * n / 1024 / 1e9:>8.2f} {e.per_gpu.buffers / GIB:>11.2f} | "
            f"{old.largest_layer_params / 1e9:>30.2f} {o.per_gpu.buffers / GIB:>11.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
