"""The final DeepSpeed JSON: a base (XTuner-named preset or the user's file), the plan's overrides.

As XTuner does, the training config wins over a custom JSON for four fields, and the user is told
every time one changes a value (old -> new):

- ``gradient_accumulation_steps``       <- batch.grad_accum
- ``train_micro_batch_size_per_gpu``    <- batch.micro_batch
- ``gradient_clipping``                 <- max_grad_norm
- ``fp16.enabled`` / ``bf16.enabled``   <- the precision (auto: bf16 where compute capability >= 8.0)

The ZeRO fields the plan sets explicitly (stage, offloads, nvme path) override the base too.
"auto" values are resolved from the plan the way HF Trainer resolves them. ``train_batch_size`` is
left out: DeepSpeed derives it from micro batch x accumulation x world size, and a written value
pins the file to one GPU count.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import PRESETS
from .plan import PRESET_NAMES, Plan
from .text import did_you_mean, excerpt
from .validation import InputError, load_json, path_kind, read_text


class DsConfigError(ValueError):
    """The DeepSpeed base cannot be read (missing file, invalid JSON, not an object)."""


@dataclass(frozen=True)
class Override:
    key: str  # dotted path, e.g. "zero_optimization.stage"
    old: Any
    new: Any
    kind: str  # "override" (a concrete value changed) | "auto" (an "auto" resolved) | "removed"
    why: str

    def describe(self) -> str:
        old = "(absent)" if self.old is _ABSENT else json.dumps(self.old)
        new = "(removed)" if self.new is _ABSENT else json.dumps(self.new)
        return f"{self.key}: {old} -> {new} ({self.why})"


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


@dataclass(frozen=True)
class ZeroSettings:
    """The ZeRO knobs the memory model needs, merged from the base JSON and the plan."""

    stage: int
    offload_optimizer: str  # none | cpu | nvme
    offload_param: str
    nvme_path: str | None
    optimizer_ratio: float
    overlap_comm: bool
    contiguous_gradients: bool
    reduce_bucket_size: int
    prefetch_bucket_size: int
    max_live_parameters: int
    param_persistence_threshold: int


@dataclass(frozen=True)
class DsBuild:
    base: str  # preset name or path
    config: dict
    overrides: tuple[Override, ...]
    zero: ZeroSettings


def is_preset(ref: str) -> bool:
    return ref in PRESET_NAMES


def preset_path(name: str) -> Path:
    return PRESETS / "deepspeed" / f"{name}.json"


def read_json(path: str | Path, field: str = "deepspeed") -> dict:
    """Read a JSON object, or raise DsConfigError naming the file, line and column."""
    path = Path(path)
    if path_kind(path) == "missing":
        raise DsConfigError(
            f"{field}: no such file {excerpt(str(path), 120)}; give a preset name "
            f"({', '.join(PRESET_NAMES)}) or a path to a DeepSpeed JSON"
        )
    try:
        data = load_json(read_text(path, field), str(path))
    except InputError as exc:
        raise DsConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise DsConfigError(f"{path}: a DeepSpeed config is a JSON object ({{...}}), not a {type(data).__name__}")
    return data


_BASE_CACHE: dict[tuple, dict] = {}


def load_base(ref: str) -> dict:
    """The base config for a preset name or a JSON path (a fresh copy each call)."""
    path = preset_path(ref) if is_preset(ref) else Path(ref)
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        key = None
    if key is None or key not in _BASE_CACHE:
        if not is_preset(ref) and path_kind(path) == "missing" and not ref.endswith(".json"):
            fix = did_you_mean(ref, PRESET_NAMES)
            raise DsConfigError(f"deepspeed: {excerpt(ref, 120)} is neither a preset nor a file; {fix}")
        data = read_json(path)
        if key is None:
            return data
        _BASE_CACHE[key] = data
    return copy.deepcopy(_BASE_CACHE[key])


def _device(section: Any) -> str:
    if isinstance(section, dict):
        dev = section.get("device", "none")
        return str(dev).lower() if dev else "none"
    return "none"


def _int_or(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, (int, float)):
        return int(value)
    return default


def zero_settings(plan: Plan, base: dict[str, Any], hidden_size: int | None = None) -> ZeroSettings:
    """Merge the base's zero_optimization with the plan's explicit ZeRO fields."""
    raw = base.get("zero_optimization")
    zo: dict[str, Any] = raw if isinstance(raw, dict) else {}
    stage = plan.zero.stage if plan.zero.stage is not None else _int_or(zo.get("stage"), 0)
    opt = plan.zero.offload_optimizer or _device(zo.get("offload_optimizer"))
    par = plan.zero.offload_param or _device(zo.get("offload_param"))
    if zo.get("cpu_offload") is True and plan.zero.offload_optimizer is None:
        opt = "cpu"
    nvme = plan.zero.nvme_path
    for section in (zo.get("offload_optimizer"), zo.get("offload_param")):
        if nvme is None and isinstance(section, dict) and section.get("nvme_path"):
            nvme = str(section["nvme_path"])
    ratio = 1.0
    opt_section = zo.get("offload_optimizer")
    if isinstance(opt_section, dict):
        r = opt_section.get("ratio", 1.0)
        ratio = float(r) if isinstance(r, (int, float)) and not isinstance(r, bool) else 1.0
    h2 = (hidden_size or 4096) ** 2
    overlap = zo.get("overlap_comm")
    overlap = bool(overlap) if isinstance(overlap, bool) else stage == 3  # DeepSpeed's default
    contiguous = zo.get("contiguous_gradients", True)
    return ZeroSettings(
        stage=stage,
        offload_optimizer=opt,
        offload_param=par,
        nvme_path=nvme,
        optimizer_ratio=ratio,
        overlap_comm=overlap,
        contiguous_gradients=bool(contiguous) if isinstance(contiguous, bool) else True,
        reduce_bucket_size=h2
        if zo.get("reduce_bucket_size") == "auto"
        else _int_or(zo.get("reduce_bucket_size"), 500_000_000),
        prefetch_bucket_size=int(0.9 * h2)
        if zo.get("stage3_prefetch_bucket_size") == "auto"
        else _int_or(zo.get("stage3_prefetch_bucket_size"), 50_000_000),
        max_live_parameters=_int_or(zo.get("stage3_max_live_parameters"), 1_000_000_000),
        param_persistence_threshold=10 * (hidden_size or 4096)
        if zo.get("stage3_param_persistence_threshold") == "auto"
        else _int_or(zo.get("stage3_param_persistence_threshold"), 100_000),
    )


def _get(cfg: dict, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _set(cfg: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = cfg
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


class _Edits:
    """The config being built and every change made to it, in order."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.changes: list[Override] = []

    def put(self, key: str, new: Any, why: str) -> None:
        old = _get(self.cfg, key)
        if old == new and type(old) is type(new):
            return
        _set(self.cfg, key, new)
        self.changes.append(Override(key, old, new, "auto" if old == "auto" else "override", why))


