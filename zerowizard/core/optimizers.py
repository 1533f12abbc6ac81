"""The optimizer: which DeepSpeed builds, how many state bytes each trainable parameter costs.

DeepSpeed 0.19 builds an optimizer from the JSON's ``optimizer.type``
(deepspeed/runtime/engine.py ``_configure_basic_optimizer``): Adam/AdamW (FusedAdam on a GPU,
DeepSpeedCPUAdam when the optimizer is offloaded), Adagrad (torch, or DeepSpeedCPUAdagrad offloaded),
Lion (FusedLion, or DeepSpeedCPULion offloaded), Lamb (FusedLamb, CUDA only), Muon (MuonWithAuxAdam),
MuAdam/MuAdamW/MuSGD (the ``mup`` package), and any other name as ``torch.optim.<type>`` (SGD).
ZeRO runs a torch optimizer on flat fp32 partitions of the parameters and keeps its own fp32 master
copy; the optimizer's states come on top (runtime/zero/utils.py lists the optimizers ZeRO is tested
with: Adam, AdamW, Adagrad, Lion and their CPU/fused versions; others need
``zero_allow_untested_optimizer``, which the presets set).

State bytes per trainable parameter, beside the fp32 master (4 bytes, every ZeRO stage):
    adamw, adam   exp_avg + exp_avg_sq, fp32                       8
    lion          exp_avg, fp32                                    4
    adagrad       sum of squared gradients, fp32                   4
    sgd_momentum  momentum buffer, fp32                            4
    sgd           none                                             0

Refused, each with the reason: Adafactor (not a DeepSpeed optimizer; ZeRO hands it flat 1-D partitions,
so its factored second moment cannot factor and its per-tensor RMS scaling becomes per partition,
changing the update with the world size), 8-bit states (DeepSpeed 0.19 has none; bitsandbytes'
8-bit Adam is an untested client optimizer under ZeRO, and offloading replaces it with DeepSpeed's
fp32 CPU Adam), Lamb under ZeRO (its per-layer trust ratio needs whole tensors; FusedLamb is
CUDA-only and not among ZeRO's optimizers), 1-bit Adam/Lamb and 0/1 Adam (removed from DeepSpeed
0.19's optimizer list), Muon (MuonWithAuxAdam needs its compiled Newton-Schulz kernels and tags
parameters itself; not wired into the HF Trainer path zerowizard runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from .text import did_you_mean


@dataclass(frozen=True)
class Optimizer:
    name: str  # the plan's name
    ds_type: str  # the DeepSpeed JSON's optimizer.type
    state_bytes: int  # per trainable parameter, beside DeepSpeed's fp32 master copy
    states: str
    # params written beside lr and weight_decay. Never betas or eps: the HF Trainer checks those against
    # its own adam_beta1/2 and adam_epsilon and stops on a mismatch; each optimizer's defaults apply.
    params: tuple[tuple[str, object], ...] = ()
    zero_tested: bool = True  # in DeepSpeed's ZERO_SUPPORTED_OPTIMIZERS


SUPPORTED = {
    o.name: o
    for o in (
        Optimizer("adamw", "AdamW", 8, "exp_avg + exp_avg_sq (fp32)"),
        Optimizer("adam", "Adam", 8, "exp_avg + exp_avg_sq (fp32)"),
        Optimizer("lion", "Lion", 4, "exp_avg (fp32)"),
        Optimizer("adagrad", "Adagrad", 4, "sum of squared gradients (fp32)"),
        Optimizer("sgd_momentum", "SGD", 4, "momentum buffer (fp32)", (("momentum", 0.9),), zero_tested=False),
        Optimizer("sgd", "SGD", 0, "none", (("momentum", 0.0),), zero_tested=False),
    )
}
DEFAULT = SUPPORTED["adamw"]

_ADAMW_FIX = "use adamw (8 bytes of state per parameter), or lion / adagrad (4 bytes) for a smaller state"
REFUSED = {
    "adafactor": (
        "Adafactor is not a DeepSpeed optimizer, and ZeRO hands the optimizer flat 1-D partitions: its "
        "factored second moment cannot factor and its per-tensor RMS scaling would change with the world size",
        "use lion (4 bytes of state per parameter, half of AdamW's) or adagrad",
    ),
    "adamw_8bit": (
        "DeepSpeed 0.19 has no 8-bit optimizer state: bitsandbytes' 8-bit Adam is a client optimizer ZeRO "
        "does not test, and with offload DeepSpeed replaces it by its fp32 CPU Adam",
        "use lion (4 bytes of state per parameter) or --offload-optimizer cpu to move AdamW's states to the host",
    ),
    "lamb": (
        "LAMB's per-layer trust ratio needs each tensor whole, which ZeRO's flat partitions split; "
        "DeepSpeed's FusedLamb is CUDA-only and not among ZeRO's optimizers",
        "use adamw with ZeRO, or lamb only at --stage 0 on GPUs",
    ),
    "onebitadam": ("1-bit Adam was removed from DeepSpeed 0.19's optimizers", _ADAMW_FIX),
    "onebitlamb": ("1-bit LAMB was removed from DeepSpeed 0.19's optimizers", _ADAMW_FIX),
    "zerooneadam": ("0/1 Adam was removed from DeepSpeed 0.19's optimizers", _ADAMW_FIX),
    "muon": (
        "DeepSpeed's Muon (MuonWithAuxAdam) tags every parameter itself and needs its compiled "
        "Newton-Schulz kernels; the Trainer path zerowizard runs does not wire it",
        _ADAMW_FIX,
    ),
}
_SPELLINGS = {
    "adam_w": "adamw",
    "adamw_torch": "adamw",
    "adamw_torch_fused": "adamw",
    "fusedadam": "adamw",
    "sgdmomentum": "sgd_momentum",
    "adamw8bit": "adamw_8bit",
    "adam8bit": "adamw_8bit",
    "adamw_bnb_8bit": "adamw_8bit",
    "paged_adamw_8bit": "adamw_8bit",
    "8bit": "adamw_8bit",
    "1bitadam": "onebitadam",
    "fusedlamb": "lamb",
    "muadam": "muon",
}
_DS_TYPES = {o.ds_type.lower(): o.name for o in SUPPORTED.values() if o.name != "sgd_momentum"}


def canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _SPELLINGS.get(key, _SPELLINGS.get(key.replace("_", ""), key))


def lookup(name: str | None) -> tuple[Optimizer | None, str, str]:
    """(the optimizer, why it is refused, the fix); None name: the default (AdamW)."""
    if name is None:
        return DEFAULT, "", ""
    key = canonical(name)
    if key in SUPPORTED:
        return SUPPORTED[key], "", ""
    if key in REFUSED:
        return None, *REFUSED[key]
    known = list(SUPPORTED) + list(REFUSED)
    return (
        None,
        f"{name!r} is not an optimizer DeepSpeed builds",
        did_you_mean(key, known, "use " + ", ".join(SUPPORTED)),
    )


def from_ds_config(cfg: dict) -> tuple[str | None, dict]:
    """The plan name of a DeepSpeed JSON's optimizer section (None: no section), and its params."""
    section = cfg.get("optimizer")
    if not isinstance(section, dict) or not isinstance(section.get("type"), str):
        return None, {}
    raw = section.get("params")
    params: dict = raw if isinstance(raw, dict) else {}
    name = _DS_TYPES.get(section["type"].lower(), section["type"])
    if name == "sgd" and isinstance(params.get("momentum"), (int, float)) and params["momentum"] > 0:
        name = "sgd_momentum"
    return name, params


def state_bytes(opt: Optimizer, trainable: int) -> int:
    """The optimizer's state for ``trainable`` parameters (beside DeepSpeed's fp32 master copy)."""
    return opt.state_bytes * trainable
