"""The plan flags every command shares, and how they turn into a Plan.

Flags override the plan file. Values are passed through the plan's own validation, so every bad
flag is reported together, each naming the flag and the fix.
"""

from __future__ import annotations

import argparse

from .core.plan import (
    METHODS,
    OFFLOAD_DEVICES,
    PRECISIONS,
    Plan,
    PlanError,
    load_plan,
    parse_count,
    plan_from_dict,
    plan_to_dict,
)
from .core.recipes import DEFAULT_RECIPE, recipe_path, recipes_dir

# flag dest -> (section, key) in the plan
FLAG_FIELDS = {
    "model": ("model", "name"),
    "params": ("model", "params"),
    "method": ("method", "type"),
    "lora_r": ("method", "lora_r"),
    "freeze_layers": ("method", "freeze_layers"),
    "trainable_modules": ("method", "trainable_modules"),
    "optimizer": (None, "optimizer"),
    "nodes": ("hardware", "nodes"),
    "host_ram_gb": ("hardware", "host_ram_gb"),
    "deepspeed": (None, "deepspeed"),
    "stage": ("zero", "stage"),
    "offload_optimizer": ("zero", "offload_optimizer"),
    "offload_param": ("zero", "offload_param"),
    "nvme_path": ("zero", "nvme_path"),
    "micro_batch": ("batch", "micro_batch"),
    "grad_accum": ("batch", "grad_accum"),
    "seq_len": ("batch", "seq_len"),
    "grad_checkpointing": ("batch", "grad_checkpointing"),
    "precision": (None, "precision"),
    "max_grad_norm": (None, "max_grad_norm"),
}
INT_FLAGS = {"lora_r", "freeze_layers", "nodes", "stage", "micro_batch", "grad_accum", "seq_len"}
FLOAT_FLAGS = {"host_ram_gb", "max_grad_norm"}


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("plan (flags override --plan)")
    g.add_argument("--plan", metavar="PLAN.yaml", help="a plan file (YAML)")
    g.add_argument("--recipe", metavar="NAME", help="a shipped recipe (see `zerowizard presets`)")
    g.add_argument("--model", metavar="NAME|DIR", help="catalog model, hub id of a card, or local directory")
    g.add_argument("--params", metavar="COUNT", help="raw parameter count (7B, 350M) for a model outside the catalog")
    g.add_argument("--method", metavar="|".join(METHODS), help="full, lora, qlora or freeze")
    g.add_argument("--lora-r", metavar="R", help="LoRA rank")
    g.add_argument("--freeze-layers", metavar="K", help="freeze tuning: the last K decoder layers train (default 2)")
    g.add_argument(
        "--trainable-modules",
        metavar="NAMES",
        help="freeze tuning: comma-separated modules that train (mlp, self_attn, lm_head, embed_tokens; default all)",
    )
    g.add_argument(
        "--optimizer",
        metavar="NAME",
        help="adamw, adam, lion, adagrad, sgd, sgd_momentum (DeepSpeed's optimizer section; default: the base's, "
        "else the trainer's AdamW)",
    )
    g.add_argument("--gpus", metavar="N|NxGPU", help="GPUs per node, optionally with a catalog GPU: 8xA100-80GB")
    g.add_argument("--nodes", metavar="N", help="number of nodes")
    g.add_argument("--host-ram-gb", metavar="GB", help="host RAM per node in GiB")
    g.add_argument(
        "--deepspeed",
        metavar="NAME|PATH",
        help="preset (deepspeed_zero1, deepspeed_zero2, deepspeed_zero2_offload, deepspeed_zero3, "
        "deepspeed_zero3_offload) or a DeepSpeed JSON",
    )
    g.add_argument("--stage", metavar="0-3", help="ZeRO stage (overrides the DeepSpeed base)")
    g.add_argument("--offload-optimizer", metavar="|".join(OFFLOAD_DEVICES), help="optimizer offload device")
    g.add_argument("--offload-param", metavar="|".join(OFFLOAD_DEVICES), help="parameter offload device (ZeRO-3)")
    g.add_argument("--nvme-path", metavar="DIR", help="NVMe directory for nvme offload")
    g.add_argument("--micro-batch", metavar="N", help="micro batch per GPU")
    g.add_argument("--grad-accum", metavar="N", help="gradient accumulation steps")
    g.add_argument("--seq-len", metavar="N", help="sequence length in tokens")
    g.add_argument(
        "--grad-checkpointing",
        dest="grad_checkpointing",
        action="store_true",
        default=None,
        help="recompute activations in backward",
    )
    g.add_argument("--no-grad-checkpointing", dest="grad_checkpointing", action="store_false")
    g.add_argument("--precision", metavar="|".join(PRECISIONS), help="auto picks bf16 where compute capability >= 8.0")
    g.add_argument("--max-grad-norm", metavar="X", help="gradient clipping")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The plan file (or recipe, or the embedded default), then the flags on top."""
    errors: list[str] = []
    data: dict = {}
    given = {d for d in FLAG_FIELDS if getattr(args, d, None) is not None} | (
        {"gpus"} if getattr(args, "gpus", None) else set()
    )
    source = getattr(args, "plan", None)
    recipe = getattr(args, "recipe", None)
    if source and recipe:
        errors.append("--recipe: give either --plan or --recipe, not both")
    if recipe:
        source = str(recipe_path(recipe))  # PlanError with a did-you-mean for an unknown name
    elif not source and "model" not in given and "params" not in given:
        default = recipes_dir() / f"{DEFAULT_RECIPE}.yaml"
        source = str(default) if default.is_file() else None
    if source:
        data = plan_to_dict(load_plan(source))  # PlanError propagates, listing every problem
    for dest, (section, key) in FLAG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest in INT_FLAGS:
            value = _to_number(value, int, dest, errors)
        elif dest in FLOAT_FLAGS:
            value = _to_number(value, float, dest, errors)
        elif dest == "trainable_modules":
            names = [n.strip() for n in str(value).split(",") if n.strip()]
            value = "all" if names in ([], ["all"]) else names
        elif dest == "params":
            try:
                value = parse_count(value)
            except ValueError as exc:
                errors.append(f"--params: {exc}")
                continue
        if value is None:
            continue
        if section is None:
            data[key] = value
        else:
            data.setdefault(section, {})[key] = value
    if "model" in given and "params" not in given and data.get("model"):
        data["model"]["params"] = None  # a new model: the plan's raw count no longer applies
    if "params" in given and "model" not in given:
        # A bare count names no architecture: borrow the nearest catalog model's shapes.
        data.setdefault("model", {})["name"] = f"custom-{args.params}"
    if "deepspeed" in given:
        # A base named on the command line decides the ZeRO fields the flags do not set.
        for key in ("stage", "offload_optimizer", "offload_param"):
            if key not in given:
                data.setdefault("zero", {})[key] = None
    if getattr(args, "gpus", None):
        from .core.hardware import parse_gpus_flag

        try:
            count, name = parse_gpus_flag(args.gpus)
            hw = data.setdefault("hardware", {})
            if name is not None:
                hw["gpu"] = name
                hw["gpu_memory_gb"] = None
                hw["compute_capability"] = None
            if count is not None:
                hw["gpus_per_node"] = count
        except ValueError as exc:
            errors.append(str(exc))
    try:
        plan = plan_from_dict(data)
    except PlanError as exc:
        errors.extend(_name_flags(exc.errors, given))
        plan = None
    if errors:
        raise PlanError(errors)
    return plan


def _to_number(value: str, kind, dest: str, errors: list[str]):
    try:
        return kind(value)
    except ValueError:
        errors.append(f"{_flag(dest)}: expected a {'whole number' if kind is int else 'number'}, got {value!r}")
        return None


def _name_flags(errors: list[str], given: set[str]) -> list[str]:
    """Plan field errors that came from a flag name the flag too."""
    out = []
    for err in errors:
        field = err.split(":", 1)[0]
        for dest in given:
            section, key = FLAG_FIELDS.get(dest, (None, None))
            path = key if section is None else f"{section}.{key}"
            if field == path:
                err = f"{_flag(dest)} ({field}):{err.split(':', 1)[1]}"
                break
        out.append(err)
    return out
