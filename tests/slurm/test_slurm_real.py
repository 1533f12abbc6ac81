"""Real jobs on the local one-node SLURM cluster: srun with two tasks, an exported sbatch script
submitted with `sbatch --wait`, and a failing rank that fails the job. CPU ranks (DS_ACCELERATOR=cpu,
gloo), the embedded tiny default, ZeRO-3, a few steps."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
import yaml

from .conftest import FAST, RUN_TIMEOUT, losses, zw_env

pytestmark = pytest.mark.slow  # real training: the CI tier, not the edit loop


def _events(workdir):
    from zerowizard.runner.events import read_events

    return [e for e in read_events(workdir / "events.jsonl") if e["event"] != "phase"]  # start-up progress


def _no_jobs_left(name: str) -> bool:
    deadline = time.time() + 30
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "--name", name, "-o", "%i %T"], capture_output=True, text=True).stdout
        if not out.strip():
            return True
        time.sleep(0.5)
    return False


def test_srun_two_tasks_train_the_default(slurm_cluster, job_name, tmp_path):
    workdir = tmp_path / "run"
    t0 = time.monotonic()
    res = subprocess.run(
        [
            "srun",
            "-N1",
            "-n2",
            f"--job-name={job_name}",
            "zerowizard",
            "run",
            "--headless",
            "--launcher",
            "slurm",
            *FAST,
            "--output",
            str(workdir),
        ],
        cwd=tmp_path,
        env=zw_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    wall = time.monotonic() - t0
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    evs = _events(workdir)
    assert evs[0]["event"] == "start" and evs[0]["world_size"] == 2 and evs[0]["zero3_partitioned"] is True
    assert evs[-1]["event"] == "end" and evs[-1]["status"] == "completed"
    assert [s for s, _ in losses(workdir)] == [1, 2, 3]
    assert {e["source"] for e in evs} == {"rank0"}  # only rank 0 writes events
    # One printer for the job, not one per task: every step line appears once in srun's output.
    assert len(re.findall(r"^step 3/3 ", res.stdout, re.M)) == 1, res.stdout
    assert res.stdout.count("final model:") == 1, res.stdout  # and one summary
    assert (workdir / "logs" / "rank0.log").is_file() and (workdir / "logs" / "rank1.log").is_file()
    assert (workdir / "final" / "config.json").is_file()
    assert _no_jobs_left(job_name)
    print(f"srun -N1 -n2: {wall:.1f}s wall, losses {losses(workdir)}")


def test_exported_sbatch_script_trains(slurm_cluster, job_name, tmp_path, zw):
    """export -> sbatch --wait -> the run folder has the events, the JSON the export wrote, the logs."""
    res = zw(
        "--save-plan",
        "plan.yaml",
        "--gpus",
        "cpu",
        "--seq-len",
        "64",
        "--micro-batch",
        "2",
        "--no-grad-checkpointing",
        "--deepspeed",
        "deepspeed_zero3",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    plan = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    plan["train"].update(max_steps=3, save_steps=0)
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    res = zw(
        "--export-sbatch",
        "job.sh",
        "--plan",
        "plan.yaml",
        "--partition",
        slurm_cluster,
        "--time",
        "00:15:00",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    t0 = time.monotonic()
    sub = subprocess.run(
        ["sbatch", "--wait", "--parsable", f"--job-name={job_name}", "job.sh"],
        cwd=tmp_path,
        env=zw_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    wall = time.monotonic() - t0
    job_id = sub.stdout.strip().split(";")[0]
    out = tmp_path / f"job-{job_id}.out"
    err = tmp_path / f"job-{job_id}.err"
    logs = (out.read_text() if out.exists() else "") + (err.read_text() if err.exists() else "")
    assert sub.returncode == 0, f"sbatch exit {sub.returncode}: {sub.stderr}\n{logs[-4000:]}"
    assert re.fullmatch(r"\d+", job_id)
    workdir = tmp_path / "work_dirs" / f"job_{job_id}"
    evs = _events(workdir)
    assert evs[0]["event"] == "start" and evs[0]["world_size"] == 2
    assert evs[-1]["event"] == "end" and evs[-1]["status"] == "completed"
    assert [s for s, _ in losses(workdir)] == [1, 2, 3]
    # The run built exactly the DeepSpeed JSON that the export wrote beside the script.
    assert json.loads((workdir / "ds_config.json").read_text()) == json.loads(
        (tmp_path / "job.ds_config.json").read_text()
    )
    assert "step 3/3" in out.read_text()
    print(f"sbatch --wait: {wall:.1f}s wall, job {job_id}, losses {losses(workdir)}")


def test_failing_rank_fails_the_srun_job(slurm_cluster, job_name, tmp_path):
    workdir = tmp_path / "run"
    res = subprocess.run(
        [
            "srun",
            "-N1",
            "-n2",
            f"--job-name={job_name}",
            "zerowizard",
            "run",
            "--headless",
            "--launcher",
            "slurm",
            *FAST,
            "--output",
            str(workdir),
        ],
        cwd=tmp_path,
        env=zw_env(ZEROWIZARD_TEST_CRASH="1:1"),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert res.returncode != 0, res.stdout[-2000:]
    assert re.search(r"task \d: Exited with exit code [1-9]", res.stderr), res.stderr
    evs = _events(workdir)
    errors = [e for e in evs if e["event"] == "error"]
    assert any(e["rank"] == 1 and "injected crash on rank 1" in e["error"] for e in errors)
    assert evs[-1]["event"] == "end" and evs[-1]["status"] == "failed" and evs[-1]["rank"] == 1
    assert _no_jobs_left(job_name)


def test_real_slurm_variables_give_each_task_its_rank(slurm_cluster, job_name, tmp_path):
    """What SLURM really sets, through prepare.slurm_env(): ranks 0 and 1 of 2, both local to the
    one node, the master is the node itself (the first host of SLURM's own node list)."""
    code = "import json; from zerowizard.runner.prepare import slurm_env; print(json.dumps(slurm_env()))"
    res = subprocess.run(
        ["srun", "-N1", "-n2", f"--job-name={job_name}", sys.executable, "-c", code],
        cwd=tmp_path,
        env=zw_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    envs = sorted((json.loads(line) for line in res.stdout.splitlines()), key=lambda e: e["RANK"])
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    assert [(e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"], e["LOCAL_WORLD_SIZE"]) for e in envs] == [
        ("0", "0", "2", "2"),
        ("1", "1", "2", "2"),
    ]
    assert {e["MASTER_ADDR"] for e in envs} == {host} and len({e["MASTER_PORT"] for e in envs}) == 1
