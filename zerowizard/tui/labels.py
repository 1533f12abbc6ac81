"""The form's names for plan fields, and fix texts reworded for the app.

The rules (``zerowizard.core.rules``) word their fixes for the command line ("use --stage 2").
In the app the same fix names the form's field ("set Stage to 2"): :func:`app_text` rewrites
flags and dotted plan fields into the labels the form shows. No textual here.
"""

from __future__ import annotations

import re
from typing import Any

# plan field (dotted) -> the form's label; the form is built from this order
LABELS: dict[str, str] = {
    "hardware.gpu": "GPU",
    "hardware.gpus_per_node": "GPUs/node",
    "hardware.nodes": "Nodes",
    "hardware.host_ram_gb": "Host RAM",
    "model.name": "Model",
    "model.params": "Params",
    "method.type": "Method",
    "method.lora_r": "LoRA rank",
    "method.freeze_layers": "Freeze last",
    "optimizer": "Optimizer",
    "precision": "Precision",
    "batch.micro_batch": "Micro batch",
    "batch.grad_accum": "Grad accum",
    "batch.seq_len": "Seq length",
    "batch.grad_checkpointing": "Grad ckpt",
    "deepspeed": "Preset",
    "zero.stage": "Stage",
    "zero.offload_optimizer": "Offload opt",
    "zero.offload_param": "Offload par",
    "zero.nvme_path": "NVMe path",
    "data.path": "Data",
    "data.format": "Format",
    "train.epochs": "Epochs",
    "train.max_steps": "Max steps",
    "train.learning_rate": "LR",
    "train.save_steps": "Save steps",
    "train.logging_steps": "Log steps",
    "output": "Output",
}

# command-line flags that are not spelt like their plan field
_FLAG_FIELDS = {
    "--gpus": "hardware.gpus_per_node",
    "--model": "model.name",
    "--method": "method.type",
    "--deepspeed": "deepspeed",
    "--data": "data.path",
    "--lr": "train.learning_rate",
    "--grad-checkpointing": "batch.grad_checkpointing",
    "--no-grad-checkpointing": "batch.grad_checkpointing",
}
_SWITCHES = {"--grad-checkpointing": "on", "--no-grad-checkpointing": "off"}
_NOT_VALUES = r"(?!(?:to|or|and|with|for|if|in)\b)(?!--)"
_ONE = re.compile(r"(--[a-z][a-z0-9-]*)(?:\s+" + _NOT_VALUES + r"([^\s,;()]+))?")
_RUN = re.compile(r"(?:\b(?:use|give|set|pass)\s+)?(" + _ONE.pattern + r"(?:\s+" + _ONE.pattern + r")*)")
_DOTTED = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(LABELS, key=len)[::-1] if "." in k) + r")\b")
_CLI_ONLY = (
    ("see `zerowizard presets`", "pick one in Model (enter opens the list; type to search)"),
    ("zerowizard gpus --catalog", "the GPU list"),
)


def label(field: str) -> str:
    """The form's label for a plan field ('zero.stage' -> 'Stage'); the field itself otherwise."""
    return LABELS.get(field, field)


def field_of_flag(flag: str) -> str | None:
    """'--offload-optimizer' -> 'zero.offload_optimizer' (None: not a plan field)."""
    if flag in _FLAG_FIELDS:
        return _FLAG_FIELDS[flag]
    key = flag[2:].replace("-", "_")
    if key == "host_ram_gb" or key in ("gpu", "gpus_per_node", "nodes"):
        return f"hardware.{key}"
    for field in LABELS:
        if field.rsplit(".", 1)[-1] == key:
            return field
    return None


def _run(match: re.Match) -> str:
    parts = []
    for m in _ONE.finditer(match.group(1)):
        flag, value = m.group(1), m.group(2)
        field = field_of_flag(flag)
        if field is None:
            return match.group(0)  # a flag the form has no field for: leave the text alone
        name = LABELS[field]
        if flag in _SWITCHES:
            parts.append(f"{name} {_SWITCHES[flag]}")
        elif value is None:
            parts.append(name)
        else:
            parts.append(f"{name} to {value}")
    if len(parts) == 1 and parts[0].endswith((" on", " off")):
        return "switch " + parts[0]
    return "set " + ", ".join(parts)


def app_text(text: str) -> str:
    """A rule's fix (or message) worded for the app: flags and plan fields become form labels."""
    if not text:
        return text
    for cli, app in _CLI_ONLY:
        text = text.replace(cli, app)
    text = _RUN.sub(_run, text)
    return _DOTTED.sub(lambda m: LABELS[m.group(1)], text)


def get_field(plan: Any, path: str) -> Any:
    """The value of a dotted plan field ('batch.micro_batch', 'deepspeed')."""
    section, _, key = path.rpartition(".")
    return getattr(getattr(plan, section), key) if section else getattr(plan, key)


def set_field(plan: Any, path: str, value: Any) -> Any:
    """A copy of ``plan`` with the dotted field set (a new DeepSpeed base also resets the ZeRO
    fields that override it: the base's own settings apply again)."""
    from zerowizard.core.plan import update

    section, _, key = path.rpartition(".")
    plan = update(plan, section or None, **{key: value})
    if path == "deepspeed":
        plan = update(plan, "zero", stage=None, offload_optimizer=None, offload_param=None)
    if path == "model.name":
        plan = update(plan, "model", params=None)  # a new model: the raw count no longer applies
    return plan
