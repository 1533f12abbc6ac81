"""Help (F1, ?), the command palette's actions and "set" entries, and the model picker's search
(issue 13, item 11; issue 15, item 6)."""

from __future__ import annotations

import pytest
from textual.command import CommandPalette
from textual.widgets import Input, OptionList

from zerowizard.core.modelcards import catalog
from zerowizard.tui.commands import PLAN_ACTIONS
from zerowizard.tui.labels import LABELS
from zerowizard.tui.screens.help_screen import HelpScreen
from zerowizard.tui.screens.picker import Picker
from zerowizard.tui.screens.plan_screen import PlanScreen

from .conftest import SIZE, field, wait_for

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("key", ["f1", "question_mark"])
async def test_help_opens_with_f1_and_question_mark(make, key):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        field(app.plan_screen, "batch.micro_batch").focus()  # "?" in a number box is help, not text
        await pilot.press(key)
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").render())
        for mark in "★▶│»✖":
            assert mark in text
        for name in LABELS.values():  # every field
            assert name in text
        for b in PlanScreen.BINDINGS:  # every key
            assert b.description in text
        await pilot.press("escape")
        assert app.screen is app.plan_screen
        assert field(app.plan_screen, "batch.micro_batch").value == "1"


async def test_question_mark_types_into_a_path_box(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        box = field(app.plan_screen, "data.path")
        box.focus()
        await pilot.press("a", "question_mark")
        assert box.value == "a?"
        assert app.screen is app.plan_screen


async def test_the_palette_lists_the_apps_actions(make):
    app = make()
    async with app.run_test(size=SIZE):
        titles = {c.title for c in app.get_system_commands(app.plan_screen)}
        for title, _help, _action in PLAN_ACTIONS:
            assert title in titles
        assert "Help" in titles
        assert {"Set GPU: H100-80GB", "Set Preset: deepspeed_zero3", "Set Stage: 3"} <= titles
        assert {f"Set Model: {m}" for m in catalog()} <= titles


async def test_set_model_from_the_palette(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"set model qwen2.5-7b")
        palette = app.screen

        def index() -> int | None:
            ol = palette.query_one(OptionList)
            prompts = [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)]
            return next((i for i, p in enumerate(prompts) if p.split("\n")[0] == "Set Model: qwen2.5-7b"), None)

        assert await wait_for(pilot, lambda: index() is not None, 10)
        palette.query_one(OptionList).highlighted = index()
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.plan_screen.plan.model.name == "qwen2.5-7b", 5)
        assert field(app.plan_screen, "model.name").plan_value == "qwen2.5-7b"


async def test_export_from_the_palette(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"export")
        palette = app.screen
        assert await wait_for(pilot, lambda: palette.query_one(OptionList).option_count > 0, 10)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: type(app.screen).__name__ == "PathsDialog", 5)


async def test_the_model_picker_searches_the_catalog(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.plan_screen
        field(screen, "model.name").focus()
        await pilot.press("enter")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, Picker)
        assert picker.query_one(Input).has_focus  # type straight away
        await pilot.press(*"qwen 7b")
        await pilot.pause()
        shown = [v for v in picker.shown if isinstance(v, str)]
        assert "qwen2.5-7b" in shown
        assert all("qwen" in v and "7" in (v + picker.rows[[r[1] for r in picker.rows].index(v)][2]) for v in shown)
        assert len(shown) < len(catalog())
        await pilot.press("enter")
        await pilot.pause()
        assert screen.plan.model.name == "qwen2.5-7b"


async def test_the_picker_searches_descriptions_too(make):
    """The family and the hub id are searched: 'meta-llama' finds the Llama cards."""
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        field(app.plan_screen, "model.name").focus()
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press(*"meta-llama")
        await pilot.pause()
        shown = [v for v in app.screen.shown if isinstance(v, str)]
        assert shown and all(catalog()[v].get("hub_id", "").startswith("meta-llama") for v in shown)
        await pilot.press("escape")
        assert app.screen is app.plan_screen and app.plan_screen.plan.model.name == "llama-3-8b"


async def test_the_picker_finds_mixture_of_experts_models(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        field(app.plan_screen, "model.name").focus()
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press(*"moe")
        await pilot.pause()
        picker = app.screen
        shown = [v for v in picker.shown if isinstance(v, str)]
        descriptions = {label: desc for label, _, desc in picker.rows}
        assert len(shown) >= 3 and all("MoE" in descriptions[v] or "moe" in v for v in shown)
