"""Rules for pre-quantized checkpoints, optimizers, freeze tuning and MoE LoRA: each with the reason
and the fix."""

import json

import pytest

from zerowizard.core.analysis import analyze
from zerowizard.core.plan import plan_from_dict


def _problems(**data):
    base = {"hardware": {"gpu": "A100-80GB", "gpus_per_node": 8}}
    a = analyze(plan_from_dict({**base, **data}))
    return a, [p for p in a.problems if p.severity == "error"]


def _one(errors, field):
    found = [p for p in errors if p.field == field]
    assert len(found) == 1, [(p.field, p.message) for p in errors]
    return found[0]


@pytest.mark.parametrize("method", ["full", "freeze"])
def test_prequantized_cannot_be_trained_fully(method):
    _, errors = _problems(model="qwen2.5-7b-instruct-awq", method=method, deepspeed="deepspeed_zero2")
    p = _one(errors, "method.type")
    assert "pre-quantized AWQ" in p.message and "packed 4-bit" in p.message
    assert "--method lora" in p.fix and "--model qwen2.5-7b" in p.fix


def test_prequantized_is_not_quantized_again_for_qlora():
    _, errors = _problems(model="qwen2.5-7b-instruct-awq", method="qlora", deepspeed="deepspeed_zero2")
    p = _one(errors, "method.type")
    assert "already quantized" in p.message and "--method lora" in p.fix


def test_prequantized_refused_by_zero3():
    _, errors = _problems(model="qwen2.5-7b-instruct-awq", method="lora", deepspeed="deepspeed_zero3")
    p = _one(errors, "zero.stage")
    assert "#6898" in p.message and "ZeRO-2" in p.fix


def test_prequantized_lora_on_zero2_is_fine():
    a, errors = _problems(model="qwen2.5-7b-instruct-awq", method="lora", deepspeed="deepspeed_zero2")
    assert not errors and a.recommended is not None


@pytest.mark.parametrize(
    "quant,label",
    [
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "GPTQ"),
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "FP8"),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "bitsandbytes 4-bit"),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "bitsandbytes 8-bit"),
    ],
)
def test_prequantized_detected_from_a_local_config(tmp_path, quant, label):
    cfg = {
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 1000,
        "quantization_config": quant,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    _, errors = _problems(model=str(tmp_path), method="full", deepspeed="deepspeed_zero3")
    assert label in _one(errors, "method.type").message
    assert _one(errors, "zero.stage")


@pytest.mark.parametrize(
    "name,words",
    [
        ("adafactor", "1-D partitions"),
        ("adamw_bnb_8bit", "no 8-bit optimizer state"),
        ("lamb", "trust ratio"),
        ("onebitadam", "removed"),
        ("muon", "Newton-Schulz"),
        ("adamm", "not an optimizer DeepSpeed builds"),
    ],
)
def test_refused_optimizers_say_why(name, words):
    _, errors = _problems(model="llama-3.1-8b", optimizer=name)
    p = _one(errors, "optimizer")
    assert words in p.message and p.fix


def test_untested_optimizer_needs_the_json_flag(tmp_path):
    from zerowizard.core.dsconfig import preset_path

    cfg = json.loads(preset_path("deepspeed_zero2").read_text())
    cfg.pop("zero_allow_untested_optimizer")
    path = tmp_path / "strict.json"
    path.write_text(json.dumps(cfg))
    _, errors = _problems(model="llama-3.1-8b", optimizer="sgd", deepspeed=str(path))
    assert "zero_allow_untested_optimizer" in _one(errors, "deepspeed: zero_allow_untested_optimizer").fix
    _, errors = _problems(model="llama-3.1-8b", optimizer="lion", deepspeed=str(path))
    assert not errors


def test_freeze_rules():
    _, errors = _problems(model="llama-3.2-1b", method={"type": "freeze", "freeze_layers": 40})
    assert "has 16" in _one(errors, "method.freeze_layers").message
    _, errors = _problems(model="llama-3.2-1b", method={"type": "freeze", "trainable_modules": ["mlpp"]})
    assert "did you mean 'mlp'" in _one(errors, "method.trainable_modules").fix
    _, errors = _problems(model="llama-3.2-1b", method={"type": "freeze", "freeze_layers": 0})
    assert "nothing would train" in _one(errors, "method.freeze_layers").message
    _, errors = _problems(model="llama-3.2-1b", method={"type": "freeze", "trainable_modules": ["lm_head"]})
    assert "embed_tokens" in _one(errors, "method.trainable_modules").fix  # tied: no matrix of its own
    embeddings_only = {"type": "freeze", "freeze_layers": 0, "trainable_modules": ["embed_tokens"]}
    a, errors = _problems(model="llama-3.2-1b", method=embeddings_only)
    assert not errors and a.params_trainable == a.model.embedding_params


def test_moe_lora_dropout_refused_where_peft_wraps_experts():
    def _problems(**data):  # the method's problems only (the memory verdict is another rule's)
        a, errors = globals()["_problems"](**data)
        return a, [p for p in errors if p.field.startswith("method")]

    _, errors = _problems(model="mixtral-8x7b", method={"type": "lora", "lora_dropout": 0.1})
    assert "ParamWrapper" in _one(errors, "method.lora_dropout").message
    _, errors = _problems(model="mixtral-8x7b", method={"type": "lora", "lora_dropout": 0.0})
    assert not errors
    _, errors = _problems(
        model="mixtral-8x7b", method={"type": "lora", "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    )
    assert not errors
    gate_only = {"type": "lora", "lora_dropout": 0.0, "target_modules": ["gate_proj"]}
    _, errors = _problems(model="qwen3-30b-a3b", method=gate_only)
    assert "up_proj" in _one(errors, "method.target_modules").message


def test_moe_and_borrowed_shapes_are_explained():
    a, _ = _problems(model="qwen3-30b-a3b", method="qlora", deepspeed="deepspeed_zero2")
    infos = " ".join(p.message for p in a.problems if p.severity == "info")
    assert "3.35B active per token" in infos and "stay 16-bit under QLoRA" in infos
    a, _ = _problems(model={"name": "big", "params": 10**12})
    borrowed = next(p for p in a.problems if p.field == "model.params")
    assert "llama-3.1-405b's proportions" in borrowed.message


def test_lion_on_the_cpu_needs_the_offloaded_kernel():
    a = analyze(plan_from_dict({"model": "tiny-llama", "optimizer": "lion", "hardware": {"gpu": "cpu"}}))
    errors = [p for p in a.problems if p.severity == "error"]
    assert "--offload-optimizer cpu" in _one(errors, "optimizer").fix
    a = analyze(
        plan_from_dict(
            {
                "model": "tiny-llama",
                "optimizer": "lion",
                "hardware": {"gpu": "cpu"},
                "zero": {"offload_optimizer": "cpu"},
            }
        )
    )
    assert not [p for p in a.problems if p.severity == "error" and p.field == "optimizer"]
