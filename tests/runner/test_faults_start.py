"""Disk and permission faults found before any rank starts: a read-only or full --output gives
one line naming the path, exit 1, no traceback."""

from __future__ import annotations

from .conftest import fill, run_zw


def _one_line_error(res, *needles):
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("zerowizard: error:")]
    assert len(errors) == 1 and all(n in errors[0] for n in needles), res.stderr


def test_read_only_output(tmp_path, mounts):
    point = mounts.tmpfs("1m")
    mounts.read_only(point)
    res = run_zw(tmp_path, "--output", str(point / "run"))
    _one_line_error(res, str(point / "run"), "read-only", "writable --output")
    assert "event stream" in res.stderr and "cannot be written" in res.stderr  # said on stderr instead


def test_full_output(tmp_path, mounts):
    point = mounts.tmpfs("1m")
    (point / "run").mkdir()
    fill(point)
    res = run_zw(tmp_path, "--output", str(point / "run"))
    _one_line_error(res, str(point / "run"), "the disk is full", "free some space")
