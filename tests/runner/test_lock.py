"""One run per output folder: a live run's lock refuses a second run (naming its pid), a dead
run's lock is taken over with a note, and the other launchers of the same job join."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from zerowizard.runner.lock import LOCK_NAME, LockError, RunLock

HOLD = (
    "import sys, time; from pathlib import Path; from zerowizard.runner.lock import RunLock;"
    "RunLock(Path(sys.argv[1]), sys.argv[2], True).acquire(); print('held', flush=True); time.sleep(600)"
)


@pytest.fixture
def holder(tmp_path):
    """A real process holding the lock of tmp_path/run for job 'job-a'."""
    from .conftest import run_env

    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run"), "job-a"], stdout=subprocess.PIPE, text=True, env=run_env()
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_run_refuses_a_second_naming_its_pid(tmp_path, holder):
    with pytest.raises(LockError, match=f"pid {holder.pid}"):
        RunLock(tmp_path / "run", "job-b", leads=True).acquire()


def test_a_dead_runs_lock_is_taken_over_with_a_note(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).is_file()  # SIGKILL left the file behind
    notes = []
    with RunLock(tmp_path / "run", "job-b", leads=True, notice=notes.append):
        assert str(os.getpid()) in (tmp_path / "run" / LOCK_NAME).read_text()
    assert len(notes) == 1 and f"pid {holder.pid}" in notes[0] and "no longer running" in notes[0]
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # released on exit


def test_other_nodes_of_the_same_job_join_and_other_jobs_are_refused(tmp_path, holder):
    RunLock(tmp_path / "run", "job-a", leads=False).acquire()  # node rank 1 of the same job
    with pytest.raises(LockError, match=f"pid {holder.pid}"):
        RunLock(tmp_path / "run", "job-b", leads=False).acquire()


def test_second_run_into_a_live_folder_exits_2(tmp_path, holder):
    from .conftest import run_zw

    t0 = time.time()
    res = run_zw(tmp_path, "--output", str(tmp_path / "run"), "--max-steps", "1")
    assert res.returncode == 2, res.stderr
    assert f"pid {holder.pid}" in res.stderr and "choose another --output" in res.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK_NAME]  # nothing else written
    assert time.time() - t0 < 60
