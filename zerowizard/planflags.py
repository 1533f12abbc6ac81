"""The plan flags every command shares, and how they turn into a Plan.

Flags override the plan file. Values are passed through the plan's own validation, so every bad
flag is reported together, each naming the flag and the fix.
"""

from __future__ import annotations

import argparse

from .core.hardware import parse_network
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
from .core.text import excerpt
from .core.validation import InputError, parse_number, text_problem

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
    "network": ("hardware", "network_gbps"),
    "cpu_cores": ("hardware", "cpu_cores"),
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
INT_FLAGS = {"lora_r", "freeze_layers", "nodes", "stage", "micro_batch", "grad_accum", "seq_len", "cpu_cores"}
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
    g.add_argument("--network", metavar="BW", help="node network per node, e.g. 400Gb (default 100Gb, assumed)")
    g.add_argument("--cpu-cores", metavar="N", help="host CPU cores per node (CPU Adam under offload)")
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
    """The plan file (or recipe, or the embedded default), then the flags on top.

    Every problem is collected (a bad flag does not hide a bad plan file) and raised together as
    one :class:`PlanError`, each line naming the flag."""
    errors: list[str] = []
    given = {d for d in FLAG_FIELDS if getattr(args, d, None) is not None}
    if getattr(args, "gpus", None) is not None:
        given.add("gpus")
    data = _base_data(args, given, errors)
    _apply_flags(args, data, errors)
    _apply_implied(args, data, given)
    _apply_gpus(args, data, errors)
    plan = None
    try:
        plan = plan_from_dict(data)
    except PlanError as exc:
        errors.extend(_name_flags(exc.errors, given))
    if errors or plan is None:
        raise PlanError(errors)
    return plan


def _base_data(args: argparse.Namespace, given: set[str], errors: list[str]) -> dict:
    """The plan the flags go on top of, as a dict: --plan, --recipe or the embedded default."""
    source = getattr(args, "plan", None)
    recipe = getattr(args, "recipe", None)
    for flag, value in (("--plan", source), ("--recipe", recipe)):
        if value is not None and not str(value).strip():
            errors.append(f"{flag}: the value is empty; give a {'file' if flag == '--plan' else 'recipe name'}")
            return {}
    if source and recipe:
        errors.append("--recipe: give either --plan or --recipe, not both")
    if recipe:
        problem = text_problem(recipe, max_len=200)
        if problem:
            errors.append(f"--recipe: {problem}")
            return {}
        try:
            source = str(recipe_path(recipe))
        except PlanError as exc:  # an unknown name, with a did-you-mean
            errors.extend(exc.errors)
            return {}
    elif not source and "model" not in given and "params" not in given:
        default = recipes_dir() / f"{DEFAULT_RECIPE}.yaml"
        source = str(default) if default.is_file() else None
    if not source:
        return {}
    try:
        return plan_to_dict(load_plan(source))
    except PlanError as exc:
        errors.extend(exc.errors)  # every problem of the file, with the flags' own below
        return {}


def _flag_value(dest: str, value: object, errors: list[str]) -> object:
    """A flag's text as the plan field wants it (a number for the numeric flags), or None after
    recording the problem."""
    if not isinstance(value, str):  # argparse hands `--micro-batch=--` over as []
        errors.append(f"{_flag(dest)}: expected a value, got {excerpt(value)}")
        return None
    try:
        if dest in INT_FLAGS:
            return parse_number(value, integer=True)
        if dest in FLOAT_FLAGS:
            return parse_number(value)
        if dest == "params":
            return parse_count(value)
        if dest == "network":
            return parse_network(value)
        if dest == "trainable_modules":
            names = [n.strip() for n in value.split(",") if n.strip()]
            return "all" if names in ([], ["all"]) else names
    except (InputError, ValueError) as exc:
        errors.append(f"{_flag(dest)}: {exc}")
        return None
    return value


def _apply_flags(args: argparse.Namespace, data: dict, errors: list[str]) -> None:
    for dest, (section, key) in FLAG_FIELDS.items():
        raw = getattr(args, dest, None)
        if raw is None:
            continue
        value = raw if dest == "grad_checkpointing" else _flag_value(dest, raw, errors)
        if value is None:
            continue
        if section is None:
            data[key] = value
        else:
            node = data.setdefault(section, {})
            if isinstance(node, dict):
                node[key] = value


def _apply_implied(args: argparse.Namespace, data: dict, given: set[str]) -> None:
    """What a flag implies beyond its own field."""
    if "model" in given and "params" not in given and isinstance(data.get("model"), dict):
        data["model"]["params"] = None  # a new model: the plan's raw count no longer applies
    if "params" in given and "model" not in given and isinstance(args.params, str):
        # A bare count names no architecture: borrow the nearest catalog model's shapes.
        data.setdefault("model", {})["name"] = f"custom-{excerpt(args.params, 40, quote=False)}"
    if "deepspeed" in given:
        # A base named on the command line decides the ZeRO fields the flags do not set.
        for key in ("stage", "offload_optimizer", "offload_param"):
            if key not in given:
                data.setdefault("zero", {})[key] = None


def _apply_gpus(args: argparse.Namespace, data: dict, errors: list[str]) -> None:
    text = getattr(args, "gpus", None)
    if text is None:
        return
    from .core.hardware import parse_gpus_flag

    problem = text_problem(text, max_len=200)
    if problem is None and not text.strip():
        problem = "the value is empty; give N or NxGPU, e.g. 8xA100-80GB"
    if problem:
        errors.append(f"--gpus: {problem}")
        return
    try:
        count, name = parse_gpus_flag(text)
    except ValueError as exc:
        errors.append(str(exc))
        return
    hw = data.setdefault("hardware", {})
    if name is not None:
        hw["gpu"] = name
        hw["gpu_memory_gb"] = None
        hw["compute_capability"] = None
    if count is not None:
        hw["gpus_per_node"] = count


def _name_flags(errors: list[str], given: set[str]) -> list[str]:
    """Plan field errors that came from a flag name the flag too."""
    paths = {}
    for dest in given:
        if dest == "gpus":
            paths["hardware.gpus_per_node"] = paths["hardware.gpu"] = "--gpus"
            continue
        section, key = FLAG_FIELDS[dest]
        paths[key if section is None else f"{section}.{key}"] = _flag(dest)
    out = []
    for err in errors:
        field, _, rest = err.partition(":")
        if field in paths:
            err = f"{paths[field]} ({field}):{rest}"
        out.append(err)
    return out
