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
- Buffers (DeepSpeed's stage_1_and_2.py / stage3.py): gradient reduction buckets, the ZeRO-3
  prefetch bucket and gathered live parameters, the QLoRA dequantisation temporary.
- Overhead: a stated CUDA context constant plus an allocator fragmentation margin, kept separate.

Pure Python, integer bytes, fast: the TUI calls :func:`estimate` on every keystroke.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

GIB = 1024**3
CUDA_CONTEXT_BYTES = 512 * 1024**2  # CUDA context + cuBLAS workspace + NCCL, measured order (DESIGN.md)
CPU_PROCESS_BYTES = 384 * 1024**2  # a rank's Python + torch + DeepSpeed resident set on the CPU
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
        names = {(1, "none", "none"): "deepspeed_zero1", (2, "none", "none"): "deepspeed_zero2",
                 (2, "cpu", "none"): "deepspeed_zero2_offload", (3, "none", "none"): "deepspeed_zero3",
                 (3, "cpu", "cpu"): "deepspeed_zero3_offload"}
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
    Variant(0), Variant(1), Variant(2), Variant(3),
    Variant(1, "cpu"), Variant(2, "cpu"), Variant(3, "cpu"), Variant(3, "cpu", "cpu"),
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
        return {"weights": self.weights, "grads": self.grads, "optimizer": self.optimizer,
                "activations": self.activations, "buffers": self.buffers, "overhead": self.overhead,
                "total": self.total}


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
    method: str  # full | lora | qlora
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


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def qlora_weight_bytes(n: int) -> int:
    """bitsandbytes NF4 with double quantization: 4-bit packed weights, an 8-bit absmax per block
    of 64, an fp32 absmax per 256 of those blocks (bitsandbytes functional.quantize_4bit)."""
    blocks = _ceil_div(n, 64)
    return _ceil_div(n, 2) + blocks + 4 * _ceil_div(blocks, 256)


def activations(w: Workload) -> int:
    """Activation bytes held at the peak of one micro batch's forward/backward, per GPU.

    Per decoder layer (Korthikanti et al. 2022, Table 2, without tensor/sequence parallelism, bytes
    at 16 bits), generalised to grouped-query attention and a SwiGLU MLP of width f:
      attention  s·b·(2h [qkv input] + 2q [Q] + 4kv [K, V] + 2q [o_proj input])
      MLP        s·b·(2h [input] + 8f [gate, up, act(gate), gate·up])
      norms      s·b·4h (two RMSNorm inputs)
      eager attention (no fused kernel) adds 5·a·s²·b; SDPA/FlashAttention keep O(s) instead.
    LoRA dropout keeps a dropped copy of each targeted linear's input (peft's lora_dropout).
    Gradient checkpointing keeps each layer's 2·s·b·h input and recomputes one layer at a time.
    Logits: s·b·V in 16 bits, the fp32 upcast and the fp32 log-softmax kept for the loss.
    """
    s, b, h, f = w.seq_len, w.micro_batch, w.hidden_size, w.intermediate_size
    scale = 2 if w.precision == "fp32" else 1  # the figures above are for 16-bit tensors
    tokens = s * b
    per_layer = tokens * (2 * h + 2 * w.q_dim + 4 * w.kv_dim + 2 * w.q_dim + 2 * h + 8 * f + 4 * h)
    if w.attention == "eager":
        per_layer += 5 * w.num_heads * s * s * b
    if w.method != "full" and w.lora_dropout > 0:
        per_layer += tokens * 2 * (5 * h + w.q_dim + f)  # inputs of q,k,v,gate,up / o / down
    per_layer *= scale
    if w.grad_checkpointing:
        layers = w.num_layers * tokens * 2 * h * scale + per_layer
    else:
        layers = w.num_layers * per_layer
    wbytes = 4 if w.precision == "fp32" else 2
    logits = tokens * w.vocab_size * (wbytes + 4 + 4)
    return layers + logits


def _model_states(w: Workload, v: Variant) -> tuple[int, int, int, int]:
    """(gpu weights, gpu grads, gpu optimizer, host bytes per rank) for one variant."""
    n = w.world_size
    wb = 4 if w.precision == "fp32" else 2  # weight and gradient bytes
    ob = 8 if w.precision == "fp32" else 12  # Adam moments (+ fp32 master under mixed precision)
    t = w.trainable_params
    frozen = w.total_params - t if w.method == "full" else w.total_params
    if w.method == "qlora":
        frozen_bytes = qlora_weight_bytes(w.quantizable_params) + (w.total_params - w.quantizable_params) * wb
    else:
        frozen_bytes = frozen * wb
    weights = frozen_bytes + t * wb
    grads = t * wb
    optim = t * ob
    host = 0
    if v.stage >= 3:
        weights = _ceil_div(weights, n)
    if v.stage >= 2:
        grads = _ceil_div(grads, n)
    if v.stage >= 1:
        optim = _ceil_div(optim, n)
    if v.offload_optimizer != "none":
        if v.offload_optimizer == "cpu":
            host += optim + _ceil_div(t * 4, n)  # fp32 master + moments, fp32 grad partition
        optim = 0
        if v.stage >= 2:
            grads = 0  # reduced bucket by bucket straight into the host's fp32 partition
    if v.offload_param != "none":
        if v.offload_param == "cpu":
            host += weights
        weights = 0
    return weights, grads, optim, host


def _buffers(w: Workload, v: Variant) -> int:
    gb = 4 if w.precision == "fp32" else 2
    if v.stage in (1, 2):
        # stage_1_and_2.py setup_buckets: torch.empty(reduce_bucket_size) once, twice with overlap_comm
        count = (2 if w.overlap_comm else 1) if w.contiguous_gradients else 0
        buf = count * w.reduce_bucket_size * gb
    elif v.stage == 3:
        # stage3.py: one reduce bucket; gathered parameters live at once are capped by
        # stage3_max_live_parameters and at least the largest module plus the prefetch bucket.
        live = min(w.max_live_parameters, w.prefetch_bucket_size + w.largest_layer_params)
        buf = min(w.reduce_bucket_size, w.trainable_params) * gb + max(live, w.largest_layer_params) * gb
    else:
        buf = min(w.reduce_bucket_size, w.trainable_params) * gb  # stage 0: flattened all-reduce bucket
    if w.method == "qlora":
        buf += w.largest_linear_params * 2  # the dequantised 16-bit weight of the running layer
    return buf


def state_parts(w: Workload, v: Variant) -> dict:
    """Model states per rank by part, wherever they live (device or host): the CPU harness's view."""
    weights, grads, optim, host = _model_states(w, v)
    return {"weights": weights, "grads": grads, "gradbuf": _buffers(w, v), "optimizer": optim + host,
            "terms": {}}


def estimate_variant(w: Workload, v: Variant) -> VariantEstimate:
    weights, grads, optim, host_offload = _model_states(w, v)
    acts = activations(w)
    buffers = _buffers(w, v)
    allocated = weights + grads + optim + acts + buffers
    base = CPU_PROCESS_BYTES if w.is_cpu else CUDA_CONTEXT_BYTES
    overhead = base + int(allocated * FRAGMENTATION)
    per_gpu = Breakdown(weights, grads, optim, acts, buffers, overhead)
    host_per_rank = host_offload + (0 if w.is_cpu else HOST_RANK_BYTES)
    if w.is_cpu:  # the "device" is host memory itself
        host_per_rank += per_gpu.total
    per_node_host = host_per_rank * w.gpus_per_node
    fits_gpu = w.gpu_memory_bytes <= 0 or per_gpu.total <= w.gpu_memory_bytes
    if w.is_cpu:
        fits_gpu = w.host_ram_bytes is None or per_node_host <= w.host_ram_bytes
    fits_host = w.host_ram_bytes is None or per_node_host <= w.host_ram_bytes
    return VariantEstimate(v, per_gpu, per_node_host, fits_gpu, fits_host)


def variants_for(method: str, nvme: bool = True) -> tuple[Variant, ...]:
    """The valid variants: QLoRA has no ZeRO-3 (bitsandbytes 4-bit is not partitionable)."""
    out = [v for v in ALL_VARIANTS if not (method == "qlora" and v.stage == 3)]
    if not nvme:
        out = [v for v in out if v.offload_optimizer != "nvme"]
    return tuple(out)


def estimate_all(w: Workload) -> tuple[VariantEstimate, ...]:
    return tuple(estimate_variant(w, v) for v in variants_for(w.method))


# The guide chooses among ZeRO-1/2/3 (XTuner's presets); plain data parallel (stage 0) is the
# baseline shown in the table and is recommended only when no ZeRO stage fits without offload.
PREFERENCE = (Variant(1), Variant(2), Variant(3), Variant(0))


def lowest_fitting(estimates, allow_nvme: bool) -> VariantEstimate | None:
    """The recommended variant: the lowest ZeRO stage that fits, then offload (the guide's advice)."""
    rank = {v: i for i, v in enumerate(PREFERENCE)}
    ordered = sorted(estimates, key=lambda e: (rank.get(e.variant, len(rank)),
                                               ALL_VARIANTS.index(e.variant)))
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
        tries.append(("enable gradient checkpointing", replace(w, grad_checkpointing=True),
                      {"batch.grad_checkpointing": True}))
    b = w.micro_batch
    while b > 1:
        b = max(1, b // 2)
        tries.append((f"gradient checkpointing and micro batch {b} (accumulate {w.micro_batch // b}x more)",
                      replace(w, grad_checkpointing=True, micro_batch=b),
                      {"batch.grad_checkpointing": True, "batch.micro_batch": b}))
    for desc, cand, fields in tries:
        fit = lowest_fitting(estimate_all(cand), allow_nvme)
        if fit is not None:
            return Change(f"{desc} with {fit.variant.label}", fit.variant, fields)
    return None


def gib(n: int) -> float:
    return n / GIB


def fmt_gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n < 100 * GIB else f"{n / GIB:.0f} GiB"
