"""The time model: FLOP counts, DeepSpeed's collectives per stage, offload, the JSON, generic GPUs,
the GPU catalog, the calibration store (docs/speed-model.md)."""

import json
from pathlib import Path

import pytest

from zerowizard.core import calibration, gpus, speed
from zerowizard.core.analysis import analyze, estimate_json
from zerowizard.core.flops import flops_per_token
from zerowizard.core.hardware import find_gpu, match_nvml, parse_gpus_flag, parse_network
from zerowizard.core.memory import Variant
from zerowizard.core.modelcards import resolve_model
from zerowizard.core.plan import plan_from_dict

SEQ = 2048


def _analysis(**kw):
    data = {
        "model": "llama-3-8b",
        "method": {"type": "full"},
        "hardware": {"gpu": "A100-80GB", "gpus_per_node": 8, "host_ram_gb": 2048},
        "batch": {"micro_batch": 1, "seq_len": SEQ},
    }
    for k, v in kw.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    return analyze(plan_from_dict(data))


# -- FLOPs ---------------------------------------------------------------------------------------


def _matmul_params(spec):
    return spec.num_layers * spec.layer_linear_weights + spec.hidden_size * spec.vocab_size


def test_full_finetune_is_six_p_per_token_plus_attention():
    spec = resolve_model("llama-3-8b")
    f = flops_per_token(spec, "full", seq_len=SEQ, grad_checkpointing=False)
    attn = 2 * (SEQ + 1) * spec.num_heads * spec.head_dim  # QK^T + AV per token and layer, causal half
    assert spec.attention_flops_per_token(SEQ) == spec.num_layers * attn
    assert f.model == pytest.approx(6 * _matmul_params(spec) + 3 * spec.num_layers * attn)
    assert f.recompute == 0 and f.total == f.model
    # at a short sequence the attention term fades: 6 x (non-embedding params + LM head) x tokens
    short = flops_per_token(spec, "full", seq_len=16, grad_checkpointing=False)
    assert short.model == pytest.approx(6 * _matmul_params(spec), rel=1e-3)


def test_full_recompute_is_eight_p_for_the_layers():
    spec = resolve_model("llama-3-8b")
    f = flops_per_token(spec, "full", seq_len=16, grad_checkpointing=True)
    layers = spec.num_layers * spec.layer_linear_weights
    head = spec.hidden_size * spec.vocab_size
    assert f.total == pytest.approx(8 * layers + 6 * head, rel=1e-3)  # the LM head is not checkpointed
    assert f.model == pytest.approx(6 * (layers + head), rel=1e-3)  # MFU counts no recomputation


def test_lora_frozen_weights_get_no_weight_gradients():
    spec = resolve_model("llama-3-8b")
    full = flops_per_token(spec, "full", seq_len=SEQ, grad_checkpointing=False)
    lora = flops_per_token(spec, "lora", seq_len=SEQ, grad_checkpointing=False, lora_r=16)
    linear = 2 * spec.num_layers * spec.layer_linear_weights
    head = 2 * spec.hidden_size * spec.vocab_size
    adapters = 2 * 16 * spec.num_layers * sum(i + o for _, i, o, _ in spec.linear_layers())
    assert lora.forward == pytest.approx(full.forward + adapters)
    # frozen base and LM head: input gradients only (one forward's worth); adapters: both
    assert lora.backward == pytest.approx(full.backward - linear - head + 2 * adapters)
    qlora = flops_per_token(spec, "qlora", seq_len=SEQ, grad_checkpointing=False, lora_r=16)
    assert qlora.total == lora.total  # QLoRA computes in 16 bits; dequantising is memory traffic


def test_gqa_and_mlp_width_come_from_the_spec():
    spec = resolve_model("llama-3-8b")  # 8 kv heads of 32, MLP 14336
    per_layer = sum(i * o for _, i, o, _ in spec.linear_layers())
    h, kv = spec.hidden_size, spec.num_kv_heads * spec.head_dim
    assert per_layer == 2 * h * h + 2 * h * kv + 3 * h * spec.intermediate_size


# -- collectives -----------------------------------------------------------------------------------


