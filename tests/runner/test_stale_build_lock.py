"""A JIT build killed part-way leaves torch's lock file; the next run must not wait on it forever."""

from __future__ import annotations

import subprocess
import sys
import time

from zerowizard.runner.phases import clear_stale_build_lock, lock_held_open


def test_a_lock_nobody_holds_is_removed(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")
    assert not lock_held_open(lock)
    assert clear_stale_build_lock(lock) and not lock.exists()
    assert not clear_stale_build_lock(lock)  # nothing left to remove


def test_a_lock_a_live_build_holds_stays(tmp_path):
    """torch's FileBaton keeps the descriptor open while it builds: that lock is left alone."""
    lock = tmp_path / "lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time; os.open(sys.argv[1], os.O_CREAT | os.O_EXCL); print('held', flush=True); "
            "time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert lock_held_open(lock)
        assert not clear_stale_build_lock(lock) and lock.exists()
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 5
    while lock_held_open(lock) and time.time() < deadline:
        time.sleep(0.05)
    assert clear_stale_build_lock(lock) and not lock.exists()
