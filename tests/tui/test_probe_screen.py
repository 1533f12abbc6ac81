"""Probe from the plan screen (issue 13: the probe work shows here). The real probe trains each
candidate for a few steps through the runner: the slow tier, and only where
``zerowizard/runner/probe.py`` is installed (the probe helper's branch)."""

from __future__ import annotations

import importlib.util

import pytest

from zerowizard.tui.widgets.memory_bars import MemoryBars

from .conftest import SIZE, screen_text, tiny_plan, wait_for

pytestmark = pytest.mark.anyio
HAVE_PROBE = importlib.util.find_spec("zerowizard.runner.probe") is not None


@pytest.mark.skipif(HAVE_PROBE, reason="the probe is installed: see the slow test")
async def test_probe_says_when_it_is_not_installed(make):
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        assert app.screen is app.plan_screen
        assert any("probe is not in this build" in str(n.message) for n in app._notifications)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_PROBE, reason="zerowizard/runner/probe.py is not in this tree yet")
async def test_probe_measures_marks_the_bars_and_uses_the_winner(make, tmp_path):
    from zerowizard.core.analysis import analyze
    from zerowizard.runner.probe import ProbeOptions
    from zerowizard.tui.screens.probe_screen import ProbeScreen

    from .conftest import NO_NVML

    plan = tiny_plan(tmp_path / "run", 40)
    app = make(plan)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = ProbeScreen(plan, analyze(plan, detection=NO_NVML), ProbeOptions(candidates="z1,z2", steps=1))
        await app.push_screen(screen)
        assert await wait_for(pilot, lambda: bool(screen.rows), 300)  # live progress per candidate
        assert await wait_for(pilot, lambda: screen.result is not None or bool(screen.error), 1200)
        assert screen.result is not None, screen.error
        assert "winner" in "\n".join(screen_text(app))
        bars = app.plan_screen.query_one(MemoryBars)
        assert bars.measured  # measured peaks and step times on the plan's bars
        await pilot.press("u")
        await pilot.pause()
        assert app.screen is app.plan_screen
        assert app.plan_screen.plan.zero.stage == screen.result.winner_result.candidate.variant.stage