def _job(a=1, n=8, t=1_000_000):
    from zerowizard.core.flops import Flops

    return speed.Job(
        flops=Flops(1.0, 2.0, 0.0, 3.0),
        tokens_per_micro=1,
        grad_accum=a,
        num_layers=1,
        total_params=t,
        trainable_params=t,
        trainable_tensors=10,
        quantized_params=0,
        gathered_params=t,
        gathered_modules=10,
        modules=20,
        precision="bf16",
        world_size=n,
        gpus_per_node=n,
        nodes=1,
        grad_checkpointing=False,
    )


def _summary(job, stage):
    return sorted((c.op, c.phase, c.times, c.bytes) for c in speed.collectives(job, Variant(stage)))


@pytest.mark.parametrize("accum", [1, 4])
def test_collectives_per_stage_and_accumulation(accum):
    job, t2 = _job(a=accum), 2_000_000  # bf16 bytes of a million parameters
    # ZeRO-0: one all-reduce at the accumulation boundary (engine.allreduce_gradients)
    assert _summary(job, 0) == [("all_reduce", "step", 1, t2)]
    # ZeRO-1: reduce to the owners at the boundary only, all-gather the updated partitions once
    assert _summary(job, 1) == [("all_gather", "step", 1, t2), ("reduce", "backward", 1, t2)]
    # ZeRO-2: the reduce runs every micro step
    assert _summary(job, 2) == [("all_gather", "step", 1, t2), ("reduce", "backward", accum, t2)]
    # ZeRO-3: parameters gathered in forward and again in backward, gradients reduce-scattered,
    # every micro step; nothing at the boundary
    assert _summary(job, 3) == [
        ("all_gather", "backward", accum, t2),
        ("all_gather", "forward", accum, t2),
        ("reduce_scatter", "backward", accum, t2),
    ]
    assert speed.collectives(_job(a=accum, n=1), Variant(3)) == []


def test_zero3_moves_one_and_a_half_times_the_data_parallel_volume():
    # the ZeRO paper: ZeRO-3's 3 x P (gather, gather, reduce-scatter) vs all-reduce's 2 x P
    job = _job(n=64)
    moved = {
        st: sum(c.times * speed._factor(c.op, 64) * c.bytes for c in speed.collectives(job, Variant(st)))
        for st in (0, 3)
    }
    assert moved[3] / moved[0] == pytest.approx(1.5)


def test_accumulation_costs_zero2_and_zero3_comm_but_not_zero1():
    a1, a8 = _analysis(), _analysis(batch={"grad_accum": 8})
    for st in (2, 3):
        assert a8.times[Variant(st)].comm_s >= a1.times[Variant(st)].comm_s
    v = Variant(1)
    assert a8.times[v].comm_s == pytest.approx(a1.times[v].comm_s)


def test_slow_network_across_nodes_slows_communication():
    fast = _analysis(hardware={"nodes": 4, "network_gbps": 3200}, batch={"grad_accum": 4})
    slow = _analysis(hardware={"nodes": 4, "network_gbps": 25}, batch={"grad_accum": 4})
    for v in (Variant(2), Variant(3)):
        assert slow.times[v].comm_s > 3 * fast.times[v].comm_s


# -- offload, recommendation ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["full", "lora"])
def test_offload_is_slower_than_no_offload_when_both_fit(method):
    a = _analysis(method={"type": method})
    for st in (1, 2, 3):
        on, off = a.times[Variant(st, "cpu")], a.times[Variant(st)]
        if any(e.variant == Variant(st) and e.fits for e in a.estimates):
            assert on.step_s > off.step_s and on.offload_s > 0 and off.offload_s == 0
    assert a.times[Variant(3, "cpu", "cpu")].step_s > a.times[Variant(3, "cpu")].step_s
    assert a.times[Variant(3, "nvme", "nvme")].step_s > a.times[Variant(3, "cpu", "cpu")].step_s


def test_full_offload_on_few_cores_is_many_times_slower():
    a = _analysis(hardware={"gpu": "H100-80GB", "cpu_cores": 8})
    assert a.times[Variant(2, "cpu")].step_s > 2 * a.times[Variant(2)].step_s


