"""sbatch itself reads the exported script's #SBATCH values as typed: a job folder with spaces,
quotes and '%' in its name (the script quotes it and doubles the '%'), a partition and a time
limit: `scontrol show job` on a held job, then a job whose plan stops it at once writes its log
into that very folder."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import zw_env

pytestmark = pytest.mark.slow


def test_sbatch_reads_quoted_paths_as_typed(slurm_cluster, job_name, tmp_path, zw):
    folder = tmp_path / "a b 'q' \"d\" 50%"
    folder.mkdir()
    res = zw(
        "--export-sbatch",
        folder / "job.sh",
        "--gpus",
        "cpu",
        "--partition",
        slurm_cluster,
        "--time",
        "0-00:05:00",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    sub = subprocess.run(
        ["sbatch", "--hold", "--parsable", f"--job-name={job_name}", str(folder / "job.sh")],
        cwd=tmp_path,
        env=zw_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip().split(";")[0]
    try:
        show = subprocess.run(
            ["scontrol", "show", "job", job_id], env=zw_env(), capture_output=True, text=True, timeout=60
        ).stdout
    finally:
        subprocess.run(["scancel", job_id], env=zw_env(), capture_output=True, timeout=60)
    assert f"Partition={slurm_cluster} " in show and "TimeLimit=00:05:00" in show, show
    # Run a job from the same script whose plan stops it at once: the logs land where typed.
    (folder / "job.plan.yaml").write_text("batch: {micro_batch: 0}\n")
    sub = subprocess.run(
        ["sbatch", "--wait", "--parsable", f"--job-name={job_name}", str(folder / "job.sh")],
        cwd=tmp_path,
        env=zw_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    job_id = sub.stdout.strip().split(";")[0]
    assert (folder / f"job-{job_id}.err").exists(), sorted(str(p) for p in tmp_path.rglob("*"))
    assert "micro_batch" in (folder / f"job-{job_id}.err").read_text()
