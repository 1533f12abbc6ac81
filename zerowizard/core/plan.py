"""The plan: one typed, frozen description of a fine-tuning job.

A plan is the single source of truth. The YAML file, the command-line flags and the TUI all
produce one; the memory model, the rules, the DeepSpeed JSON and the runner all read one.

Parsing never stops at the first mistake: every unknown key, wrong type and out-of-range value
is collected into one :class:`PlanError`, each naming the field (``batch.micro_batch``) and the
fix (``did you mean 'micro_batch'?``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .text import did_you_mean, excerpt
from .validation import InputError, load_yaml, number_problem, read_text, text_problem

METHODS = ("full", "lora", "qlora", "freeze")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
OFFLOAD_DEVICES = ("none", "cpu", "nvme")
PRESET_NAMES = (
    "deepspeed_zero1",
    "deepspeed_zero2",
    "deepspeed_zero2_offload",
    "deepspeed_zero3",
    "deepspeed_zero3_offload",
)


def _f(
    default: Any,
    doc: str,
    *,
    choices: tuple | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    kind: type | tuple | None = None,
    optional: bool = False,
    max_len: int = 4096,
    noun: str | None = None,
) -> Any:
    """A dataclass field carrying its own docstring and validation bounds (``minimum`` and
    ``maximum`` for numbers, ``max_len`` for text: a path is at most 4096 characters)."""
    meta = {
        "doc": doc,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "kind": kind,
        "optional": optional,
        "max_len": max_len,
        "noun": noun,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=functools.partial(copy.copy, default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelSection:
    name: str = _f("tiny-llama", "catalog name (see `zerowizard presets`), hub id, or local directory", kind=str)
    params: int | None = _f(
        None,
        "raw parameter count for a model outside the catalog (e.g. 7B)",
        minimum=1,
        maximum=1e15,
        kind=int,
        optional=True,
    )


@dataclass(frozen=True)
class MethodSection:
    type: str = _f("full", "full | lora | qlora | freeze", choices=METHODS, kind=str)
    lora_r: int = _f(64, "LoRA rank", minimum=1, maximum=65536, kind=int)
    lora_alpha: int = _f(16, "LoRA alpha", minimum=1, maximum=1 << 20, kind=int)
    lora_dropout: float = _f(0.1, "LoRA dropout", minimum=0.0, maximum=1.0, kind=float)
    target_modules: Any = _f("all-linear", "'all-linear' or a list of module names", kind=(str, list), max_len=200)
    freeze_layers: int = _f(
        2, "freeze: how many of the last decoder layers train (the rest is frozen)", minimum=0, maximum=65536, kind=int
    )
    trainable_modules: Any = _f(
        "all",
        "freeze: 'all', or module names that train inside those layers (mlp, self_attn, q_proj) "
        "and outside them (embed_tokens, lm_head, norm)",
        kind=(str, list),
        max_len=200,
    )


@dataclass(frozen=True)
class HardwareSection:
    gpu: str = _f("auto", "'auto' (NVML, else the CPU), 'cpu', or a catalog name like A100-80GB", kind=str, max_len=200)
    gpu_memory_gb: float | None = _f(
        None, "override the GPU memory in GiB", minimum=0.001, maximum=1 << 16, kind=float, optional=True
    )
    compute_capability: str | None = _f(
        None, "override the compute capability, e.g. '8.0'", kind=str, optional=True, max_len=8
    )
    gpus_per_node: int | None = _f(
        None,
        "GPUs (ranks) per node; default: all detected, 2 on CPU",
        minimum=1,
        maximum=1024,
        kind=int,
        optional=True,
    )
    nodes: int = _f(1, "number of nodes", minimum=1, maximum=65536, kind=int)
    host_ram_gb: float | None = _f(
        None,
        "host RAM per node in GiB; default: this machine's",
        minimum=0.001,
        maximum=1 << 20,
        kind=float,
        optional=True,
    )
    network_gbps: float | None = _f(
        None,
        "node network in Gbit/s per node (e.g. 400); default 100 (assumed)",
        minimum=0.001,
        kind=float,
        optional=True,
    )
    cpu_cores: int | None = _f(
        None,
        "host CPU cores per node (CPU Adam under offload); default: this machine's, or 64 for a named GPU",
        minimum=1,
        kind=int,
        optional=True,
    )
    nvme_gbs: float | None = _f(
        None,
        "NVMe read bandwidth per node in GB/s (nvme offload); default 6 (assumed)",
        minimum=0.001,
        kind=float,
        optional=True,
    )


@dataclass(frozen=True)
class BatchSection:
    micro_batch: int = _f(1, "micro batch per GPU (train_micro_batch_size_per_gpu)", minimum=1, maximum=65536, kind=int)
    grad_accum: int = _f(1, "gradient accumulation steps", minimum=1, maximum=1 << 20, kind=int)
    seq_len: int = _f(2048, "sequence length in tokens", minimum=1, maximum=1 << 24, kind=int)
    grad_checkpointing: bool = _f(True, "recompute activations in the backward pass", kind=bool)


@dataclass(frozen=True)
class ZeroSection:
    stage: int | None = _f(
        None,
        "ZeRO stage 0-3; default: the DeepSpeed base's",
        choices=(0, 1, 2, 3),
        kind=int,
        optional=True,
        noun="a ZeRO stage",
    )
    offload_optimizer: str | None = _f(
        None, "none | cpu | nvme; default: the DeepSpeed base's", choices=OFFLOAD_DEVICES, kind=str, optional=True
    )
    offload_param: str | None = _f(
        None, "none | cpu | nvme (stage 3 only); default: the base's", choices=OFFLOAD_DEVICES, kind=str, optional=True
    )
    nvme_path: str | None = _f(None, "a local NVMe directory for nvme offload", kind=str, optional=True)


@dataclass(frozen=True)
class DataSection:
    path: str | None = _f(
        None, "JSON/JSONL file (alpaca, chat or oasst1 form) or a hub dataset id", kind=str, optional=True
    )
    format: str = _f("auto", "auto | alpaca | chat | oasst1", choices=("auto", "alpaca", "chat", "oasst1"), kind=str)
    packing: bool = _f(False, "pack examples to the sequence length", kind=bool)


@dataclass(frozen=True)
class TrainSection:
    epochs: float = _f(1.0, "training epochs", minimum=0.001, maximum=1e6, kind=float)
    max_steps: int | None = _f(
        None, "stop after this many optimizer steps", minimum=1, maximum=1e12, kind=int, optional=True
    )
    learning_rate: float = _f(2e-4, "peak learning rate", minimum=0.0, maximum=10.0, kind=float)
    warmup_ratio: float = _f(0.03, "share of steps spent warming up", minimum=0.0, maximum=1.0, kind=float)
    save_steps: int = _f(
        0, "checkpoint every N optimizer steps (0: only at the end)", minimum=0, maximum=1e12, kind=int
    )
    save_total_limit: int = _f(
        0, "keep the newest N intact checkpoints, delete older ones (0: keep all)", minimum=0, maximum=1e12, kind=int
    )
    logging_steps: int = _f(1, "log every N optimizer steps", minimum=1, maximum=1e12, kind=int)
    seed: int = _f(42, "random seed", minimum=0, maximum=2**32 - 1, kind=int)


@dataclass(frozen=True)
class Plan:
    model: ModelSection = field(default_factory=ModelSection)
    method: MethodSection = field(default_factory=MethodSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    batch: BatchSection = field(default_factory=BatchSection)
    precision: str = _f(
        "auto", "auto | bf16 | fp16 | fp32 (auto: bf16 where compute capability >= 8.0)", choices=PRECISIONS, kind=str
    )
    max_grad_norm: float = _f(
        1.0, "gradient clipping (max grad norm); 0 disables", minimum=0.0, maximum=1e6, kind=float
    )
    optimizer: str | None = _f(
        None,
        "adamw | adam | adagrad | lion | sgd | sgd_momentum (DeepSpeed's optimizer section); default: the "
        "base JSON's, else the trainer's AdamW",
        kind=str,
        optional=True,
        max_len=64,
    )
    zero: ZeroSection = field(default_factory=ZeroSection)
    deepspeed: str = _f("deepspeed_zero2", "a preset name (deepspeed_zero1/2/3, *_offload) or a JSON path", kind=str)
    data: DataSection = field(default_factory=DataSection)
    output: str | None = _f(None, "output directory; default: a new folder under ./work_dirs", kind=str, optional=True)
    train: TrainSection = field(default_factory=TrainSection)


SECTIONS = {f.name: f.default_factory for f in fields(Plan) if f.default_factory is not dataclasses.MISSING}


class PlanError(ValueError):
    """Every problem found while reading a plan, reported together."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def _coerce(value: Any, f: dataclasses.Field, where: str, errors: list[str]) -> Any:
    """``value`` checked against the field's kind and bounds; on a problem, the error is recorded
    and the field's default returned (so every problem of a plan is found in one pass)."""
    meta = f.metadata
    if value is None:
        if meta.get("optional"):
            return None
        errors.append(f"{where}: must not be empty; remove it to use the default ({f.default!r})")
        return f.default
    value, problem = _CONVERT[_kind_name(meta.get("kind"))](value, f)
    if problem is None:
        problem = _bounds_problem(value, meta)
    if problem:
        errors.append(f"{where}: {problem}")
        return f.default
    return value