def test_recommended_is_the_fastest_that_fits_and_names_the_guides_choice():
    a = _analysis(model="qwen2.5-7b", hardware={"gpu": "RTX4090-24GB", "gpus_per_node": 4, "host_ram_gb": 256})
    fitting = [e for e in a.estimates if e.fits]
    best = min(a.times[e.variant].step_s for e in fitting)
    assert a.times[a.fastest.variant].step_s == best  # the fastest is the least step time, strictly
    assert a.times[a.recommended.variant].step_s <= best * 1.10
    assert a.lowest_fitting is not None
    if a.lowest_fitting.variant != a.recommended.variant:
        reason = a.recommendation_reason
        assert a.recommended.variant.label in reason and a.lowest_fitting.variant.label in reason
        assert "slower" in reason


def test_ties_go_to_the_guides_lowest_stage():
    a = _analysis(method={"type": "lora"})
    assert a.recommended.variant == Variant(1)  # ZeRO-0..3 within the tie band: the guide decides


# -- ETA, JSON, generic GPUs, catalog ---------------------------------------------------------------


def test_eta_and_gpu_hours_from_max_steps():
    a = _analysis(train={"max_steps": 1000})
    t = a.times[a.selected.variant]
    assert a.total_steps == 1000 and a.eta_s == pytest.approx(1000 * t.step_s)
    assert a.gpu_hours == pytest.approx(a.eta_s * 8 / 3600)
    hub = _analysis(data={"path": "tatsu-lab/alpaca"})
    assert hub.eta_s is None and hub.gpu_hours is None


def test_estimate_json_time_schema():
    out = json.loads(json.dumps(estimate_json(_analysis(train={"max_steps": 10}))))
    for v in out["variants"]:
        assert {"step_s", "tokens_per_s_per_gpu", "compute_s", "comm_s", "offload_s", "mfu"} <= set(v["time"])
        assert v["time"]["step_s"] > 0 and 0 < v["time"]["mfu"] < 1
        assert v["eta_s"] == pytest.approx(10 * v["time"]["step_s"], rel=1e-3)
    assert set(out["fastest"]) == set(out["recommended"]) == {"stage", "offload_optimizer", "offload_param"}
    assert out["eta_s"] > 0 and out["gpu_hours"] > 0 and out["total_steps"] == 10


def test_tokens_per_second_is_tokens_over_step_time():
    a = _analysis(batch={"micro_batch": 2, "grad_accum": 4})
    t = a.times[Variant(2)]
    assert t.tokens_per_s_per_gpu == pytest.approx(2 * 4 * SEQ / t.step_s)
    assert t.step_s == pytest.approx(t.compute_s + t.comm_s + t.offload_s + t.other_s)


def test_generic_gpu_capacity_only_with_assumed_compute():
    assert parse_gpus_flag("4x24GB") == (4, "24GB")
    a = _analysis(hardware={"gpu": "24GB", "gpus_per_node": 4})
    hw = a.hardware
    assert hw.source == "generic" and hw.memory_bytes == 24 * 2**30 and hw.gpu is gpus.GENERIC
    assert any("assumed" in n or "A10-class" in n for n in hw.notes) and hw.assumed
    assert a.times and a.times[Variant(2)].step_s > 0
    with pytest.raises(ValueError, match="24GB"):
        parse_gpus_flag("4xZ9000")


def test_generic_gpu_on_the_command_line(zw):
    r = zw("estimate", "--json", "--gpus", "2x24GB", "--model", "qwen2.5-0.5b", "--network", "400Gb")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["gpu"]["memory_bytes"] == 24 * 2**30 and out["variants"][0]["time"]["step_s"] > 0


def test_network_and_cores_parse():
    assert parse_network("400Gb") == 400 and parse_network("3.2Tb") == 3200 and parse_network("100Gbps") == 100
    with pytest.raises(ValueError):
        parse_network("fast")


def test_every_catalog_entry_is_complete():
    entries = gpus.raw_entries()
    assert len(entries) >= 30
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names)
    for e in entries:
        missing = [f for f in gpus.FIELDS if f not in e]
        assert not missing, (e["name"], missing)
        g = gpus.catalog()[e["name"]]
        assert g.memory_bytes > 2**30 and g.fp16_tflops > 0 and g.fp32_tflops > 0 and g.memory_gbs > 0
        assert g.link_gbs > 0 and g.pcie_gen in (3, 4, 5, 6) and len(g.source) > 10
        assert (g.bf16_tflops is None) == (g.compute_capability < (8, 0)), g.name
        for alias in (g.name, *g.aliases, *g.nvml):
            assert find_gpu(alias) is g, alias


