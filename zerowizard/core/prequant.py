"""Pre-quantized checkpoints: a ``quantization_config`` in config.json (GPTQ, AWQ, FP8, a
bitsandbytes-saved 4- or 8-bit model, compressed-tensors, ...).

Their linear weights are stored as packed integers or FP8 with scales, so
- a full fine-tune is impossible (no gradient flows into packed integer weights; transformers
  refuses to train a quantized model without adapters),
- QLoRA cannot quantize them again (they already are: LoRA on them *is* QLoRA's shape),
- DeepSpeed ZeRO-3 cannot partition them (LLaMA-Factory #6898: ZeRO-3 with a GPTQ/AWQ/bnb
  checkpoint fails at load; use ZeRO-2 or lower).

:func:`weight_bytes` gives the stored size of the quantized linear weights for the memory model:
packed ``bits`` per weight plus, per group of ``group_size`` weights, a 16-bit scale and a packed
zero point (GPTQ/AWQ), one byte per weight plus scales (FP8), bitsandbytes' NF4 layout for a saved
4-bit model, one byte plus a per-row fp32 scale for LLM.int8().
"""

from __future__ import annotations

from dataclasses import dataclass

LABELS = {
    "gptq": "GPTQ",
    "awq": "AWQ",
    "fp8": "FP8",
    "bitsandbytes-4bit": "bitsandbytes 4-bit",
    "bitsandbytes-8bit": "bitsandbytes 8-bit",
    "compressed-tensors": "compressed-tensors",
    "hqq": "HQQ",
    "eetq": "EETQ",
    "mxfp4": "MXFP4",
}


@dataclass(frozen=True)
class Quantization:
    method: str  # a key of LABELS, or the config's quant_method as written
    bits: int
    group_size: int

    @property
    def label(self) -> str:
        return LABELS.get(self.method, self.method)


def detect(cfg: dict) -> Quantization | None:
    """The checkpoint's quantization from config.json, or None for an ordinary checkpoint."""
    q = cfg.get("quantization_config")
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method") or "").lower()
    if method == "bitsandbytes" or q.get("load_in_4bit") or q.get("load_in_8bit"):
        four = bool(q.get("load_in_4bit")) or str(q.get("_load_in_4bit", "")).lower() == "true"
        return Quantization("bitsandbytes-4bit" if four else "bitsandbytes-8bit", 4 if four else 8, 64)
    if method in ("fp8", "fbgemm_fp8"):
        return Quantization("fp8", 8, 0)
    bits = q.get("bits") or q.get("w_bit") or q.get("weight_bits") or 4
    group = q.get("group_size") or q.get("q_group_size") or 128
    try:
        bits, group = int(bits), int(group)
    except (TypeError, ValueError):
        bits, group = 4, 128
    return Quantization(method or "unknown", bits, group if group > 0 else 0)


def weight_bytes(q: Quantization, n: int, rows: int) -> int:
    """Stored bytes of ``n`` quantized linear weights in ``rows`` output rows."""
    if q.method == "bitsandbytes-4bit":
        from .memory import qlora_weight_bytes

        return qlora_weight_bytes(n)
    if q.method == "bitsandbytes-8bit":
        return n + 4 * rows
    if q.method == "fp8":
        return n + 4 * rows  # one byte per weight, a per-channel fp32 scale (per-tensor is smaller)
    packed = -(-n * q.bits // 8)
    if not q.group_size:
        return packed + 2 * rows
    groups = -(-n // q.group_size)
    return packed + 2 * groups + -(-groups * q.bits // 8)  # 16-bit scale + packed zero per group
