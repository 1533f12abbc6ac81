"""Property-based: generated and mutated flags, plans, DeepSpeed JSONs and model config.json files
through the real CLI. For every case: exit 0 or 2, never a traceback, never the crash guard, never
a hang (a per-case alarm), and the user's files byte-identical unless the export succeeded.

A few hundred cases by default (a hundred under ``-m fast``), the same every run (derandomized,
so the fast tier never flakes);
``ZEROWIZARD_FUZZ_EXAMPLES=5000`` spreads that many over the tests, drawn afresh each run.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .harness import Sandbox, assert_answered, clear_crashes, run_cli
from .strategies import (
    ANY_TEXT,
    HOSTILE_TEXT,
    HOSTILE_VALUES,
    NUMBER_VALUES,
    VALID_FLAG_VALUES,
    command,
    ds_texts,
    model_configs,
    plan_flags,
    plan_texts,
)

TESTS = 6
DEFAULT_BUDGET = "100" if os.environ.get("ZEROWIZARD_FUZZ_TIER") == "fast" else "300"
BUDGET = int(os.environ.get("ZEROWIZARD_FUZZ_EXAMPLES", DEFAULT_BUDGET))
FUZZ = settings(
    max_examples=max(10, BUDGET // TESTS),
    deadline=None,
    derandomize="ZEROWIZARD_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A root for the sandboxes, and crash logs sent to a folder of their own (it must stay empty)."""
    root = tmp_path_factory.mktemp("fuzz")
    old = os.environ.get("ZEROWIZARD_CACHE")
    os.environ["ZEROWIZARD_CACHE"] = str(root / "cache")
    yield root
    if old is None:
        os.environ.pop("ZEROWIZARD_CACHE", None)
    else:
        os.environ["ZEROWIZARD_CACHE"] = old


def _case(world: Path, argv: list[str], written: set[str], files: dict[str, bytes] | None = None) -> None:
    box = Sandbox(world)
    try:
        for name, data in (files or {}).items():
            path = box.path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        box.before = box.snapshot()
        r = run_cli(argv, box.path)
        event(f"exit {r.code}")  # pytest --hypothesis-show-statistics: how many cases got through
        assert_answered(r, world / "cache" / "crash", argv)
        box.check(r, written, argv)
    finally:
        box.remove()
        clear_crashes(world / "cache" / "crash")


@FUZZ
@given(cmd=command(), flags=plan_flags())
def test_flags(world, cmd, flags):
    argv, written = cmd
    _case(world, argv + flags, written)


@FUZZ
@given(
    text=plan_texts(),
    cmd=st.sampled_from(
        [
            ["validate", "p.yaml"],
            ["estimate", "--plan", "p.yaml"],
            ["--export", "out.json", "--plan", "p.yaml"],
            ["--export-sbatch", "job.sh", "--plan", "p.yaml"],
        ]
    ),
)
def test_plan_files(world, text, cmd):
    written = {"out.json", "job.sh", "job.plan.yaml", "job.ds_config.json"}
    _case(world, cmd, written, {"p.yaml": text})


@FUZZ
@given(
    text=ds_texts(),
    cmd=st.sampled_from(
        [
            ["validate", "d.json"],
            ["validate", "d.json", "--json", "--gpus", "8"],
            ["estimate", "--deepspeed", "d.json"],
            ["--export", "out.json", "--deepspeed", "d.json"],
            ["--save-plan", "p2.yaml", "--deepspeed", "d.json", "--gpus", "2xA100-80GB"],
        ]
    ),
)
def test_deepspeed_json(world, text, cmd):
    _case(world, cmd, {"out.json", "p2.yaml"}, {"d.json": text})


@FUZZ
@given(
    text=model_configs(),
    cmd=st.sampled_from(
        [
            ["estimate", "--model", "m"],
            ["estimate", "--json", "--model", "m", "--method", "qlora"],
            ["--export", "out.json", "--model", "m"],
            ["validate", "plan.yaml", "--model", "m"],
        ]
    ),
)
def test_model_config(world, text, cmd):
    _case(world, cmd, {"out.json"}, {"m/config.json": text})


