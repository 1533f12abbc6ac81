"""Shared pieces for the TUI tests: a pinned plan (catalog GPU, fixed host RAM, no NVML), and
helpers that drive the app as a person does (keys as the terminal delivers them, clicks)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual import events

from zerowizard.core.hardware import Detection
from zerowizard.core.plan import Plan, update

DATA = Path(__file__).parent / "data"
SIZE = (100, 30)
NO_NVML = Detection(note="no NVIDIA driver (pinned for tests)")


def pinned_plan() -> Plan:
    """8 × A100-80GB, 512 GiB host RAM, Llama-3-8B full fine-tune: the same on every machine."""
    plan = update(Plan(), "hardware", gpu="A100-80GB", gpus_per_node=8, host_ram_gb=512.0)
    return update(plan, "model", name="llama-3-8b")


def blocked_plan() -> Plan:
    """QLoRA with ZeRO-3: an error the rules must block."""
    plan = update(pinned_plan(), "method", type="qlora")
    return update(plan, None, deepspeed="deepspeed_zero3")


def tiny_plan(output, steps: int, save_steps: int = 0) -> Plan:
    """The default plan (tiny-llama, CPU) cut down to a few short steps."""
    plan = update(Plan(), "train", max_steps=steps, save_steps=save_steps)
    plan = update(plan, "batch", seq_len=96, micro_batch=2, grad_checkpointing=False)
    plan = update(plan, "hardware", gpu="cpu", gpus_per_node=2)
    return update(plan, None, output=str(output))


def field(screen, path: str):
    """The control of a plan field ('batch.micro_batch')."""
    return screen.query_one("#f-" + path.replace(".", "-"))


def burst(app, *keys: str) -> None:
    """Keys as a terminal delivers a held key: all at once, nothing processed in between."""
    for k in keys:
        ev = events.Key(k, k if len(k) == 1 else None)
        ev.set_sender(app)
        app._driver.send_message(ev)


def screen_text(app) -> list[str]:
    """The characters on screen, one string a row (what a person sees, without colours)."""
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


async def wait_for(pilot, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(0.1)
    return predicate()


@pytest.fixture
def make():
    from zerowizard.tui.app import make_app

    def build(plan: Plan | None = None, plan_path: str | None = None):
        return make_app(plan or pinned_plan(), plan_path, detection=NO_NVML)

    return build


@pytest.fixture
def anyio_backend():
    return "asyncio"
