"""Behaviour of the planning screen, driven with Pilot and asserted on state."""

from __future__ import annotations

import asyncio
import json

import pytest
from textual import events
from textual.widgets import Button, Input

from zerowizard.core.plan import load_plan
from zerowizard.tui.screens.picker import Picker
from zerowizard.tui.widgets.memory_bars import MemoryBars
from zerowizard.tui.widgets.problems import ProblemsList

from .conftest import SIZE, blocked_plan, field

pytestmark = pytest.mark.anyio


def _totals(screen) -> dict:
    bars = screen.query_one(MemoryBars)
    return {e.variant: e.per_gpu.total for e in bars.analysis.estimates}


async def pick(pilot, screen, path: str, shown: str) -> None:
    """Choose ``shown`` in a list field the way a person does: focus, enter, type, enter."""
    field(screen, path).focus()
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(pilot.app.screen, Picker)
    if pilot.app.screen.search and len(shown) > 16:  # a long path is pasted, as a person would
        pilot.app.screen.focused.post_message(events.Paste(shown))
        await pilot.pause()
        await pilot.press("enter")
    elif pilot.app.screen.search:
        await pilot.press(*shown, "enter")
    else:
        ol = pilot.app.screen.query_one("OptionList")
        ol.highlighted = pilot.app.screen.shown.index(next(v for lbl, v, _ in pilot.app.screen.rows if lbl == shown))
        await pilot.press("enter")
    await pilot.pause()


