"""The plan's fields in five groups: hardware, model and method, batch, ZeRO / DeepSpeed, train.

Only layout: each control posts ``PlanField.Edited`` and the screen owns the plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll

from zerowizard.core.hardware import CATALOG, Detection
from zerowizard.core.modelcards import catalog
from zerowizard.core.plan import METHODS, OFFLOAD_DEVICES, PRECISIONS, PRESET_NAMES, Plan
from zerowizard.core.text import fmt_cc, fmt_gib

from ..labels import get_field
from .field_group import FieldGroup
from .fields import ChoiceField, NumberField, PlanField, TextField, ToggleField
from .note import Note

FROM_BASE = "from base"
DATA_FORMATS = ("auto", "alpaca", "chat", "oasst1")


def detection_summary(det: Detection) -> str:
    """What NVML found, one GPU a line; or a short line (the full reason is the tooltip)."""
    if det.gpus:
        return "\n".join(
            f"GPU {g.index}: {g.name} {fmt_gib(g.memory_bytes)} cc {g.compute_capability[0]}.{g.compute_capability[1]}"
            for g in det.gpus
        )
    return "NVML: no GPU visible"


def _size(n: int) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def describe_model(name: str) -> str:
    """'llama · 8.03B · meta-llama/Meta-Llama-3-8B' (the picker's search reads it too)."""
    from zerowizard.core.modelcards import resolve_model

    card = catalog().get(name) or {}
    parts = [str(card.get("family", ""))]
    try:
        spec = resolve_model(name)
        parts.append(_size(spec.total_params))
        if getattr(spec, "is_moe", False):  # searchable as "moe"
            parts.append(f"MoE, {_size(spec.active_params)} active")
    except Exception:  # noqa: BLE001 - a card the model code cannot read yet: no count
        pass
    if card.get("hub_id"):
        parts.append(str(card["hub_id"]))
    return " · ".join(p for p in parts if p)


def optimizers() -> list[tuple[str, Any]]:
    from zerowizard.core.optimizers import SUPPORTED

    return [("from base", None)] + [(name, name) for name in SUPPORTED]


def describe_optimizer(name: str | None) -> str:
    from zerowizard.core.optimizers import SUPPORTED

    o = SUPPORTED.get(name or "")
    if o is None:
        return "the base JSON's optimizer, else the trainer's AdamW"
    return f"{o.state_bytes} bytes of state per parameter: {o.states}"


def describe_gpu(name: str) -> str:
    g = CATALOG.get(name)
    if g is None:
        return {"auto": "what NVML reports, else the CPU", "cpu": "DeepSpeed's CPU accelerator (gloo, bf16)"}.get(
            name, ""
        )
    return f"{fmt_gib(g.memory_bytes)} · cc {fmt_cc(g.compute_capability)}"


class PlanForm(VerticalScroll):
    """Every editable field of a plan, initialised from ``plan``."""

    def __init__(self, plan: Plan, detection: Detection, *, id: str | None = None):
        super().__init__(id=id)
        self.plan, self.detection = plan, detection
        self.can_focus = False

    def groups(self) -> Iterator[FieldGroup]:
        p = self.plan

        def v(path: str):
            return get_field(p, path)

        gpus = [("auto", "auto"), ("cpu", "cpu")] + [(n, n) for n in CATALOG]
        offload = [(FROM_BASE, None)] + [(d, d) for d in OFFLOAD_DEVICES]
        hw_note = Note(id="hw-info", classes="info")
        hw_note.tooltip = self.detection.note or None
        yield FieldGroup(
            "Hardware",
            [
                ChoiceField("hardware.gpu", v("hardware.gpu"), gpus, describe=describe_gpu, search=True),
                NumberField("hardware.gpus_per_node", v("hardware.gpus_per_node"), optional=True, placeholder="all"),
                NumberField("hardware.nodes", v("hardware.nodes")),
                NumberField(
                    "hardware.host_ram_gb",
                    v("hardware.host_ram_gb"),
                    kind=float,
                    optional=True,
                    placeholder="GiB; this machine",
                    minimum=0.001,
                ),
            ],
            note=hw_note,
            id="g-hardware",
        )
        yield FieldGroup(
            "Model",
            [
                ChoiceField(
                    "model.name",
                    v("model.name"),
                    [(m, m) for m in catalog()],
                    describe=describe_model,
                    free="a local directory or hub id",
                    search=True,
                ),
                NumberField("model.params", v("model.params"), kind="count", optional=True, placeholder="e.g. 7B"),
                ChoiceField("method.type", v("method.type"), [(m, m) for m in METHODS]),
                NumberField("method.lora_r", v("method.lora_r")),
                NumberField("method.freeze_layers", v("method.freeze_layers"), minimum=0),
                ChoiceField("optimizer", v("optimizer"), optimizers(), describe=describe_optimizer),
                ChoiceField("precision", v("precision"), [(x, x) for x in PRECISIONS]),
            ],
            note=Note(id="model-info", classes="info"),
            id="g-model",
        )
        yield FieldGroup(
            "Batch",
            [
                NumberField("batch.micro_batch", v("batch.micro_batch")),
                NumberField("batch.grad_accum", v("batch.grad_accum")),
                NumberField("batch.seq_len", v("batch.seq_len")),
                ToggleField("batch.grad_checkpointing", v("batch.grad_checkpointing")),
            ],
            id="g-batch",
        )
        yield FieldGroup(
            "ZeRO / DeepSpeed",
            [
                ChoiceField("deepspeed", v("deepspeed"), [(n, n) for n in PRESET_NAMES], free="a DeepSpeed JSON path"),
                ChoiceField("zero.stage", v("zero.stage"), [(FROM_BASE, None)] + [(str(s), s) for s in range(4)]),
                ChoiceField("zero.offload_optimizer", v("zero.offload_optimizer"), offload),
                ChoiceField("zero.offload_param", v("zero.offload_param"), offload),
                TextField("zero.nvme_path", v("zero.nvme_path"), optional=True, placeholder="for nvme offload"),
            ],
            id="g-zero",
        )
        yield FieldGroup(
            "Train",
            [
                TextField("data.path", v("data.path"), optional=True, placeholder="JSON(L) or hub id; sample"),
                ChoiceField("data.format", v("data.format"), [(f, f) for f in DATA_FORMATS]),
                NumberField("train.epochs", v("train.epochs"), kind=float, minimum=0.001),
                NumberField("train.max_steps", v("train.max_steps"), optional=True, placeholder="from epochs"),
                NumberField("train.learning_rate", v("train.learning_rate"), kind=float, minimum=0.0),
                NumberField("train.save_steps", v("train.save_steps"), minimum=0, placeholder="0: at the end"),
                NumberField("train.logging_steps", v("train.logging_steps")),
                TextField("output", v("output"), optional=True, placeholder="work_dirs/<new>"),
            ],
            id="g-train",
        )

    def compose(self) -> ComposeResult:
        yield from self.groups()

    def fields(self) -> list[PlanField]:
        return [f for g in self.query(FieldGroup) for f in g.fields]
