"""The plan's fields, grouped: hardware, model and method, batch, ZeRO / DeepSpeed.

Only layout: each field posts ``PlanField.Changed`` and the screen owns the plan.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from zerowizard.core.hardware import CATALOG, Detection
from zerowizard.core.modelspec import catalog
from zerowizard.core.plan import METHODS, OFFLOAD_DEVICES, PRECISIONS, PRESET_NAMES, Plan
from zerowizard.core.text import fmt_gib

from .fields import ChoiceField, NumberField, TextField, ToggleField
from .note import Note

FROM_BASE = "from base"


def detection_summary(det: Detection) -> str:
    """What NVML found, one GPU a line; or a short line (the full reason is the tooltip)."""
    if det.gpus:
        return "\n".join(
            f"GPU {g.index}: {g.name} {fmt_gib(g.memory_bytes)} cc {g.compute_capability[0]}.{g.compute_capability[1]}"
            for g in det.gpus
        )
    return "NVML: no GPU visible (hover: why)" if det.note else "NVML: no GPU visible"


class PlanForm(VerticalScroll):
    """Every editable field of a plan, initialised from ``plan``."""

    def __init__(self, plan: Plan, detection: Detection, *, id: str | None = None):
        super().__init__(id=id)
        self.plan, self.detection = plan, detection

    def compose(self) -> ComposeResult:
        p = self.plan
        models = list(catalog())
        gpu_opts = [("auto (NVML, else CPU)", "auto"), ("cpu (DS_ACCELERATOR=cpu)", "cpu")]
        gpu_opts += [(name, name) for name in CATALOG]
        offload = [(FROM_BASE, None)] + [(d, d) for d in OFFLOAD_DEVICES]
        yield Static("Hardware", classes="section")
        nvml = Static(detection_summary(self.detection), id="nvml", classes="info")
        nvml.tooltip = self.detection.note or None
        yield nvml
        yield ChoiceField("GPU", "hardware", "gpu", p.hardware.gpu, gpu_opts)
        yield NumberField(
            "GPUs/node",
            "hardware",
            "gpus_per_node",
            p.hardware.gpus_per_node,
            optional=True,
            placeholder="all detected",
        )
        yield NumberField("Nodes", "hardware", "nodes", p.hardware.nodes)
        yield NumberField(
            "Host RAM",
            "hardware",
            "host_ram_gb",
            p.hardware.host_ram_gb,
            kind=float,
            optional=True,
            placeholder="GiB, default: this machine",
            minimum=0.001,
        )
        yield Note(id="hw-info", classes="info")
        yield Static("Model", classes="section")
        yield ChoiceField("Model", "model", "name", p.model.name, [(m, m) for m in models])
        yield TextField(
            "or path",
            "model",
            "name",
            "" if p.model.name in models else p.model.name,
            placeholder="local dir or hub id",
            widget_id="model-path",
        )
        yield ChoiceField("Method", "method", "type", p.method.type, [(m, m) for m in METHODS])
        yield NumberField("LoRA rank", "method", "lora_r", p.method.lora_r)
        yield ChoiceField("Precision", None, "precision", p.precision, [(x, x) for x in PRECISIONS])
        yield Note(id="model-info", classes="info")
        yield Static("Batch", classes="section")
        yield NumberField("Micro batch", "batch", "micro_batch", p.batch.micro_batch)
        yield NumberField("Grad accum", "batch", "grad_accum", p.batch.grad_accum)
        yield NumberField("Seq length", "batch", "seq_len", p.batch.seq_len)
        yield ToggleField("Grad ckpt", "batch", "grad_checkpointing", p.batch.grad_checkpointing)
        yield Static("ZeRO / DeepSpeed", classes="section")
        yield ChoiceField("Preset", None, "deepspeed", p.deepspeed, [(n, n) for n in PRESET_NAMES])
        yield TextField(
            "or JSON",
            None,
            "deepspeed",
            "" if p.deepspeed in PRESET_NAMES else p.deepspeed,
            placeholder="path to a DeepSpeed JSON",
            widget_id="plan-deepspeed-path",
        )
        yield ChoiceField("Stage", "zero", "stage", p.zero.stage, [(FROM_BASE, None)] + [(str(s), s) for s in range(4)])
        yield ChoiceField("Offload opt", "zero", "offload_optimizer", p.zero.offload_optimizer, offload)
        yield ChoiceField("Offload par", "zero", "offload_param", p.zero.offload_param, offload)
        yield TextField("NVMe path", "zero", "nvme_path", p.zero.nvme_path or "", placeholder="for nvme offload")
