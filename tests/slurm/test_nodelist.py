"""Host lists as SLURM prints them, expanded as `scontrol show hostnames` does."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from zerowizard.runner import prepare
from zerowizard.slurm.nodelist import NodelistError, expand_nodelist, expand_tasks_per_node, first_host

CASES = {
    "node07": ["node07"],
    "node[01-03,7]": ["node01", "node02", "node03", "node7"],
    "a[1-2],b3": ["a1", "a2", "b3"],
    "gpu-[001-004]-ib": ["gpu-001-ib", "gpu-002-ib", "gpu-003-ib", "gpu-004-ib"],
    "node[9-11]": ["node9", "node10", "node11"],
    "node[09-11]": ["node09", "node10", "node11"],
    "node[1-010]": [f"node{i}" for i in range(1, 11)],  # width of the first number, as hostlist.c
    "rack[1-2]-n[1-2]": ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"],
    "x[0-1],y[0-1]-z[5-6]": ["x0", "x1", "y0-z5", "y0-z6", "y1-z5", "y1-z6"],
    "n[1-2],m[01-02]-ib,login": ["n1", "n2", "m01-ib", "m02-ib", "login"],
    "cn[0998-1001]": ["cn0998", "cn0999", "cn1000", "cn1001"],
    "h1.cluster,h2.cluster": ["h1.cluster", "h2.cluster"],
    "gpu[7]": ["gpu7"],
}


@pytest.mark.parametrize("text,hosts", CASES.items())
def test_expand(text, hosts):
    assert expand_nodelist(text) == hosts
    assert first_host(text) == hosts[0]


@pytest.mark.parametrize(
    "bad", ["", "   ", "node[1-", "node]1", "node[3-1]", "node[a-b]", "node[]", "node[1-2[3]]", "no de1"]
)
def test_malformed_lists_are_named(bad):
    with pytest.raises(NodelistError):
        expand_nodelist(bad)


def test_tasks_per_node():
    assert expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert expand_tasks_per_node("8") == [8]
    with pytest.raises(NodelistError):
        expand_tasks_per_node("2(x)")


def _scontrol_env() -> dict:
    """scontrol needs a configuration (not a running cluster): the local test cluster's, else the system's."""
    env = dict(os.environ)
    ours = "/run/zerowizard-slurm/slurm.conf"
    if "SLURM_CONF" not in env and os.path.exists(ours):
        env["SLURM_CONF"] = ours
    return env


def _scontrol_works() -> bool:
    if not shutil.which("scontrol"):
        return False
    res = subprocess.run(
        ["scontrol", "show", "hostnames", "a[1-2]"], capture_output=True, text=True, timeout=20, env=_scontrol_env()
    )
    return res.returncode == 0


@pytest.mark.skipif(not _scontrol_works(), reason="no configured scontrol here to compare with")
def test_matches_scontrol_show_hostnames():
    """SLURM itself is the oracle, for every form its version accepts (22.05 rejects a suffix
    after a bracket, `gpu-[001-004]-ib`, which newer SLURM prints; we expand it as they do)."""
    compared = 0
    for text, hosts in CASES.items():
        res = subprocess.run(
            ["scontrol", "show", "hostnames", text], capture_output=True, text=True, timeout=20, env=_scontrol_env()
        )
        if res.returncode != 0 or "Invalid hostlist" in res.stdout + res.stderr:
            continue
        assert res.stdout.split() == hosts, text
        compared += 1
    assert compared >= 8


def test_slurm_env_uses_the_real_parser(monkeypatch):
    for key in (
        "SLURM_STEP_NODELIST",
        "SLURM_NODELIST",
        "SLURM_STEP_NUM_TASKS",
        "SLURM_STEP_TASKS_PER_NODE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "SLURM_NTASKS_PER_NODE",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "7")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NODEID", "2")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "2(x3),1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu-[003-005]-ib,gpu-009-ib")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    env = prepare.slurm_env()
    assert env == {
        "RANK": "5",
        "WORLD_SIZE": "7",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "gpu-003-ib",
        "MASTER_PORT": "20077",
    }
    monkeypatch.setenv("SLURM_NODEID", "3")
    assert prepare.slurm_env()["LOCAL_WORLD_SIZE"] == "1"
    # A step on part of the allocation: its own node list and task count win.
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu-[004-005]-ib")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    env = prepare.slurm_env()
    assert env["MASTER_ADDR"] == "gpu-004-ib" and env["WORLD_SIZE"] == "4"
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu[1-")
    with pytest.raises(prepare.PrepareError, match="MASTER_ADDR"):
        prepare.slurm_env()
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")  # an explicit master always wins
    assert prepare.slurm_env()["MASTER_ADDR"] == "10.0.0.1"
