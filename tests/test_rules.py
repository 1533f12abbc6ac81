"""One test per rule: each problem names the field and carries a fix."""

import json

from zerowizard.core.analysis import analyze
from zerowizard.core.dsrules import check_ds_config
from zerowizard.core.plan import plan_from_dict


def problems(**data):
    base = {"model": "llama-3-8b", "hardware": {"gpu": "A100-80GB", "gpus_per_node": 8, "host_ram_gb": 1024}}
    for k, v in data.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return analyze(plan_from_dict(base)).problems


def find(ps, severity, field, text=""):
    hits = [p for p in ps if p.severity == severity and p.field == field and text in p.message]
    assert hits, "\n".join(p.line() for p in ps)
    return hits[0]


def test_qlora_with_zero3_is_an_error_with_the_fix():
    ps = problems(method="qlora", deepspeed="deepspeed_zero3")
    p = find(ps, "error", "zero.stage", "QLoRA cannot")
    assert "ZeRO-2" in p.fix and "lora" in p.fix
    assert [x.severity for x in ps if x.field == "zero.stage"] == ["error"]  # no "higher stage" noise


def test_offload_param_below_stage3():
    find(problems(zero={"stage": 2, "offload_param": "cpu"}), "error", "zero.offload_param", "silently ignores")


def test_nvme_optimizer_below_stage3_and_missing_path():
    ps = problems(zero={"stage": 2, "offload_optimizer": "nvme"})
    find(ps, "error", "zero.offload_optimizer", "ZeRO-3")
    find(ps, "error", "zero.nvme_path", "needs a directory")


def test_bf16_on_pre_ampere():
    p = find(problems(precision="bf16", hardware={"gpu": "V100-32GB"}), "error", "precision", "compute capability 8.0")
    assert "fp16" in p.fix


def test_auto_precision_says_what_and_why():
    find(problems(hardware={"gpu": "V100-32GB"}), "info", "precision", "auto chose fp16")
    find(problems(), "info", "precision", "auto chose bf16")
    find(problems(hardware={"gpu": "cpu", "gpus_per_node": 2}), "info", "precision", "CPU accelerator")


def test_fp16_on_cpu():
    find(problems(precision="fp16", hardware={"gpu": "cpu", "gpus_per_node": 2}), "error", "precision", "CPU")


def test_unknown_model_and_gpu():
    find(problems(model="llama-3-9b"), "error", "model.name", "not in the catalog")
    find(problems(hardware={"gpu": "A100-90GB"}), "error", "hardware.gpu", "unknown GPU")


def test_memory_over_the_gpu_with_cheapest_fix():
    p = find(
        problems(model="llama-3-70b", method="full", hardware={"gpus_per_node": 1}),
        "error",
        "zero.stage",
        "run out of memory",
    )
    assert p.fix


def test_host_ram_too_small_for_offload():
    find(
        problems(
            model="llama-3-70b",
            method="full",
            deepspeed="deepspeed_zero3_offload",
            hardware={"gpus_per_node": 8, "host_ram_gb": 64},
        ),
        "error",
        "hardware.host_ram_gb",
        "host RAM",
    )


def test_higher_stage_than_needed_is_a_warning_not_an_error():
    ps = problems(method="lora", deepspeed="deepspeed_zero3")
    p = find(ps, "warning", "zero.stage", "already fits")
    assert "deepspeed_zero1" in p.fix
    assert not [x for x in ps if x.severity == "error"]


def test_custom_json_problems_surface_in_the_plan(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}, "gradient_clippping": 1.0, "amp": {}}))
    ps = problems(deepspeed=str(path))
    find(ps, "error", "deepspeed: gradient_clippping", "unknown key")
    find(ps, "error", "deepspeed: amp", "removed")


