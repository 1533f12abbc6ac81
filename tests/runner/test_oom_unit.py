"""The out-of-memory ladder: half the micro batch with twice the accumulation (global batch kept),
then at micro batch 1 a higher ZeRO stage, then offload, each predicted smaller; then nothing."""

from __future__ import annotations

import pytest

from zerowizard.core.analysis import analyze
from zerowizard.core.plan import plan_from_dict
from zerowizard.runner.oom import global_batch, next_fallback, smaller_micro_batch


@pytest.mark.parametrize("micro,smaller", [(8, 4), (6, 3), (3, 1), (2, 1), (5, 1)])
def test_smaller_micro_batch_divides_it(micro, smaller):
    assert smaller_micro_batch(micro) == smaller


def test_the_ladder_keeps_the_global_batch_and_ends():
    plan = plan_from_dict(
        {
            "model": "llama-3-8b",
            "hardware": {"gpu": "A100-80GB", "gpus_per_node": 8},
            "batch": {"micro_batch": 6, "grad_accum": 2},
            "deepspeed": "deepspeed_zero2",
        }
    )
    analysis, changes = analyze(plan), []
    while (step := next_fallback(plan, analysis)) is not None:
        assert global_batch(step.plan, 8) == 96  # 6 x 2 x 8 ranks, every step of the way
        if "ZeRO" in step.change:  # only a variant predicted to need less per device
            assert step.analysis.selected.per_gpu.total < analysis.selected.per_gpu.total
        plan, analysis = step.plan, step.analysis
        changes.append(step.change)
    assert changes[:2] == [
        "micro batch 6 -> 3, gradient accumulation 2 -> 4",
        "micro batch 3 -> 1, gradient accumulation 4 -> 12",
    ]
    assert [c.split(" (")[0] for c in changes[2:]] == [
        "ZeRO-2 -> ZeRO-3",
        "ZeRO-3 -> ZeRO-3 opt→cpu",
        "ZeRO-3 opt→cpu -> ZeRO-3 opt→cpu param→cpu",
    ]
