import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# pytest rewrites every test module for its assertions and caches the result as bytecode; under
# PYTHONDONTWRITEBYTECODE (set in many containers) each xdist worker redid that on every run (~1 s)
sys.dont_write_bytecode = False


@pytest.fixture(autouse=True, scope="session")
def _own_calibration_store(tmp_path_factory):
    """Estimates read this machine's calibration store; the tests get an empty one of their own
    (so a `zerowizard calibrate` or a finished run on the machine cannot change their figures)."""
    os.environ["ZEROWIZARD_CALIBRATION"] = str(tmp_path_factory.mktemp("calibration"))
    from zerowizard.core import calibration

    calibration.invalidate()
    yield


@pytest.fixture
def zw(tmp_path):
    """Run the real `zerowizard` CLI in a subprocess (cwd: a temp folder)."""

    def run(*args, cwd=None, env=None):
        e = dict(os.environ)
        e.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled once, not on every call
        e.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "zerowizard", *map(str, args)],
            cwd=cwd or tmp_path,
            capture_output=True,
            text=True,
            env=e,
            timeout=120,
        )

    return run


def pytest_configure(config):
    """The edit loop (``-m fast``) draws a third of the bad-input fuzz cases (the same ones every
    run); CI's full run draws all of them (tests/badinput/test_fuzz.py)."""
    if (config.getoption("markexpr", "") or "").strip() == "fast":
        os.environ.setdefault("ZEROWIZARD_FUZZ_TIER", "fast")


def pytest_collection_modifyitems(items):
    """Two tiers: a module that trains for real says ``pytestmark = pytest.mark.slow``; every other
    test is ``fast`` (``pytest -m fast`` is the edit loop, about a minute; CI runs both)."""
    for item in items:
        if item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.fast)
