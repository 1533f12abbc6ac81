"""The exported DeepSpeed JSON: golden files, overrides reported, DeepSpeed's own parser accepts it."""

import json
import os
from pathlib import Path

import pytest

from zerowizard.core.analysis import analyze
from zerowizard.core.dsconfig import write_json_atomic
from zerowizard.core.plan import PRESET_NAMES, plan_from_dict

GOLDEN = Path(__file__).parent / "golden"
HW = {"gpu": "A100-80GB", "gpus_per_node": 8, "host_ram_gb": 1024}


def export(**data):
    data.setdefault("hardware", HW)
    a = analyze(plan_from_dict({"model": "llama-3-8b", **data}))
    assert not a.errors, [p.line() for p in a.errors]
    return a


GOLDEN_CASES = {
    "zero2_qlora_a100": dict(deepspeed="deepspeed_zero2", method="qlora", batch={"micro_batch": 4, "grad_accum": 4}),
    "zero3_full_v100_fp16": dict(
        deepspeed="deepspeed_zero3", method="full", hardware={**HW, "gpu": "V100-32GB"}, model={"name": "qwen2.5-0.5b"}
    ),
    "zero3_offload_lora": dict(deepspeed="deepspeed_zero3_offload", method="lora", max_grad_norm=0.5),
    "zero2_offload_nvme_override": dict(
        deepspeed="deepspeed_zero2",
        zero={"stage": 3, "offload_optimizer": "nvme", "offload_param": "nvme", "nvme_path": "/nvme"},
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_exports(name):
    a = export(**GOLDEN_CASES[name])
    path = GOLDEN / f"{name}.json"
    if os.environ.get("ZEROWIZARD_REGOLD"):
        path.write_text(json.dumps(a.ds.config, indent=2) + "\n")
    assert a.ds.config == json.loads(path.read_text())


def test_v100_gets_fp16_and_ampere_bf16():
    a = export(**GOLDEN_CASES["zero3_full_v100_fp16"])
    assert a.ds.config["fp16"]["enabled"] is True and a.ds.config["bf16"]["enabled"] is False
    a = export()
    assert a.ds.config["fp16"]["enabled"] is False and a.ds.config["bf16"]["enabled"] is True


def test_custom_json_keeps_user_settings_and_reports_overrides(tmp_path):
    custom = {
        "train_batch_size": 512,
        "train_micro_batch_size_per_gpu": 16,
        "gradient_accumulation_steps": 4,
        "gradient_clipping": 0.3,
        "fp16": {"enabled": True, "loss_scale_window": 500},
        "zero_optimization": {"stage": 2, "reduce_bucket_size": "auto", "allgather_bucket_size": 2e8},
        "steps_per_print": 7,
        "wall_clock_breakdown": True,
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(custom))
    a = export(deepspeed=str(path), batch={"micro_batch": 2, "grad_accum": 8}, max_grad_norm=1.0)
    cfg = a.ds.config
    assert cfg["steps_per_print"] == 7 and cfg["wall_clock_breakdown"] is True
    assert cfg["zero_optimization"]["allgather_bucket_size"] == 2e8
    assert cfg["fp16"] == {"enabled": False, "loss_scale_window": 500}
    assert cfg["bf16"] == {"enabled": True}
    assert cfg["zero_optimization"]["reduce_bucket_size"] == 4096 * 4096
    assert "train_batch_size" not in cfg
    changed = {o.key: (o.old, o.new, o.kind) for o in a.ds.overrides}
    assert changed["train_micro_batch_size_per_gpu"] == (16, 2, "override")
    assert changed["gradient_accumulation_steps"] == (4, 8, "override")
    assert changed["gradient_clipping"] == (0.3, 1.0, "override")
    assert changed["fp16.enabled"] == (True, False, "override")
    assert changed["train_batch_size"][2] == "removed"
    assert changed["zero_optimization.reduce_bucket_size"][2] == "auto"
    assert "16 -> 2" in next(o for o in a.ds.overrides if o.key == "train_micro_batch_size_per_gpu").describe()
    # an unchanged value is not reported
    a = export(
        deepspeed=str(path),
        batch={"micro_batch": 16, "grad_accum": 4},
        max_grad_norm=0.3,
        precision="fp16",
        model="qwen2.5-0.5b",
    )
    assert not {
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
        "fp16.enabled",
    } & {o.key for o in a.ds.overrides}


def test_write_is_atomic(tmp_path):
    target = tmp_path / "ds.json"
    target.write_text("precious")

    class Boom:
        def __repr__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        write_json_atomic(target, {"x": object()})
    assert target.read_text() == "precious"
    assert list(tmp_path.iterdir()) == [target]
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}


def _allowed_cases():
    for preset in PRESET_NAMES:
        for method in ("full", "lora", "qlora"):
            if method == "qlora" and "zero3" in preset:
                continue
            for gpus in (1, 2, 8):
                yield preset, method, gpus


def test_every_allowed_export_is_accepted_by_deepspeed():
    pytest.importorskip("deepspeed")
    from zerowizard.runner.dsparse import deepspeed_errors as deepspeed_check

    failures = []
    for preset, method, gpus in _allowed_cases():
        a = export(
            deepspeed=preset,
            method=method,
            hardware={**HW, "gpus_per_node": gpus},
            model="qwen2.5-0.5b",
            batch={"micro_batch": 2, "grad_accum": 3},
        )
        errs = deepspeed_check(a.ds.config, gpus)
        if errs:
            failures.append((preset, method, gpus, errs))
    for stage in (0, 1, 2, 3):
        a = export(zero={"stage": stage}, method="lora")
        errs = deepspeed_check(a.ds.config, 8)
        if errs:
            failures.append(("stage", stage, errs))
    assert not failures


def test_deepspeed_rejects_what_we_reject():
    pytest.importorskip("deepspeed")
    from zerowizard.runner.dsparse import deepspeed_errors as deepspeed_check

    assert deepspeed_check(
        {"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2}, 4
    )  # 64 != 4*2*4
    assert deepspeed_check({"train_micro_batch_size_per_gpu": 1, "amp": {"enabled": True}}, 1)