@pytest.mark.parametrize(
    "nvml, name",
    [
        ("NVIDIA H100 80GB HBM3", "H100-80GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-PCIe-80GB"),
        ("NVIDIA GeForce RTX 4090", "RTX4090-24GB"),
        ("Tesla T4", "T4-16GB"),
        ("NVIDIA RTX A6000", "A6000-48GB"),
        ("NVIDIA L40S", "L40S-48GB"),
    ],
)
def test_nvml_names_resolve(nvml, name):
    assert match_nvml(nvml).name == name


def test_unlisted_nvml_name_falls_back_to_the_model_nearest_in_memory():
    assert match_nvml("NVIDIA H100 94GB HBM2e", 94 * 2**30).name == "H100-NVL-94GB"
    assert match_nvml("NVIDIA Z1", 10) is None


# -- calibration store ---------------------------------------------------------------------------


def test_runs_calibrate_later_estimates(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROWIZARD_CALIBRATION", str(tmp_path))
    calibration.invalidate()
    plan = {"model": "tiny-llama", "hardware": {"gpu": "cpu", "gpus_per_node": 2}}
    before = analyze(plan_from_dict(plan))
    v = before.selected.variant
    formula = before.times[v].step_s
    assert "calibrated from" not in before.times[v].source
    for _ in range(3):
        calibration.record_run(
            "cpu",
            {
                "variant": calibration.variant_key(v),
                "world_size": 2,
                "formula_step_s": formula,
                "measured_step_s": 2 * formula,
                "peak_memory_bytes": [1, 2],
            },
        )
    after = analyze(plan_from_dict(plan))
    assert after.times[v].step_s == pytest.approx(2 * formula, rel=1e-6)
    assert after.times[v].source == "calibrated from 3 runs on this machine"
    calibration.invalidate()


def test_a_run_on_other_tokens_than_predicted_does_not_calibrate(tmp_path, monkeypatch):
    """A recorded run whose tokens a step are far from its prediction's (a prediction made for other
    data) would skew every later estimate: the store ignores it, and the runner does not record it."""
    from zerowizard.runner.record import record

    monkeypatch.setenv("ZEROWIZARD_CALIBRATION", str(tmp_path / "store"))
    calibration.invalidate()
    plan = plan_from_dict({"model": "tiny-llama", "hardware": {"gpu": "cpu", "gpus_per_node": 2}})
    before = analyze(plan)
    v = before.selected.variant
    formula = before.times[v].step_s
    run = {"variant": calibration.variant_key(v), "world_size": 2, "formula_step_s": formula}
    calibration.record_run("cpu", {**run, "measured_step_s": formula / 5, "measured_tokens_per_step": 42.0,
                                   "predicted_tokens_per_step": 4096})  # fmt: skip
    calibration.invalidate()
    assert analyze(plan).times[v].step_s == pytest.approx(formula)  # ignored: the formula stands
    calibration.record_run("cpu", {**run, "measured_step_s": 2 * formula, "measured_tokens_per_step": 180.0,
                                   "predicted_tokens_per_step": 166})  # fmt: skip
    calibration.invalidate()
    assert analyze(plan).times[v].source == "calibrated from 1 run on this machine"

    def workdir(name: str, predicted_tokens: int) -> Path:
        d = tmp_path / name
        d.mkdir()
        spec = {"formula_step_s": formula, "predicted_step_s": formula, "predicted_tokens_per_step": predicted_tokens}
        (d / "runner.json").write_text(json.dumps(spec))
        steps = [{"event": "step", "step": k, "elapsed_s": 0.5 * k, "tokens_seen": 100 * k, "memory_bytes": [1, 2]}
                 for k in range(1, 8)]  # fmt: skip
        (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in steps))
        return d

    calibration.invalidate()
    assert record(workdir("other", 4096), before) is None  # 100 tokens a step against 4096 predicted
    assert record(workdir("same", 120), before) is not None  # within the token estimate: scaled by 1.2
    runs = json.loads(calibration.path_for("cpu").read_text())["runs"]
    assert len(runs) == 3 and runs[-1]["measured_step_s"] == pytest.approx(0.5 * 1.2)
    calibration.invalidate()


