"""What peft's LoRA wraps in a transformers 5 model, and how many parameters the adapters have.

``all-linear`` is every ``nn.Linear`` but the output head (peft tuners_utils
``_maybe_include_all_linear_layers``). On the MoE families whose layout changed between transformers
4 and 5, peft 0.21 then rewrites the targets so that adapters trained on the v4 layout still load
(peft utils/transformers_weight_conversion.py ``_convert_peft_config_moe``):

- the v4 names of the expert projections and the router (Mixtral ``w1 w3 w2 gate``; Qwen2-MoE
  pattern, used by Qwen3-MoE, OLMoE and DeepSeek-V2, ``gate_proj up_proj down_proj gate``) become
  *parameter* targets: the router ``gate.weight`` (rank r), the fused experts ``gate_up_proj``
  (rank 2r: two v4 projections in one) and ``down_proj`` (rank r), each expert with its own A and B
  (peft ``ParamWrapper``: A ``[r*E, in]``, B ``[out, r*E]``);
- ``nn.Linear`` modules with those leaf names are no longer targeted as modules: a DeepSeek-V2
  shared expert or dense first-layer MLP gets no adapter under ``all-linear``.
- ``ParamWrapper`` refuses ``lora_dropout != 0`` (``ValueError`` at get_peft_model).

Qwen2-MoE itself (Qwen1.5-MoE) has no such rewrite: ``all-linear`` there is attention, the shared
expert and its gate. tests/test_modelspec.py checks every count against peft on the meta device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .layers import LayerShape

Targets = str | Sequence[str] | None  # "all-linear", one name, or a list of names

_MIXTRAL = {"gate": "router", "w1": "gate_up", "w3": "gate_up", "w2": "down"}
_QWEN2_MOE = {"gate": "router", "gate_proj": "gate_up", "up_proj": "gate_up", "down_proj": "down"}
MOE_REMAP = {"mixtral": _MIXTRAL, "qwen3_moe": _QWEN2_MOE, "olmoe": _QWEN2_MOE, "deepseek_v2": _QWEN2_MOE}


@dataclass(frozen=True)
class Adapter:
    """One LoRA adapter: A ``[rank*experts, in]`` and B ``[out, rank*experts]``."""

    name: str
    in_features: int
    out_features: int
    rank_factor: int = 1  # 2 for the fused gate_up_proj
    experts: int = 1  # a ParamWrapper on a 3-D expert parameter: one adapter per expert
    on_parameter: bool = False  # a ParamWrapper (router or experts), not an nn.Linear

    def params(self, r: int) -> int:
        return r * self.rank_factor * self.experts * (self.in_features + self.out_features)

    def tensors(self, r: int) -> tuple[int, int]:
        rows = r * self.rank_factor * self.experts
        return rows * self.in_features, self.out_features * rows


def _names(target_modules: Targets) -> list[str] | None:
    if target_modules in (None, "all-linear", "all_linear"):
        return None
    return [target_modules] if isinstance(target_modules, str) else list(target_modules)


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _hits(path: str, names: list[str]) -> bool:
    return any(path == n or path.endswith("." + n) for n in names)


def resolve(family: str, layer: LayerShape, target_modules: Targets) -> tuple[list[Adapter], list[str]]:
    """(the adapters peft puts in this layer, problems peft would raise for these targets)."""
    names = _names(target_modules)
    remap = MOE_REMAP.get(family)
    if names is None:
        names = [_leaf(p) for p, *_ in layer.linears] + (list(remap) if remap else [])
        modules = [lin for lin in layer.linears if not remap or _leaf(lin[0]) not in remap]
    else:
        module_names = [n for n in names if not remap or not any(n == k or n.endswith("." + k) for k in remap)]
        modules = [lin for lin in layer.linears if _hits(lin[0], module_names)]
    adapters = [Adapter(p, i, o) for p, i, o, _ in modules]
    problems: list[str] = []
    if not remap:
        return adapters, problems
    wanted = {k for k in remap if any(n == k or n.endswith("." + k) for n in names)}
    fused = {k for k, v in remap.items() if v == "gate_up"}
    if wanted & fused and not fused <= wanted:
        missing = ", ".join(sorted(fused - wanted))
        problems.append(f"peft fuses {' and '.join(sorted(fused))} into gate_up_proj: target {missing} as well")
        wanted -= fused
    if not layer.is_moe:
        return adapters, problems
    h, f, e = layer.hidden, layer.expert_width, layer.experts
    if "gate" in wanted:
        adapters.append(Adapter("mlp.gate.weight", h, e, on_parameter=True))
    if wanted & fused:
        adapters.append(Adapter("mlp.experts.gate_up_proj", h, 2 * f, rank_factor=2, experts=e, on_parameter=True))
    if any(remap[k] == "down" for k in wanted):
        adapters.append(Adapter("mlp.experts.down_proj", f, h, experts=e, on_parameter=True))
    return adapters, problems


def wraps_parameters(family: str, layer: LayerShape, target_modules: Targets) -> bool:
    """Whether peft wraps an expert or router parameter (ParamWrapper: no lora_dropout)."""
    return any(a.on_parameter for a in resolve(family, layer, target_modules)[0])