def build(
    plan: Plan,
    *,
    precision: str,
    world_size: int,
    hidden_size: int | None = None,
    base: dict[str, Any] | None = None,
) -> DsBuild:
    """The final DeepSpeed JSON for ``plan`` and every change made to the base, in order."""
    cfg = load_base(plan.deepspeed) if base is None else copy.deepcopy(base)
    ed = _Edits(cfg)
    _batch_fields(ed, plan, world_size)
    _precision_fields(ed, plan, precision)
    zs = zero_settings(plan, cfg, hidden_size)
    _zero_fields(ed, plan, zs)
    _resolve_optimizer_autos(ed, plan)
    _optimizer_section(ed, plan)
    return DsBuild(base=plan.deepspeed, config=cfg, overrides=tuple(ed.changes), zero=zs)


def _batch_fields(ed: _Edits, plan: Plan, world_size: int) -> None:
    """The trainer's batch and clipping win over the base; a written train_batch_size is removed."""
    ed.put("train_micro_batch_size_per_gpu", plan.batch.micro_batch, "batch.micro_batch")
    ed.put("gradient_accumulation_steps", plan.batch.grad_accum, "batch.grad_accum")
    ed.put("gradient_clipping", float(plan.max_grad_norm), "max_grad_norm")
    if "train_batch_size" in ed.cfg:
        old = ed.cfg.pop("train_batch_size")
        why = f"DeepSpeed derives it: {plan.batch.micro_batch} x {plan.batch.grad_accum} x {world_size} GPUs"
        ed.changes.append(Override("train_batch_size", old, _ABSENT, "removed", why))


