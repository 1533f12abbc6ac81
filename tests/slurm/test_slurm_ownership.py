"""Under `srun ... --launcher slurm` each task's `zerowizard` launcher owns its rank: kill -9 of
the launchers mid-run leaves no rank behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest

from .conftest import FAST, RUN_TIMEOUT, losses, zw_env

pytestmark = pytest.mark.slow  # real training: the CI tier, not the edit loop


def _procs(workdir, needle: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(workdir) in cmd and needle in cmd and not cmd.startswith("srun"):
            out.append(p)
    return out


def test_kill_9_of_the_task_launchers_ends_their_ranks(slurm_cluster, job_name, tmp_path):
    workdir = tmp_path / "run"
    zw = ["zerowizard", "run", "--headless", "--launcher", "slurm", *FAST, "--max-steps", "100000"]
    srun = subprocess.Popen(
        ["srun", "-N1", "-n2", f"--job-name={job_name}", *zw, "--output", str(workdir)],
        cwd=tmp_path,
        env=zw_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + RUN_TIMEOUT
        while not losses(workdir):
            assert time.time() < deadline and srun.poll() is None, "training never started"
            time.sleep(0.3)
        launchers = _procs(workdir, "--launcher slurm")
        assert len(launchers) == 2 and len(_procs(workdir, "zerowizard.runner.train")) == 2
        for p in launchers:
            os.kill(p.pid, signal.SIGKILL)
        t0 = time.time()
        while _procs(workdir, "zerowizard.runner.train") and time.time() - t0 < 10:
            time.sleep(0.1)
        assert not _procs(workdir, "zerowizard.runner.train"), "a rank outlived its launcher by 10 s"
    finally:
        if srun.poll() is None:
            srun.terminate()
        srun.wait(timeout=60)
