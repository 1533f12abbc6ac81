"""The ZeRO memory model: bytes per GPU and per node's host RAM, for every stage and offload variant.

Every term is traceable (docs/memory-model.md lists the sources):

- Model states (XTuner's guide, the ZeRO paper): with mixed-precision Adam each *trainable*
  parameter costs 2 (16-bit weight) + 2 (16-bit grad) + 12 (fp32 master, momentum, variance)
  bytes, so a full fine-tune needs 16x; per GPU ZeRO-1 ``4x + 12x/N``, ZeRO-2 ``2x + 14x/N``,
  ZeRO-3 ``16x/N``. Frozen weights (the LoRA base) have neither grads nor optimizer states; they
  are replicated under ZeRO-0/1/2 and partitioned under ZeRO-3. A QLoRA base stores its decoder
  linear weights in 4 bits plus quantization constants (bitsandbytes NF4, blocksize 64, double
  quantization), the rest in 16 bits.
- Offload (DeepSpeed ZeRO-Offload / ZeRO-Infinity): ``offload_optimizer`` moves the fp32 master
  weights, Adam moments and fp32 gradient partitions to the host; ``offload_param`` (stage 3) moves
  the 16-bit parameters.
- Activations (Korthikanti et al. 2022, generalised to GQA and SwiGLU): see :func:`activations`.
- What DeepSpeed 0.19 really holds, per rank, at the two peaks of a step (end of backward, inside
  the optimizer step) is :func:`zero_phases`, measured against real engines on the CPU by
  benchmarks/fidelity.py (within 2% on every config it runs). The guide's figures stay the
  weights/grads/optimizer fields; everything DeepSpeed allocates beyond them is ``buffers``:
  gradient reduction buckets, the fp32 gradient partition of the step, the embedding's pending
  gradient, the partition-boundary parameter, ZeRO-3's gathered parameters, offload staging
  buffers, the QLoRA dequantisation temporary. One exception to "beyond": fp32 training under
  ZeRO 1-3 keeps an fp32 master copy too (optimizer 12 bytes/param), stage 0 fp32 does not (8).
- Overhead: a stated CUDA context constant plus an allocator fragmentation margin, kept separate.

Pure Python, integer bytes, fast: the TUI calls :func:`estimate` on every keystroke.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .text import GIB

CUDA_CONTEXT_BYTES = 512 * 1024**2  # CUDA context + cuBLAS workspace + NCCL, measured order (DESIGN.md)
CPU_PROCESS_BYTES = 576 * 1024**2  # a rank's resident set on the CPU before model states (measured: the tiny
# default's ranks hold 0.55-0.62 GiB RSS with under 0.05 GiB of model states and activations)
HOST_RANK_BYTES = 1 * GIB  # per-rank host memory outside offload (process, pinned staging)
FRAGMENTATION = 0.05  # allocator fragmentation margin on everything allocated


@dataclass(frozen=True)
class Variant:
    stage: int
    offload_optimizer: str = "none"
    offload_param: str = "none"

    @property
    def label(self) -> str:
        parts = [f"ZeRO-{self.stage}"]
        if self.offload_optimizer != "none":
            parts.append(f"opt→{self.offload_optimizer}")
        if self.offload_param != "none":
            parts.append(f"param→{self.offload_param}")
        return " ".join(parts)

    @property
    def preset(self) -> str | None:
        """The XTuner preset that is exactly this variant, if any."""
        names = {
            (1, "none", "none"): "deepspeed_zero1",
            (2, "none", "none"): "deepspeed_zero2",
            (2, "cpu", "none"): "deepspeed_zero2_offload",
            (3, "none", "none"): "deepspeed_zero3",
            (3, "cpu", "cpu"): "deepspeed_zero3_offload",
        }
        return names.get((self.stage, self.offload_optimizer, self.offload_param))

    @property
    def flags(self) -> str:
        """The command-line flags that select this variant."""
        if self.preset:
            return f"--deepspeed {self.preset}"
        out = f"--stage {self.stage}"
        if self.offload_optimizer != "none":
            out += f" --offload-optimizer {self.offload_optimizer}"
        if self.offload_param != "none":
            out += f" --offload-param {self.offload_param}"
        return out


# In the order the guide prefers them: the lowest stage that fits, then offload.
ALL_VARIANTS = (
    Variant(0),
    Variant(1),
    Variant(2),
    Variant(3),
    Variant(1, "cpu"),
    Variant(2, "cpu"),
    Variant(3, "cpu"),
    Variant(3, "cpu", "cpu"),
    Variant(3, "nvme", "nvme"),
)


@dataclass(frozen=True)
class Breakdown:
    weights: int = 0
    grads: int = 0
    optimizer: int = 0
    activations: int = 0
    buffers: int = 0
    overhead: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer + self.activations + self.buffers + self.overhead

    @property
    def model_states(self) -> int:
        return self.weights + self.grads + self.optimizer

    def as_dict(self) -> dict:
        return {
            "weights": self.weights,
            "grads": self.grads,
            "optimizer": self.optimizer,
            "activations": self.activations,
            "buffers": self.buffers,
            "overhead": self.overhead,
            "total": self.total,
        }


@dataclass(frozen=True)
class VariantEstimate:
    variant: Variant
    per_gpu: Breakdown
    per_node_host: int
    fits_gpu: bool
    fits_host: bool

    @property
    def fits(self) -> bool:
        return self.fits_gpu and self.fits_host


@dataclass(frozen=True)
class Workload:
    """Everything the arithmetic needs, already resolved (no plan parsing here)."""

    total_params: int
    trainable_params: int
    method: str  # full | lora | qlora | freeze
    quantizable_params: int  # QLoRA: decoder linear weights stored in 4 bits
    largest_layer_params: int
    largest_linear_params: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    kv_dim: int  # num_kv_heads * head_dim
    q_dim: int  # num_heads * head_dim
    vocab_size: int
    micro_batch: int
    seq_len: int
    grad_checkpointing: bool
    precision: str  # bf16 | fp16 | fp32
    lora_dropout: float = 0.0
    attention: str = "sdpa"  # sdpa (fused: no s^2 term) | eager
    world_size: int = 1
    gpus_per_node: int = 1
    gpu_memory_bytes: int = 0
    host_ram_bytes: int | None = None
    is_cpu: bool = False
    # ZeRO knobs (DeepSpeed defaults)
    reduce_bucket_size: int = 500_000_000
    overlap_comm: bool = False
    contiguous_gradients: bool = True
    prefetch_bucket_size: int = 50_000_000
    max_live_parameters: int = 1_000_000_000
    # gradient accumulation steps: ZeRO-1 reduces only at the accumulation boundary, so above 1 it
    # holds whole 16-bit gradients between micro steps (stage_1_and_2.py:2294)
    grad_accum: int = 1
    # the optimizer's state bytes for all trainable parameters beyond DeepSpeed's fp32 master copy
    # (core.optimizers); None: Adam/AdamW's fp32 exp_avg + exp_avg_sq, 8 bytes per parameter
    optimizer_states: int | None = None
    # mixture of experts (0: dense): activations follow the routed experts only
    num_experts: int = 0
    experts_per_token: int = 0
    expert_width: int = 0  # one routed expert's MLP width
    shared_width: int = 0  # the always-on shared experts' MLP width
    moe_layers: int = 0  # how many of num_layers route to experts (the rest are dense, width intermediate_size)
    # what trains, tensor by tensor (ModelSpec.trainable); empty: Llama-shaped formulas from the widths
    layer_tensors: tuple[tuple[int, int], ...] = ()  # (numel, count) of trainable tensors in the layers
    embedding_trainable: int | None = None  # trainable input-embedding parameters (None: all of it iff full)
    head_trainable: int | None = None  # trainable untied output head (None: vocab x hidden iff full)
    backprop_layers: int | None = None  # layers whose activations autograd keeps (None: all)
    lora_inputs: int = 0  # per layer, in_features summed over LoRA-targeted linears (0: all of a Llama layer)
    quantized_linears: int = 0  # QLoRA: nn.Linear modules replaced by bitsandbytes (0: num_layers x 7)
    prequantized_bytes: int | None = None  # a pre-quantized checkpoint's stored linear weights (GPTQ/AWQ/FP8)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def qlora_weight_bytes(n: int) -> int:
    """bitsandbytes NF4 with double quantization: 4-bit packed weights, an 8-bit absmax per block
    of 64, an fp32 absmax per 256 of those blocks (bitsandbytes functional.quantize_4bit)."""
    blocks = _ceil_div(n, 64)
    return _ceil_div(n, 2) + blocks + 4 * _ceil_div(blocks, 256)


def _mlp_bytes(w: Workload, moe: bool) -> int:
    """Per token, bytes at 16 bits that one layer's MLP keeps for backward.

    Dense SwiGLU of width f: its input 2h, then gate, up, act(gate) and act(gate)*up, 8f.
    Routed (transformers 5 ``*Experts.forward``): the router's logits and fp32 probabilities (6E),
    and per routed copy of the token (``experts_per_token`` of them) the gathered input 2h, the
    gate_up output, the activation and the product (8f), the expert output before its routing
    weight 2h; shared experts are a dense MLP of their width on the same input."""
    h = w.hidden_size
    if not moe:
        return 2 * h + 8 * w.intermediate_size
    routed = w.experts_per_token * (4 * h + 8 * w.expert_width)
    return 2 * h + 6 * w.num_experts + routed + 8 * w.shared_width


def activations(w: Workload, v: Variant | None = None) -> int:
    """Activation bytes at the peak of one micro batch's forward/backward, per GPU; with a variant,
    what they add to the peak of the model states (see :func:`_held_at_activation_peak`).

    Measured tensor by tensor on the CPU (benchmarks/fidelity_peak.py: torch's allocator, HF Llama
    and Qwen2, SDPA, peft, non-reentrant checkpointing), per token and decoder layer, 16-bit:
      norms      each RMSNorm keeps its fp32 input (4h) and rsqrt (4); a trainable norm weight also
                 keeps the normalised 16-bit input (2h)
      attention  2h (q/k/v input) + 2q (Q) + 2kv (K) + 2kv (V) + 2q (output, also o_proj's input)
                 + 4a (fp32 log-sum-exp of the fused kernel); eager attention adds 5·a·s
      MLP        :func:`_mlp_bytes`: 2h (input) + 8f (gate, up, act(gate), act·up: SwiGLU of width f);
                 a mixture of experts keeps the routed experts' activations only
      padding    a micro batch over 1 is padded (the collator): SDPA then gets a mask, so K and V
                 are expanded to the query heads (4(q - kv)) and each layer keeps its 16-bit s×s mask
      LoRA       frozen norms and linears keep nothing for their weights; each adapter keeps its r-wide
                 A output (7 adapters: 14r); dropout keeps the dropped copy and its noise (2+2 bytes
                 per input element on the CPU, 2+1 (a bool mask) on CUDA) for every targeted linear's
                 input in place of the shared norm outputs and down input (-4h - 2f)
    Only layers from the lowest trainable one up keep anything (freeze tuning: autograd records
    nothing below the first parameter that needs a gradient).
    The loss: the fp32 log-softmax of the logits is kept (4V per token); backward's first node adds
    nll's gradient and log-softmax's gradient, both fp32 (8V): 12V at the peak, while every layer's
    activations are still alive. Gradient checkpointing keeps each layer's 16-bit input (2h) and the
    final norm, and backward peaks at the larger of the loss (12V) and one recomputed layer with its
    gradients (per layer + 2h + 2f, beside 4V of the loss still held).
    """
    s, b, h, f = w.seq_len, w.micro_batch, w.hidden_size, w.intermediate_size
    q, kv, heads = w.q_dim, w.kv_dim, w.num_heads
    scale = 2 if w.precision == "fp32" else 1  # the figures above are for 16-bit tensors
    tokens = s * b
    lora = w.method in ("lora", "qlora")
    per_token = 2 * (4 * h + 4 + (0 if lora else 2 * h)) + 2 * h + 4 * q + 4 * kv + 4 * heads
    if b > 1:
        per_token += 4 * max(0, q - kv) + 2 * s
    if w.attention == "eager":
        per_token += 5 * heads * s
    if lora:
        per_rank = w.num_layers * (7 * h + 2 * q + 2 * kv + 3 * f)
        r = max(1, w.trainable_params // max(1, per_rank))
        per_token += 7 * 2 * r
        if w.lora_dropout > 0:
            per_token += (4 if w.is_cpu else 3) * (w.lora_inputs or 5 * h + q + f) - 4 * h - 2 * f
    dense_layer = tokens * (per_token + _mlp_bytes(w, False)) * scale
    moe = min(w.moe_layers, w.num_layers) if w.num_experts else 0
    moe_layer = tokens * (per_token + _mlp_bytes(w, True)) * scale if moe else 0
    kept = w.num_layers if w.backprop_layers is None else min(w.num_layers, max(0, w.backprop_layers))
    kept_moe = min(moe, kept)  # MoE layers sit above the dense ones (DeepSeek's first layers)
    final = tokens * (4 * h if lora else 8 * h) * scale
    loss = 12 * tokens * w.vocab_size
    if w.grad_checkpointing:
        saved = kept * tokens * 2 * h * scale + final
        layer = max(dense_layer, moe_layer) if kept else 0
        recompute = layer + tokens * (2 * h + 2 * f) * scale + 4 * tokens * w.vocab_size
        peak = saved + max(loss, recompute)
    else:
        peak = kept_moe * moe_layer + (kept - kept_moe) * dense_layer + final + loss
    if v is None:
        return peak
    phases = zero_phases(w, v)
    weights, grads, optim, _ = _model_states(w, v, phases)
    # the states' own peak: weights + grads + optimizer + buffers (see _buffers)
    states_peak = max(weights + grads + optim, *(sum(part[0] for part in ph.values()) for ph in phases.values()))
    return max(0, _held_at_activation_peak(w, v, phases["backward"]) + peak - states_peak)


def _held_at_activation_peak(w: Workload, v: Variant, ph: dict[str, tuple[int, int]]) -> int:
    """Device bytes of model states alive when activations peak (the loss's backward, before this
    micro batch has produced any gradient): weights and optimizer states; ZeRO-3's persistent
    gradient partition, bucket and gathered parameters; with accumulation, the gradients accumulated
    so far. The gradients, buckets and step buffers of the states' own peak come later, when the
    activations are gone, so the step's peak is the larger of the two, not their sum (measured,
    benchmarks/fidelity_peak.py: a full fine-tune's gradient memory is not yet allocated there).
    ``ph`` is the ``backward`` phase of :func:`zero_phases`."""
    held = ph["weights"][0] + ph["optimizer"][0]
    if v.stage == 3:
        held += ph["grads"][0] + ph["gradbuf"][0] + ph["transient"][0]
    elif w.grad_accum > 1:
        wb = 4 if w.precision == "fp32" else 2
        whole = v.stage <= 1  # param.grad kept whole between boundaries (ZeRO-2: its partition)
        held += min(ph["grads"][0], w.trainable_params * wb if whole else ph["grads"][0] // 2)
    return held


# bitsandbytes QuantState constants per quantised nn.Linear (measured, benchmarks/fidelity.py):
# the NF4 code (16 fp32), the nested 8-bit code (256 fp32) and the nested offset (1 fp32).
QLORA_MODULE_CONST_BYTES = 16 * 4 + 256 * 4 + 4
LINEARS_PER_LAYER = 7  # q, k, v, o, gate, up, down (Llama-style decoders)


def _largest_trainable(w: Workload) -> int:
    """The largest single trainable tensor (DeepSpeed's offload staging buffers are this big).

    From the trainable tensors when the workload lists them; else Llama shapes: full, the largest
    module; LoRA on all linears, the rank follows from the count, r = t / (layers * sum(in + out)),
    and the largest adapter matrix is r * max(h, f, q)."""
    if w.layer_tensors:
        return max([n for n, _ in w.layer_tensors] + [_embedding(w), _head(w)])
    if w.method == "full":
        return w.largest_layer_params
    per_rank = w.num_layers * (7 * w.hidden_size + 2 * w.q_dim + 2 * w.kv_dim + 3 * w.intermediate_size)
    r = max(1, w.trainable_params // max(1, per_rank))
    return r * max(w.hidden_size, w.intermediate_size, w.q_dim)


def _largest_layer_tensor(w: Workload) -> int:
    """The largest trainable tensor inside the decoder layers (a partition boundary straddles it)."""
    if w.layer_tensors:
        return max(n for n, _ in w.layer_tensors)
    return _largest_trainable(w) if w.method != "full" else w.largest_linear_params


def _embedding(w: Workload) -> int:
    if w.embedding_trainable is not None:
        return w.embedding_trainable
    return w.vocab_size * w.hidden_size if w.method == "full" else 0


def _head(w: Workload) -> int:
    if w.head_trainable is not None:
        return w.head_trainable
    return w.vocab_size * w.hidden_size if w.method == "full" else 0


def _oversized_trainable(w: Workload) -> tuple[int, int]:
    """Trainable parameters in tensors larger than a reduction bucket, the input embedding aside:
    (in the decoder layers, in the lm_head)."""
    b = w.reduce_bucket_size
    if w.layer_tensors:
        lm_head = _head(w)
        return sum(n * c for n, c in w.layer_tensors if n > b), lm_head if lm_head > b else 0
    h, f, q, kv = w.hidden_size, w.intermediate_size, w.q_dim, w.kv_dim
    if w.method == "full":
        layer = [h * q, h * kv, h * kv, q * h, h * f, h * f, f * h]
        head: list[int] = [w.vocab_size * h]
    else:
        r = _largest_trainable(w) // max(h, f, q)
        layer = [r * d for d in (h, q, h, kv, h, kv, q, h, h, f, h, f, f, h)]
        head = []
    return w.num_layers * sum(x for x in layer if x > b), sum(x for x in head if x > b)


@dataclass(frozen=True)
class _States:
    """The per-rank quantities every stage's phases are built from."""

    n: int  # world size
    wb: int  # weight and gradient bytes
    t: int  # trainable parameters
    weights: int  # all weights, frozen and trainable, unpartitioned
    optim: int  # fp32 master + optimizer states, unpartitioned
    big: int  # the largest trainable tensor
    emb: int  # the trainable input embedding
    pending: int  # the embedding's 16-bit gradient waiting whole for the epilogue
    off_opt: bool
    off_par: bool


def _frozen_bytes(w: Workload, wb: int) -> int:
    """Weights that never train: a QLoRA base (4-bit linears + constants), a pre-quantized base,
    the frozen part of a freeze-tuned model, a LoRA base."""
    t = w.trainable_params
    if w.method == "qlora":
        modules = w.quantized_linears or w.num_layers * LINEARS_PER_LAYER
        return (
            qlora_weight_bytes(w.quantizable_params)
            + (w.total_params - w.quantizable_params) * wb
            + modules * QLORA_MODULE_CONST_BYTES
        )
    if w.prequantized_bytes is not None:
        return w.prequantized_bytes + (w.total_params - w.quantizable_params) * wb
    if w.method in ("full", "freeze"):
        return (w.total_params - t) * wb
    return w.total_params * wb


def _states(w: Workload, v: Variant) -> _States:
    mixed = w.precision != "fp32"
    wb = 2 if mixed else 4
    t = w.trainable_params
    master = 4 * t if (mixed or v.stage >= 1) else 0
    states = 8 * t if w.optimizer_states is None else w.optimizer_states
    # the input embedding gets its gradient last: when it does not fit a reduction bucket, its whole
    # 16-bit gradient waits for the backward epilogue (measured: +E*wb at the end of backward)
    emb = _embedding(w)
    return _States(
        n=max(1, w.world_size),
        wb=wb,
        t=t,
        weights=_frozen_bytes(w, wb) + t * wb,
        optim=master + states,
        big=_largest_trainable(w),
        emb=emb,
        pending=emb * wb if emb > w.reduce_bucket_size else 0,
        off_opt=v.offload_optimizer != "none" and v.stage >= 1,
        off_par=v.offload_param != "none" and v.stage == 3,
    )


_ZERO = (0, 0)


def _dev(x: int) -> tuple[int, int]:
    return (x, 0)


def _host(x: int) -> tuple[int, int]:
    return (0, x)


def _put(x: int, on_host: bool) -> tuple[int, int]:
    return _host(x) if on_host else _dev(x)


@functools.lru_cache(maxsize=64)  # one variant's estimate asks several times; callers only read it
def zero_phases(w: Workload, v: Variant) -> dict[str, dict[str, tuple[int, int]]]:
    """What DeepSpeed 0.19 holds per rank at the two peaks of a step, by part, as (device, host).

    Phases: ``backward`` (the end of autograd's backward, before ZeRO's epilogue: buckets alive,
    the last gradients not yet reduced) and ``step`` (inside the optimizer step, the fp32
    gradient partitions handed to the torch optimizer). Parts: ``weights``, ``grads``, ``gradbuf``
    (reduction buckets, pending gradients, offload staging), ``optimizer`` (fp32 master + optimizer
    states), ``transient`` (ZeRO-3's prefetched parameters, the stage-0 all-reduce bucket, the QLoRA
    dequantised weight: alive only while a layer runs, which the CPU harness cannot see).

    Every term is measured by benchmarks/fidelity.py and located in DeepSpeed's source
    (deepspeed/runtime/zero/stage_1_and_2.py, stage3.py, fp16/unfused_optimizer.py, v0.19.8);
    docs/memory-model.md has the table. One function per stage: :func:`_stage0`,
    :func:`_stage12` (with :func:`_stage12_offload`), :func:`_stage3`. Frozen parameters (LoRA and
    QLoRA bases, the frozen layers of freeze tuning, a pre-quantized base) sit in ``weights`` only,
    replicated below ZeRO-3 and partitioned by it; gradients, master weights and optimizer states
    exist for trainable parameters only, every MoE expert's included.
    """
    st = _states(w, v)
    if v.stage == 0:
        phases = _stage0(w, st)
    elif v.stage in (1, 2):
        phases = _stage12_offload(w, v, st) if st.off_opt else _stage12(w, v, st)
    else:
        phases = _stage3(w, v, st)
    return _with_qlora(w, phases)


def _stage0(w: Workload, st: _States) -> dict:
    """FP16_UnfusedOptimizer keeps an fp32 master copy of every param and, in its step, an fp32
    copy of every gradient (unfused_optimizer.py:78, :222); fp32: the torch optimizer runs on the
    params themselves (no master, no copy)."""
    mixed = st.wb == 2
    common = {"weights": _dev(st.weights), "optimizer": _dev(st.optim), "gradbuf": _ZERO}
    reduce = min(w.reduce_bucket_size, st.t) * st.wb if st.n > 1 else 0
    back = {**common, "grads": _dev(st.t * st.wb), "transient": _dev(reduce)}
    step = {**common, "grads": _dev(st.t * st.wb + (4 * st.t if mixed else 0)), "transient": _ZERO}
    return {"backward": back, "step": step}


def _partition16(w: Workload, st: _States) -> int:
    """The worst rank's 16-bit gradient partition: grads_in_partition holds whole parameters, so it
    also holds the part of the parameter straddling its boundary outside its range, about half the
    largest layer tensor, or, when the embedding is larger than a partition, up to another
    partition (measured)."""
    if st.n == 1:
        straddle = 0
    elif st.emb > _ceil_div(st.t, st.n):
        straddle = _ceil_div(st.t, st.n) * st.wb
    else:
        straddle = _largest_layer_tensor(w) // 2 * st.wb
    return _ceil_div(st.t * st.wb, st.n) + straddle


def _kept_by_zero1(w: Workload, v: Variant, st: _States) -> int:
    """ZeRO-1 never frees the gradients of other ranks' parameters: those too big for a bucket keep
    their own storage (stage_1_and_2.py:2272, no clear_grad_attribute); the worst rank (the first)
    keeps the lm_head's (last) and its share of the layers'. ZeRO-2 offload with accumulation keeps
    them as well (measured)."""
    keeps = v.stage == 1 or (v.stage == 2 and st.off_opt and w.grad_accum > 1)
    if not keeps or st.n == 1:
        return 0
    layers_big, head_big = _oversized_trainable(w)
    return (head_big + _ceil_div(layers_big * (st.n - 1), st.n)) * st.wb


def _bucket12(w: Workload) -> int:
    """Gradients reduce bucket by bucket (``reduce_bucket_size`` elements in the gradient dtype, two
    with overlap_comm, setup_buckets :3266/:3275)."""
    buckets = (2 if w.overlap_comm else 1) if w.contiguous_gradients else 0
    return buckets * w.reduce_bucket_size * (2 if w.precision != "fp32" else 4)


def _stage12(w: Workload, v: Variant, st: _States) -> dict:
    """Stages 1/2 on the device. Gradients reduce into ``grads_in_partition``; in the step the
    16-bit partition is flattened into an fp32 partition (4x/N) and freed (:3114-3131). With
    gradient accumulation > 1, ZeRO-1 holds whole 16-bit grads between boundaries, ZeRO-2 an
    accumulated partition beside the next one."""
    bucket, part16 = _bucket12(w), _partition16(w, st)
    accum = w.grad_accum > 1
    opt = _ceil_div(st.optim, st.n)
    grads, gbuf = _kept_by_zero1(w, v, st) + part16, bucket + st.pending
    if accum and v.stage == 1 and st.t * st.wb + bucket > grads + gbuf:
        grads, gbuf = st.t * st.wb, bucket  # between boundaries: whole 16-bit grads (measured)
    elif accum and v.stage == 2:
        # the accumulated partition and the next micro step's partition (measured)
        grads, gbuf = 2 * part16, bucket + max(0, st.pending - part16)
    weights = _dev(st.weights)
    back = {"weights": weights, "grads": _dev(grads), "gradbuf": _dev(gbuf), "optimizer": _dev(opt)}
    step = {"weights": weights, "grads": _dev(_ceil_div(4 * st.t, st.n)), "gradbuf": _ZERO, "optimizer": _dev(opt)}
    # while the fp32 partition is made: the 16-bit partition and its flattened copy
    # (stage_1_and_2.py step: flatten(averaged_gradients).to(fp32); benchmarks/fidelity_peak.py)
    transient = _dev(part16 + _ceil_div(st.t * st.wb, st.n))
    return {"backward": {**back, "transient": _ZERO}, "step": {**step, "transient": transient}}


def _stage12_offload(w: Workload, v: Variant, st: _States) -> dict:
    """Stages 1/2 with offload_optimizer cpu: the fp32 gradient partition pinned on the host for
    good (initialize_optimizer_states :937), a 16-bit host copy of the partition (:566), two staging
    buffers of the largest trainable parameter (:653 host, :659 device). ZeRO-2 reduces straight
    into the host's fp32 partition; with accumulation it accumulates on the host
    (accumulated_grads_in_cpu, :1853)."""
    bucket = _bucket12(w)
    accum = w.grad_accum > 1
    opt = _ceil_div(st.optim, st.n)
    g32 = _ceil_div(4 * st.t, st.n)
    staging = (st.big * st.wb, st.big * st.wb)  # temp_grad_buffer_for_gpu_offload / _for_cpu_offload
    w_pair = (st.weights, _ceil_div(st.t * st.wb, st.n))  # + the 16-bit host copy of the partition
    g16 = _kept_by_zero1(w, v, st)  # the partition's own grads go straight to the host's fp32 partition
    gbuf = bucket + st.pending
    if accum and v.stage == 1:
        g16, gbuf = st.t * st.wb, bucket  # whole 16-bit grads between boundaries (measured)
    acc_host = _ceil_div(st.t * st.wb, st.n) if accum and v.stage == 2 else 0
    back = {
        "weights": w_pair,
        "grads": (g16, g32 + acc_host),
        "gradbuf": (gbuf + staging[0], staging[1]),
        "optimizer": _host(opt),
        "transient": _ZERO,
    }
    step = {
        "weights": w_pair,
        "grads": _host(g32 + acc_host),
        "gradbuf": staging,
        "optimizer": _host(opt),
        "transient": _ZERO,
    }
    return {"backward": back, "step": step}


def _stage3(w: Workload, v: Variant, st: _States) -> dict:
    """Stage 3: a persistent 16-bit gradient partition buffer (stage3.py:791), one persistent ipg
    bucket (:782), an fp32 gradient partition in step; at the end of backward the embedding (full
    fine-tune) is still gathered and its whole gradient pending; prefetch bounded by
    stage3_max_live_parameters; a gathered module is whole (an MoE layer's fused experts are one
    module). With offload_optimizer ``self.device`` is the CPU (stage3.py:333), so the 16-bit
    gradient partition lives on the host too; NVMe keeps the offloaded states on disk."""
    n, wb = st.n, st.wb
    wpart = _ZERO if v.offload_param == "nvme" else _put(_ceil_div(st.weights, n), st.off_par)
    g16 = _put(_ceil_div(st.t * wb, n), st.off_opt)
    g32 = _ceil_div(4 * st.t, n)
    opt = _ZERO if v.offload_optimizer == "nvme" else _put(_ceil_div(st.optim, n), st.off_opt)
    bucket = _dev(w.reduce_bucket_size * wb if w.contiguous_gradients else 0)
    # never more than the model itself: a model smaller than the prefetch bucket is gathered whole, once
    live = min(w.max_live_parameters, w.prefetch_bucket_size + w.largest_layer_params, w.total_params)
    gathered = max(live, w.largest_layer_params) * wb
    last = _dev(st.emb * wb if n > 1 else 0)
    back = {
        "weights": _add(wpart, last),
        "grads": _add(_add(g16, _host(g32) if st.off_opt else _ZERO), _dev(st.pending)),
        "gradbuf": bucket,
        "optimizer": opt,
        "transient": _dev(max(0, gathered - last[0])),
    }
    step = {
        "weights": wpart,
        "grads": _add(g16, _put(g32, st.off_opt)),
        "gradbuf": bucket,
        "optimizer": opt,
        "transient": _ZERO,
    }
    return {"backward": back, "step": step}


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (a[0] + b[0], a[1] + b[1])


def _with_qlora(w: Workload, phases: dict) -> dict:
    """The dequantised 16-bit weight of the running layer (bitsandbytes; GPTQ/AWQ kernels too)."""
    if w.method == "qlora" or w.prequantized_bytes is not None:
        back = phases["backward"]
        back["transient"] = _add(back["transient"], (w.largest_linear_params * 2, 0))
    return phases


def _model_states(w: Workload, v: Variant, phases: dict | None = None) -> tuple[int, int, int, int]:
    """(gpu weights, gpu grads, gpu optimizer, host bytes per rank) for one variant.

    Weights, grads and optimizer are the guide's figures (16x, 4x + 12x/N, 2x + 14x/N, 16x/N for a
    mixed-precision full fine-tune; trainable parameters only carry grads and optimizer states).
    What DeepSpeed allocates beyond them is in :func:`_buffers`; the host holds, per rank, the
    largest host footprint of :func:`zero_phases` (offloaded parts)."""
    phases = phases or zero_phases(w, v)
    step = phases["step"]
    weights = step["weights"][0]  # persistent (the backward phase adds a gathered ZeRO-3 module)
    optim = step["optimizer"][0]
    g16 = w.trainable_params * (4 if w.precision == "fp32" else 2)
    if v.stage <= 1:
        grads = g16  # whole 16-bit gradients (stage 1: until the end of backward)
    elif v.offload_optimizer == "none":
        grads = _ceil_div(g16, max(1, w.world_size))
    else:
        grads = 0  # stage 2: reduced straight to the host; stage 3: a host partition (pending: buffers)
    host = max(sum(part[1] for part in ph.values()) for ph in phases.values())
    return weights, grads, optim, host


def _buffers(w: Workload, v: Variant, phases: dict | None = None) -> int:
    """Device bytes beyond the model states at the worse of the two phases (zero_phases)."""
    phases = phases or zero_phases(w, v)
    weights, grads, optim, _ = _model_states(w, v, phases)
    states = weights + grads + optim
    return max(0, max(sum(part[0] for part in ph.values()) - states for ph in phases.values()))


def state_parts(w: Workload, v: Variant) -> dict:
    """The CPU harness's view (benchmarks/fidelity.py): per phase, each part's bytes per rank
    wherever it lives (device + host, one memory on the CPU accelerator), without the transient
    part the harness cannot observe; ``peak`` is the phase with the larger total."""
    out = {}
    for name, ph in zero_phases(w, v).items():
        out[name] = {k: ph[k][0] + ph[k][1] for k in ("weights", "grads", "gradbuf", "optimizer")}
        out[name]["transient"] = sum(ph["transient"])
    peak = max(("backward", "step"), key=lambda k: sum(out[k][p] for p in ("weights", "grads", "gradbuf", "optimizer")))
    return {**out[peak], "peak_phase": peak, "phases": out}


def save_gather_bytes(w: Workload, v: Variant) -> int:
    """ZeRO-3 saving a 16-bit model (every checkpoint with stage3_gather_16bit_weights_on_model_save,
    and zerowizard's final/ always): DeepSpeed's ``_zero3_consolidated_16bit_state_dict``
    (engine.py) gathers one module at a time on every rank and copies it to the CPU on rank 0, so
    rank 0's host ends up holding the whole 16-bit state dict. A LoRA model saves its adapters only
    (HF passes exclude_frozen_parameters). Zero below stage 3 (the state dict is the module's own)."""
    if v.stage != 3:
        return 0
    wb = 4 if w.precision == "fp32" else 2
    # full and freeze save the whole model; LoRA/QLoRA their adapters only
    return (w.trainable_params if w.method in ("lora", "qlora") else w.total_params) * wb


def estimate_variant(w: Workload, v: Variant) -> VariantEstimate:
    phases = zero_phases(w, v)
    weights, grads, optim, host_offload = _model_states(w, v, phases)
    acts = activations(w, v)
    buffers = _buffers(w, v, phases)
    save = save_gather_bytes(w, v)
    save_extra = 0  # rank 0 only: how far the save raises its peak above training's
    if save and w.is_cpu:  # host is the device: persistent states, one gathered module, the dict
        at_save = weights + grads + optim + w.largest_layer_params * (4 if w.precision == "fp32" else 2) + save
        save_extra = max(0, at_save - (weights + grads + optim + acts + buffers))
        buffers += save_extra
    allocated = weights + grads + optim + acts + buffers
    base = CPU_PROCESS_BYTES if w.is_cpu else CUDA_CONTEXT_BYTES
    overhead = base + int(allocated * FRAGMENTATION)
    per_gpu = Breakdown(weights, grads, optim, acts, buffers, overhead)
    host_per_rank = host_offload + (0 if w.is_cpu else HOST_RANK_BYTES)
    if w.is_cpu:  # the "device" is host memory itself; the other ranks do not hold the gathered dict
        train = allocated - save_extra
        other = train + base + int(train * FRAGMENTATION)  # any other rank's total
        per_node_host = host_per_rank * w.gpus_per_node + per_gpu.total + other * (w.gpus_per_node - 1)
    else:  # rank 0's host holds the gathered dict at save time (the GPU peak stays training's)
        per_node_host = host_per_rank * w.gpus_per_node + save
    fits_gpu = w.gpu_memory_bytes <= 0 or per_gpu.total <= w.gpu_memory_bytes
    if w.is_cpu:
        fits_gpu = w.host_ram_bytes is None or per_node_host <= w.host_ram_bytes
    fits_host = w.host_ram_bytes is None or per_node_host <= w.host_ram_bytes
    return VariantEstimate(v, per_gpu, per_node_host, fits_gpu, fits_host)


def variants_for(method: str, nvme: bool = True, prequantized: bool = False) -> tuple[Variant, ...]:
    """The valid variants: QLoRA and a pre-quantized checkpoint have no ZeRO-3 (their quantized
    weights are not partitionable)."""
    out = [v for v in ALL_VARIANTS if not ((method == "qlora" or prequantized) and v.stage == 3)]
    if not nvme:
        out = [v for v in out if v.offload_optimizer != "nvme"]
    return tuple(out)


def estimate_all(w: Workload, prequantized: bool | None = None) -> tuple[VariantEstimate, ...]:
    if prequantized is None:
        prequantized = w.prequantized_bytes is not None
    return tuple(estimate_variant(w, v) for v in variants_for(w.method, prequantized=prequantized))


# The guide chooses among ZeRO-1/2/3 (XTuner's presets); plain data parallel (stage 0) is the
# baseline shown in the table and is recommended only when no ZeRO stage fits without offload.
PREFERENCE = (Variant(1), Variant(2), Variant(3), Variant(0))


def lowest_fitting(estimates: Iterable[VariantEstimate], allow_nvme: bool) -> VariantEstimate | None:
    """The recommended variant: the lowest ZeRO stage that fits, then offload (the guide's advice)."""
    rank = {v: i for i, v in enumerate(PREFERENCE)}
    ordered = sorted(estimates, key=lambda e: (rank.get(e.variant, len(rank)), ALL_VARIANTS.index(e.variant)))
    for e in ordered:
        if e.fits and (allow_nvme or e.variant.offload_optimizer != "nvme"):
            return e
    return None


@dataclass(frozen=True)
class Change:
    """A change to the plan that makes something fit, cheapest first."""

    description: str
    variant: Variant
    fields: dict


def cheapest_fix(w: Workload, allow_nvme: bool) -> Change | None:
    """When nothing fits as planned: gradient checkpointing, then a smaller micro batch (keeping
    the global batch with more accumulation), then LoRA/QLoRA; the first that fits wins."""
    tries: list[tuple[str, Workload, dict]] = []
    if not w.grad_checkpointing:
        tries.append(
            ("enable gradient checkpointing", replace(w, grad_checkpointing=True), {"batch.grad_checkpointing": True})
        )
    b = w.micro_batch
    while b > 1:
        b = max(1, b // 2)
        tries.append(
            (
                f"gradient checkpointing and micro batch {b} (accumulate {w.micro_batch // b}x more)",
                replace(w, grad_checkpointing=True, micro_batch=b),
                {"batch.grad_checkpointing": True, "batch.micro_batch": b},
            )
        )
    for desc, cand, fields in tries:
        fit = lowest_fitting(estimate_all(cand), allow_nvme)
        if fit is not None:
            return Change(f"{desc} with {fit.variant.label}", fit.variant, fields)
    return None
