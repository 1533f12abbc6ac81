"""A real run feeds the time model: predicted tokens/s in the start event and the progress lines,
the measured step time in the calibration store, and the next estimate calibrated by it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import FAST, check_ok, run_env, run_zw

pytestmark = pytest.mark.slow  # real training


def test_a_run_calibrates_the_next_estimate(tmp_path, workdir):
    store = tmp_path / "calibration"
    env = run_env(ZEROWIZARD_CALIBRATION=store)
    args = [a if a != "4" else "7" for a in FAST]  # enough steps past the warm-up to measure
    res = run_zw(tmp_path, *args, "--output", workdir, env=env)
    evs = check_ok(res, workdir)
    start = evs[0]
    assert start["predicted_step_s"] > 0 and start["predicted_tokens_per_s"] > 0
    assert "(predicted " in res.stdout and "recorded for later estimates" in res.stdout
    spec = json.loads((workdir / "runner.json").read_text())
    assert spec["formula_step_s"] > 0 and spec["predicted_source"]
    files = list(store.glob("*--cpu.json"))
    assert len(files) == 1
    run = json.loads(files[0].read_text())["runs"][-1]
    assert run["variant"] == "2/none/none" and run["world_size"] == 2
    assert run["measured_step_s"] > 0 and len(run["peak_memory_bytes"]) == 2 and all(run["peak_memory_bytes"])
    plan_flags = ["--seq-len", "96", "--micro-batch", "2", "--no-grad-checkpointing", "--gpus", "2"]
    est = subprocess.run(
        [sys.executable, "-m", "zerowizard", "estimate", "--json", *plan_flags],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert est.returncode == 0, est.stderr
    times = [
        v["time"] for v in json.loads(est.stdout)["variants"] if v["stage"] == 2 and v["offload_optimizer"] == "none"
    ]
    assert times[0]["source"] == "calibrated from 1 run on this machine"