def test_missing_and_malformed_custom_json(tmp_path):
    find(problems(deepspeed=str(tmp_path / "nope.json")), "error", "deepspeed", "no such file")
    bad = tmp_path / "bad.json"
    bad.write_text('{"zero_optimization": {"stage": 2,}}')
    find(problems(deepspeed=str(bad)), "error", "deepspeed", "not valid JSON at line 1")
    find(problems(deepspeed="deepspeed_zero4"), "error", "deepspeed", "did you mean 'deepspeed_zero")


def test_sequence_longer_than_context():
    find(problems(batch={"seq_len": 16384}), "warning", "batch.seq_len", "longer than")


# -- the JSON as written ----------------------------------------------------------------------


def ds(cfg, **kw):
    return check_ds_config(cfg, **kw)


def test_json_unknown_top_level_key_did_you_mean():
    p = find(
        ds({"train_micro_batch_size_per_gpu": 1, "zero_optimisation": {"stage": 2}}),
        "error",
        "zero_optimisation",
        "silently ignore",
    )
    assert p.fix == "did you mean 'zero_optimization'?"


def test_json_removed_features_and_deprecated_keys():
    ps = ds({"sparse_attention": {}, "zero_optimization": {"stage": 3, "mics_shard_size": 8, "cpu_offload": True}})
    find(ps, "error", "sparse_attention", "removed")
    find(ps, "error", "zero_optimization.mics_shard_size", "removed")
    assert "offload_optimizer" in find(ps, "warning", "zero_optimization.cpu_offload", "deprecated").fix


def test_json_fp16_and_bf16_both_enabled():
    find(ds({"fp16": {"enabled": True}, "bf16": {"enabled": True}}), "error", "fp16.enabled", "both enabled")


def test_json_batch_arithmetic_shows_the_sum():
    p = find(
        ds(
            {"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2},
            world_size=4,
        ),
        "error",
        "train_batch_size",
        "4 x accumulation 2 x 4 GPUs = 32",
    )
    assert "32" in p.fix


def test_json_offload_param_below_stage3_and_ratio():
    ps = ds(
        {
            "zero_optimization": {
                "stage": 2,
                "offload_param": {"device": "cpu"},
                "offload_optimizer": {"device": "cpu", "ratio": 0.3},
            }
        }
    )
    find(ps, "error", "zero_optimization.offload_param", "only with ZeRO-3")
    find(ps, "error", "zero_optimization.offload_optimizer.ratio", "ZeRO-3")


def test_json_nvme_without_path_and_invalid_values():
    ps = ds(
        {
            "train_micro_batch_size_per_gpu": 0,
            "gradient_clipping": -1,
            "zero_optimization": {
                "stage": 5,
                "offload_optimizer": {"device": "disk"},
                "offload_param": {"device": "nvme"},
                "reduce_bucket_size": -3,
            },
        }
    )
    find(ps, "error", "train_micro_batch_size_per_gpu", "positive")
    find(ps, "error", "gradient_clipping", ">= 0")
    find(ps, "error", "zero_optimization.stage", "0, 1, 2 or 3")
    find(ps, "error", "zero_optimization.offload_optimizer.device", "not a device")
    find(ps, "error", "zero_optimization.offload_param.nvme_path", "needs a directory")
    find(ps, "error", "zero_optimization.reduce_bucket_size", "positive")


def test_json_bf16_on_v100_and_fp16_on_cpu():
    find(ds({"bf16": {"enabled": True}}, compute_capability=(7, 0)), "error", "bf16.enabled", "8.0")
    find(ds({"fp16": {"enabled": True}}, is_cpu=True), "error", "fp16.enabled", "CPU")


def test_json_unknown_zero_key():
    find(
        ds({"zero_optimization": {"stage": 2, "overlap_com": True}}),
        "error",
        "zero_optimization.overlap_com",
        "unknown ZeRO key",
    )


def test_clean_presets_have_no_errors():
    for name in ("deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3"):
        ps = problems(deepspeed=name, method="lora")
        assert not [p for p in ps if p.severity == "error"], name