def test_the_store_is_read_once_per_process(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROWIZARD_CALIBRATION", str(tmp_path))
    calibration.invalidate()
    assert calibration.load("cpu") is None
    path = calibration.path_for("cpu")
    path.write_text(json.dumps({"version": 1, "bench": {"flops_per_rank": 1e9}, "runs": []}))
    assert calibration.load("cpu") is None  # cached: no second read
    calibration.invalidate()
    assert calibration.load("cpu").bench["flops_per_rank"] == 1e9
    path.write_text("{not json")
    calibration.invalidate()
    assert calibration.load("cpu") is None  # a broken file is no calibration, not a crash
    calibration.invalidate()


# -- the runner's side ----------------------------------------------------------------------------


def test_a_runs_events_give_its_step_time_and_peaks():
    from zerowizard.runner.record import measured

    events = [{"event": "start"}] + [
        {
            "event": "step",
            "step": s,
            "elapsed_s": 10.0 + 0.5 * s + (5.0 if s == 1 else 0.0),
            "tokens_seen": 1000 * s,
            "memory_bytes": [100 + s, 200 if s != 7 else 900],
        }
        for s in range(1, 11)
    ]
    got = measured(events)
    assert got["measured_step_s"] == pytest.approx(0.5)  # the warm-up steps are left out
    assert got["measured_tokens_per_step"] == 1000
    assert got["peak_memory_bytes"] == [110, 900]
    assert measured([{"event": "step", "step": 1, "elapsed_s": 1.0}]) is None


def test_headless_shows_predicted_beside_measured_tokens_per_second():
    import io

    from zerowizard.runner.headless import PlainPrinter

    out = io.StringIO()
    p = PlainPrinter(out)
    p.event({"event": "start", "world_size": 2, "predicted_tokens_per_s": 5000.0, "total_steps": 3})
    p.event({"event": "step", "step": 1, "total_steps": 3, "loss": 1.0, "tokens_per_s": 4200.0})
    lines = out.getvalue().splitlines()
    assert "5000 tok/s" in lines[0] and "tok/s 4200 (predicted 5000)" in lines[1]


def test_gpus_catalog_lists_the_time_models_figures(zw):
    r = zw("gpus", "--catalog", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) >= 30
    h100 = next(g for g in rows if g["name"] == "H100-80GB")
    assert h100["bf16_tflops"] == 989 and h100["interconnect"] == "nvlink4" and "NVIDIA H100 80GB HBM3" in h100["nvml"]
    table = zw("gpus", "--catalog")
    assert table.returncode == 0 and "nvlink4" in table.stdout and "TFLOPS" in table.stdout


def test_calibration_recovers_deepspeeds_own_overheads(tmp_path):
    """fit_engines: what real engines take beyond the model's prediction becomes per-step, per-hook
    and per-module time (here from engine times built with known overheads)."""
    from zerowizard.core.analysis import job_for
    from zerowizard.core.calibration import Calibration
    from zerowizard.core.rates import cpu_rates
    from zerowizard.runner import calibrate

    model_dir = calibrate.write_model_dir(tmp_path)
    bench = {"flops_per_rank": 1e11, "attn_flops_per_rank": 1e10, "elem_s": 1e-9, "layer_s": 1e-3, "micro_s": 1e-2}
    truth = {"step_s": 0.02, "hook_s": 3e-5, "module_s": 2e-4}
    engines = {}
    for stage in calibrate.ENGINE_STAGES:
        a = analyze(calibrate.engine_plan(model_dir, stage, 2))
        job = job_for(a.plan, a.model, a.hardware, "bf16", a.zero, a.ds.config)
        rates = cpu_rates(a.hardware, "bf16", Calibration("m", "cpu", {**bench, **truth}))
        engines[str(stage)] = speed.step_time(job, Variant(stage), rates).step_s
    got = calibrate.fit_engines(bench, engines, model_dir, 2)
    for key, value in truth.items():
        assert got[key] == pytest.approx(value, rel=1e-3), key


def test_freeze_tuning_backpropagates_only_through_the_trained_layers():
    spec = resolve_model("llama-3-8b")
    full = flops_per_token(spec, "full", seq_len=SEQ, grad_checkpointing=True)
    frz = flops_per_token(spec, "freeze", seq_len=SEQ, grad_checkpointing=True, freeze_layers=2)
    share = 2 / spec.num_layers
    layers = spec.num_layers * spec.layer_linear_weights
    attn = spec.attention_flops_per_token(SEQ)
    head = spec.hidden_size * spec.vocab_size
    # input gradients through the top two layers and the head, weight gradients for those two layers
    assert frz.backward == pytest.approx(share * (2 * layers + 2 * attn) + 2 * head + 2 * share * layers, rel=1e-3)
    assert frz.recompute == pytest.approx(share * full.recompute, rel=1e-6)
    assert frz.forward == full.forward


def test_moe_counts_the_experts_a_token_reaches():
    spec = resolve_model("mixtral-8x7b")
    f = flops_per_token(spec, "full", seq_len=16, grad_checkpointing=False)
    assert spec.active_params < spec.total_params / 2
    assert f.model == pytest.approx(6 * spec.matmul_params_per_token, rel=1e-2)


def test_memory_to_spare_is_preferred_only_when_about_as_fast():
    from zerowizard.core.analysis import fastest_fitting, recommend
    from zerowizard.core.memory import Breakdown, VariantEstimate

    hw = _analysis().hardware  # 80 GB A100s
    gib = 2**30

    def est(v, total_gib):
        return VariantEstimate(v, Breakdown(weights=int(total_gib * gib)), 0, True, True)

    def t(s):
        return speed.StepTime(s, s, 0, 0, 1 / s, None, "formula")

    tight, roomy = est(Variant(2), 79), est(Variant(3), 40)  # 79 of 80: under the 5% margin
    assert recommend((tight, roomy), {Variant(2): t(1.0), Variant(3): t(2.0)}, hw, False) is tight
    assert recommend((tight, roomy), {Variant(2): t(1.0), Variant(3): t(1.05)}, hw, False) is roomy
    # the fastest is the fastest, whatever the margin
    assert fastest_fitting((tight, roomy), {Variant(2): t(1.0), Variant(3): t(1.05)}, False) is tight


def test_a_tie_names_the_fastest_too():
    a = _analysis(method={"type": "lora"})
    if a.fastest.variant != a.recommended.variant:
        reason = a.recommendation_reason
        assert a.fastest.variant.label in reason and "within 10%" in reason


# -- the data's real lengths ---------------------------------------------------------------------


def _data_file(tmp_path, chars: list[int]):
    import json

    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"instruction": "x" * n, "output": ""} for n in chars]))
    return str(path)