def _kind_name(kind: Any) -> str:
    return "modules" if isinstance(kind, tuple) else getattr(kind, "__name__", "any")


def _as_bool(value: Any, f: dataclasses.Field) -> tuple[Any, str | None]:
    if not isinstance(value, bool):
        return value, f"expected true or false, got {excerpt(value)}"
    return value, None


def _as_int(value: Any, f: dataclasses.Field) -> tuple[Any, str | None]:
    if isinstance(value, str):
        with contextlib.suppress(ValueError, OverflowError):
            value = parse_count(value) if f.name == "params" else int(value.strip())
    meta = f.metadata
    problem = number_problem(value, integer=True, minimum=meta.get("minimum"), maximum=meta.get("maximum"))
    return (value if problem else int(value)), problem


def _as_float(value: Any, f: dataclasses.Field) -> tuple[Any, str | None]:
    meta = f.metadata
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
        value = float(value)
    problem = number_problem(value, minimum=meta.get("minimum"), maximum=meta.get("maximum"))
    return (value if problem else float(value)), problem


_NUMBERS_AS_TEXT = ("compute_capability", "name", "gpu")
_CC = re.compile(r"\d{1,2}(\.\d{1,2})?")


def _as_text(value: Any, f: dataclasses.Field) -> tuple[Any, str | None]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and f.name in _NUMBERS_AS_TEXT:
        value = str(value)
    meta = f.metadata
    problem = text_problem(value, max_len=meta.get("max_len", 4096))
    if problem is not None:
        return value, problem
    if not value.strip() and not meta.get("optional") and not meta.get("choices"):
        return value, "must not be empty text; remove it to use the default"
    if f.name == "compute_capability" and value.strip() and not _CC.fullmatch(value.strip()):
        return value, f"{excerpt(value)} is not a compute capability; write it like '8.0'"
    return value, None


