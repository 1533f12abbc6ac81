"""RunOptions: every run flag and launcher variable checked before anything is written, and the
rule that merges --resume with the flags given beside it."""

from __future__ import annotations

import pytest

from zerowizard.cli import main

BAD_FLAGS = [
    (["--epochs", "-1"], "--epochs"),
    (["--epochs", "nan"], "--epochs"),
    (["--epochs", "inf"], "--epochs"),
    (["--max-steps", "0"], "--max-steps"),
    (["--max-steps", "2.5"], "--max-steps"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--logging-steps", "0"], "--logging-steps"),
    (["--save-steps", "-1"], "--save-steps"),
    (["--node-rank", "5"], "--node-rank"),
    (["--nproc-per-node", "0"], "--nproc-per-node"),
    (["--master-port", "70000"], "--master-port"),
    (["--master-port", "0"], "--master-port"),
    (["--nnodes", "2"], "--master-port"),  # several nodes need a port every node knows
]
BAD_ENV = [
    ("NPROC_PER_NODE", "abc"),
    ("NPROC_PER_NODE", "0"),
    ("NPROC_PER_NODE", "-1"),
    ("NNODES", "x"),
    ("NODE_RANK", "3"),
    ("ADDR", "a b"),
    ("PORT", "65536"),
    ("MASTER_PORT", "http"),
]


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, _ in BAD_ENV:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _refused(capsys, here, argv, needle):
    rc = main(["run", "--headless", *argv, "--output", str(here / "run")])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.startswith("zerowizard: error:")]
    assert len(lines) == 1 and needle in lines[0] and ";" in lines[0], err  # names it, then the fix
    assert list(here.iterdir()) == []  # nothing written


@pytest.mark.parametrize("argv,flag", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_run_flag_is_refused_before_anything_is_written(capsys, here, argv, flag):
    _refused(capsys, here, argv, flag)


@pytest.mark.parametrize("name,value", BAD_ENV, ids=[f"{n}={v}" for n, v in BAD_ENV])
def test_bad_launcher_variable_is_refused(capsys, here, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    _refused(capsys, here, [], f"{name}=")


def _saved_run(folder, **batch):
    from zerowizard.core.plan import dump_plan, update
    from zerowizard.core.recipes import DEFAULT_RECIPE, load_recipe

    plan = update(load_recipe(DEFAULT_RECIPE), "batch", **batch)
    plan = update(plan, "train", max_steps=6, learning_rate=1e-3)
    (folder / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    (folder / "plan.yaml").write_text(dump_plan(plan))
    return plan


def _options(argv):
    from zerowizard.cli import build_parser
    from zerowizard.planflags import plan_from_args
    from zerowizard.runner.options import build_run_options

    args = build_parser("run").parse_args(["run", "--headless", *argv])
    return build_run_options(args, plan_from_args(args))


def test_resume_replays_the_saved_plan_with_this_command_lines_flags_on_top(here):
    run = here / "run"
    saved = _saved_run(run, micro_batch=4, seq_len=96)
    opts = _options(["--resume", str(run), "--max-steps", "10", "--micro-batch", "2"])
    assert opts.resume and opts.output == run
    plan = opts.plan
    assert plan.train.max_steps == 10 and plan.batch.micro_batch == 2  # the flags win
    assert plan.batch.seq_len == 96 and plan.train.learning_rate == saved.train.learning_rate  # the rest is saved
    assert sorted(opts.changes) == ["batch.micro_batch: 4 -> 2", "train.max_steps: 6 -> 10"]
    assert _options(["--resume", str(run)]).changes == ()  # nothing given: nothing changes


def test_resume_rule_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "saved plan.yaml is the base" in out and "applies on top of it" in out


def test_resume_into_another_output_is_refused(capsys, here):
    _saved_run(here / "run")
    rc = main(["run", "--headless", "--resume", str(here / "run"), "--output", str(here / "other")])
    assert rc == 2 and "--output" in capsys.readouterr().err
    assert not (here / "other").exists()
