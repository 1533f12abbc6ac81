"""A saved plan works from any folder (issue 13, item 7); the app's fixes name its fields, not
the command line's flags (item 10)."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from zerowizard.core.analysis import analyze
from zerowizard.core.plan import load_plan, update
from zerowizard.tui.labels import LABELS, app_text
from zerowizard.tui.widgets.problems import render_problems

from .conftest import NO_NVML, SIZE, blocked_plan, pinned_plan
from .test_plan_screen import pick

pytestmark = pytest.mark.anyio


async def test_a_plan_saved_here_validates_from_elsewhere(make, tmp_path, monkeypatch, zw):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    (here / "my_ds.json").write_text('{"zero_optimization": {"stage": 3}}')
    monkeypatch.chdir(here)
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        await pick(pilot, screen, "deepspeed", "my_ds.json")  # relative to where the app runs
        assert screen.plan.deepspeed == "my_ds.json" and not screen.analysis.errors
        await pilot.press("ctrl+s")
        await pilot.pause()
        app.screen.query_one("#path-plan", Input).value = "plan.yaml"
        await pilot.press("enter")
        await pilot.pause()
    assert load_plan(here / "plan.yaml").deepspeed == str(here / "my_ds.json")
    r = zw("validate", here / "plan.yaml", cwd=elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("cli", "app"),
    [
        ("use --stage 3, or --offload-param none", "set Stage to 3, or set Offload par to none"),
        ("ZeRO-1 opt→cpu fits (35.3 GiB): --stage 1 --offload-optimizer cpu", "set Stage to 1, Offload opt to cpu"),
        ("set --host-ram-gb to check it", "set Host RAM to check it"),
        ("use --seq-len 8192 or less", "set Seq length to 8192 or less"),
        ("set zero.nvme_path (e.g. /local_nvme)", "set NVMe path (e.g. /local_nvme)"),
        ("see `zerowizard presets`, or give --params 7B", "set Params to 7B"),
        ("use --no-grad-checkpointing", "switch Grad ckpt off"),
        ("use ZeRO-2 (--deepspeed deepspeed_zero2)", "use ZeRO-2 (set Preset to deepspeed_zero2)"),
    ],
)
def test_fix_texts_name_the_apps_fields(cli, app):
    assert app in app_text(cli)


def problem_plans():
    base = pinned_plan()
    yield blocked_plan()
    yield update(base, "hardware", gpus_per_node=1)  # nothing of ZeRO-2 fits one GPU
    yield update(base, "batch", seq_len=100_000)
    yield update(base, "model", name="no/such-model")
    yield update(base, "zero", stage=2, offload_param="cpu")
    yield update(base, "zero", stage=3, offload_optimizer="nvme")
    yield update(update(base, "hardware", host_ram_gb=None), "zero", offload_optimizer="cpu")
    yield update(base, None, precision="fp16", deepspeed="deepspeed_zero2")


@pytest.mark.parametrize("plan", list(problem_plans()))
def test_the_apps_problems_speak_no_flags(plan):
    a = analyze(plan, detection=NO_NVML)
    assert a.problems
    text = render_problems(a.problems).plain
    assert "--" not in text, text
    for p in a.problems:  # each problem names a field the form has, by its label
        if p.field in LABELS:
            assert LABELS[p.field] in text
