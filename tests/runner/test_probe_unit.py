"""The probe without training: which candidates, their predictions, bad options, the verdicts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zerowizard.core.memory import Variant
from zerowizard.core.plan import plan_from_dict
from zerowizard.core.validation import InputError
from zerowizard.runner.events import EventWriter
from zerowizard.runner.probe import CandidateResult, pick_winner
from zerowizard.runner.probe_candidates import AUTO_MAX, candidates, micro_batches, parse_list
from zerowizard.runner.probe_measure import Measured, measure_run

from .conftest import run_env

TINY = {"model": "tiny-llama", "hardware": {"gpu": "cpu", "gpus_per_node": 2}, "batch": {"micro_batch": 4}}


def test_micro_batches_halve_exactly_then_one():
    assert micro_batches(16) == [16, 8, 4, 2, 1]
    assert micro_batches(6) == [6, 3, 1]
    assert micro_batches(1) == [1]


def test_list_grammar():
    plan = plan_from_dict(TINY)
    got = parse_list("z1, z3+opt+param@2 ,deepspeed_zero2_offload@*,z3+nvme@1", plan)
    assert got == [
        (Variant(1), 4),
        (Variant(3, "cpu", "cpu"), 2),
        (Variant(2, "cpu"), 4),
        (Variant(2, "cpu"), 2),
        (Variant(2, "cpu"), 1),
        (Variant(3, "nvme", "nvme"), 1),
    ]


@pytest.mark.parametrize("bad", ["z4", "zero", "z2@3", "z2@0", "z2@x", "deepspeed_zero9"])
def test_list_refuses_bad_items(bad):
    with pytest.raises(InputError, match="--candidates"):
        parse_list(bad, plan_from_dict(TINY))


def test_candidates_keep_the_global_batch_and_carry_predictions():
    plan = plan_from_dict({**TINY, "batch": {"micro_batch": 4, "grad_accum": 2}})
    every = candidates(plan, "all")
    assert len(every) == 8 * 3  # 8 variants (no NVMe on the CPU) x micro batches 4, 2, 1
    for c in every:
        assert c.micro_batch * c.grad_accum == 8
        assert c.plan.zero.stage == c.variant.stage and c.plan.batch.micro_batch == c.micro_batch
        assert c.predicted is not None and c.predicted.variant == c.variant and c.predicted.per_gpu.total > 0
    smaller = {c.micro_batch: c.predicted.per_gpu.total for c in every if c.variant == Variant(2)}
    assert smaller[4] > smaller[2] > smaller[1]  # activations shrink with the micro batch


def test_auto_keeps_a_few_that_may_fit_fastest_first():
    plan = plan_from_dict(TINY)
    auto = candidates(plan, "auto")
    assert 1 <= len(auto) <= AUTO_MAX
    assert all(c.micro_batch == 4 for c in auto)  # everything fits: the plan's micro batch
    # the time model's fastest: on the CPU accelerator offload costs next to nothing (one memory) and
    # ZeRO-3's per-module hooks the most (measured: benchmarks/speed.py, docs/speed-model.md)
    assert all(c.variant.stage < 3 for c in auto)
    steps = [c.predicted_step_s for c in auto]
    assert steps == sorted(steps)
    lim = int(0.6 * 2**30)  # near the process baseline: only smaller micro batches may fit
    tight = candidates(plan, "auto", limit_bytes=lim)
    assert tight and all(c.predicted.per_gpu.total <= lim * 1.1 and c.micro_batch < 4 for c in tight)
    hopeless = candidates(plan, "auto", limit_bytes=int(0.3 * 2**30))  # nothing may fit: the two smallest
    every = sorted(c.predicted.per_gpu.total for c in candidates(plan, "all"))
    assert sorted(c.predicted.per_gpu.total for c in hopeless) == every[:2]


def test_qlora_never_probes_zero3():
    plan = plan_from_dict({**TINY, "method": "qlora"})
    assert all(c.variant.stage < 3 for c in candidates(plan, "all"))


def _result(status: str, step_s: float | None, fits: bool) -> CandidateResult:
    plan = plan_from_dict(TINY)
    c = candidates(plan, "z2")[0]
    r = CandidateResult(c, status, None, Measured(step_s=step_s), "", 0)
    r.fits = fits
    return r


def test_winner_is_the_fastest_that_fits():
    results = [
        _result("ok", 0.5, True),
        _result("ok", 0.2, False),
        _result("oom", None, False),
        _result("ok", 0.3, True),
    ]
    assert pick_winner(results) == 3
    assert pick_winner([_result("oom", None, False)]) is None


def test_an_oom_anywhere_decides_the_status(tmp_path):
    """The OOM-killed rank writes nothing; the other rank's error on the closed connection comes
    first in the file, the launcher's oom error after it: the candidate is an oom."""
    ev = EventWriter(tmp_path / "events.jsonl", source="rank0")
    ev.emit("start", world_size=2, setup_s=3.0)
    ev.emit("error", rank=0, error="RuntimeError: Connection closed by peer", kind="crash")
    EventWriter(tmp_path / "events.jsonl", source="launcher").emit("error", rank=1, kind="oom", error="out of memory")
    status, reason, m = measure_run(tmp_path, 1, warmup=1)
    assert (status, reason, m.step_s) == ("oom", "out of memory", None)


def _probe(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "zerowizard", "probe", *args],
        cwd=tmp_path,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--candidates", "z7"], "--candidates"),
        (["--steps", "0"], "--steps"),
        (["--warmup", "nan"], "--warmup"),
        (["--memory-limit", "-1"], "--memory-limit"),
        (["--headroom", "2"], "--headroom"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_run_nothing(tmp_path, args, flag):
    res = _probe(tmp_path, "--gpus", "2", *args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"zerowizard: error: {flag}:"), res.stderr
    assert "probe 1/" not in res.stderr and not list(tmp_path.iterdir())


def test_help_has_examples(tmp_path):
    res = _probe(tmp_path, "--help")
    assert res.returncode == 0 and "examples:" in res.stdout and "--apply" in res.stdout


def test_probe_module_imports_no_torch():
    code = (
        "import sys, json; import zerowizard.runner.probe, zerowizard.probecmd, zerowizard.probeprint; "
        "print(json.dumps([m for m in ('torch', 'deepspeed', 'transformers') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=run_env(), capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == [], out.stderr
