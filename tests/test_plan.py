import pytest

from zerowizard.core.plan import Plan, PlanError, dump_plan, load_plan, parse_count, plan_from_dict, update


def test_defaults_and_short_forms():
    p = plan_from_dict({"model": "llama-3-8b", "method": "lora"})
    assert p.model.name == "llama-3-8b" and p.method.type == "lora"
    assert p.deepspeed == "deepspeed_zero2" and p.precision == "auto"


def test_every_error_reported_together_with_did_you_mean():
    with pytest.raises(PlanError) as exc:
        plan_from_dict(
            {
                "batch": {"micro_bach": 2, "seq_len": -5, "grad_accum": "many"},
                "methd": {"type": "lora"},
                "precision": "bf61",
                "zero": {"stage": 7, "offload_param": "gpu"},
            }
        )
    errs = exc.value.errors
    text = "\n".join(errs)
    assert "batch.micro_bach: unknown key; did you mean 'micro_batch'?" in text
    assert "batch.seq_len: -5 is below the minimum 1" in text
    assert "batch.grad_accum: expected a whole number" in text
    assert "methd: unknown key; did you mean 'method'?" in text
    assert "precision: 'bf61' is not valid; did you mean 'bf16'?" in text
    assert "zero.stage: 7 is not a ZeRO stage" in text
    assert "zero.offload_param: 'gpu' is not valid" in text
    assert len(errs) == 7


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"batch": {"micro_batch": 0}}, "batch.micro_batch: 0 is below the minimum 1"),
        ({"batch": {"grad_checkpointing": "yes"}}, "expected true or false"),
        ({"hardware": {"nodes": 1.5}}, "hardware.nodes: expected a whole number"),
        ({"max_grad_norm": -1}, "max_grad_norm: -1.0 is below the minimum 0"),
        ({"batch": []}, "batch: expected a mapping"),
        (["not", "a", "mapping"], "plan: expected a mapping"),
        ({"method": {"target_modules": []}}, "expected a list of 1 to 1000 module names"),
    ],
)
def test_wrong_types_and_ranges(data, needle):
    with pytest.raises(PlanError) as exc:
        plan_from_dict(data)
    assert any(needle in e for e in exc.value.errors), exc.value.errors


def test_yaml_roundtrip(tmp_path):
    p = update(Plan(), "batch", micro_batch=3)
    path = tmp_path / "p.yaml"
    path.write_text(dump_plan(p))
    assert load_plan(path) == p


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch: {micro_batch: 2\n  seq_len: [\n")
    with pytest.raises(PlanError, match="not valid YAML at line"):
        load_plan(bad)
    with pytest.raises(PlanError, match="no such file"):
        load_plan(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "text, n",
    [("7B", 7_000_000_000), ("350M", 350_000_000), ("1.5e9", 1_500_000_000), ("70b", 70_000_000_000), (1234, 1234)],
)
def test_parse_count(text, n):
    assert parse_count(text) == n


@pytest.mark.parametrize("text", ["abc", "-7B", "0"])
def test_parse_count_rejects(text):
    with pytest.raises(ValueError):
        parse_count(text)