def _precision_fields(ed: _Edits, plan: Plan, precision: str) -> None:
    """fp16.enabled / bf16.enabled (or the legacy bfloat16 section) from the resolved precision."""
    cfg = ed.cfg
    why = f"precision {plan.precision}" + (f" -> {precision}" if plan.precision == "auto" else "")
    if "fp16" in cfg or precision == "fp16":
        ed.put("fp16.enabled", precision == "fp16", why)
    if "bf16" in cfg or "bfloat16" in cfg or precision == "bf16":
        key = "bfloat16.enabled" if "bfloat16" in cfg and "bf16" not in cfg else "bf16.enabled"
        ed.put(key, precision == "bf16", why)


def _zero_fields(ed: _Edits, plan: Plan, zs: ZeroSettings) -> None:
    """The plan's explicit ZeRO fields (stage, offloads, nvme path) and the bucket sizes left "auto"."""
    z = plan.zero
    if z.stage is not None:
        ed.put("zero_optimization.stage", z.stage, "zero.stage")
    for name, dev in (("offload_optimizer", z.offload_optimizer), ("offload_param", z.offload_param)):
        if dev is None:
            continue
        current = _get(ed.cfg, f"zero_optimization.{name}")
        if dev == "none":
            if current is not _ABSENT:
                ed.cfg["zero_optimization"].pop(name)
                ed.changes.append(
                    Override(f"zero_optimization.{name}", current, _ABSENT, "override", f"zero.{name}: none")
                )
        else:
            ed.put(f"zero_optimization.{name}.device", dev, f"zero.{name}")
            if _get(ed.cfg, f"zero_optimization.{name}.pin_memory") is _ABSENT:
                ed.put(f"zero_optimization.{name}.pin_memory", True, f"zero.{name}")
    for name in ("offload_optimizer", "offload_param"):
        if _get(ed.cfg, f"zero_optimization.{name}.device") == "nvme" and zs.nvme_path:
            ed.put(f"zero_optimization.{name}.nvme_path", zs.nvme_path, "zero.nvme_path")
    zo = ed.cfg.get("zero_optimization")
    if isinstance(zo, dict):
        for key, value in (
            ("reduce_bucket_size", zs.reduce_bucket_size),
            ("stage3_prefetch_bucket_size", zs.prefetch_bucket_size),
            ("stage3_param_persistence_threshold", zs.param_persistence_threshold),
        ):
            if zo.get(key) == "auto":
                ed.put(f"zero_optimization.{key}", value, "resolved from the hidden size")


def _resolve_optimizer_autos(ed: _Edits, plan: Plan) -> None:
    """'auto' in optimizer/scheduler params, resolved as HF Trainer would from the plan."""
    values = {
        "optimizer.params.lr": plan.train.learning_rate,
        "optimizer.params.betas": [0.9, 0.999],
        "optimizer.params.eps": 1e-8,
        "optimizer.params.weight_decay": 0.0,
        "scheduler.params.warmup_max_lr": plan.train.learning_rate,
        "scheduler.params.warmup_min_lr": 0.0,
    }
    for key, value in values.items():
        if _get(ed.cfg, key) == "auto":
            ed.put(key, value, "resolved from the plan")


def _optimizer_section(ed: _Edits, plan: Plan) -> None:
    """The plan's optimizer as DeepSpeed's ``optimizer`` section (core.optimizers); without one in
    the plan the base's section (or the trainer's AdamW when there is none) stays."""
    from .optimizers import lookup

    opt = lookup(plan.optimizer)[0] if plan.optimizer is not None else None
    if opt is None:
        return  # not set, or refused (the rules say why)
    raw = ed.cfg.get("optimizer")
    old: dict[str, Any] = raw if isinstance(raw, dict) else {}
    params = {"lr": plan.train.learning_rate, **dict(opt.params), "weight_decay": 0.0}
    old_params = old.get("params")
    if old.get("type") == opt.ds_type and isinstance(old_params, dict):
        params = {**old_params, **{k: v for k, v in params.items() if old_params.get(k) in (None, "auto")}}
    ed.put("optimizer", {"type": opt.ds_type, "params": params}, f"optimizer: {opt.name}")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON through a temp file in the same folder and a rename: never a half-written file."""
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_text_atomic(path: str | Path, text: str, mode: int | None = None) -> None:
    """One file, atomically (see :mod:`zerowizard.core.writer`: symlinks written through;
    directories, devices and FIFOs refused with InputError)."""
    from .writer import Output, write_all

    write_all([Output(path, text, mode)])
