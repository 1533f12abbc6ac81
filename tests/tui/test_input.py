"""Typing into the form: fast edits never corrupt a number, bad input is loud (issue 13, items 2-3)."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Button, Input

from zerowizard.core.plan import load_plan

from .conftest import SIZE, burst, field, screen_text

pytestmark = pytest.mark.anyio


async def focus_end(pilot, box) -> None:
    box.focus()
    await pilot.pause()
    box.action_end()
    await pilot.pause()


async def test_holding_backspace_never_leaves_a_stale_digit(make):
    """Type 4096, then hold Backspace (the terminal delivers the repeats in a burst), type 2: the
    box says 2 and so does the plan. The screen used to write its older value back into the box
    while the keys were still arriving ("4" stayed, "2" made 24); and keys arriving in one read
    were reordered (Textual runs an editing key after the characters that followed it)."""
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        box = field(screen, "batch.micro_batch")
        await focus_end(pilot, box)
        for together in (False, True) * 3:
            burst(app, "backspace", *"4096")
            await pilot.pause()
            assert box.value == "4096"
            if together:  # one read: the backspaces and the digit after them arrive at once
                burst(app, *["backspace"] * 6, "2")
            else:
                burst(app, *["backspace"] * 6)
                await pilot.pause()
                burst(app, "2")
            await pilot.pause()
            await pilot.pause()
            assert box.value == "2"
            assert screen.plan.batch.micro_batch == 2
            assert not screen.input_errors


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "below the minimum 1"),
        ("-1", "below the minimum 1"),
        ("abc", "expected a whole number"),
        ("2.5", "expected a whole number"),
        ("", "required"),
    ],
)
async def test_invalid_numbers_are_loud_and_block_export(make, tmp_path, text, why):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        box = field(screen, "batch.micro_batch")
        await focus_end(pilot, box)
        await pilot.press("backspace", *text)
        await pilot.pause()
        assert box.value == text  # what was typed stays there, marked
        assert box.has_class("-invalid")
        assert why in screen.input_errors["batch.micro_batch"]
        # a message by the field ...
        group = screen.query_one("#g-batch")
        assert "batch.micro_batch" in group.messages and group._message.display
        form = " ".join(" ".join(row[:38].split()) for row in screen_text(app))
        assert f"✖ Micro batch: {why}" in form or why.split()[0] in form.split("✖ Micro batch:")[1]
        # ... an entry under Problems, and Export / Run disabled, by click and by key
        problems = screen.query_one("#problem-list").problems
        assert problems[0].severity == "error" and problems[0].field == "batch.micro_batch"
        assert screen.query_one("#export", Button).disabled and screen.query_one("#run", Button).disabled
        await pilot.click("#export")
        await pilot.press("ctrl+t", "ctrl+r")
        assert app.screen is screen
        # fixing it unblocks, and the export writes what the screen shows
        await focus_end(pilot, box)
        await pilot.press(*["backspace"] * 4, "3")
        await pilot.pause()
        assert not screen.input_errors and not box.has_class("-invalid")
        assert not group._message.display
        screen.do_export(str(tmp_path / "ds.json"), str(tmp_path / "plan.yaml"))
        assert json.loads((tmp_path / "ds.json").read_text())["train_micro_batch_size_per_gpu"] == 3
        assert load_plan(tmp_path / "plan.yaml").batch.micro_batch == 3


async def test_scientific_notation_is_read_not_mangled(make):
    """1e9 used to become 19 (the integer box dropped the 'e'): it is a number, read as one, and
    checked against the plan's bounds like a plan file's value."""
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        box = field(screen, "batch.micro_batch")
        await focus_end(pilot, box)
        await pilot.press("backspace", *"1e3")
        await pilot.pause()
        assert box.value == "1e3" and screen.plan.batch.micro_batch == 1000
        assert screen.analysis.errors  # it does not fit: loud, and Export is blocked
        await pilot.press(*["backspace"] * 3, *"1e9")
        await pilot.pause()
        assert box.value == "1e9" and "above the maximum" in screen.input_errors["batch.micro_batch"]
        assert screen.plan.batch.micro_batch == 1  # the last valid value typed ("1", on the way to 1e9)
        assert screen.query_one("#export", Button).disabled


async def test_empty_optional_fields_are_not_errors(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        for path in ("hardware.gpus_per_node", "hardware.host_ram_gb", "train.max_steps", "model.params"):
            box = field(screen, path)
            await focus_end(pilot, box)
            await pilot.press(*["backspace"] * 6)
            await pilot.pause()
            assert box.value == ""
            assert path not in screen.input_errors
        assert screen.plan.hardware.gpus_per_node is None and screen.plan.hardware.host_ram_gb is None
        assert not screen.input_errors


async def test_a_loaded_plan_replaces_text_that_was_not_valid(make, tmp_path):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        box = field(screen, "batch.grad_accum")
        await focus_end(pilot, box)
        await pilot.press("backspace", *"x")
        await pilot.pause()
        assert screen.input_errors
        path = tmp_path / "p.yaml"
        path.write_text("batch:\n  grad_accum: 4\n")
        assert screen.load_from(str(path))
        await pilot.pause()
        assert box.value == "4" and not screen.input_errors and not box.has_class("-invalid")


async def test_text_fields_apply_on_enter_and_empty_is_the_default(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        box = field(screen, "output")
        box.focus()
        await pilot.press(*"work_dirs/mine", "enter")
        await pilot.pause()
        assert screen.plan.output == "work_dirs/mine"
        box.focus()
        box.action_end()
        await pilot.press(*["backspace"] * 20, "tab")
        await pilot.pause()
        assert screen.plan.output is None
        assert isinstance(box, Input)
