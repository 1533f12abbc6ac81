"""`zerowizard calibrate` for real: two gloo ranks measure this machine, the store keeps it, and the
next CPU estimate says it is calibrated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import run_env

pytestmark = pytest.mark.slow  # starts ranks, imports DeepSpeed, runs engines


def test_calibrate_measures_stores_and_is_used(tmp_path):
    env = run_env(ZEROWIZARD_CALIBRATION=tmp_path / "store")

    def zw(*args):
        cmd = [sys.executable, "-m", "zerowizard", *args]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    r = zw("calibrate", "--quick", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    bench = json.loads(r.stdout)
    for key in ("flops_per_rank", "attn_flops_per_rank", "adam_params_per_s", "copy_bytes_per_s"):
        assert bench[key] > 0, key
    assert set(bench["collectives"]) == {"all_reduce", "reduce", "all_gather", "reduce_scatter"}
    assert set(bench["engine_step_s"]) == {"0", "2", "3"} and bench["ranks"] == 2
    assert len(list((tmp_path / "store").glob("*--cpu.json"))) == 1
    est = zw("estimate", "--json", "--gpus", "2")
    assert est.returncode == 0, est.stderr
    v = json.loads(est.stdout)["variants"][0]
    assert v["time"]["source"] == "calibrated (this machine's benchmarks)"
    assert zw("calibrate", "--ranks", "0").returncode == 2
