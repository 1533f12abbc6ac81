"""The app's entries in the command palette (ctrl+p): every action, and "set <field> to <value>"
for the fields with a list of values (GPU, model, method, precision, preset, stage, offload).

The actions are the same ones the keys and the buttons run; the "set" entries show only when
searched for ("set model qwen", "gpu h100"), so the list stays short when the palette opens.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.app import SystemCommand

from zerowizard.core.hardware import CATALOG
from zerowizard.core.modelcards import catalog
from zerowizard.core.plan import METHODS, OFFLOAD_DEVICES, PRECISIONS, PRESET_NAMES

from .labels import label

if TYPE_CHECKING:
    from .screens.plan_screen import PlanScreen

# (title, help, action on the plan screen)
PLAN_ACTIONS = (
    ("Export", "write the final DeepSpeed JSON and the plan (ctrl+t)", "export"),
    ("Run", "train with this plan; the run screen shows progress, loss and memory (ctrl+r)", "run"),
    ("Probe", "run a few real steps of each candidate: measured memory and step time (F5)", "probe"),
    ("Use ★ (the recommended variant)", "apply the recommended stage and offload (ctrl+g)", "use_recommended"),
    ("Save plan", "write the plan as YAML (ctrl+s)", "save"),
    ("Load plan", "read a plan YAML (ctrl+o)", "load"),
    ("Past runs", "the runs in ./work_dirs: view one, resume one (F6)", "runs"),
    ("Show problems", "the rules' verdict (F2)", "show_tab('problems')"),
    ("Show DeepSpeed JSON", "the final config, with what the plan changed marked (F3)", "show_tab('json')"),
)


def choices() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    """(plan field, [(shown, value)]) for every field with a fixed list of values."""
    yield "hardware.gpu", [(g, g) for g in ("auto", "cpu", *CATALOG)]
    yield "model.name", [(m, m) for m in catalog()]
    yield "method.type", [(m, m) for m in METHODS]
    yield "precision", [(p, p) for p in PRECISIONS]
    from zerowizard.core.optimizers import SUPPORTED

    yield "optimizer", [("from base", None)] + [(o, o) for o in SUPPORTED]
    yield "deepspeed", [(p, p) for p in PRESET_NAMES]
    yield "zero.stage", [("from base", None)] + [(str(s), s) for s in range(4)]
    offload = [("from base", None)] + [(d, d) for d in OFFLOAD_DEVICES]
    yield "zero.offload_optimizer", offload
    yield "zero.offload_param", offload


def plan_commands(screen: PlanScreen) -> Iterator[SystemCommand]:
    for title, help_text, action in PLAN_ACTIONS:
        yield SystemCommand(title, help_text, partial(screen.run_action, action))
    for path, values in choices():
        name = label(path)
        for shown, value in values:
            yield SystemCommand(
                f"Set {name}: {shown}", f"{path} = {shown}", partial(screen.set_value, path, value), discover=False
            )
