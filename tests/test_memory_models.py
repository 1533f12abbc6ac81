"""The memory model for what issue 15 adds: mixture of experts, freeze tuning, optimizer state
sizes, pre-quantized checkpoints and --params far outside the catalog."""

from dataclasses import replace

import pytest

from zerowizard.core import memory
from zerowizard.core.analysis import analyze
from zerowizard.core.memory import Variant
from zerowizard.core.plan import plan_from_dict
from zerowizard.core.text import GIB


def _analysis(model, method="full", gpus=8, nodes=1, **extra):
    data = {
        "model": model,
        "method": method,
        "hardware": {"gpu": "A100-80GB", "gpus_per_node": gpus, "nodes": nodes, "host_ram_gb": 2048},
        "batch": {"micro_batch": 1, "seq_len": 2048},
        **extra,
    }
    return analyze(plan_from_dict(data))


def _est(a, stage, opt="none", param="none"):
    return next(e for e in a.estimates if e.variant == Variant(stage, opt, param))


def test_one_trillion_parameters_on_1024_gpus_matches_the_zero_paper():
    """ZeRO (Rajbhandari et al. 2020, Sec. 5 / Table 1): a 1T model on 1024 GPUs with P_os+g+p needs
    16 * 1e12 / 1024 = 15.6 GB of model states per GPU."""
    a = _analysis({"name": "custom-1T", "params": 10**12}, gpus=8, nodes=128, zero={"stage": 3})
    e = _est(a, 3)
    states = e.per_gpu.model_states
    assert abs(states / 15.6e9 - 1) < 0.02
    spec = a.model
    # buffers: the reduction bucket, plus the embedding gathered and its whole gradient pending at the
    # end of backward (2.8B parameters: the family's vocabulary held at a 22k hidden size), not the
    # ~32 GiB of a linearly scaled ~17B-parameter layer
    bucket = a.zero.reduce_bucket_size * 2
    emb = a.workload.embedding_trainable
    assert e.per_gpu.buffers == bucket + 2 * 2 * emb
    assert e.per_gpu.buffers < 12 * GIB
    assert spec.largest_layer_params == emb < 3e9


def test_moe_states_count_every_expert_activations_only_the_routed():
    a = _analysis("mixtral-8x7b", zero={"stage": 3})
    spec, w = a.model, a.workload
    assert abs(_est(a, 3).per_gpu.model_states - 16 * spec.total_params / 8) <= 3  # ceil-divided parts
    # routed activations: a model that ran every expert would keep far more
    everyone = replace(w, experts_per_token=w.num_experts, grad_checkpointing=False)
    routed = replace(w, grad_checkpointing=False)
    assert memory.activations(routed) < 0.5 * memory.activations(everyone)
    # ZeRO-3 gathers a whole layer's fused experts (1.41B parameters) at once
    assert w.largest_layer_params == 8 * 3 * 4096 * 14336


def test_moe_lora_targets_experts_as_peft_does():
    a = analyze(
        plan_from_dict(
            {
                "model": "qwen3-30b-a3b",
                "method": {"type": "lora", "lora_r": 8, "lora_dropout": 0.0},
                "hardware": {"gpu": "A100-80GB", "gpus_per_node": 8},
            }
        )
    )
    spec = a.model
    attention_only = spec.lora_params(8, ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert a.params_trainable > 10 * attention_only  # the router and every expert carry adapters
    assert not any(p.severity == "error" for p in a.problems if p.field.startswith("method"))


def test_freeze_has_grads_and_states_for_the_last_layers_only():
    a = _analysis("llama-3.1-8b", {"type": "freeze", "freeze_layers": 2})
    spec, t = a.model, a.params_trainable
    per_layer = spec.layer(31).params
    assert t == 2 * per_layer
    e2, e3 = _est(a, 2), _est(a, 3)
    assert e2.per_gpu.weights == 2 * spec.total_params  # frozen weights replicated below ZeRO-3
    assert e2.per_gpu.grads == 2 * t // 8 and e2.per_gpu.optimizer == 12 * t // 8
    assert e3.per_gpu.weights == -(-2 * spec.total_params // 8)  # partitioned by ZeRO-3
    # autograd keeps nothing below the first trainable layer
    full = _analysis("llama-3.1-8b", batch={"grad_checkpointing": False})
    frozen = _analysis("llama-3.1-8b", {"type": "freeze", "freeze_layers": 2}, batch={"grad_checkpointing": False})
    raw_full, raw_frozen = memory.activations(full.workload), memory.activations(frozen.workload)
    layer_acts = (raw_full - raw_frozen) // 30  # 32 layers keep activations against 2
    assert layer_acts > 0 and raw_full - raw_frozen == 30 * layer_acts
    logits_and_loss = raw_frozen - 2 * layer_acts  # what every plan keeps whatever it trains
    assert logits_and_loss >= 12 * 2048 * spec.vocab_size
    assert _est(frozen, 2).per_gpu.activations < _est(full, 2).per_gpu.activations


def test_freeze_named_modules_and_extras():
    a = _analysis("qwen3-8b", {"type": "freeze", "freeze_layers": 4, "trainable_modules": ["mlp", "lm_head"]})
    spec = a.model
    mlp = 3 * spec.hidden_size * spec.intermediate_size
    assert a.params_trainable == 4 * mlp + spec.lm_head_params
    assert a.workload.head_trainable == spec.lm_head_params and a.workload.embedding_trainable == 0


@pytest.mark.parametrize("name,state", [("adamw", 8), ("lion", 4), ("adagrad", 4), ("sgd_momentum", 4), ("sgd", 0)])
def test_optimizer_state_bytes(name, state):
    a = _analysis("llama-3.1-8b", optimizer=name)
    t = a.params_trainable
    assert _est(a, 2).per_gpu.optimizer == -(-(4 + state) * t // 8)  # fp32 master + the states, partitioned
    assert _est(a, 0).per_gpu.optimizer == (4 + state) * t


def test_optimizer_of_a_base_json_counts(tmp_path):
    import json

    from zerowizard.core.dsconfig import preset_path

    cfg = json.loads(preset_path("deepspeed_zero2").read_text())
    cfg["optimizer"] = {"type": "Lion", "params": {"lr": 1e-4}}
    path = tmp_path / "lion.json"
    path.write_text(json.dumps(cfg))
    a = _analysis("llama-3.1-8b", deepspeed=str(path))
    assert a.optimizer.name == "lion"
    assert _est(a, 2).per_gpu.optimizer == -(-8 * a.params_trainable // 8)


def test_prequantized_lora_base_is_packed_and_has_no_zero3():
    a = _analysis("qwen2.5-7b-instruct-awq", "lora")
    plain = _analysis("qwen2.5-7b", "lora")
    q = a.model.quantizable_params
    saved = _est(plain, 2).per_gpu.weights - _est(a, 2).per_gpu.weights
    assert 0.70 * 2 * q < saved < 0.76 * 2 * q  # 4-bit + a 16-bit scale and 4-bit zero per 128 weights
    assert all(e.variant.stage < 3 for e in a.estimates)


def test_params_near_a_card_keeps_its_shapes():
    a = _analysis({"name": "x", "params": 7_000_000_000})
    assert a.model.card["borrowed_from"] == "mistral-7b" and a.model.hidden_size == 4096