@FUZZ
@given(
    target=st.one_of(
        st.sampled_from(
            ["job.sh", "jobs/job.sh", "a b.sh", "q'uote.sh", "$(touch pwned).sh", "`x`.sh", "[red]j.sh", "%j.sh"]
        ),
        HOSTILE_TEXT,
    ),
    partition=st.one_of(st.none(), st.just("gpu"), st.just("a,b"), ANY_TEXT),
    time=st.one_of(
        st.none(),
        st.sampled_from(
            [
                "30",
                "30:00",
                "24:00:00",
                "1-12",
                "1-12:30",
                "2-00:00:00",
                "UNLIMITED",
                "infinite",
                "25:61:00",
                "1-24",
                "forever",
            ]
        ),
        ANY_TEXT,
    ),
    account=st.one_of(st.none(), st.just("proj_1"), ANY_TEXT),
)
def test_sbatch_values(world, target, partition, time, account):
    """Whatever is typed, a script that is written has exactly the template's commands, and every
    value reads back from it (as the shell and sbatch split it) exactly as given."""
    argv = ["--export-sbatch", target, "--gpus", "2xA100-80GB"]
    for flag, value in (("--partition", partition), ("--time", time), ("--account", account)):
        if value is not None:
            argv += [flag, value]
    box = Sandbox(world)
    try:
        (box.path / "jobs").mkdir()
        box.before = box.snapshot()
        r = run_cli(argv, box.path)
        event(f"exit {r.code}")
        assert_answered(r, world / "cache" / "crash", argv)
        stem = target[:-3] if target.endswith(".sh") else target
        box.check(r, {target, f"{stem}.plan.yaml", f"{stem}.ds_config.json"}, argv)
        if r.code == 0:
            _check_script((box.path / target).read_text(), box.path / target, partition, time, account)
        assert not (box.path / "pwned").exists()
    finally:
        box.remove()
        clear_crashes(world / "cache" / "crash")


def _check_script(text: str, script: Path, partition, time, account) -> None:
    commands = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[:2] == [
        "set -euo pipefail",
        'export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"',
    ]
    assert len(commands) == 5 and commands[2].startswith("srun --kill-on-bad-exit=1 zerowizard run --headless")
    srun = shlex.split(" ".join(line.rstrip("\\") for line in commands[2:]))
    plan = script.with_name(
        script.name[:-3] + ".plan.yaml" if script.name.endswith(".sh") else script.name + ".plan.yaml"
    )
    assert srun[srun.index("--plan") + 1] == str(plan)
    sbatch = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --") :].partition("=")
            (sbatch[key],) = shlex.split(value)
    for key, given_value in (("partition", partition), ("time", time), ("account", account)):
        if given_value is not None:
            assert sbatch[key] == given_value.strip() if key == "time" else sbatch[key] == given_value


@FUZZ
@given(data=st.binary(max_size=300), name=st.sampled_from(["f.json", "f.yaml", "f.yml", "f", "f.txt"]))
def test_any_file_to_validate(world, data, name):
    _case(world, ["validate", name], set(), {name: data})


# -- exhaustive: every flag with every hostile text (random draws reach a pair only by luck) ----------


@pytest.mark.parametrize("flag", sorted(VALID_FLAG_VALUES))
def test_every_flag_with_every_hostile_value(world, flag):
    crash_dir = world / "cache" / "crash"
    box = Sandbox(world)
    try:
        for i, value in enumerate(HOSTILE_VALUES + NUMBER_VALUES):  # both argv forms, alternately
            for argv in (["estimate", flag, value] if i % 2 else ["--export", "out.json", f"{flag}={value}"],):
                r = run_cli(argv, box.path)
                assert_answered(r, crash_dir, argv)
                box.check(r, {"out.json"}, argv)
                (box.path / "out.json").unlink(missing_ok=True)
                box.before = box.snapshot()
    finally:
        box.remove()
        clear_crashes(crash_dir)


def _fields():
    import dataclasses

    from zerowizard.core.plan import SECTIONS, Plan

    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            yield section, f.name
    for f in dataclasses.fields(Plan):
        if f.name not in SECTIONS:
            yield None, f.name


@pytest.mark.parametrize("section, name", list(_fields()))
def test_every_plan_field_with_every_hostile_value(tmp_path, monkeypatch, section, name):
    """The core straight (no CLI): a plan field holding any hostile value is a PlanError or a plan
    that analyze() and the export take without raising."""
    import math

    from zerowizard.core.analysis import analyze
    from zerowizard.core.plan import PlanError, plan_from_dict

    monkeypatch.chdir(tmp_path)
    (tmp_path / "fifo").mkdir()
    odd = [0, -1, 10**30, 2**63, 1e300, math.nan, math.inf, True, None, [], {}, ["x"]]
    values = [*HOSTILE_VALUES, *NUMBER_VALUES, *odd]
    for value in values:
        data = {name: value} if section is None else {section: {name: value}}
        try:
            plan = plan_from_dict(data)
        except PlanError as exc:
            assert all(len(e) < 400 for e in exc.errors), exc.errors
            continue
        a = analyze(plan)
        if a.ds is not None and not a.errors:
            json.dumps(a.ds.config, allow_nan=False)
