"""`zerowizard export-model` on bad input: one line, exit 2, nothing written (no training here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_env
from .test_checkpoints import make_checkpoint


def export(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zerowizard", "export-model", *args],
        cwd=tmp_path,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_folder(tmp_path: Path) -> Path:
    import json

    from zerowizard.core.plan import Plan, dump_plan

    run = tmp_path / "run"
    run.mkdir()
    (run / "plan.yaml").write_text(dump_plan(Plan()))
    (run / "runner.json").write_text(json.dumps({"model_path": str(tmp_path), "precision": "bf16"}))
    return run


def one_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zerowizard: error: "), lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_no_such_run(tmp_path):
    one_error(export(tmp_path, "missing"), "RUN_DIR: no such folder", "run folder")


def test_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notarun").mkdir()
    one_error(export(tmp_path, "notarun"), "is not a zerowizard run")
    (tmp_path / "file").write_text("x")
    one_error(export(tmp_path, "file"), "is not a folder")


def test_a_run_without_final_or_checkpoint(tmp_path):
    run_folder(tmp_path)
    one_error(export(tmp_path, "run"), "no final model and no intact checkpoint", "--save-steps")


def test_a_run_whose_checkpoints_are_all_damaged(tmp_path):
    run = run_folder(tmp_path)
    (run / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    one_error(export(tmp_path, "run"), "no intact checkpoint")


@pytest.mark.parametrize(
    "flag,needle",
    [("7", "no checkpoint-7"), ("x", "is not a step number"), ("2", "checkpoint-2 is damaged: trainer_state.json")],
)
def test_bad_checkpoint_flag(tmp_path, flag, needle):
    run = run_folder(tmp_path)
    (make_checkpoint(run, 2) / "trainer_state.json").unlink()
    one_error(export(tmp_path, "run", "--checkpoint", flag), "--checkpoint: ", needle)


def test_existing_non_empty_out_is_never_overwritten(tmp_path):
    run_folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    one_error(export(tmp_path, "run", "--out", "out"), "--out:", "exists and is not empty")
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_merge_lora_on_a_full_run(tmp_path):
    run_folder(tmp_path)
    one_error(export(tmp_path, "run", "--merge-lora"), "--merge-lora:", "full fine-tune")
