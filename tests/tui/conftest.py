"""Shared pieces for the TUI tests: a pinned plan (catalog GPU, fixed host RAM, no NVML)."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.fixture
def make():
    from zerowizard.tui.app import make_app

    def build(plan: Plan | None = None, plan_path: str | None = None):
        return make_app(plan or pinned_plan(), plan_path, detection=NO_NVML)

    return build


@pytest.fixture
def anyio_backend():
    return "asyncio"
