"""The real command line in a subprocess: exit codes, one-line errors, no tracebacks, atomic export."""

import json

import pytest

ESTIMATE_KEYS = {"world_size", "gpus_per_node", "nodes", "gpu", "params", "variants", "recommended", "problems"}


def no_traceback(r):
    assert "Traceback" not in r.stderr + r.stdout, r.stderr


def test_help_has_examples(zw):
    r = zw("--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "--export" in r.stdout
    for cmd in ("estimate", "validate", "gpus", "presets", "run"):
        r = zw(cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)


def test_estimate_json_has_exactly_the_documented_shape(zw):
    r = zw("estimate", "--json", "--model", "llama-3-8b", "--method", "lora", "--gpus", "8xA100-80GB")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == ESTIMATE_KEYS
    assert out["world_size"] == 8 and out["gpu"] == {
        "name": "A100-80GB",
        "memory_bytes": 81920 * 1024**2,
        "compute_capability": "8.0",
    }
    assert out["params"] == {"total": 8_030_261_248, "trainable": 167_772_160}
    v = out["variants"][0]
    assert set(v) == {"stage", "offload_optimizer", "offload_param", "per_gpu", "per_node_host", "fits"}
    assert set(v["per_gpu"]) == {"weights", "grads", "optimizer", "activations", "buffers", "overhead", "total"}
    assert all(isinstance(x, int) for x in v["per_gpu"].values())
    assert out["recommended"] == {"stage": 1, "offload_optimizer": "none", "offload_param": "none"}
    assert set(out["problems"][0]) == {"severity", "field", "message", "fix"}


def test_estimate_table_and_default(zw):
    r = zw("estimate", "--gpus", "2xV100-32GB", "--model", "qwen2.5-7b", "--method", "qlora")
    assert r.returncode == 0 and "recommended" in r.stdout and "fp16" in r.stdout, r.stdout


def test_export_writes_json_and_reports_overrides(zw, tmp_path):
    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps({"train_micro_batch_size_per_gpu": 8, "zero_optimization": {"stage": 2}}))
    r = zw(
        "--export",
        "ds.json",
        "--deepspeed",
        custom,
        "--micro-batch",
        "2",
        "--gpus",
        "4xA100-80GB",
        "--model",
        "llama-3-8b",
        "--method",
        "lora",
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "ds.json").read_text())
    assert cfg["train_micro_batch_size_per_gpu"] == 2
    assert "train_micro_batch_size_per_gpu: 8 -> 2" in r.stdout


def test_export_with_errors_exits_2_and_leaves_the_file(zw, tmp_path):
    (tmp_path / "ds.json").write_text("old contents")
    r = zw(
        "--export",
        "ds.json",
        "--method",
        "qlora",
        "--deepspeed",
        "deepspeed_zero3",
        "--model",
        "llama-3-8b",
        "--gpus",
        "8xA100-80GB",
    )
    assert r.returncode == 2
    assert "QLoRA cannot be combined with ZeRO-3" in r.stderr
    assert (tmp_path / "ds.json").read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds.json"]
    no_traceback(r)


def test_save_plan_roundtrip(zw, tmp_path):
    r = zw("--save-plan", "p.yaml", "--model", "mistral-7b", "--gpus", "2xA10-24GB", "--method", "qlora")
    assert r.returncode == 0, r.stderr
    r = zw("estimate", "--json", "--plan", "p.yaml")
    out = json.loads(r.stdout)
    assert out["gpu"]["name"] == "A10-24GB" and out["world_size"] == 2
    r = zw("estimate", "--json", "--plan", "p.yaml", "--gpus", "4")  # a flag overrides the plan
    assert json.loads(r.stdout)["world_size"] == 4


@pytest.mark.parametrize(
    "args, needle",
    [
        (["estimate", "--micro-batch", "0"], "--micro-batch (batch.micro_batch): 0 is below the minimum 1"),
        (["estimate", "--micro-batch", "two"], "--micro-batch: expected a whole number"),
        (["estimate", "--gpus", "8xA100-90GB"], "--gpus: unknown GPU 'A100-90GB'; did you mean 'A100-80GB'?"),
        (["estimate", "--gpus", "0xA100-80GB"], "--gpus: '0xA100-80GB' asks for 0 GPUs"),
        (["estimate", "--method", "qlorra"], "did you mean 'qlora'?"),
        (["estimate", "--precision", "bf61"], "did you mean 'bf16'?"),
        (["estimate", "--params", "lots"], "--params: not a parameter count"),
        (["estimate", "--plan", "missing.yaml"], "no such file 'missing.yaml'"),
        (["estimate", "--recipe", "internlm2_chat_7b_qlora_oasst1"], "did you mean"),
        (["estimate", "--seq-len", "-1", "--grad-accum", "0"], "--seq-len"),
    ],
)
def test_bad_flags_exit_2_with_one_line_errors(zw, args, needle):
    r = zw(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr, r.stderr
    no_traceback(r)


def test_all_plan_errors_together(zw, tmp_path):
    (tmp_path / "p.yaml").write_text("batch:\n  micro_bach: 2\n  seq_len: 0\nzero:\n  stage: 9\n")
    r = zw("estimate", "--plan", "p.yaml")
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith("zerowizard: error:")]
    assert len(lines) == 3 and "did you mean 'micro_batch'" in r.stderr
    (tmp_path / "bad.yaml").write_text("batch: [unclosed\n")
    r = zw("estimate", "--plan", "bad.yaml")
    assert r.returncode == 2 and "not valid YAML at line" in r.stderr
    no_traceback(r)


