"""Disk faults during the run, on a small tmpfs: the disk fills up, or the checkpoint folder turns
read-only, between two checkpoints. One line naming the path, the last complete checkpoint kept, exit 1, no traceback,
and the event stream ends with `error` then `end` (or stderr says it cannot be written)."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import FAST, assert_no_orphans, events, fill, run_env, zw_cmd

pytestmark = pytest.mark.slow  # real training: the CI tier, not the edit loop


def run_with_fault(tmp_path, workdir, hold: str, fault, *args: str) -> tuple[int, str, str]:
    """A run whose ranks wait at ``hold`` (a step, or 'end') until ``fault()`` has broken the disk,
    after the first checkpoint: (exit code, stdout, stderr)."""
    from .test_ownership import SETUP_S, wait_for

    release = tmp_path / "release"
    proc = subprocess.Popen(
        zw_cmd(*FAST, *args, "--output", str(workdir)),
        cwd=tmp_path,
        env=run_env(ZEROWIZARD_TEST_HOLD=f"{hold}:{release}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: any(e["event"] == "checkpoint" for e in events(workdir)), SETUP_S)
        fault()
        release.touch()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_disk_fault_during_the_run(tmp_path, mounts, fault):
    point = mounts.tmpfs("128m")
    workdir = point / "run"

    def break_disk() -> None:
        fill(point) if fault == "full" else mounts.read_only(workdir / "checkpoints")

    # the ranks wait after step 3 for the fault
    rc, out, err = run_with_fault(tmp_path, workdir, "3", break_disk, "--max-steps", "6", "--save-steps", "2")
    assert rc == 1, out[-3000:] + err[-3000:]
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.startswith("zerowizard: error:")]
    what = "the disk is full" if fault == "full" else "read-only"
    assert len(lines) == 1 and str(workdir) in lines[0] and what in lines[0], err
    ckpt2 = workdir / "checkpoints" / "checkpoint-2"
    assert f"the last complete checkpoint is kept: {ckpt2}" in out
    assert (ckpt2 / "trainer_state.json").is_file()
    last = events(workdir)[-2:]  # on a full disk too: space for them was reserved beside the stream
    assert [e["event"] for e in last] == ["error", "end"] and last[0]["kind"] == "disk", last
    assert_no_orphans(workdir)


def test_a_full_disk_while_the_final_model_is_written(tmp_path, mounts):
    """The final model is committed as a checkpoint is: a disk that fills up while it is written
    leaves no half-written final/ (nor its partial folder), and the last checkpoint stays intact."""
    point = mounts.tmpfs("128m")
    workdir = point / "run"
    # the ranks wait after the last checkpoint, before final/ is written
    rc, out, err = run_with_fault(tmp_path, workdir, "end", lambda: fill(point))
    assert rc == 1, out[-3000:] + err[-3000:]
    assert "Traceback" not in out + err
    assert "the disk is full" in err, err
    assert not (workdir / "final").exists() and not (workdir / ".final.partial").exists()
    ckpt = workdir / "checkpoints" / "checkpoint-4"
    assert f"the last complete checkpoint is kept: {ckpt}" in out
    from zerowizard.runner import checkpoints

    assert checkpoints.check(ckpt) is None
    assert_no_orphans(workdir)
