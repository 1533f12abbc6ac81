"""Checkpoints on real runs (2 CPU ranks, the tiny Llama): a save interrupted by SIGINT, damaged
checkpoints, resume on another rank count, and export-model from ZeRO-3 and LoRA runs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from zerowizard.runner import checkpoints

from .conftest import assert_no_orphans, check_ok, events, run_env, run_zw, zw_cmd
from .test_train_real import _generate

pytestmark = pytest.mark.slow

BASE = ["--seq-len", "64", "--micro-batch", "1", "--grad-accum", "2", "--no-grad-checkpointing", "--gpus", "2"]


def steps(workdir: Path, after_last_start: bool = False) -> dict[int, dict]:
    evs = events(workdir)
    if after_last_start:
        evs = evs[max(i for i, e in enumerate(evs) if e["event"] == "start") :]
    return {e["step"]: e for e in evs if e["event"] == "step"}


def last_start(workdir: Path) -> dict:
    return [e for e in events(workdir) if e["event"] == "start"][-1]


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def export(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*zw_cmd()[:3], "export-model", *args], cwd=cwd, env=run_env(), capture_output=True, text=True, timeout=300
    )


def test_sigint_during_a_save_then_resume(tmp_path):
    run = tmp_path / "run"
    args = [*BASE, "--deepspeed", "deepspeed_zero2", "--max-steps", "4", "--save-steps", "2", "--output", str(run)]
    proc = subprocess.Popen(
        zw_cmd(*args),
        cwd=tmp_path,
        env=run_env(ZEROWIZARD_TEST_SAVE_PAUSE=4),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: (run / ".test_save_paused").exists(), 240, proc)  # inside step 4's save
    staging = run / "checkpoints" / checkpoints.STAGING / "checkpoint-4"
    assert (staging / "global_step4").is_dir() and not (staging / "trainer_state.json").exists()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert_no_orphans(run, wait=10)
    assert not (run / "checkpoints" / "checkpoint-4").exists()  # never committed
    assert checkpoints.check(run / "checkpoints" / "checkpoint-2") is None
    before = steps(run)

    res = run_zw(tmp_path, "--resume", str(run))
    check_ok(res, run)
    assert "note: checkpoint-4 was being saved when the run stopped: never committed, ignored" in res.stdout
    start = last_start(run)
    assert start["start_step"] == 2 and start["resumed_from"].endswith("checkpoint-2")
    after = steps(run, after_last_start=True)
    assert sorted(after) == [3, 4]
    for s in (3, 4):  # same ranks, same data, restored optimizer: the same losses
        assert after[s]["loss"] == pytest.approx(before[s]["loss"], rel=1e-2)
    assert checkpoints.resumable(run) == (run / "checkpoints" / "checkpoint-4", [])
    assert not any((run / "checkpoints" / checkpoints.STAGING).iterdir())


def test_damaged_checkpoints_fall_back_to_the_newest_intact_one(tmp_path):
    run = tmp_path / "run"
    args = [*BASE, "--deepspeed", "deepspeed_zero2", "--max-steps", "5", "--save-steps", "1", "--output", str(run)]
    check_ok(run_zw(tmp_path, *args), run)
    ck = run / "checkpoints"
    straight = steps(run)
    assert [p.name for p in checkpoints.list_checkpoints(run)] == [f"checkpoint-{i}" for i in (5, 4, 3, 2, 1)]
    # newest first: an empty folder, a missing trainer_state.json, a truncated shard, a deleted shard
    shutil.rmtree(ck / "checkpoint-5")
    (ck / "checkpoint-5").mkdir()
    (ck / "checkpoint-4" / "trainer_state.json").unlink()
    shard = ck / "checkpoint-3" / "global_step3" / "mp_rank_00_model_states.pt"
    shard.write_bytes(shard.read_bytes()[:1000])
    (ck / "checkpoint-2" / "global_step2" / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()

    res = run_zw(tmp_path, "--resume", str(run))
    check_ok(res, run)
    notes = [ln for ln in res.stdout.splitlines() if ln.startswith("note: skipping")]
    expected = [
        "note: skipping checkpoint-5: empty folder",
        "note: skipping checkpoint-4: trainer_state.json is missing",
        "note: skipping checkpoint-3: global_step3/mp_rank_00_model_states.pt is 1,000 bytes, ",
        "note: skipping checkpoint-2: global_step2/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt is missing",
    ]
    assert len(notes) == len(expected) and all(n.startswith(e) for n, e in zip(notes, expected, strict=True)), notes
    assert last_start(run)["resumed_from"].endswith("checkpoint-1")
    after = steps(run, after_last_start=True)
    assert sorted(after) == [2, 3, 4, 5]
    for s in after:
        assert after[s]["loss"] == pytest.approx(straight[s]["loss"], rel=1e-2)
    # every damaged folder was replaced by a fresh commit of the same step
    assert all(checkpoints.check(p) is None for p in checkpoints.list_checkpoints(run))


def _packed_plan(tmp_path: Path) -> Path:
    plan = tmp_path / "packed.yaml"  # equal-length sequences: the loss does not depend on the split
    plan.write_text("data:\n  packing: true\n")
    return plan


_BASE_RUNS: dict[int, Path] = {}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A 2-rank run per ZeRO stage, checkpoints at steps 2 and 4; ZeRO-3 from a JSON without
    stage3_gather_16bit_weights_on_model_save, so its checkpoints hold DeepSpeed shards only."""

    def make(stage: int) -> Path:
        if stage not in _BASE_RUNS:
            tmp = tmp_path_factory.mktemp(f"zero{stage}")
            ds = f"deepspeed_zero{stage}"
            if stage == 3:
                from zerowizard.core.dsconfig import preset_path

                cfg = json.loads(preset_path("deepspeed_zero3").read_text())
                cfg["zero_optimization"].pop("stage3_gather_16bit_weights_on_model_save")
                ds = str(tmp / "zero3_nogather.json")
                Path(ds).write_text(json.dumps(cfg))
            run = tmp / "run"
            args = [*BASE, "--plan", str(_packed_plan(tmp)), "--deepspeed", ds, "--max-steps", "4", "--save-steps", "2"]
            check_ok(run_zw(tmp, *args, "--output", str(run)), run)
            _BASE_RUNS[stage] = run
        return _BASE_RUNS[stage]

    return make


