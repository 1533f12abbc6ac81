"""The command line for issue 15: freeze flags, the optimizer, MoE and pre-quantized cards, presets."""

import json


def _estimate(zw, *args):
    r = zw("estimate", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_freeze_flags(zw):
    from zerowizard.core.modelcards import resolve_model

    spec = resolve_model("qwen3-8b")
    out = _estimate(zw, "--model", "qwen3-8b", "--method", "freeze", "--freeze-layers", "2", "--gpus", "8xA100-80GB")
    assert out["params"]["trainable"] == 2 * spec.layer(35).params
    out = _estimate(
        zw, "--model", "qwen3-8b", "--method", "freeze", "--trainable-modules", "mlp,lm_head", "--gpus", "8xA100-80GB"
    )
    mlp = 3 * spec.hidden_size * spec.intermediate_size
    assert out["params"]["trainable"] == 2 * mlp + spec.lm_head_params


def test_bad_freeze_layers_is_one_line(zw):
    r = zw("estimate", "--model", "qwen3-8b", "--method", "freeze", "--freeze-layers", "two")
    assert r.returncode == 2 and "--freeze-layers" in r.stderr and "Traceback" not in r.stderr


def test_export_writes_the_optimizer_deepspeed_accepts(zw, tmp_path):
    from zerowizard.runner.dsparse import deepspeed_errors

    out = tmp_path / "ds.json"
    r = zw("--export", str(out), "--model", "llama-3.1-8b", "--gpus", "8xA100-80GB", "--optimizer", "lion")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(out.read_text())
    assert cfg["optimizer"] == {"type": "Lion", "params": {"lr": 2e-4, "weight_decay": 0.0}}
    assert deepspeed_errors(cfg, 8) == []


def test_refused_optimizer_blocks_the_export(zw, tmp_path):
    out = tmp_path / "ds.json"
    r = zw("--export", str(out), "--model", "llama-3.1-8b", "--gpus", "8xA100-80GB", "--optimizer", "adafactor")
    assert r.returncode == 2 and not out.exists()
    assert "Adafactor" in r.stdout + r.stderr


def test_moe_and_prequantized_in_estimate(zw):
    out = _estimate(
        zw, "--model", "mixtral-8x7b", "--gpus", "8xH100-80GB", "--nodes", "4", "--deepspeed", "deepspeed_zero3"
    )
    assert out["params"]["total"] == 46_702_792_704
    assert any("mixture of experts" in p["message"] for p in out["problems"])
    out = _estimate(zw, "--model", "qwen2.5-7b-instruct-awq", "--method", "lora", "--gpus", "8xA100-80GB")
    assert all(v["stage"] < 3 for v in out["variants"])


def test_params_one_trillion_says_what_it_borrowed(zw):
    out = _estimate(zw, "--params", "1T", "--gpus", "8xA100-80GB", "--nodes", "128", "--stage", "3")
    z3 = next(v for v in out["variants"] if v["stage"] == 3 and v["offload_optimizer"] == "none")
    states = sum(z3["per_gpu"][k] for k in ("weights", "grads", "optimizer"))
    assert abs(states / 15.6e9 - 1) < 0.02  # the ZeRO paper's 15.6 GB per GPU
    assert any("llama-3.1-405b's proportions" in p["message"] for p in out["problems"])


def test_presets_lists_cards_by_family(zw):
    r = zw("presets")
    assert r.returncode == 0, r.stderr
    for text in ("Qwen3 MoE", "qwen3-30b-a3b", "30.53B", "3.35B", "8/128", "Gemma 3", "(AWQ)"):
        assert text in r.stdout, text
