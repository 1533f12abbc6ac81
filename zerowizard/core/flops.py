"""Floating-point operations per token of a decoder-only model's training step.

Counted from the model spec's real shapes (:meth:`ModelSpec.linear_layers`: the MLP width, GQA's
narrower k/v projections), per token and per decoder layer:

- every linear layer: ``2 * in * out`` in forward (one multiply-add per weight);
- attention's quadratic term: ``QK^T`` and ``AV`` cost ``2 * s * q_dim`` each in forward; with a
  causal mask the fused kernels (SDPA / FlashAttention) skip the masked half, so ``2 * s * q_dim``
  per token is counted, ``s`` the sequence length;
- the LM head: ``2 * h * V``;
- backward: an input gradient (as forward) for every matmul the gradient must flow through, plus a
  weight gradient (as forward) only for *trainable* weights. A full fine-tune therefore costs
  2x forward in backward (the familiar 6 * P per token); LoRA's frozen base gets input gradients
  only, and the adapters (``2 * r * (in + out)`` forward) get both;
- gradient checkpointing recomputes each decoder layer's forward once during backward (8 * P for
  the layers of a full fine-tune); the LM head is not checkpointed.

Norms, activations, rotary and the loss are memory-bound; they are left to the efficiency factor
(:mod:`.speed`). Embedding lookups are not matmuls.

MoE seam: a spec that routes tokens to experts can expose ``active_linear_layers()`` (the linears a
token actually passes through: shared layers plus ``top_k`` experts) and ``router_flops_per_token``;
:func:`layer_linears` prefers them over ``linear_layers()``, so the time model counts active
parameters per token while the memory model keeps counting all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Flops:
    """Per token of one micro step, on one GPU (data parallel: every rank runs the whole model)."""

    forward: float  # decoder layers + LM head, forward
    backward: float  # input + weight gradients
    recompute: float  # gradient checkpointing's second forward of the decoder layers (0 without)
    model: float  # forward + backward without recomputation: the MFU numerator (Korthikanti et al.)
    attention: float = 0.0  # the quadratic term's share of forward + backward + recompute (its own rate)
    attention_forward: float = 0.0  # its share of forward

    @property
    def total(self) -> float:
        return self.forward + self.backward + self.recompute


def layer_linears(spec: Any) -> list[tuple[str, int, int, bool]]:
    """The linears one token passes through in one decoder layer (MoE: the active experts only)."""
    active = getattr(spec, "active_linear_layers", None)
    return list(active()) if callable(active) else list(spec.linear_layers())


def _targets(spec: Any, target_modules: Any) -> set[str]:
    layers = layer_linears(spec)
    if target_modules in (None, "all-linear", "all_linear"):
        return {name for name, *_ in layers}
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    return {name for name, *_ in layers if any(name == n or name.endswith("." + n) for n in names)}


def flops_per_token(
    spec: Any,
    method: str,
    *,
    seq_len: int,
    grad_checkpointing: bool,
    lora_r: int = 64,
    target_modules: Any = "all-linear",
) -> Flops:
    """FLOPs per token for a full fine-tune, LoRA or QLoRA (QLoRA computes in 16 bits after
    dequantising, so its matmuls cost what LoRA's do; the dequantisation is memory traffic)."""
    scale = float(getattr(spec, "scale", 1.0))  # --params: widths scaled to the stated count
    layers = layer_linears(spec)
    linear = 2.0 * sum(i * o for _, i, o, _ in layers) * scale
    q_dim = spec.num_heads * spec.head_dim
    attn = 2.0 * seq_len * q_dim * scale**0.5  # QK^T + AV with the causal half skipped
    head = 2.0 * spec.hidden_size * spec.vocab_size * scale**0.5
    router = float(getattr(spec, "router_flops_per_token", 0.0) or 0.0)
    n = spec.num_layers
    if method == "full":
        adapters = 0.0
        layer_fwd = linear + attn + router
        layer_bwd = 2 * linear + 2 * attn + 2 * router
        head_bwd = 2 * head
    else:
        targets = _targets(spec, target_modules)
        adapters = 2.0 * lora_r * sum(i + o for name, i, o, _ in layers if name in targets) * scale**0.5
        layer_fwd = linear + attn + router + adapters
        # frozen weights: input gradients only; adapters: input and weight gradients
        layer_bwd = linear + 2 * attn + router + 2 * adapters
        head_bwd = head  # the (frozen) LM head passes the gradient on, no weight gradient
    forward = n * layer_fwd + head
    backward = n * layer_bwd + head_bwd
    recompute = n * layer_fwd if grad_checkpointing else 0.0
    attention = n * attn * (3 + (1 if grad_checkpointing else 0))
    return Flops(
        forward=forward,
        backward=backward,
        recompute=recompute,
        model=forward + backward,
        attention=attention,
        attention_forward=n * attn,
    )


def activation_elements(spec: Any, grad_checkpointing: bool) -> float:
    """Elements per token that the memory-bound ops (norms, rotary, SiLU, residuals, the loss's
    softmax) pass over: ``layers x (h + f) + vocab``, the decoder part once more under
    recomputation's extra forward (a third of forward + backward). The time per element is
    calibrated on the CPU (:mod:`zerowizard.runner.calibrate`); on GPUs it is in the efficiency."""
    scale = float(getattr(spec, "scale", 1.0)) ** 0.5
    layers = spec.num_layers * (spec.hidden_size + spec.intermediate_size) * scale
    return layers * (4 / 3 if grad_checkpointing else 1.0) + spec.vocab_size


def gathered_params(spec: Any, persistence_threshold: int) -> tuple[int, int]:
    """(parameters, modules) ZeRO-3 all-gathers per pass: every parameter tensor of at least
    ``stage3_param_persistence_threshold`` elements (smaller ones stay resident, stage3.py
    ``_get_param_persistence``); modules: how many of them hold one (one fetch each)."""
    scale = float(getattr(spec, "scale", 1.0))
    params, modules = 0, 0
    for _, i, o, bias in spec.linear_layers():
        numel = i * o * scale
        if numel >= persistence_threshold:
            params += int(numel + (o if bias else 0))
            modules += 1
    params *= spec.num_layers
    modules *= spec.num_layers
    emb = spec.vocab_size * spec.hidden_size * scale**0.5
    for present, numel in ((True, emb), (not spec.tie_embeddings, emb)):
        if present and numel >= persistence_threshold:
            params += int(numel)
            modules += 1
    return params, modules
