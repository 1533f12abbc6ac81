"""Helpers for the runner tests: run `zerowizard run --headless` as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Small and fast: a few steps of the tiny model, short sequences, two CPU ranks.
FAST = [
    "--max-steps",
    "4",
    "--seq-len",
    "96",
    "--micro-batch",
    "2",
    "--save-steps",
    "0",
    "--no-grad-checkpointing",
    "--gpus",
    "2",
]


def run_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NPROC_PER_NODE", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def zw_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "zerowizard", "run", "--headless", *args]


def run_zw(tmp_path: Path, *args, env=None, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run(
        zw_cmd(*args), cwd=tmp_path, env=env or run_env(), capture_output=True, text=True, timeout=timeout
    )


def events(workdir: Path) -> list[dict]:
    from zerowizard.runner.events import read_events

    return read_events(Path(workdir) / "events.jsonl")


def procs_mentioning(text: str) -> list:
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and any(text in c for c in (p.info["cmdline"] or [])):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def assert_no_orphans(workdir: Path, wait: float = 3.0) -> None:
    deadline = time.time() + wait
    while time.time() < deadline and procs_mentioning(str(workdir)):
        time.sleep(0.2)
    left = procs_mentioning(str(workdir))
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


def check_ok(res: subprocess.CompletedProcess, workdir: Path) -> list[dict]:
    """A completed run: every event follows its schema, start-up phases lead to the start; returns
    the events other than phases (start ... end)."""
    from zerowizard.runner.events import schema_problems

    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    evs = events(workdir)
    assert [p for e in evs for p in schema_problems(e)] == []
    before = evs[: [e["event"] for e in evs].index("start")]
    assert [e["phase"] for e in before][-1:] == ["ready"], before  # start-up was visible to its end
    evs = [e for e in evs if e["event"] != "phase"]
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "start" and kinds[-1] == "end", kinds
    assert evs[-1]["status"] == "completed"
    assert (workdir / "ds_config.json").is_file() and (workdir / "plan.yaml").is_file()
    return evs


@pytest.fixture
def workdir(tmp_path):
    return tmp_path / "run"


def spec_json(workdir: Path) -> dict:
    return json.loads((workdir / "runner.json").read_text())


class Mounts:
    """Small file systems of a test's own (root only); all unmounted afterwards."""

    def __init__(self, tmp_path: Path):
        self.tmp_path, self.points = tmp_path, []

    def _mount(self, *args: str) -> None:
        res = subprocess.run(["mount", *args], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"mount {' '.join(args)}: {res.stderr.strip()}")

    def tmpfs(self, size: str = "64m") -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        point = self.tmp_path / f"tmpfs{len(self.points)}"
        point.mkdir()
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point))
        self.points.append(point)
        return point

    def read_only(self, folder: Path) -> None:
        """Turn a folder read-only while files elsewhere on its file system stay open for writing
        (a remount of the whole file system would be refused as busy): a read-only bind mount."""
        self._mount("--bind", str(folder), str(folder))
        self.points.append(folder)
        self._mount("-o", "remount,bind,ro", str(folder))

    def close(self) -> None:
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def mounts(tmp_path):
    m = Mounts(tmp_path)
    yield m
    m.close()


def fill(folder: Path) -> None:
    """Take every free byte of the file system under ``folder``."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (b"\0" * 2**20, b"\0" * 4096, b"\0"):
            try:
                while True:
                    os.write(fd, chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