def test_validate_json(zw, tmp_path):
    (tmp_path / "ds.json").write_text(
        json.dumps(
            {
                "train_batch_size": 64,
                "train_micro_batch_size_per_gpu": 4,
                "gradient_accumulation_steps": 4,
                "zero_optimisation": {"stage": 3},
                "fp16": {"enabled": True},
                "bf16": {"enabled": True},
            }
        )
    )
    r = zw("validate", "ds.json", "--gpus", "8xA100-80GB")
    assert r.returncode == 2
    assert "did you mean 'zero_optimization'?" in r.stdout
    assert "= 128" in r.stdout and "fp16 and bf16 are both enabled" in r.stdout
    assert "the plan would change" in r.stdout
    r = zw("validate", "ds.json", "--gpus", "8", "--json")
    out = json.loads(r.stdout)
    assert out["kind"] == "deepspeed" and any(p["field"] == "zero_optimisation" for p in out["problems"])


def test_validate_clean_json_warnings_only_exit_0(zw, tmp_path):
    (tmp_path / "ds.json").write_text(
        json.dumps({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2, "cpu_offload": True}})
    )
    r = zw("validate", "ds.json")
    assert r.returncode == 0, r.stdout
    assert "deprecated" in r.stdout


def test_validate_with_deepspeed_parser(zw, tmp_path):
    (tmp_path / "ds.json").write_text(
        json.dumps({"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": 2}})
    )
    r = zw("validate", "ds.json", "--deepspeed-check", "--gpus", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "own parser accepts the exported config" in r.stdout and "0." in r.stdout


def test_validate_plan_and_bad_files(zw, tmp_path):
    (tmp_path / "p.yaml").write_text(
        "model: llama-3-8b\nmethod: qlora\ndeepspeed: deepspeed_zero3\nhardware: {gpu: A100-80GB, gpus_per_node: 8}\n"
    )
    r = zw("validate", "p.yaml")
    assert r.returncode == 2 and "QLoRA cannot" in r.stdout
    (tmp_path / "broken.json").write_text('{"a": 1,,}')
    r = zw("validate", "broken.json")
    assert r.returncode == 2 and "not valid JSON at line 1" in r.stderr
    r = zw("validate", "nothing.json")
    assert r.returncode == 2 and "no such file" in r.stderr
    (tmp_path / "list.json").write_text("[1, 2]")
    r = zw("validate", "list.json")
    assert r.returncode == 2 and "JSON object" in r.stderr
    no_traceback(r)


def test_gpus_and_presets(zw):
    r = zw("gpus", "--json")
    assert r.returncode == 0
    out = json.loads(r.stdout)
    assert "gpus" in out and out["host_ram_bytes"] > 0
    r = zw("gpus", "--catalog", "--json")
    names = {g["name"] for g in json.loads(r.stdout)}
    assert {
        "A100-40GB",
        "A100-80GB",
        "H100-80GB",
        "H200-141GB",
        "L40S-48GB",
        "A10-24GB",
        "A6000-48GB",
        "RTX4090-24GB",
        "RTX3090-24GB",
        "V100-16GB",
        "V100-32GB",
        "T4-16GB",
    } <= names
    r = zw("presets")
    assert r.returncode == 0 and "deepspeed_zero3_offload" in r.stdout and "internlm2-chat-7b" in r.stdout


def test_export_into_missing_folder(zw):
    r = zw("--export", "no/such/dir/ds.json", "--model", "llama-3-8b", "--gpus", "8xA100-80GB", "--method", "lora")
    assert r.returncode == 2 and "does not exist" in r.stderr
    no_traceback(r)


def test_params_alone_borrows_the_nearest_architecture(zw):
    r = zw("estimate", "--json", "--params", "13B", "--gpus", "4xA100-40GB")
    out = json.loads(r.stdout)
    # A full 13B fine-tune does not fit 4 x 40 GB as planned: an error, so exit 2, estimate printed.
    assert r.returncode == 2 and out["params"]["total"] == 13_000_000_000
    assert any(p["severity"] == "error" for p in out["problems"])
    full = next(v for v in out["variants"] if v["stage"] == 3 and v["offload_optimizer"] == "none")
    assert full["per_gpu"]["weights"] + full["per_gpu"]["grads"] + full["per_gpu"]["optimizer"] == 16 * 13 * 10**9 // 4
