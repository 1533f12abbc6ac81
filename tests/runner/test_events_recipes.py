"""The event stream, the printers, the recipes and the launcher's light-weight pieces."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from zerowizard.core import recipes
from zerowizard.runner import prepare
from zerowizard.runner.events import EventTail, EventWriter, read_events
from zerowizard.runner.headless import PlainPrinter, describe, make_printer


def test_events_round_trip_and_tail_skips_torn_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    tail = EventTail(path)
    w.emit("start", world_size=2)
    assert [e["event"] for e in tail.poll()] == ["start"]
    with open(path, "a") as fh:
        fh.write('{"event": "step", "st')  # a write in progress
    assert list(tail.poll()) == []
    with open(path, "a") as fh:
        fh.write('ep": 1, "total_steps": 2, "loss": 1.0}\n')
    assert [e["step"] for e in tail.poll()] == [1]
    with pytest.raises(ValueError):
        w.emit("bogus")
    assert len(read_events(path)) == 2


def test_plain_lines_when_not_a_terminal():
    buf = io.StringIO()
    p = make_printer(buf)
    assert isinstance(p, PlainPrinter)
    p.event(
        {
            "event": "step",
            "step": 3,
            "total_steps": 10,
            "loss": 2.5,
            "learning_rate": 1e-3,
            "grad_norm": 0.5,
            "tokens_per_s": 1200,
            "eta_s": 65,
            "memory_bytes": [2**30, None],
        }
    )
    line = buf.getvalue()
    assert "step 3/10" in line and "loss 2.5000" in line and "1m05s" in line and "[1.00,?]" in line


def test_rich_printer_draws_a_bar():
    from zerowizard.runner.headless import RichPrinter

    buf = io.StringIO()
    p = RichPrinter(buf)
    p.event({"event": "start", "total_steps": 4, "world_size": 2})
    p.event({"event": "step", "step": 2, "total_steps": 4, "loss": 3.0, "tokens_per_s": 10})
    p.event({"event": "end", "status": "completed", "step": 4, "total_steps": 4})
    p.close()
    assert "completed" in buf.getvalue()


def test_every_event_kind_has_a_line():
    for ev in (
        {"event": "checkpoint", "step": 1, "path": "x"},
        {"event": "eval", "step": 1},
        {"event": "error", "rank": 1, "error": "boom"},
        {"event": "end", "status": "failed"},
    ):
        assert describe(ev)


def test_recipes_are_plans_named_model_method_data_epochs():
    names = {r["name"] for r in recipes.list_recipes()}
    assert {
        "internlm2_chat_7b_qlora_oasst1_e3",
        "llama3_8b_lora_alpaca_e3",
        "qwen2_5_7b_full_alpaca_e3",
        recipes.DEFAULT_RECIPE,
    } <= names
    for r in recipes.list_recipes():
        assert r["command"].startswith("zerowizard run --headless")
        assert r["name"].split("_")[-1].startswith("e")
        recipes.load_recipe(r["name"])
    assert recipes.load_recipe("internlm2_chat_7b_qlora_oasst1_e3").method.type == "qlora"


def test_recipe_flags_win_over_the_recipe():
    from zerowizard.cli import build_parser
    from zerowizard.core.plan import PlanError
    from zerowizard.planflags import plan_from_args

    args = build_parser().parse_args(["--recipe", "llama3_8b_lora_alpaca_e3", "--deepspeed", "deepspeed_zero3"])
    plan = plan_from_args(args)
    assert plan.deepspeed == "deepspeed_zero3" and plan.method.type == "lora"
    with pytest.raises(PlanError, match="did you mean"):
        recipes.load_recipe("llama3_8b_lora_alpaca_e4")


def test_recipes_estimate_offline():
    from zerowizard.core.analysis import analyze

    for name in ("internlm2_chat_7b_qlora_oasst1_e3", "qwen2_5_7b_full_alpaca_e3"):
        a = analyze(recipes.load_recipe(name))
        assert a.ds is not None and a.model is not None


def test_slurm_variables_give_rank_and_master(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    env = prepare.slurm_env()
    assert env["RANK"] == "3" and env["WORLD_SIZE"] == "8" and env["LOCAL_RANK"] == "1"
    assert env["MASTER_ADDR"] == "gpu07" and env["MASTER_PORT"] == "21234"


def test_slurm_outside_an_allocation_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    with pytest.raises(prepare.PrepareError, match="srun"):
        prepare.slurm_env()


def _options(argv, monkeypatch=None, **env):
    from zerowizard.cli import build_parser
    from zerowizard.planflags import plan_from_args
    from zerowizard.runner.options import build_run_options

    args = build_parser("run").parse_args(["run", "--headless", *argv])
    return build_run_options(args, plan_from_args(args))


def test_xtuner_environment_variables_set_the_topology(monkeypatch, tmp_path):
    from zerowizard.runner.options import Topology

    for k, v in {"NPROC_PER_NODE": "8", "NNODES": "2", "NODE_RANK": "1", "ADDR": "10.0.0.1", "PORT": "29500"}.items():
        monkeypatch.setenv(k, v)
    opts = _options(["--output", str(tmp_path)])
    assert opts.topology == Topology(nproc=8, nnodes=2, node_rank=1, addr="10.0.0.1", port=29500)
    assert opts.plan.hardware.gpus_per_node == 8 and opts.plan.hardware.nodes == 2 and not opts.leads


def test_torchrun_command_for_two_nodes(tmp_path):
    from zerowizard.runner.launch import command
    from zerowizard.runner.options import Topology

    top = Topology(nproc=4, nnodes=2, node_rank=1, addr="h0", port=29400)
    cmd, ranks, how = command("auto", 4, top, tmp_path, {}, None)
    assert "torch.distributed.run" in cmd and "--nnodes=2" in cmd and "--node-rank=1" in cmd
    assert "--master-addr=h0" in cmd and ranks == [4, 5, 6, 7] and "node 1 of 2" in how


def test_importing_the_launcher_stays_light():
    code = (
        "import sys, zerowizard.runner.launch, zerowizard.core.recipes, zerowizard.runner.events;"
        "print(sorted(m for m in ('torch','deepspeed','transformers','textual') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_positional_recipe_name_is_a_recipe():
    opts = _options(["llama3_8b_lora_alpaca_e3", "--deepspeed", "deepspeed_zero3", "--max-steps", "7"])
    plan = opts.plan
    assert plan.method.type == "lora" and plan.deepspeed == "deepspeed_zero3"
    assert plan.train.max_steps == 7 and plan.model.name == "meta-llama/Meta-Llama-3-8B"
    assert opts.name == "llama3_8b_lora_alpaca_e3"


def test_unknown_positional_recipe_exits_2(tmp_path):
    from .conftest import run_zw

    res = run_zw(tmp_path, "llama3_8b_lora_alpaca_e4")
    assert res.returncode == 2 and "did you mean 'llama3_8b_lora_alpaca_e3'" in res.stderr