def test_a_micro_batch_is_padded_to_its_longest_example_not_to_seq_len(tmp_path):
    from zerowizard.core import eta

    path = _data_file(tmp_path, [400] * 9 + [4000])  # ~108 tokens, one of ~1008
    one = plan_from_dict({"data": {"path": path}, "batch": {"micro_batch": 1, "seq_len": 2048}})
    padded, real = eta.batch_tokens(one)
    assert padded == pytest.approx(real) == pytest.approx((9 * 108 + 1008) / 10)  # one example: no padding
    four = plan_from_dict({"data": {"path": path}, "batch": {"micro_batch": 4, "seq_len": 2048}})
    padded4, real4 = eta.batch_tokens(four)
    assert real4 == pytest.approx(4 * real)
    p_long = 1 - 0.9**4  # the chance that a batch of four holds the long example
    assert padded4 == pytest.approx(4 * (p_long * 1008 + (1 - p_long) * 108))
    capped = plan_from_dict({"data": {"path": path}, "batch": {"micro_batch": 1, "seq_len": 256}})
    assert eta.batch_tokens(capped)[1] == pytest.approx((9 * 108 + 256) / 10)  # truncated at seq_len
    packed = plan_from_dict({"data": {"path": path, "packing": True}})
    assert eta.batch_tokens(packed) is None  # packing fills every sequence
    assert eta.batch_tokens(plan_from_dict({})) is None  # no data named: planned at the full length


def test_short_examples_step_faster_and_count_only_real_tokens(tmp_path):
    full = _analysis()
    short = _analysis(data={"path": _data_file(tmp_path, [400] * 10)})
    t_full, t_short = full.times[Variant(2)], short.times[Variant(2)]
    assert t_short.step_s < t_full.step_s / 4  # ~108 tokens against SEQ per micro batch
    tokens = 8 * 108  # eight ranks, one example each, no padding
    assert t_short.tokens_per_s_per_gpu * t_short.step_s * 8 == pytest.approx(tokens, rel=0.01)
