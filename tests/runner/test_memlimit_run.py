"""--memory-limit on a real two-rank run: a micro batch the limit cannot hold ends in an ``oom``
error (exit 1, every rank stopped, the cgroups gone); a limit that holds trains, and every step
and the end report peak memory per rank and step wall times."""

from __future__ import annotations

import time

import pytest

from zerowizard.runner import memlimit

from .conftest import FAST, assert_no_orphans, check_ok, events, run_zw, spec_json

pytestmark = [
    pytest.mark.slow,  # real training: the CI tier, not the edit loop
    pytest.mark.skipif(memlimit.cpu_support() is not None, reason="no writable cgroup v1 memory controller"),
]

# packed 512-token sequences, 16 per micro batch: ~1 GiB per rank at the peak without a limit
HEAVY = """\
model: tiny-llama
method: full
hardware: {gpu: cpu, gpus_per_node: 2}
batch: {micro_batch: 16, grad_accum: 1, seq_len: 512, grad_checkpointing: false}
deepspeed: deepspeed_zero2
data: {packing: true}
train: {max_steps: 2, save_steps: 0, logging_steps: 1}
"""


def _leftover_cgroups(workdir) -> list:
    """This run's cgroups still present (none once the launcher has returned)."""
    token = spec_json(workdir)["memory_limit"]["token"]
    base = memlimit.own_cgroup_v1()
    return sorted(p.name for p in base.glob(f"zerowizard-{token}-*")) if base else []


def test_a_micro_batch_over_the_limit_ends_in_oom(tmp_path, workdir):
    plan = tmp_path / "heavy.yaml"
    plan.write_text(HEAVY)
    t0 = time.time()
    res = run_zw(tmp_path, "--plan", plan, "--memory-limit", "0.7", "--on-oom", "stop", "--output", workdir)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    evs = events(workdir)
    ooms = [e for e in evs if e["event"] == "error" and e.get("kind") == "oom"]
    assert ooms, [e for e in evs if e["event"] == "error"]
    assert ooms[0]["rank"] in (0, 1) and "0.70 GiB" in ooms[0]["error"]
    assert "out of memory" in res.stdout
    assert evs[-1]["event"] == "end" and evs[-1]["status"] == "failed"
    assert not [e for e in evs if e["event"] == "step"]  # it never got through a step
    assert_no_orphans(workdir)
    assert _leftover_cgroups(workdir) == []
    assert time.time() - t0 < 200


def test_a_limit_that_holds_trains_and_reports_peaks_and_step_times(tmp_path, workdir):
    res = run_zw(tmp_path, *FAST, "--max-steps", "3", "--memory-limit", "2", "--output", workdir)
    evs = check_ok(res, workdir)
    steps = [e for e in evs if e["event"] == "step"]
    assert [len(e["step_times_s"]) for e in steps] == [1, 1, 1]
    for e in steps:
        assert e["memory_kind"] == "rss" and e["peak_kind"] == "rss_peak"
        assert all(0 < t < 60 for t in e["step_times_s"])
    end = evs[-1]
    assert end["steps_timed"] == 3 and 0 < end["step_s_median"] < 60 and end["step_s_first"] > 0
    peaks = end["peak_bytes_per_rank"]
    assert len(peaks) == 2 and all(0.3 * 2**30 < p < 2 * 2**30 for p in peaks), peaks
    assert [d["rss_peak"] for d in end["memory_detail"]] == peaks
    assert _leftover_cgroups(workdir) == []