async def test_changing_gpus_changes_the_bars(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        before = _totals(screen)
        await pilot.click("#f-hardware-gpus_per_node")
        await pilot.press("end", "backspace", "2")
        await pilot.pause()
        assert screen.plan.hardware.gpus_per_node == 2
        after = _totals(screen)
        zero3 = next(v for v in before if v.stage == 3 and v.offload_optimizer == "none")
        assert after[zero3] > before[zero3]  # fewer GPUs share the model states
        assert screen.query_one(MemoryBars).analysis.hardware.world_size == 2


async def test_qlora_with_zero3_is_blocked(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        await pick(pilot, screen, "method.type", "qlora")
        await pick(pilot, screen, "zero.stage", "3")
        assert screen.plan.method.type == "qlora" and screen.plan.zero.stage == 3
        problems = screen.query_one(ProblemsList)
        assert any(p.severity == "error" and "QLoRA" in p.message for p in problems.problems)
        assert problems.has_class("-has-errors")
        assert "zero.stage" in screen.query_one("#g-zero").errors  # the field at fault is marked
        assert screen.query_one("#export", Button).disabled
        assert screen.query_one("#run", Button).disabled
        assert "blocked" in str(screen.query_one("#blocked").content)
        assert screen.check_action("export", ()) is None
        await pilot.press("ctrl+t")  # the binding does nothing either
        assert len(app.screen_stack) == 2
        # ZeRO-2 lifts the block (← steps back through the list)
        field(screen, "zero.stage").focus()
        await pilot.press("left")
        await pilot.pause()
        assert screen.plan.zero.stage == 2
        assert not screen.query_one("#export", Button).disabled


async def test_loaded_blocked_plan_shows_error(make):
    app = make(blocked_plan())
    async with app.run_test(size=SIZE):
        screen = app.plan_screen
        assert screen.analysis.errors
        assert screen.query_one("#export", Button).disabled


async def test_export_writes_valid_files(make, tmp_path):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        await pilot.click("#export")
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#path-ds", Input).value = str(tmp_path / "out" / "ds.json")
        dialog.query_one("#path-plan", Input).value = str(tmp_path / "out" / "plan.yaml")
        await pilot.click("#ok")
        await pilot.pause()
        assert app.screen is screen
        config = json.loads((tmp_path / "out" / "ds.json").read_text())
        assert config == screen.analysis.ds.config
        assert config["zero_optimization"]["stage"] == 2
        assert config["train_micro_batch_size_per_gpu"] == 1
        assert load_plan(tmp_path / "out" / "plan.yaml") == screen.plan


async def test_save_then_load_round_trips(make, tmp_path):
    path = tmp_path / "p.yaml"
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        await pick(pilot, screen, "method.type", "lora")
        await pilot.press("ctrl+s")
        await pilot.pause()
        app.screen.query_one("#path-plan", Input).value = str(path)
        await pilot.press("enter")
        await pilot.pause()
        assert load_plan(path).method.type == "lora"
        screen.set_value("method.type", "full")
        await pilot.pause()
        assert screen.load_from(str(path))
        await pilot.pause()
        assert screen.plan.method.type == "lora"
        assert field(screen, "method.type").plan_value == "lora"
        bad = tmp_path / "bad.yaml"
        bad.write_text("batch:\n  micro_bach: 2\n")
        assert not screen.load_from(str(bad))  # refused, with the did-you-mean in a notification
        await pilot.pause()
        assert screen.plan.method.type == "lora"
        assert any("micro_batch" in str(n.message) for n in app._notifications)
        assert not field(screen, "method.lora_r").disabled


async def test_clicking_a_bar_and_ctrl_g_pick_variants(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        bars = screen.query_one(MemoryBars)
        rows = [e.variant for e in bars.analysis.estimates]
        row = next(
            i for i, v in enumerate(rows) if v.stage == 3 and v.offload_optimizer == "cpu" and v.offload_param == "cpu"
        )
        await pilot.click(MemoryBars, offset=(5, 2 + row))
        await pilot.pause()
        assert screen.plan.deepspeed == "deepspeed_zero3_offload"
        assert screen.analysis.selected.variant == rows[row]
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert screen.analysis.selected.variant == screen.analysis.recommended.variant
        assert screen.plan.deepspeed == "deepspeed_zero1"


async def test_custom_json_and_unknown_model_through_the_pickers(make, tmp_path):
    custom = tmp_path / "my_ds.json"
    custom.write_text('{"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 8}')
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        await pick(pilot, screen, "deepspeed", str(custom))  # typed text that is no preset: a path
        assert screen.plan.deepspeed == str(custom)
        assert screen.analysis.selected.variant.stage == 3
        await pilot.press("f3")
        await pilot.pause()
        text = str(screen.query_one("#preview").render())
        assert '"train_micro_batch_size_per_gpu": 1' in text  # the plan's micro batch wins ...
        assert "● " in text and "override" in text  # ... and the line is marked
        await pick(pilot, screen, "model.name", "no/such-model")
        assert screen.plan.model.name == "no/such-model"
        assert screen.analysis.model is None
        assert "✖" in str(screen.query_one("#model-info").content)
        assert screen.query_one("#export", Button).disabled


async def test_a_keystroke_repaints_field_and_bars_in_one_frame(make):
    """The typed character and the bars it changed go out in one frame, with no layout: a second
    frame would hold the bars back by 1/60 s (see benchmarks/tui.py)."""
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        box = field(screen, "hardware.gpus_per_node")
        box.focus()
        await pilot.pause()
        box.action_end()
        await pilot.pause()
        bars = screen.query_one(MemoryBars)
        before = bars.analysis
        frames, layouts, done = [], [], asyncio.Event()
        display, reflow = app._display, screen._refresh_layout

        def counted_display(s, renderable):
            if renderable is not None:  # a frame: does it hold the bars of the new analysis?
                frames.append(bars.analysis is not before and bars._lines_key[0] == id(bars.analysis))
                if frames[-1]:
                    done.set()
            return display(s, renderable)

        def counted_reflow(*args, **kwargs):
            layouts.append(dict(screen._layout_widgets))  # who asked for it
            return reflow(*args, **kwargs)

        app._display, screen._refresh_layout = counted_display, counted_reflow
        key = events.Key("6", "6")  # "8" -> "86": the value gets longer, as typing does
        key.set_sender(app)
        app._driver.send_message(key)
        await asyncio.wait_for(done.wait(), 5)
        assert box.value == "86" and screen.plan.hardware.gpus_per_node == 86
        assert frames == [True]  # one frame, and the bars in it were drawn from the new analysis
        assert layouts == []
