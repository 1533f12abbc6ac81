"""Real training on the CPU with two ranks (DS_ACCELERATOR=cpu, gloo, bf16): every ZeRO stage
and method the runner supports, each a few steps of the tiny Llama."""

from __future__ import annotations

import json

import pytest

from .conftest import FAST, assert_no_orphans, check_ok, run_zw

pytestmark = pytest.mark.slow  # real training: the CI tier, not the edit loop


@pytest.mark.parametrize("stage", [1])
def test_full_finetune_two_ranks(tmp_path, workdir, stage):
    res = run_zw(tmp_path, *FAST, "--deepspeed", f"deepspeed_zero{stage}", "--output", str(workdir))
    evs = check_ok(res, workdir)
    start = evs[0]
    assert start["world_size"] == 2 and start["accelerator"] == "cpu" and start["precision"] == "bf16"
    assert json.loads((workdir / "ds_config.json").read_text())["zero_optimization"]["stage"] == stage
    if stage == 3:
        assert start["zero3_partitioned"] is True
    steps = [e for e in evs if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    for e in steps:
        for key in (
            "loss",
            "learning_rate",
            "grad_norm",
            "tokens_per_s",
            "elapsed_s",
            "eta_s",
            "memory_bytes",
            "epoch",
            "total_steps",
        ):
            assert key in e
        assert len(e["memory_bytes"]) == 2
    assert (workdir / "final" / "config.json").is_file()
    assert_no_orphans(workdir)


@pytest.mark.parametrize("method,stage", [("lora", 2), ("qlora", 2)])
def test_adapters_two_ranks(tmp_path, workdir, method, stage):
    res = run_zw(
        tmp_path,
        *FAST,
        "--method",
        method,
        "--lora-r",
        "8",
        "--deepspeed",
        f"deepspeed_zero{stage}",
        "--output",
        str(workdir),
    )
    check_ok(res, workdir)
    assert (workdir / "final" / "adapter_config.json").is_file()
    assert (workdir / "final" / "adapter_model.safetensors").is_file()
    assert not (workdir / "final" / "model.safetensors").exists()


def _generate(model, tok) -> str:
    import torch

    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids["input_ids"].shape[1]
    return tok.decode(out[0])


def test_saved_full_model_loads_and_generates(tmp_path, workdir):
    """ZeRO-3 full from a custom JSON without stage3_gather_16bit_weights_on_model_save: the
    model is still created partitioned, and the final save is gathered 16-bit weights that
    from_pretrained reads back."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zerowizard.core.dsconfig import preset_path

    cfg = json.loads(preset_path("deepspeed_zero3").read_text())
    cfg["zero_optimization"].pop("stage3_gather_16bit_weights_on_model_save", None)
    custom = tmp_path / "my_zero3.json"
    custom.write_text(json.dumps(cfg))
    res = run_zw(tmp_path, *FAST, "--deepspeed", str(custom), "--output", str(workdir))
    evs = check_ok(res, workdir)
    assert evs[0]["zero3_partitioned"] is True
    assert json.loads((workdir / "ds_config.json").read_text())["zero_optimization"]["stage"] == 3
    final = workdir / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    assert sum(p.numel() for p in model.parameters()) > 1_000_000  # not an empty ZeRO-3 shell
    _generate(model, AutoTokenizer.from_pretrained(final))


def test_saved_adapter_loads_and_generates(tmp_path, workdir):
    """LoRA + ZeRO-3: the adapter in peft format loads onto the base model and generates."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .conftest import spec_json

    res = run_zw(
        tmp_path, *FAST, "--method", "lora", "--lora-r", "8", "--deepspeed", "deepspeed_zero3", "--output", str(workdir)
    )
    check_ok(res, workdir)
    base = AutoModelForCausalLM.from_pretrained(spec_json(workdir)["model_path"])
    model = PeftModel.from_pretrained(base, workdir / "final")
    trained = [n for n, _ in model.named_parameters() if "lora_B" in n]
    assert trained
    _generate(model, AutoTokenizer.from_pretrained(workdir / "final"))
