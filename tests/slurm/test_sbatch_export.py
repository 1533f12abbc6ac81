"""`zerowizard --export-sbatch` (no cluster needed), launch command lines, the multi-node memory model."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import yaml

from zerowizard.core.analysis import analyze
from zerowizard.core.memory import save_gather_bytes
from zerowizard.core.plan import Plan, update


def _sbatch_lines(text: str) -> dict:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", text, re.M))


def test_gpu_job_script(zw, tmp_path):
    res = zw(
        "--export-sbatch",
        "jobs/llama.sh",
        "--model",
        "llama-3-8b",
        "--method",
        "lora",
        "--gpus",
        "8xA100-80GB",
        "--nodes",
        "2",
        "--deepspeed",
        "deepspeed_zero2",
        "--partition",
        "gpu",
        "--time",
        "24:00:00",
        "--account",
        "proj42",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "does not exist" in res.stderr  # jobs/ is not there: nothing written
    (tmp_path / "jobs").mkdir()
    res = zw(
        "--export-sbatch",
        "jobs/llama.sh",
        "--model",
        "llama-3-8b",
        "--method",
        "lora",
        "--gpus",
        "8xA100-80GB",
        "--nodes",
        "2",
        "--deepspeed",
        "deepspeed_zero2",
        "--partition",
        "gpu",
        "--time",
        "24:00:00",
        "--account",
        "proj42",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    jobs = tmp_path / "jobs"
    script = (jobs / "llama.sh").read_text()
    assert script.startswith("#!/bin/bash\n") and (jobs / "llama.sh").stat().st_mode & 0o111
    sb = _sbatch_lines(script)
    assert sb["nodes"] == "2" and sb["ntasks-per-node"] == "8" and sb["gres"] == "gpu:8"
    assert sb["partition"] == "gpu" and sb["time"] == "24:00:00" and sb["account"] == "proj42"
    assert sb["output"] == f"{jobs}/llama-%j.out" and sb["error"] == f"{jobs}/llama-%j.err"
    assert "world size 16" in script
    srun = script[script.index("srun ") :]
    assert "--kill-on-bad-exit=1 zerowizard run --headless --launcher slurm" in srun
    assert f"--plan {jobs}/llama.plan.yaml" in srun
    assert f'--output {jobs}/work_dirs/llama_"${{SLURM_JOB_ID}}"' in srun
    plan = yaml.safe_load((jobs / "llama.plan.yaml").read_text())
    assert plan["hardware"]["nodes"] == 2 and plan["hardware"]["gpus_per_node"] == 8
    ds = json.loads((jobs / "llama.ds_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"]["enabled"] is True
    assert "train_batch_size" not in ds
    assert subprocess.run(["bash", "-n", str(jobs / "llama.sh")]).returncode == 0


def test_cpu_job_has_no_gres_and_optional_flags_are_left_out(zw, tmp_path):
    res = zw("--export-sbatch", "job.sh", "--gpus", "cpu", "--deepspeed", "deepspeed_zero3", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    sb = _sbatch_lines((tmp_path / "job.sh").read_text())
    assert "gres" not in sb and "partition" not in sb and "time" not in sb and "account" not in sb
    assert sb["ntasks-per-node"] == "2" and sb["nodes"] == "1"


def test_plan_errors_refuse_and_write_nothing(zw, tmp_path):
    res = zw("--export-sbatch", "job.sh", "--method", "qlora", "--deepspeed", "deepspeed_zero3", cwd=tmp_path)
    assert res.returncode == 2
    assert "QLoRA" in res.stderr and "not written" in res.stderr
    assert not list(tmp_path.iterdir())


def test_relative_paths_become_absolute(zw, tmp_path):
    """The job runs from another folder (sbatch's spool, a compute node): a relative data file,
    custom DeepSpeed JSON or output folder in the plan must still be found."""
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    (tmp_path / "data.jsonl").write_text('{"instruction": "hi", "output": "hello"}\n')
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump(
            {"deepspeed": "ds.json", "data": {"path": "data.jsonl"}, "output": "runs/a", "hardware": {"gpu": "cpu"}}
        )
    )
    res = zw("--export-sbatch", "job.sh", "--plan", "p.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    plan = yaml.safe_load((tmp_path / "job.plan.yaml").read_text())
    assert plan["deepspeed"] == str(tmp_path / "ds.json")
    assert plan["data"]["path"] == str(tmp_path / "data.jsonl")
    assert plan["output"] == str(tmp_path / "runs" / "a")
    assert f"--output {shlex.quote(str(tmp_path / 'runs' / 'a'))}\n" in (tmp_path / "job.sh").read_text()


def test_memory_model_counts_every_node():
    """N = nodes x GPUs per node: 2 nodes x 4 GPUs partition like 1 node x 8; host RAM is per node."""
    base = update(Plan(), "model", name="llama-3-8b")
    base = update(base, None, deepspeed="deepspeed_zero3")
    a8 = analyze(update(base, "hardware", gpu="A100-80GB", gpus_per_node=8, nodes=1, host_ram_gb=512))
    a24 = analyze(update(base, "hardware", gpu="A100-80GB", gpus_per_node=4, nodes=2, host_ram_gb=512))
    assert a8.hardware.world_size == a24.hardware.world_size == 8
    for v8, v24 in zip(a8.estimates, a24.estimates):
        assert v8.per_gpu.optimizer == v24.per_gpu.optimizer
        assert v8.per_gpu.weights == v24.per_gpu.weights
        if v8.per_node_host:  # per node: 4 ranks on a node need half the host RAM of 8, plus, on rank 0's
            # node only, the 16-bit state dict ZeRO-3 consolidates when it saves (memory.save_gather_bytes)
            save = save_gather_bytes(a8.workload, v8.variant)
            assert (v24.per_node_host - save) * 2 == v8.per_node_host - save


def test_slurm_package_stays_light(tmp_path):
    """--export-sbatch runs on a login node: no torch, deepspeed or textual."""
    import sys

    code = r"""
import json, sys
from zerowizard.cli import main
from zerowizard.core.plan import Plan
from zerowizard.slurm import nodelist, sbatch
rc = main(["--export-sbatch", "job.sh", "--gpus", "4xH100-80GB", "--nodes", "2"])
print(json.dumps({"rc": rc, "heavy": [m for m in ("torch", "deepspeed", "textual", "transformers", "peft")
                                      if m in sys.modules]}))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last == {"rc": 0, "heavy": []}, r.stderr


def test_export_function_for_the_tui(tmp_path):
    import pytest

    from zerowizard.slurm.sbatch import SbatchError, export_sbatch

    plan = update(Plan(), "hardware", gpu="H100-80GB", gpus_per_node=4, nodes=3)
    files, a = export_sbatch(plan, tmp_path / "big.sh", partition="p", time="1:00:00", account="a")
    assert files.script == tmp_path / "big.sh" and files.plan.name == "big.plan.yaml"
    assert files.ds_config.name == "big.ds_config.json" and a.hardware.world_size == 12
    sb = _sbatch_lines(files.script.read_text())
    assert (sb["nodes"], sb["ntasks-per-node"], sb["gres"], sb["partition"]) == ("3", "4", "gpu:4", "p")
    bad = update(update(plan, "method", type="qlora"), None, deepspeed="deepspeed_zero3")
    with pytest.raises(SbatchError) as exc:
        export_sbatch(bad, tmp_path / "bad.sh")
    assert exc.value.problems and not (tmp_path / "bad.sh").exists()