def _as_modules(value: Any, f: dataclasses.Field) -> tuple[Any, str | None]:
    if isinstance(value, list):
        if not value or len(value) > 1000:
            return value, "expected a list of 1 to 1000 module names"
        for item in value:
            problem = text_problem(item, max_len=200)
            if problem or not item:
                return value, f"module names are non-empty text: {problem or 'an empty name'}"
        return value, None
    if not isinstance(value, str):
        return value, f"expected 'all-linear' or a list of module names, got {excerpt(value)}"
    return value, text_problem(value, max_len=200)


def _as_any(value: Any, f: dataclasses.Field) -> tuple[Any, str | None]:
    return value, None


_CONVERT = {
    "bool": _as_bool,
    "int": _as_int,
    "float": _as_float,
    "str": _as_text,
    "modules": _as_modules,
    "any": _as_any,
}


def _bounds_problem(value: Any, meta: Any) -> str | None:
    choices = meta.get("choices")
    if choices and value not in choices:
        names = [str(c) for c in choices]
        if meta.get("noun"):
            return f"{excerpt(value)} is not {meta['noun']}; use one of: {', '.join(names)}"
        fix = did_you_mean(value, names, "use one of: " + ", ".join(names))
        return f"{excerpt(value)} is not valid; {fix}"
    return None


