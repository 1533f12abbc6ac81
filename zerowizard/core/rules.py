"""Rules: invalid or wasteful combinations in a plan, each with the reason and the fix.

Each rule is a small function taking the analysis context and yielding problems; :func:`check`
runs them all and never raises. Errors block export and run; warnings and info only inform.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .dsrules import check_ds_config, gathers_on_save, zero3_save_problem
from .problems import Problem
from .text import did_you_mean, excerpt, fmt_gib
from .validation import path_kind
from .zerocombos import precision_clashes, zero_clashes

if TYPE_CHECKING:
    from .analysis import Analysis

Rule = Callable[["Analysis"], Iterator[Problem]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


@rule
def qlora_zero3(ctx: Analysis) -> Iterator[Problem]:
    if ctx.plan.method.type == "qlora" and ctx.zero.stage == 3:
        yield Problem(
            "error",
            "zero.stage",
            "QLoRA cannot be combined with ZeRO-3: DeepSpeed cannot partition bitsandbytes "
            "4-bit weights (the XTuner guide says the same)",
            "use ZeRO-2 (--deepspeed deepspeed_zero2), or --method lora with ZeRO-3",
        )


@rule
def zero_combinations(ctx: Analysis) -> Iterator[Problem]:
    """Offload and ZeRO stage, on the plan merged with its base (:mod:`.zerocombos`)."""
    z = ctx.zero
    seen = set()
    clashes = zero_clashes(
        z.stage,
        z.offload_optimizer,
        z.offload_param,
        nvme_paths={"offload_optimizer": z.nvme_path, "offload_param": z.nvme_path},
        ratio=z.optimizer_ratio,
    )
    for c in clashes:
        if c.plan_field not in seen:  # one folder for both sections: say it once
            seen.add(c.plan_field)
            yield Problem("error", c.plan_field, c.message, c.plan_fix)


@rule
def precision_vs_hardware(ctx: Analysis) -> Iterator[Problem]:
    hw, prec = ctx.hardware, ctx.plan.precision
    for c in precision_clashes(
        bf16=prec == "bf16",
        fp16=prec == "fp16",
        compute_capability=hw.compute_capability,
        is_cpu=hw.is_cpu,
        device=hw.name,
    ):
        yield Problem("error", c.plan_field, c.message, c.plan_fix)
    if prec == "auto":
        yield Problem("info", "precision", f"auto chose {ctx.precision}: {ctx.precision_reason}", "")


@rule
def unknown_model(ctx: Analysis) -> Iterator[Problem]:
    if ctx.model_error:
        yield Problem(
            "error",
            "model.name",
            ctx.model_error.split("; ", 1)[0],
            ctx.model_error.split("; ", 1)[1] if "; " in ctx.model_error else "",
        )


@rule
def unknown_gpu(ctx: Analysis) -> Iterator[Problem]:
    hw = ctx.hardware
    if hw.source == "catalog" and hw.memory_bytes <= 0:
        from .hardware import CATALOG

        yield Problem(
            "error",
            "hardware.gpu",
            f"unknown GPU {hw.name!r}",
            did_you_mean(
                hw.name, CATALOG, "use a catalog name (zerowizard gpus --catalog) or set hardware.gpu_memory_gb"
            ),
        )


@rule
def deepspeed_base(ctx: Analysis) -> Iterator[Problem]:
    if ctx.base_error:
        yield Problem("error", "deepspeed", ctx.base_error, "")
        return
    if ctx.base is not None:
        # Offload and precision combinations are judged on the merged plan (zero_combinations,
        # precision_vs_hardware): a flag may have changed what the base says.
        for p in check_ds_config(ctx.base, world_size=None, where="deepspeed: ", combinations=False):
            # Precision and batch fields are overridden by the plan; report only what survives.
            if p.field.split(": ", 1)[-1].split(".")[0] in (
                "fp16",
                "bf16",
                "bfloat16",
                "train_micro_batch_size_per_gpu",
                "gradient_accumulation_steps",
                "gradient_clipping",
                "train_batch_size",
            ) or p.field.endswith("stage3_gather_16bit_weights_on_model_save"):  # zero3_save_gather
                continue
            if p.severity == "info":
                continue
            yield p


@rule
def zero3_save_gather(ctx: Analysis) -> Iterator[Problem]:
    """The effective stage (the plan may raise the base's) decides, not the base JSON alone."""
    cfg = ctx.ds.config if ctx.ds is not None else ctx.base
    zo = (cfg or {}).get("zero_optimization")
    if ctx.zero.stage == 3 and isinstance(zo, dict) and not gathers_on_save(zo):
        yield zero3_save_problem()


@rule
def train_batch_size_in_base(ctx: Analysis) -> Iterator[Problem]:
    base = ctx.base or {}
    tb = base.get("train_batch_size")
    if isinstance(tb, int) and not isinstance(tb, bool):
        b = ctx.plan.batch
        want = b.micro_batch * b.grad_accum * ctx.hardware.world_size
        if tb != want:
            yield Problem(
                "warning",
                "deepspeed: train_batch_size",
                f"the base says {tb}, but micro batch {b.micro_batch} x accumulation "
                f"{b.grad_accum} x {ctx.hardware.world_size} GPUs = {want}; the export leaves it "
                "out so DeepSpeed derives it",
                "",
            )


@rule
def lora_fields_with_full(ctx: Analysis) -> Iterator[Problem]:
    m = ctx.plan.method
    if m.type == "full" and ctx.lora_fields_set:
        yield Problem(
            "info",
            "method.lora_r",
            "LoRA settings are ignored by a full fine-tune",
            "use --method lora or qlora to train adapters",
        )


@rule
def memory_fit(ctx: Analysis) -> Iterator[Problem]:
    sel = ctx.selected
    if sel is None:
        return
    hw = ctx.hardware
    where = "per rank (CPU)" if hw.is_cpu else f"per GPU ({hw.name}, {fmt_gib(hw.memory_bytes)})"
    if not sel.fits_gpu:
        fix = _fix_text(ctx)
        yield Problem(
            "error",
            "zero.stage",
            f"{sel.variant.label} needs {fmt_gib(sel.per_gpu.total)} {where}: it would run out of memory",
            fix,
        )
    if sel.fits_gpu and not sel.fits_host and hw.host_ram_bytes is not None:
        yield Problem(
            "error",
            "hardware.host_ram_gb",
            f"{sel.variant.label} needs {fmt_gib(sel.per_node_host)} of host RAM per node; "
            f"the node has {fmt_gib(hw.host_ram_bytes)}",
            _fix_text(ctx) if ctx.recommended else "use fewer GPUs per node or more RAM",
        )
    if hw.host_ram_bytes is None and sel.variant.offload_optimizer != "none":
        yield Problem(
            "info",
            "hardware.host_ram_gb",
            f"offload needs {fmt_gib(sel.per_node_host)} of host RAM per node; the node's RAM is unknown",
            "set --host-ram-gb to check it",
        )


def _fix_text(ctx: Analysis) -> str:
    rec = ctx.recommended
    if rec is not None:
        v = rec.variant
        return f"{v.label} fits ({fmt_gib(rec.per_gpu.total)}): {v.flags}"
    if ctx.fix is not None:
        return f"{ctx.fix.description} fits"
    return "nothing fits on this hardware: use more GPUs, a smaller model, LoRA/QLoRA, or a shorter sequence"


@rule
def higher_stage_than_needed(ctx: Analysis) -> Iterator[Problem]:
    """The plan's variant fits, but the recommended one (the fastest that fits; step times within
    the tie band go to the guide's lowest stage) is predicted faster, or as fast and lower."""
    sel, rec = ctx.selected, ctx.recommended
    if sel is None or rec is None or not sel.fits or sel.variant == rec.variant:
        return
    if sel.variant not in [e.variant for e in ctx.estimates]:
        return  # an invalid variant (QLoRA + ZeRO-3) already has its own error
    from .analysis import TIE
    from .memory import ALL_VARIANTS, PREFERENCE
    from .speed import fmt_seconds

    ts, tr = ctx.times.get(sel.variant), ctx.times.get(rec.variant)
    if ts is None or tr is None or tr.step_s <= 0:
        return
    ratio = ts.step_s / tr.step_s
    pair = f"{fmt_seconds(ts.step_s)} vs {fmt_seconds(tr.step_s)} per optimizer step"
    if ratio > 1 + TIE:
        yield Problem(
            "warning",
            "zero.stage",
            f"{sel.variant.label} fits but is predicted {ratio:.1f}x slower than {rec.variant.label} "
            f"({pair}); both train the same model",
            f"use {rec.variant.flags}",
        )
        return
    order = list(PREFERENCE) + [v for v in ALL_VARIANTS if v not in PREFERENCE]
    if order.index(rec.variant) < order.index(sel.variant):
        yield Problem(
            "info",
            "zero.stage",
            f"{rec.variant.label} also fits and is predicted as fast ({pair}); the guide prefers the "
            "lowest stage that fits: less partitioning, fewer collectives to go wrong",
            f"use {rec.variant.flags}",
        )
    else:
        yield Problem(
            "info",
            "zero.stage",
            f"{sel.variant.label} leaves under 5% of memory free; {rec.variant.label} is predicted as fast "
            f"({pair}) with room to spare",
            f"use {rec.variant.flags}",
        )


@rule
def sequence_longer_than_model(ctx: Analysis) -> Iterator[Problem]:
    spec = ctx.model
    limit = spec.card.get("max_position_embeddings") if spec else None
    if spec is not None and isinstance(limit, int) and ctx.plan.batch.seq_len > limit:
        yield Problem(
            "warning",
            "batch.seq_len",
            f"{ctx.plan.batch.seq_len} tokens is longer than {spec.name}'s {limit}-token context",
            f"use --seq-len {limit} or less",
        )


@rule
def data_file(ctx: Analysis) -> Iterator[Problem]:
    """A local data file that cannot be read is found now, not after the ranks have started."""
    path = ctx.plan.data.path
    if not path:
        return
    kind = path_kind(path)
    local = kind != "missing" or path.lower().endswith((".json", ".jsonl")) or path.startswith((".", "/", "~"))
    if kind == "file" or not local:
        return  # a readable file, or a hub dataset id
    shown = excerpt(path, 120)
    if kind == "missing":
        yield Problem(
            "warning",
            "data.path",
            f"no such file {shown} here; the run stops at start-up unless it exists where the job runs",
            "check the path (a hub dataset id has no .json suffix)",
        )
    else:
        why = kind[len("invalid: ") :] if kind.startswith("invalid") else f"is a {kind}, not a file"
        yield Problem("error", "data.path", f"{shown} {why}", "give a JSON or JSONL file")


@rule
def hardware_notes(ctx: Analysis) -> Iterator[Problem]:
    for note in ctx.hardware.notes:
        yield Problem("info", "hardware.gpu", note, "")


def check(ctx: Analysis) -> list[Problem]:
    """Run every rule on an analysis context; a failing rule becomes a problem, never an exception."""
    out: list[Problem] = []
    for fn in RULES:
        try:
            out.extend(fn(ctx))
        except Exception as exc:  # noqa: BLE001 - a bug in one rule must not hide the others
            out.append(Problem("warning", fn.__name__, f"rule failed: {exc!r}", "please report this"))
    return out


from . import modelrules  # noqa: E402, F401 - registers the model/method rules (pre-quantized, MoE, freeze, optimizer)
