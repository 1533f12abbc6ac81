"""Rules about the model and the method: pre-quantized checkpoints, mixture of experts, freeze tuning,
the optimizer, a borrowed architecture. Registered into :mod:`core.rules` (same ``rule`` decorator),
each yielding problems with the reason and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import freeze, optimizers
from .problems import Problem
from .rules import rule
from .text import did_you_mean, fmt_gib

if TYPE_CHECKING:
    from .analysis import Analysis

_LORA_ZERO2 = "--method lora --deepspeed deepspeed_zero2"


def _unquantized(ctx: Analysis) -> str:
    name = ctx.model.card.get("unquantized") if ctx.model else None
    return f"the unquantized checkpoint (--model {name})" if name else "the unquantized checkpoint"


@rule
def prequantized_checkpoint(ctx: Analysis) -> Iterator[Problem]:
    spec = ctx.model
    if spec is None or spec.quantization is None:
        return
    q = spec.quantization
    method = ctx.plan.method.type
    label = f"a pre-quantized {q.label} checkpoint"
    if method in ("full", "freeze"):
        yield Problem(
            "error",
            "method.type",
            f"{spec.name} is {label}: its weights are stored as packed {q.bits}-bit integers with scales, "
            "which take no gradient, so it cannot be trained fully (nor its layers unfrozen)",
            f"train LoRA adapters on the quantized base with ZeRO-2 ({_LORA_ZERO2}), or fine-tune "
            f"{_unquantized(ctx)} fully",
        )
    elif method == "qlora":
        yield Problem(
            "error",
            "method.type",
            f"{spec.name} is already quantized ({q.label}): QLoRA would quantize it a second time with "
            "bitsandbytes, and transformers refuses a second quantization_config",
            "use --method lora: adapters on this base are QLoRA's memory shape already; "
            f"or QLoRA on {_unquantized(ctx)}",
        )
    if ctx.zero.stage == 3:
        yield Problem(
            "error",
            "zero.stage",
            f"DeepSpeed ZeRO-3 cannot partition {label}'s packed weights (it fails while loading, LLaMA-Factory #6898)",
            f"use ZeRO-2 with LoRA ({_LORA_ZERO2}), or {_unquantized(ctx)} with ZeRO-3",
        )


@rule
def optimizer_choice(ctx: Analysis) -> Iterator[Problem]:
    name = ctx.plan.optimizer
    where = "optimizer"
    if name is None:
        name, _ = optimizers.from_ds_config(ctx.base or {})
        where = "deepspeed: optimizer.type"
    if name is None:
        return
    opt, why, fix = optimizers.lookup(name)
    if opt is None:
        yield Problem("error", where, why, fix)
        return
    base = ctx.base or {}
    if not opt.zero_tested and ctx.zero.stage >= 1 and base.get("zero_allow_untested_optimizer") is not True:
        yield Problem(
            "error",
            "deepspeed: zero_allow_untested_optimizer",
            f"{opt.ds_type} is not among the optimizers ZeRO is tested with; DeepSpeed stops at start-up "
            "unless the JSON allows untested optimizers",
            'add "zero_allow_untested_optimizer": true to the DeepSpeed JSON (the presets have it)',
        )
    if opt.name == "lion" and ctx.hardware.is_cpu and ctx.zero.offload_optimizer == "none":
        yield Problem(
            "error",
            where,
            "DeepSpeed's FusedLion has no CPU kernel: on the CPU accelerator it stops with 'This op had not been "
            "implemented on CPU backend' (checked with DeepSpeed 0.19.8)",
            "add --offload-optimizer cpu (DeepSpeedCPULion), or use adagrad or sgd_momentum (4 bytes of state too)",
        )
    if opt.name != optimizers.DEFAULT.name:
        t = ctx.params_trainable
        saved = (optimizers.DEFAULT.state_bytes - opt.state_bytes) * t
        yield Problem(
            "info",
            where,
            f"{opt.ds_type} keeps {opt.state_bytes} bytes of state per trainable parameter ({opt.states}) "
            f"beside DeepSpeed's fp32 master copy: {fmt_gib(saved)} less than AdamW before ZeRO partitions it",
            "",
        )


@rule
def moe_notes(ctx: Analysis) -> Iterator[Problem]:
    spec = ctx.model
    if spec is None or not spec.is_moe:
        return
    yield Problem(
        "info",
        "model.name",
        f"{spec.name} is a mixture of experts: {spec.total_params / 1e9:.2f}B parameters in memory (every "
        f"expert, with its gradients and optimizer states when it trains), {spec.active_params / 1e9:.2f}B "
        f"active per token ({spec.experts_per_token} of {spec.num_experts} experts): activations and compute "
        "follow the routed experts only",
        "",
    )
    if ctx.zero.stage == 3:
        experts = max(s.expert_params for _, s in spec.layer_groups())
        yield Problem(
            "info",
            "zero.stage",
            f"ZeRO-3 gathers one layer's experts at once (transformers stores them as one fused module): "
            f"{experts / 1e9:.2f}B parameters, {fmt_gib(2 * experts)} at 16 bits per GPU while the layer runs",
            "",
        )
    if ctx.plan.method.type == "qlora":
        yield Problem(
            "info",
            "method.type",
            f"bitsandbytes quantizes nn.Linear modules only: {spec.name}'s routed experts "
            f"({spec.expert_params / 1e9:.1f}B parameters, fused 3-D tensors) stay 16-bit under QLoRA",
            "",
        )


@rule
def lora_on_experts(ctx: Analysis) -> Iterator[Problem]:
    spec, m = ctx.model, ctx.plan.method
    if spec is None or m.type not in ("lora", "qlora"):
        return
    for problem in spec.lora_problems(m.target_modules):
        yield Problem("error", "method.target_modules", problem, "peft raises a ValueError otherwise")
    if m.lora_dropout > 0 and spec.lora_wraps_parameters(m.target_modules):
        yield Problem(
            "error",
            "method.lora_dropout",
            f"with these targets peft 0.21 puts adapters on {spec.name}'s router and fused experts "
            "(ParamWrapper), which refuse lora_dropout != 0 (get_peft_model raises)",
            "set method.lora_dropout to 0, or target the attention only "
            "(target_modules: q_proj, k_proj, v_proj, o_proj)",
        )


@rule
def freeze_tuning(ctx: Analysis) -> Iterator[Problem]:
    spec, m = ctx.model, ctx.plan.method
    if m.type != "freeze":
        if getattr(ctx, "freeze_fields_set", False):
            yield Problem(
                "info",
                "method.freeze_layers",
                "freeze_layers and trainable_modules are used by freeze tuning only",
                "use --method freeze to train only the last layers",
            )
        return
    if spec is None:
        return
    if m.freeze_layers > spec.num_layers:
        yield Problem(
            "error",
            "method.freeze_layers",
            f"{m.freeze_layers} trainable layers, but {spec.name} has {spec.num_layers}",
            f"use --freeze-layers {spec.num_layers} or fewer (every layer and the embeddings: --method full)",
        )
    unmatched = spec.unmatched_modules(m.trainable_modules)
    if "lm_head" in unmatched and spec.tie_embeddings:
        yield Problem(
            "error",
            "method.trainable_modules",
            f"{spec.name} ties its output head to the input embedding: lm_head has no matrix of its own",
            "name embed_tokens to train the shared matrix",
        )
        unmatched.remove("lm_head")
    if unmatched:
        names = sorted({part for path, _ in spec.named_tensors() for part in path.split(".") if not part.isdigit()})
        yield Problem(
            "error",
            "method.trainable_modules",
            f"{', '.join(repr(n) for n in unmatched)} names no module of {spec.name}",
            did_you_mean(unmatched[0], names, "use module names such as mlp, self_attn, q_proj, lm_head, embed_tokens"),
        )
    elif ctx.params_trainable == 0:
        yield Problem(
            "error",
            "method.freeze_layers",
            f"nothing would train: {freeze.describe(m.freeze_layers, m.trainable_modules)} holds no parameter",
            "use --freeze-layers 2 or more, or name modules in trainable_modules",
        )
    else:
        share = ctx.params_trainable / max(1, spec.total_params)
        yield Problem(
            "info",
            "method.freeze_layers",
            f"freeze tuning trains {freeze.describe(m.freeze_layers, m.trainable_modules)}: "
            f"{ctx.params_trainable / 1e6:,.1f}M parameters ({100 * share:.1f}%); the frozen rest has no gradients "
            "or optimizer states and is replicated below ZeRO-3",
            "",
        )


@rule
def borrowed_shapes(ctx: Analysis) -> Iterator[Problem]:
    spec = ctx.model
    if spec is None or spec.source != "params":
        return
    donor = spec.card.get("borrowed_from")
    yield Problem(
        "info",
        "model.params",
        f"{spec.total_params / 1e9:,.2f}B parameters in {donor}'s proportions: hidden {spec.hidden_size}, "
        f"{spec.num_layers} layers, MLP {spec.intermediate_size}, {spec.num_heads} heads, vocabulary "
        f"{spec.vocab_size} (held); largest module {spec.largest_layer_params / 1e9:.2f}B parameters",
        "give --model a card or a local config.json for the real shapes",
    )
