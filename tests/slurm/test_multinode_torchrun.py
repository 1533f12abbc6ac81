"""Two "nodes" on one machine: two launchers, `--nnodes 2 --node-rank 0/1` on 127.0.0.1, one rank
each, ZeRO-3, train to the end with exactly the losses of one node with two ranks (same seed,
same data). Needs no SLURM: this is multi-node torchrun."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .conftest import FAST, RUN_TIMEOUT, free_port, losses, zw_env

pytestmark = pytest.mark.slow  # real training: the CI tier, not the edit loop


def _zw(*args) -> list[str]:
    return [sys.executable, "-m", "zerowizard", "run", "--headless", *FAST, *args]


def test_two_nodes_match_one_node(tmp_path):
    port = free_port()
    t0 = time.monotonic()
    # One run folder for both, as nodes on shared storage see it (what the runner asks for).
    shared = tmp_path / "two"
    nodes = [
        subprocess.Popen(
            _zw(
                "--nnodes",
                "2",
                "--node-rank",
                str(r),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                "--nproc-per-node",
                "1",
                "--output",
                str(shared),
            ),
            cwd=tmp_path,
            env=zw_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    try:
        outs = [p.communicate(timeout=RUN_TIMEOUT)[0] for p in nodes]
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
    two_wall = time.monotonic() - t0
    for r, (p, out) in enumerate(zip(nodes, outs)):
        assert p.returncode == 0, f"node {r} exit {p.returncode}\n{out[-4000:]}"
    from zerowizard.runner.events import read_events

    evs = [e for e in read_events(shared / "events.jsonl") if e["event"] != "phase"]  # start-up progress
    assert evs[0]["world_size"] == 2 and evs[0]["zero3_partitioned"] is True
    assert evs[-1]["event"] == "end" and evs[-1]["status"] == "completed"
    assert {e["source"] for e in evs} == {"rank0"}  # node rank 1 writes no events
    assert (shared / "logs" / "rank0.log").is_file() and (shared / "logs" / "rank1.log").is_file()
    assert "step 3/3" in outs[0] and "step 3/3" not in outs[1]  # node 0 prints the progress, once
    two = losses(shared)

    t0 = time.monotonic()
    res = subprocess.run(
        _zw("--nproc-per-node", "2", "--output", str(tmp_path / "one")),
        cwd=tmp_path,
        env=zw_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    one_wall = time.monotonic() - t0
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    one = losses(tmp_path / "one")
    assert [s for s, _ in one] == [1, 2, 3]
    assert two == one, f"two nodes {two} != one node {one}"  # bit for bit: same seed, data, reduction order
    print(f"two nodes x 1 rank: {two_wall:.1f}s; one node x 2 ranks: {one_wall:.1f}s; losses {one}")