@pytest.mark.parametrize("stage,ranks", [(3, 1), (3, 4), (2, 1)])
def test_resume_on_another_rank_count_keeps_the_loss(tmp_path, base_run, stage, ranks):
    src = base_run(stage)
    run = tmp_path / "run"
    shutil.copytree(src, run)
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    res = run_zw(tmp_path, "--resume", str(run), "--nproc-per-node", str(ranks), timeout=400)
    check_ok(res, run)
    accum = 4 // ranks  # global batch 1 x 2 x 2 ranks = 4
    assert (
        f"note: checkpoint-2 was written by 2 ranks, resuming on {ranks}: micro batch 1 -> 1, "
        f"accumulation 2 -> {accum} (global batch 4 kept)" in res.stdout
    )
    assert (run / "checkpoints" / "checkpoint-2" / "global_step2_universal" / checkpoints.UNIVERSAL_MARKER).is_file()
    start = last_start(run)
    assert start["world_size"] == ranks and start["start_step"] == 2
    assert json.loads((run / "ds_config.json").read_text())["gradient_accumulation_steps"] == accum
    straight, after = steps(src), steps(run, after_last_start=True)
    assert sorted(after) == [3, 4]
    for s in (3, 4):  # weights, Adam moments, schedule and data position carried over
        assert after[s]["learning_rate"] == pytest.approx(straight[s]["learning_rate"])
        assert after[s]["loss"] == pytest.approx(straight[s]["loss"], rel=1e-2), (s, straight[s], after[s])
    assert after[3]["loss"] < steps(src)[1]["loss"] - 0.05  # not a fresh start
    marker = json.loads((run / "checkpoints" / "checkpoint-4" / checkpoints.MARKER).read_text())
    assert marker["world_size"] == ranks and marker["grad_accum"] == accum


def test_checkpoint_that_cannot_be_converted_is_a_clear_error(tmp_path, base_run):
    """A checkpoint from before the marker whose optimizer shard holds something else: its files
    are sound, DeepSpeed's converter refuses it; exit 2 naming it, no rank started."""
    import torch

    run = tmp_path / "run"
    shutil.copytree(base_run(3), run)
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    ckpt = run / "checkpoints" / "checkpoint-2"
    (ckpt / checkpoints.MARKER).unlink()
    shard = next((ckpt / "global_step2").glob("*zero_pp_rank_1_*optim_states.pt"))
    torch.save({"not": "an optimizer state"}, shard)
    n_events = len(events(run))
    res = run_zw(tmp_path, "--resume", str(run), "--nproc-per-node", "1")
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "checkpoint-2 (written by 2 ranks) cannot be converted for 1 rank" in err[0], err
    assert "--nproc-per-node 2" in err[0] and "Traceback" not in res.stderr
    assert len(events(run)) == n_events  # no rank started


def test_export_full_zero3_from_shards_and_from_final(tmp_path, base_run):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = base_run(3)
    assert not (run / "checkpoints" / "checkpoint-4" / "model.safetensors").exists()  # shards only
    res = export(tmp_path, str(run), "--checkpoint", "4", "--out", "from_ckpt")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "" and "model (bfloat16) from" in res.stdout
    res = export(tmp_path, str(run), "--out", "from_final")
    assert res.returncode == 0 and "final" in res.stdout, res.stderr
    a, b = (
        load_file(tmp_path / "from_ckpt" / "model.safetensors"),
        load_file(tmp_path / "from_final" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)  # fp32 masters, rounded = the 16-bit weights
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "from_ckpt" / name).is_file()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "from_ckpt")
    assert sum(p.numel() for p in model.parameters()) > 1_000_000
    _generate(model, AutoTokenizer.from_pretrained(tmp_path / "from_ckpt"))


def test_export_lora_adapter_and_merged(tmp_path):
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    args = [
        *BASE,
        "--method",
        "lora",
        "--lora-r",
        "8",
        "--deepspeed",
        "deepspeed_zero3",
        "--max-steps",
        "2",
        "--lr",
        "1e-2",
    ]
    check_ok(run_zw(tmp_path, *args, "--max-steps", "2", "--save-steps", "2", "--output", str(run)), run)
    res = export(tmp_path, str(run), "--checkpoint", "2", "--out", "adapter")
    assert res.returncode == 0 and "adapter (bfloat16)" in res.stdout, res.stderr
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    res = export(tmp_path, str(run), "--checkpoint", "2", "--merge-lora", "--out", "merged")
    assert res.returncode == 0 and "merged model (bfloat16)" in res.stdout, res.stderr
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    adapter = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    _generate(adapter, tok)
    _generate(merged, tok)
    ids = tok("What is 2 plus 3?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        la = adapter(ids).logits.float()
        lm = merged(ids.to(merged.device)).logits.float()
        base = AutoModelForCausalLM.from_pretrained(json.loads((run / "runner.json").read_text())["model_path"])
        lb = base(ids).logits.float()
    assert (la - lm).abs().max() < 0.1 * (la - lb).abs().max()  # the merge is the adapter, not the base
