"""--on-oom retry (the default) for real: a micro batch that --memory-limit cannot hold runs out of
memory, the ranks restart with half the micro batch and twice the accumulation, and the run
completes with the same global batch; each change is an event and lands in plan.yaml."""

from __future__ import annotations

import pytest
import yaml

from zerowizard.runner import memlimit

from .conftest import assert_no_orphans, check_ok, events, run_zw

pytestmark = [
    pytest.mark.slow,  # real training: the CI tier, not the edit loop
    pytest.mark.skipif(memlimit.cpu_support() is not None, reason="no writable cgroup v1 memory controller"),
]

# measured on the CPU: peak resident set per rank 0.75 GiB at micro batch 8, 0.59 GiB at 2
PLAN = """\
model: tiny-llama
hardware: {gpu: cpu, gpus_per_node: 2}
batch: {micro_batch: 8, grad_accum: 1, seq_len: 512, grad_checkpointing: false}
data: {packing: true}
train: {max_steps: 2, save_steps: 0}
"""


def test_out_of_memory_retries_with_a_smaller_micro_batch_and_completes(tmp_path, workdir):
    (tmp_path / "plan.yaml").write_text(PLAN)
    res = run_zw(tmp_path, "--plan", "plan.yaml", "--memory-limit", "0.7", "--output", workdir)
    check_ok(res, workdir)
    evs = events(workdir)
    ooms = [e for e in evs if e["event"] == "error" and e.get("kind") == "oom"]
    fallbacks = [e for e in evs if e["event"] == "fallback"]
    assert ooms and len(fallbacks) == len(ooms)  # one change per out-of-memory error
    assert [f["global_batch"] for f in fallbacks] == [16] * len(fallbacks)  # 8 x 1 x 2 ranks, kept
    assert fallbacks[0]["change"] == "micro batch 8 -> 4, gradient accumulation 1 -> 2"
    assert "out of memory: attempt 2: micro batch 8 -> 4" in res.stdout
    batch = yaml.safe_load((workdir / "plan.yaml").read_text())["batch"]
    last_start = [e for e in evs if e["event"] == "start"][-1]
    assert batch == last_start["plan"]["batch"] and batch["micro_batch"] < 8
    assert batch["micro_batch"] * batch["grad_accum"] == 8
    assert last_start["attempt"] == len(fallbacks) + 1
    assert_no_orphans(workdir)
