"""Checkpoint commit, validation, fallback and rotation, without training (the fast tier).

The checkpoints here are laid out file for file as HF Trainer + DeepSpeed write them (torch.save
archives, a safetensors model, trainer_state.json, DeepSpeed's `latest` tag) and committed with
the same function the ranks use; test_checkpoint_resume.py does the same on real runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zerowizard.runner import checkpoints
from zerowizard.runner.resume import keep_global_batch

from .conftest import REPO, run_env


def make_checkpoint(workdir: Path, step: int, world: int = 2, commit: bool = True) -> Path:
    import torch
    from safetensors.torch import save_file

    name = f"checkpoint-{step}"
    folder = workdir / "checkpoints" / checkpoints.STAGING / name
    tag = folder / f"global_step{step}"
    tag.mkdir(parents=True)
    torch.save({"module": {"w": torch.ones(64) * step}}, tag / "mp_rank_00_model_states.pt")
    for r in range(world):
        torch.save(
            {"optimizer_state_dict": {"m": torch.zeros(256)}}, tag / f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt"
        )
        torch.save({"cpu": torch.zeros(8)}, folder / f"rng_state_{r}.pth")
    save_file({"w": torch.ones(128)}, str(folder / "model.safetensors"))
    (folder / "latest").write_text(f"global_step{step}")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    if not commit:
        return folder
    facts = {"step": step, "world_size": world, "zero_stage": 2, "micro_batch": 1, "grad_accum": 2}
    final = workdir / "checkpoints" / name
    checkpoints.commit(folder, final, {**facts, "tag": f"global_step{step}"})
    return final


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "deleted file": lambda c: (c / "global_step4" / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink(),
    "truncated file": lambda c: _truncate(c / "global_step4" / "mp_rank_00_model_states.pt"),
    "empty folder": lambda c: (shutil.rmtree(c), c.mkdir()),
    "missing trainer_state.json": lambda c: (c / "trainer_state.json").unlink(),
    "bad latest tag": lambda c: (c / "latest").write_text("global_step9"),
    "damaged marker": lambda c: (c / checkpoints.MARKER).write_text("{not json"),
}
REASON = {
    "deleted file": "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt is missing",
    "truncated file": "mp_rank_00_model_states.pt is",
    "empty folder": "empty folder",
    "missing trainer_state.json": "trainer_state.json is missing",
    "bad latest tag": "`latest` tag",
    "damaged marker": checkpoints.MARKER,
}


def test_commit_writes_the_marker_last_and_renames(tmp_path):
    final = make_checkpoint(tmp_path, 2)
    marker = json.loads((final / checkpoints.MARKER).read_text())
    assert marker["step"] == 2 and marker["world_size"] == 2 and marker["tag"] == "global_step2"
    assert marker["files"]["trainer_state.json"] == (final / "trainer_state.json").stat().st_size
    assert "global_step2/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt" in marker["files"]
    assert not (tmp_path / "checkpoints" / checkpoints.STAGING / "checkpoint-2").exists()
    assert checkpoints.check(final) is None
    assert checkpoints.resumable(tmp_path) == (final, [])


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_latest_falls_back_with_a_note(tmp_path, kind):
    make_checkpoint(tmp_path, 2)
    latest = make_checkpoint(tmp_path, 4)
    DAMAGE[kind](latest)
    ckpt, notes = checkpoints.resumable(tmp_path)
    assert ckpt == tmp_path / "checkpoints" / "checkpoint-2"
    assert len(notes) == 1 and notes[0].startswith("skipping checkpoint-4: "), notes
    assert REASON[kind] in notes[0]


def test_interrupted_save_is_never_resumed(tmp_path):
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 4, commit=False)  # every rank wrote, the commit never came
    ckpt, notes = checkpoints.resumable(tmp_path)
    assert ckpt.name == "checkpoint-2"
    assert notes == ["checkpoint-4 was being saved when the run stopped: never committed, ignored"]


def test_checkpoint_without_marker_is_checked_file_by_file(tmp_path):
    """An older zerowizard wrote no marker: accepted when its files hold up, with a note."""
    make_checkpoint(tmp_path, 2)
    old = make_checkpoint(tmp_path, 4)
    (old / checkpoints.MARKER).unlink()
    ckpt, notes = checkpoints.resumable(tmp_path)
    assert ckpt == old and "has no zerowizard_complete.json" in notes[0]
    _truncate(old / "model.safetensors")  # no sizes to compare: the format check catches it
    ckpt, notes = checkpoints.resumable(tmp_path)
    assert ckpt.name == "checkpoint-2" and "model.safetensors is truncated" in notes[0]


def test_info_reads_the_marker_and_falls_back_to_the_files(tmp_path):
    c = make_checkpoint(tmp_path, 6, world=3)
    info = checkpoints.info(c)
    assert (info.world_size, info.micro_batch, info.grad_accum, info.global_batch) == (3, 1, 2, 6)
    (c / checkpoints.MARKER).unlink()
    assert checkpoints.info(c).world_size == 3 and checkpoints.info(c).tag == "global_step6"


def test_rotation_never_deletes_the_last_intact_checkpoint(tmp_path):
    for step in (1, 2, 3):
        make_checkpoint(tmp_path, step)
    newer = tmp_path / "checkpoints" / "checkpoint-9"
    newer.mkdir()  # damaged and newer than everything: HF's rotation would keep it, not checkpoint-3
    deleted = checkpoints.rotate(tmp_path, keep=1)
    assert sorted(p.name for p in deleted) == ["checkpoint-1", "checkpoint-2"]
    left = sorted(p.name for p in checkpoints.list_checkpoints(tmp_path))
    assert left == ["checkpoint-3", "checkpoint-9"]
    assert checkpoints.resumable(tmp_path)[0].name == "checkpoint-3"
    assert checkpoints.rotate(tmp_path, keep=0) == []


def test_recommit_replaces_a_damaged_folder_of_the_same_step(tmp_path):
    """Resumed from 2 because 4 was damaged: the next save of step 4 takes its place."""
    make_checkpoint(tmp_path, 2)
    bad = make_checkpoint(tmp_path, 4)
    (bad / "trainer_state.json").unlink()
    make_checkpoint(tmp_path, 4)
    assert checkpoints.resumable(tmp_path) == (bad, [])


@pytest.mark.parametrize(
    "micro,accum,old,new,expect",
    [
        (1, 4, 2, 1, (1, 8)),
        (1, 4, 2, 4, (1, 2)),
        (2, 1, 2, 4, (1, 1)),
        (4, 3, 2, 3, (4, 2)),
        (2, 2, 4, 8, (2, 1)),
        (3, 2, 2, 4, (3, 1)),
        (4, 3, 2, 4, (2, 3)),
    ],
)
def test_global_batch_is_kept_across_rank_counts(micro, accum, old, new, expect):
    got = keep_global_batch(micro, accum, old, new)
    assert got == expect and got[0] * got[1] * new == micro * accum * old


def test_global_batch_that_cannot_be_split_is_an_error():
    with pytest.raises(ValueError, match="cannot be split evenly over 4 ranks"):
        keep_global_batch(1, 1, 2, 4)


def _run_folder(tmp_path: Path) -> Path:
    from zerowizard.core.plan import Plan, dump_plan

    run = tmp_path / "run"
    run.mkdir()
    (run / "plan.yaml").write_text(dump_plan(Plan()))
    return run


def _resume(tmp_path: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zerowizard", "run", "--headless", "--resume", str(run), *extra],
        cwd=tmp_path,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_intact_checkpoint_exits_2_before_anything_starts(tmp_path):
    run = _run_folder(tmp_path)
    make_checkpoint(run, 2)
    (run / "checkpoints" / "checkpoint-2" / "trainer_state.json").unlink()
    (run / "checkpoints" / "checkpoint-4").mkdir()
    res = _resume(tmp_path, run)
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zerowizard: error: --resume: no intact checkpoint"), err
    assert "checkpoint-4: empty folder" in err[0] and "checkpoint-2: trainer_state.json is missing" in err[0]
    assert "Traceback" not in res.stderr + res.stdout
    assert not (run / "logs").exists() and not (run / "runner.json").exists()  # nothing was started


def test_global_batch_that_cannot_be_kept_exits_2_before_anything_starts(tmp_path):
    run = _run_folder(tmp_path)
    c = make_checkpoint(run, 2, world=2)
    marker = json.loads((c / checkpoints.MARKER).read_text())
    marker.update(micro_batch=1, grad_accum=1)  # global batch 2: not splittable over 4 ranks
    (c / checkpoints.MARKER).write_text(json.dumps(marker))
    res = _resume(tmp_path, run, "--nproc-per-node", "4")
    assert res.returncode == 2, res.stderr
    assert "written by 2 ranks" in res.stderr and "cannot be split evenly over 4 ranks" in res.stderr
    assert not (run / "logs").exists()


def test_launcher_module_stays_light():
    code = (
        "import sys, zerowizard.runner.resume, zerowizard.runner.checkpoints, zerowizard.runner.export_model;"
        "print(sorted(m for m in ('torch', 'deepspeed', 'transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=run_env(), capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_conversion_leftovers_do_not_damage_the_checkpoint(tmp_path):
    """A universal conversion killed half-way leaves a dot-folder; the converted folder has its own
    marker. Neither is part of what was committed."""
    c = make_checkpoint(tmp_path, 4)
    half = c / ".global_step4_universal.1234" / "zero" / "w"
    half.mkdir(parents=True)
    (half / "fp32.pt").write_bytes(b"PK\x03\x04 cut short")
    (c / "global_step4_universal").mkdir()
    assert checkpoints.check(c) is None
