"""ZeRO and precision combinations that DeepSpeed refuses or silently ignores: each stated once.

Two callers ask the same questions in two vocabularies: the plan rules (:mod:`.rules`, on the
plan merged with its DeepSpeed base: fix it with flags) and the DeepSpeed JSON checks
(:mod:`.dsrules`, on a file as written: fix it with JSON keys). Each :class:`Clash` carries the
message once and the fix in both vocabularies, so the wording and the condition cannot drift.
Sources: deepspeed/runtime/zero/config.py (offload_param is read only by stage 3; NVMe and partial
optimizer offload belong to ZeRO-Infinity), deepspeed/runtime/config.py (fp16 and bf16 are
exclusive), the CPU accelerator (no fp16) and CUDA (bf16 from compute capability 8.0).
"""

from __future__ import annotations

from dataclasses import dataclass

from .text import fmt_cc


@dataclass(frozen=True)
class Clash:
    """One refused combination. ``key``: the JSON key (under zero_optimization for ZeRO clashes,
    top level for precision); ``plan_field``: the plan field it maps to."""

    key: str
    plan_field: str
    message: str
    plan_fix: str
    json_fix: str


def zero_clashes(
    stage: int,
    offload_optimizer: str,
    offload_param: str,
    *,
    nvme_paths: dict[str, str | None],
    ratio: float | None = None,
) -> list[Clash]:
    """What DeepSpeed refuses or ignores in a ZeRO stage with these offload devices.

    ``nvme_paths``: the NVMe folder each offload section has ({"offload_optimizer": ...,
    "offload_param": ...}; a plan has one folder for both). ``ratio``: offload_optimizer.ratio."""
    out: list[Clash] = []
    if offload_param != "none" and stage < 3:
        out.append(
            Clash(
                "offload_param",
                "zero.offload_param",
                f"parameter offload works only with ZeRO-3; at stage {stage} DeepSpeed silently ignores it",
                "use --stage 3, or --offload-param none",
                "use stage 3, or remove offload_param",
            )
        )
    if offload_optimizer == "nvme" and stage < 3:
        out.append(
            Clash(
                "offload_optimizer.device",
                "zero.offload_optimizer",
                "NVMe optimizer offload (ZeRO-Infinity) works only with ZeRO-3",
                "use --stage 3, or --offload-optimizer cpu",
                "use stage 3, or offload to cpu",
            )
        )
    for name, device in (("offload_optimizer", offload_optimizer), ("offload_param", offload_param)):
        if device == "nvme" and not nvme_paths.get(name):
            out.append(
                Clash(
                    f"{name}.nvme_path",
                    "zero.nvme_path",
                    "NVMe offload needs a directory on a local NVMe drive",
                    "set zero.nvme_path (e.g. /local_nvme) or --nvme-path",
                    f"set {name}.nvme_path to a local NVMe directory",
                )
            )
    if ratio is not None and ratio < 1 and stage < 3:
        out.append(
            Clash(
                "offload_optimizer.ratio",
                "zero_optimization.offload_optimizer.ratio",
                f"partial optimizer offload (ratio {ratio:g}) works only with ZeRO-3",
                "use stage 3, or remove ratio from the JSON",
                "use stage 3, or remove ratio",
            )
        )
    return out


def precision_clashes(
    *, bf16: bool, fp16: bool, compute_capability: tuple[int, int] | None, is_cpu: bool, device: str = "this GPU"
) -> list[Clash]:
    """What the accelerator refuses in this precision (``device``: the GPU's name, for the message)."""
    out: list[Clash] = []
    if fp16 and bf16:
        out.append(Clash("fp16.enabled", "precision", "fp16 and bf16 are both enabled", "", "enable one of them"))
    cc = compute_capability
    if bf16 and not is_cpu and cc is not None and cc < (8, 0):
        out.append(
            Clash(
                "bf16.enabled",
                "precision",
                f"bf16 needs compute capability 8.0 (Ampere) or newer; {device} is {fmt_cc(cc)}",
                "use --precision fp16 (or auto, which picks fp16 here)",
                "enable fp16 instead",
            )
        )
    if fp16 and is_cpu:
        out.append(
            Clash(
                "fp16.enabled",
                "precision",
                "DeepSpeed's CPU accelerator does not support fp16",
                "use --precision bf16 (or auto)",
                "enable bf16 instead",
            )
        )
    return out
