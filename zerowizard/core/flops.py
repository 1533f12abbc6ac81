"""Floating-point operations per token of a decoder-only model's training step.

Counted from the model spec's real shapes, per token:

- every matmul weight a token passes: ``2`` FLOPs in forward (one multiply-add). The spec's
  ``matmul_params_per_token`` gives them where it has it (the layers' linears with the real MLP
  width and GQA's narrower k/v projections; for a mixture of experts the routers and only the
  ``experts_per_token`` experts a token reaches, plus the output head); otherwise the linears of
  ``linear_layers()`` times the layer count, plus ``h x V`` for the head;
- attention's quadratic term ``QK^T`` and ``AV``: the spec's ``attention_flops_per_token`` (a causal
  mask halves it: fused kernels skip the masked blocks), else ``2 * s * q_dim`` per layer;
- backward: an input gradient (as forward) for every matmul the gradient flows through, plus a weight
  gradient (as forward) only for *trainable* weights. A full fine-tune costs 2x forward in backward
  (the familiar 6 * P per token); LoRA's frozen base gets input gradients only, its adapters
  (``2 * r * (in + out)`` forward) both; freeze tuning runs backward only from the lowest trainable
  layer up (``Trainable.backprop_layers``), with weight gradients for what trains;
- gradient checkpointing recomputes each decoder layer that runs backward once (8 * P for the layers
  of a full fine-tune); the LM head is not checkpointed.

Norms, activations, rotary and the loss are memory-bound: :func:`activation_elements` counts what
they pass over, and the time model prices it (calibrated on the CPU, in the efficiency on GPUs).
Embedding lookups are not matmuls.
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


def _weights(spec: Any) -> tuple[float, float]:
    """(decoder matmul weights, LM head weights) one token multiplies."""
    scale = float(getattr(spec, "scale", 1.0))  # --params: the stated count over the shapes'
    head = float(spec.hidden_size * spec.vocab_size)
    per_token = getattr(spec, "matmul_params_per_token", None)
    if isinstance(per_token, (int, float)) and not isinstance(per_token, bool) and per_token > 0:
        head *= scale
        return float(per_token) - head, head
    layers = spec.num_layers * sum(i * o for _, i, o, _ in layer_linears(spec)) * scale
    return layers, head * scale**0.5


def _attention(spec: Any, seq_len: int) -> float:
    fn = getattr(spec, "attention_flops_per_token", None)
    if callable(fn):
        return float(fn(seq_len))
    scale = float(getattr(spec, "scale", 1.0))
    return 2.0 * seq_len * spec.num_heads * spec.head_dim * spec.num_layers * scale**0.5


def _lora_weights(spec: Any, r: int, target_modules: Any) -> float:
    """Adapter weights a token multiplies: peft's count (``r x (in + out)`` per targeted linear)."""
    fn = getattr(spec, "lora_params", None)
    if callable(fn):
        return float(fn(r, target_modules))
    names = None if target_modules in (None, "all-linear", "all_linear") else set(target_modules)
    per_layer = sum(r * (i + o) for name, i, o, _ in layer_linears(spec) if names is None or name in names)
    return float(spec.num_layers * per_layer)


def _trainable(spec: Any, method: str, freeze_layers: int, trainable_modules: Any) -> tuple[float, float, float]:
    """(share of layers the backward runs through, trainable matmul weights per token, trainable head)."""
    if method == "full" or not callable(getattr(spec, "trainable", None)):
        return 1.0, -1.0, 1.0  # everything: the caller uses all weights
    t = spec.trainable(method, freeze_layers=freeze_layers, trainable_modules=trainable_modules)
    share = t.backprop_layers / max(1, spec.num_layers)
    active = float(getattr(spec, "active_params", 0) or 0)
    total = float(spec.total_params or 1)
    dense_share = active / total if active and getattr(spec, "is_moe", False) else 1.0
    return share, float(t.params - t.embedding - t.head) * dense_share, float(t.head)


def flops_per_token(
    spec: Any,
    method: str,
    *,
    seq_len: int,
    grad_checkpointing: bool,
    lora_r: int = 64,
    target_modules: Any = "all-linear",
    freeze_layers: int = 2,
    trainable_modules: Any = "all",
) -> Flops:
    """FLOPs per token for a full fine-tune, LoRA/QLoRA or freeze tuning (QLoRA computes in 16 bits
    after dequantising, so its matmuls cost what LoRA's do; the dequantisation is memory traffic)."""
    layers, head = _weights(spec)
    attn = _attention(spec, seq_len)
    router = float(getattr(spec, "router_flops_per_token", 0.0) or 0.0)  # a spec without them in its weights
    layer_fwd = 2 * layers + attn + router
    if method in ("lora", "qlora"):
        adapters = 2.0 * _lora_weights(spec, lora_r, target_modules)
        forward = layer_fwd + adapters + 2 * head
        # frozen base and head: input gradients only; adapters: input and weight gradients
        backward = 2 * layers + 2 * attn + router + 2 * adapters + 2 * head
        recompute = layer_fwd + adapters if grad_checkpointing else 0.0
        share = 1.0
    else:
        share, wlayers, whead = _trainable(spec, method, freeze_layers, trainable_modules)
        if wlayers < 0:  # full: every weight trains
            wlayers, whead = layers, head
        forward = layer_fwd + 2 * head
        head_dgrad = 2 * head if share > 0 else 0.0
        backward = share * (2 * layers + 2 * attn + router) + head_dgrad + 2 * wlayers + 2 * (head if whead else 0.0)
        recompute = share * layer_fwd if grad_checkpointing else 0.0
    return Flops(
        forward=forward,
        backward=backward,
        recompute=recompute,
        model=forward + backward,
        attention=attn * (1 + 2 * share + (share if grad_checkpointing else 0.0)),
        attention_forward=attn,
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
    experts = int(getattr(spec, "expert_params", 0) or 0)
    if experts:  # routed experts: fused parameters, gathered with their MoE block
        params += experts
        modules += spec.num_layers
    emb = spec.vocab_size * spec.hidden_size * scale**0.5
    for present, numel in ((True, emb), (not spec.tie_embeddings, emb)):
        if present and numel >= persistence_threshold:
            params += int(numel)
            modules += 1
    return params, modules