def _build(cls: type, data: Any, prefix: str, errors: list[str]) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        errors.append(f"{prefix.rstrip('.') or 'plan'}: expected a mapping of keys, got {type(data).__name__}")
        return cls()
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in data.items():
        where = f"{prefix}{excerpt(key, 60, quote=False)}"
        if key not in known:
            errors.append(f"{where}: unknown key; {did_you_mean(key, known)}")
            continue
        f = known[key]
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            values[key] = _build(f.default_factory, value, where + ".", errors)
        else:
            values[key] = _coerce(value, f, where, errors)
    return cls(**values)


# Short forms accepted for a whole section: `model: llama-3-8b`, `method: lora`.
_SHORT_FORMS = {"model": "name", "method": "type"}


def plan_from_dict(data: Any) -> Plan:
    """Build a plan from parsed YAML; raise :class:`PlanError` listing every problem."""
    errors: list[str] = []
    if isinstance(data, dict):
        data = dict(data)
        for section, key in _SHORT_FORMS.items():
            if isinstance(data.get(section), (str, int)) and not isinstance(data.get(section), bool):
                data[section] = {key: str(data[section])}
    plan = _build(Plan, data, "", errors)
    if errors:
        raise PlanError(errors)
    return plan


def load_plan(path: str | Path) -> Plan:
    """Read a plan YAML file (PlanError on any problem, including a missing file)."""
    try:
        data = load_yaml(read_text(path, "--plan"), str(path))
    except InputError as exc:
        raise PlanError([str(exc)]) from None
    if data is None:
        data = {}
    return plan_from_dict(data)


def plan_to_dict(plan: Plan) -> dict:
    """A plain dict of the plan (the YAML form, every field written out)."""
    return dataclasses.asdict(plan)


def dump_plan(plan: Plan) -> str:
    import yaml

    return yaml.safe_dump(plan_to_dict(plan), sort_keys=False)


def update(plan: Plan, section: str | None = None, **changes: Any) -> Plan:
    """A copy of ``plan`` with ``changes`` applied to one section (or to the top level)."""
    if section is None:
        return replace(plan, **changes)
    return replace(plan, **{section: replace(getattr(plan, section), **changes)})


def parse_count(text: str | int) -> int:
    """'7B' -> 7_000_000_000, '350M' -> 350_000_000, '1.5e9' -> 1_500_000_000.

    ValueError (with the fix) for anything else: words, NaN, infinities, counts below 1 and
    above 10^15 (a thousand trillion parameters)."""
    if isinstance(text, bool):
        raise ValueError(f"not a parameter count: {text!r} (use e.g. 7B, 350M or 1.5e9)")
    if isinstance(text, int):
        return text
    s = str(text).strip().upper().replace("_", "").replace(",", "")
    scale = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
    mult = 1
    if s and s[-1] in scale:
        mult, s = scale[s[-1]], s[:-1]
    try:
        value = float(s) * mult if len(s) <= 40 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"not a parameter count: {excerpt(text)} (use e.g. 7B, 350M or 1.5e9)")
    if value < 1:
        raise ValueError(f"not a parameter count: {excerpt(text)} (must be positive)")
    if value > 1e15:
        raise ValueError(f"{excerpt(text)} is above the maximum 1e+15 parameters")
    return round(value)


def field_problem(section: str | None, name: str, value: Any) -> str | None:
    """Why ``value`` cannot go into the plan field ``section.name`` (None when it can): the same
    kind, range and text checks a plan file gets. For editors that build plans with
    :func:`update` (the TUI), which bypasses them."""
    cls: Any = SECTIONS.get(section or "") or Plan
    f = next((x for x in fields(cls) if x.name == name), None)
    if f is None:
        return f"unknown field {excerpt(name)}"
    errors: list[str] = []
    _coerce(value, f, name, errors)
    return errors[0].split(": ", 1)[1] if errors else None


def field_doc(section: str, name: str) -> str:
    """The docstring of one plan field (for --help and the TUI)."""
    cls = SECTIONS.get(section)
    target: Any = cls if cls else Plan
    for f in fields(target):
        if f.name == name:
            return f.metadata.get("doc", "")
    return ""
