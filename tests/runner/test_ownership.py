"""The launcher owns its ranks: kill -9 of `zerowizard` at start-up or mid-run leaves no process
of the run behind; while it runs, a second run into its folder is refused naming its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from .conftest import FAST, events, procs_mentioning, run_env, run_zw, zw_cmd

pytestmark = pytest.mark.slow  # real training: the CI tier, not the edit loop
SETUP_S = 400  # a loaded 2-core machine may take minutes to reach the first step


def wait_for(check, timeout: float, proc=None) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        assert proc is None or proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)


def assert_all_gone(workdir, within: float = 10.0) -> None:
    t0 = time.time()
    while procs_mentioning(str(workdir)) and time.time() - t0 < within:
        time.sleep(0.1)
    left = procs_mentioning(str(workdir))
    assert not left, f"left after {within}s: {[(p.pid, p.cmdline()[:4]) for p in left]}"


@pytest.mark.parametrize("when", ["start-up", "mid-run"])
def test_kill_9_of_the_launcher_ends_every_rank(tmp_path, workdir, when):
    cmd = zw_cmd(*FAST, "--max-steps", "100000", "--output", str(workdir))
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        if when == "start-up":  # the launcher, torchrun and both ranks are up; no step yet
            wait_for(lambda: len(procs_mentioning(str(workdir))) >= 4, SETUP_S, proc)
            assert not any(e["event"] == "step" for e in events(workdir))
        else:
            wait_for(lambda: any(e["event"] == "step" for e in events(workdir)), SETUP_S, proc)
            second = run_zw(tmp_path, *FAST, "--output", str(workdir))
            assert second.returncode == 2 and f"pid {proc.pid}" in second.stderr, second.stderr
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        assert_all_gone(workdir)
    finally:
        if proc.poll() is None:
            proc.kill()
