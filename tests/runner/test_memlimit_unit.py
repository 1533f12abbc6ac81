"""--memory-limit without training: the verdicts, the flag's checks, and a real kernel OOM kill
inside a real per-rank cgroup (a small Python child that allocates past its limit)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zerowizard.core.validation import InputError
from zerowizard.runner import memlimit

from .conftest import run_env, zw_cmd

needs_cgroup = pytest.mark.skipif(memlimit.cpu_support() is not None, reason="no writable cgroup v1 memory controller")


def test_error_kind_names_oom_for_torch_and_allocator_failures():
    import torch

    assert memlimit.error_kind(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "oom"
    assert memlimit.error_kind(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried")) == "oom"
    assert memlimit.error_kind(MemoryError()) == "oom"
    try:  # wrapped by a library: the cause decides
        try:
            raise torch.OutOfMemoryError("CUDA out of memory")
        except torch.OutOfMemoryError as exc:
            raise RuntimeError("engine step failed") from exc
    except RuntimeError as outer:
        assert memlimit.error_kind(outer) == "oom"
    assert memlimit.error_kind(RuntimeError("injected crash on rank 1")) == "crash"
    assert memlimit.error_kind(ValueError("bad shape")) == "crash"


@pytest.mark.parametrize("text", ["0", "-1", "abc", "nan", "inf", ""])
def test_limit_spec_refuses_bad_values(text):
    with pytest.raises(InputError, match="--memory-limit"):
        memlimit.limit_spec(text, "cuda")


def test_limit_spec_in_bytes():
    spec = memlimit.limit_spec("1.5", "cuda")
    assert spec["bytes"] == int(1.5 * 2**30) and spec["gib"] == 1.5 and len(spec["token"]) == 10
    assert memlimit.limit_spec(None, "cpu") is None


def test_bad_memory_limit_exits_2_before_anything_starts(tmp_path):
    res = subprocess.run(
        zw_cmd("--memory-limit", "lots", "--gpus", "2"), cwd=tmp_path, env=run_env(), capture_output=True, text=True
    )
    assert res.returncode == 2
    assert res.stderr.startswith("zerowizard: error: --memory-limit:") and "Traceback" not in res.stderr
    assert not (tmp_path / "work_dirs").exists()


def test_measure_on_the_cpu_reads_the_resident_set():
    m = memlimit.measure("cpu")
    assert 0 < m["rss"] <= m["rss_peak"]
    assert memlimit.peak_bytes(m, "cpu") == m["rss_peak"] and memlimit.current_bytes(m, "cpu") == m["rss"]
    assert memlimit.PEAK_KIND == {"cpu": "rss_peak", "cuda": "cuda_max_reserved"}


CHILD = r"""
import json, sys
from pathlib import Path
from zerowizard.runner import memlimit
workdir, limit = Path(sys.argv[1]), int(sys.argv[2])
rec = memlimit.enter_cpu_limit(limit, "unittest01", 1, workdir)
print(json.dumps(rec), flush=True)
hold = [bytearray(8 * 2**20) for _ in range(200)]  # 1.6 GiB: far past the limit
print("survived", flush=True)
"""


@needs_cgroup
def test_a_rank_over_its_cgroup_limit_is_killed_and_reported_as_oom(tmp_path):
    (tmp_path / "runner.json").write_text(json.dumps({"memory_limit": {"bytes": 1, "token": "unittest01"}}))
    limit = 160 * 2**20
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(limit)],
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == -9, (res.returncode, res.stdout, res.stderr)  # SIGKILL from the OOM killer
    assert "survived" not in res.stdout
    rec = json.loads(res.stdout.splitlines()[0])
    assert rec["limit"] == limit and 0 < rec["cgroup_limit"] < limit  # minus what it already held
    group = Path(rec["path"])
    assert group.is_dir()
    err = memlimit.report_oom(tmp_path)
    assert err["event"] == "error" and err["kind"] == "oom" and err["rank"] == 1
    assert "0.16 GiB" in err["error"] and err["limit_bytes"] == limit
    line = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])
    assert line["kind"] == "oom" and line["source"] == "launcher"
    memlimit.cleanup(tmp_path)
    assert not group.exists()


@needs_cgroup
def test_a_stale_launch_is_not_read(tmp_path):
    """Records of another launch (another token) in the same folder are ignored."""
    (tmp_path / ".mem").mkdir()
    (tmp_path / ".mem" / "cgroup-rank0.json").write_text(
        json.dumps({"rank": 0, "host": "x", "path": "/nonexistent", "token": "old", "limit": 1})
    )
    (tmp_path / "runner.json").write_text(json.dumps({"memory_limit": {"bytes": 1, "token": "new"}}))
    assert memlimit.oom_killed(tmp_path) == [] and memlimit.report_oom(tmp_path) is None
