"""A real one-node SLURM cluster on 127.0.0.1 for the SLURM tests (scripts/setup_local_slurm.sh).

`slurm_cluster` starts it when it is not up (installing Debian's slurmctld, slurmd, slurm-client
and munge if needed) and skips, saying why, where that cannot work (not root, no apt-get, the
packages cannot be installed). A cluster that was already up (`.ci/run` starts one) is left
running; one that a test session started is stopped when the last pytest process using it (every
xdist worker counts) is done.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "setup_local_slurm.sh"
STATE = Path("/run/zerowizard-slurm")
# The script keeps its own configuration (never /etc/slurm): every client here must read it.
SLURM_CONF = STATE / "slurm.conf"
# Small and fast: a few steps of the tiny model, short sequences, ZeRO-3 (parameters partitioned).
FAST = [
    "--max-steps",
    "3",
    "--seq-len",
    "64",
    "--micro-batch",
    "2",
    "--save-steps",
    "0",
    "--no-grad-checkpointing",
    "--deepspeed",
    "deepspeed_zero3",
]
RUN_TIMEOUT = 420


def _zerowizard_bin() -> Path:
    """A folder holding only a `zerowizard` link to this venv's, for PATH. Not the venv's bin
    folder itself: that would also put the venv's `ninja` first, and a DeepSpeed JIT op built by
    one ninja version is rebuilt by the other (ninja 1.12 changed its log hash): a minute each."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"zerowizard-test-bin-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    link = folder / "zerowizard"
    target = Path(sys.executable).parent / "zerowizard"
    if not link.is_symlink() or os.readlink(link) != str(target):
        tmp = folder / f".zerowizard.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        tmp.replace(link)
    return folder


def zw_env(**extra) -> dict:
    """The environment a job or launcher needs: this venv's `zerowizard` on PATH (sbatch and srun
    pass the environment on), the repo importable, one OpenMP thread per rank."""
    env = dict(os.environ)
    env["SLURM_CONF"] = str(SLURM_CONF)
    env["PATH"] = str(_zerowizard_bin()) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    for key in (
        "NPROC_PER_NODE",
        "NNODES",
        "NODE_RANK",
        "ADDR",
        "PORT",
        "MASTER_ADDR",
        "MASTER_PORT",
        "ZEROWIZARD_TEST_CRASH",
        "ZEROWIZARD_TEST_STOP_AT",
    ):
        env.pop(key, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def losses(workdir: Path) -> list[tuple[int, float]]:
    from zerowizard.runner.events import read_events

    return [(e["step"], e["loss"]) for e in read_events(Path(workdir) / "events.jsonl") if e.get("event") == "step"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _locked():
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "pytest.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _script(action: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=timeout)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@pytest.fixture(scope="session")
def slurm_cluster():
    """A working `srun`/`sbatch` against a local one-node cluster; yields the partition name."""
    if sys.platform != "linux":
        pytest.skip("the local SLURM cluster is Linux only")
    if os.geteuid() != 0:
        pytest.skip(
            "the local SLURM cluster needs root (it installs packages and starts munged, "
            "slurmctld and slurmd); run as root or start it with scripts/setup_local_slurm.sh"
        )
    if not shutil.which("srun") and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    os.environ["SLURM_CONF"] = str(SLURM_CONF)  # srun/sbatch/scontrol called by the tests
    users = STATE / "pytest-users"
    me = users / f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    with _locked():
        if _script("status", timeout=60).returncode != 0:
            res = _script("start")
            if res.returncode == 3:
                pytest.skip("cannot install Debian's SLURM packages: " + res.stderr.strip()[-400:])
            if res.returncode != 0:  # a machine that cannot run the cluster: say why, don't error
                pytest.skip(
                    f"the local SLURM cluster did not start (exit {res.returncode}): {res.stderr.strip()[-600:]}"
                )
            (STATE / "started-by-pytest").touch()
        users.mkdir(exist_ok=True)
        me.touch()
    yield os.environ.get("ZW_SLURM_PARTITION", "debug")
    with _locked():
        me.unlink(missing_ok=True)
        for f in users.glob("*"):  # workers that died without tearing down
            pid = f.name.split("-")[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                f.unlink(missing_ok=True)
        if not any(users.glob("*")) and (STATE / "started-by-pytest").exists():
            _script("stop", timeout=120)
            (STATE / "started-by-pytest").unlink(missing_ok=True)


@pytest.fixture
def job_name():
    """A unique SLURM job name; whatever is still queued under it is cancelled afterwards."""
    name = f"zwtest-{uuid.uuid4().hex[:8]}"
    yield name
    if shutil.which("scancel"):
        subprocess.run(["scancel", "--name", name], capture_output=True, timeout=30)
