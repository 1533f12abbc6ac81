"""ZeRO-3 at save time: the rule on stage3_gather_16bit_weights_on_model_save and the memory model's
consolidated 16-bit state dict on rank 0 (DeepSpeed's _zero3_consolidated_16bit_state_dict)."""

import json

from zerowizard.core.analysis import analyze
from zerowizard.core.dsrules import check_ds_config
from zerowizard.core.memory import Variant, _buffers, estimate_variant, save_gather_bytes
from zerowizard.core.plan import plan_from_dict

FIELD = "zero_optimization.stage3_gather_16bit_weights_on_model_save"


def _plan(**kw):
    data = {"model": {"name": "x", "params": 7_000_000_000}, "hardware": {"gpu": "A100-80GB", "gpus_per_node": 8}}
    data.update(kw)
    return plan_from_dict(data)


def test_json_without_the_gather_under_zero3_warns_and_says_what_the_runner_does():
    ps = check_ds_config({"zero_optimization": {"stage": 3}})
    hit = [p for p in ps if p.field == FIELD]
    assert len(hit) == 1 and hit[0].severity == "warning"
    assert "would be empty" in hit[0].message and "final/" in hit[0].fix and "export-model" in hit[0].fix
    for on in ({"stage3_gather_16bit_weights_on_model_save": True}, {"gather_16bit_weights_on_model_save": True}):
        assert not [p for p in check_ds_config({"zero_optimization": {"stage": 3, **on}}) if p.field == FIELD]
    assert not [p for p in check_ds_config({"zero_optimization": {"stage": 2}}) if p.field == FIELD]


def test_plan_that_raises_the_stage_to_3_gets_the_warning_once(tmp_path):
    ps = analyze(_plan(deepspeed="deepspeed_zero2", zero={"stage": 3})).problems
    assert [p.severity for p in ps if p.field == FIELD] == ["warning"]
    assert not [p for p in analyze(_plan(deepspeed="deepspeed_zero3")).problems if p.field == FIELD]
    custom = tmp_path / "ds.json"
    custom.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    ps = analyze(_plan(deepspeed=str(custom))).problems
    assert len([p for p in ps if p.field.endswith(FIELD)]) == 1  # not again from the base JSON check


def test_gather_is_the_whole_16_bit_model_for_full_and_the_adapters_for_lora():
    full = analyze(_plan(deepspeed="deepspeed_zero3")).workload
    lora = analyze(_plan(deepspeed="deepspeed_zero3", method={"type": "lora"})).workload
    assert save_gather_bytes(full, Variant(3)) == 2 * full.total_params
    assert save_gather_bytes(lora, Variant(3)) == 2 * lora.trainable_params < full.total_params
    assert save_gather_bytes(full, Variant(2)) == 0


def test_gather_lands_on_rank_0s_host_once_per_job_on_a_gpu():
    w = analyze(_plan(deepspeed="deepspeed_zero3")).workload
    with_save = estimate_variant(w, Variant(3))
    zero2 = estimate_variant(w, Variant(2))
    assert zero2.per_node_host == 8 * (1 * 1024**3)  # nothing offloaded: the per-rank process only
    assert with_save.per_node_host == 8 * (1 * 1024**3) + 2 * w.total_params
    # the GPU peak stays training's: one module at a time is gathered, activations are gone at save time
    assert with_save.per_gpu.buffers == _buffers(w, Variant(3))


def test_gather_raises_rank_0s_peak_on_the_cpu_accelerator_when_it_is_the_larger():
    """On the CPU the host is the device: rank 0 holds its partition of the model states plus the
    whole consolidated dict; with short sequences that exceeds the training peak."""
    plan = _plan(
        deepspeed="deepspeed_zero3",
        hardware={"gpu": "cpu", "gpus_per_node": 8, "host_ram_gb": 4096},
        batch={"micro_batch": 1, "seq_len": 64},
    )
    w = analyze(plan).workload
    e = estimate_variant(w, Variant(3))
    states = e.per_gpu.weights + e.per_gpu.grads + e.per_gpu.optimizer
    at_save = states + w.largest_layer_params * 2 + 2 * w.total_params
    assert e.per_gpu.total - e.per_gpu.overhead == at_save
    extra = e.per_gpu.buffers - _buffers(w, Variant(3))  # how far the save raised rank 0's peak
    assert extra > 0
    # the other seven ranks do not hold the dict: the node figure counts the excess once
    others = e.per_gpu.total - extra - int(extra * 0.05)  # their total (fragmentation margin 5%)
    assert abs(e.per_node_host - (e.per_gpu.total + 7 * others)) <= 7
