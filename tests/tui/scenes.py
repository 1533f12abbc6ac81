"""The screens the snapshot tests and screenshots/make_screenshots.py render, pinned to be the same
on every machine (catalog GPU, fixed host RAM, no NVML, a recorded event stream)."""

from __future__ import annotations

from zerowizard.core.analysis import analyze
from zerowizard.core.plan import Plan, update

from .conftest import DATA, NO_NVML, blocked_plan, pinned_plan

RUN_FOLDER = "work_dirs/tiny-llama_full_demo"


def app_for(plan, plan_path: str | None = "zerowizard.yaml"):
    from zerowizard.tui.app import make_app

    return make_app(plan, plan_path, detection=NO_NVML)


def plan_app():
    return app_for(pinned_plan())


def blocked_app():
    return app_for(blocked_plan())


def json_app():
    return app_for(update(pinned_plan(), "method", type="lora", lora_r=16))


def run_plan(steps: int = 40) -> Plan:
    """The recorded run: the tiny Llama, full fine-tune, two CPU ranks, logging every step."""
    plan = update(Plan(), "train", max_steps=steps, logging_steps=1)
    plan = update(plan, "hardware", gpu="cpu", gpus_per_node=2, host_ram_gb=24.0)
    return update(plan, None, output=RUN_FOLDER)


async def show_json(pilot) -> None:
    pilot.app.plan_screen.action_show_tab("json")
    await pilot.pause()


async def show_help(pilot) -> None:
    await pilot.press("f1")
    await pilot.pause()


async def show_run(pilot) -> None:
    """Push the run screen replaying the recorded run (make_screenshots.py --record makes it)."""
    from zerowizard.tui.screens.run_screen import RunScreen

    plan = run_plan()
    log = (DATA / "run_log.txt").read_text().splitlines()
    screen = RunScreen(
        plan, analyze(plan, detection=NO_NVML), RUN_FOLDER, replay=DATA / "run_events.jsonl", replay_log=log
    )
    await pilot.app.push_screen(screen)
    await pilot.pause()


SCENES = {  # name: (app factory, coroutine run before the picture)
    "plan": (plan_app, None),
    "blocked": (blocked_app, None),
    "json": (json_app, show_json),
    "run": (plan_app, show_run),
    "help": (plan_app, show_help),
}
