"""Freeze tuning (LLaMA-Factory's ``finetuning_type: freeze``): which parameters train.

The last ``freeze_layers`` decoder layers train; ``trainable_modules`` narrows that to named modules
inside those layers (``mlp``, ``self_attn``, ``q_proj``, ``mlp.experts``) and adds modules outside the
decoder layers by name (``embed_tokens``, ``lm_head``, ``norm``), like LLaMA-Factory's
``freeze_trainable_modules`` and ``freeze_extra_modules`` in one list. Everything else is frozen.

One predicate, :func:`is_trainable`, decides on a transformers parameter name
(``model.layers.30.mlp.gate_proj.weight``); the runner sets ``requires_grad`` with it and the model
card counts with it, so the memory model and the real run agree parameter for parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

Modules = str | Sequence[str] | None  # "all", one name, a comma-separated list, or a list

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.(.+)$")
ALL = "all"


def module_names(trainable_modules: Modules) -> tuple[str, ...] | None:
    """The names to match, or None for every module of the trainable layers."""
    if trainable_modules is None or trainable_modules == ALL:
        return None
    if isinstance(trainable_modules, str):
        return tuple(n.strip() for n in trainable_modules.split(",") if n.strip())
    return tuple(trainable_modules)


def matches(path: str, names: Iterable[str]) -> bool:
    """Whether a name is a run of whole components of ``path`` (``mlp`` matches
    ``mlp.down_proj.weight``, ``q_proj`` matches ``self_attn.q_proj.weight``; ``norm`` does not
    match ``input_layernorm``)."""
    comps = path.split(".")
    for name in names:
        parts = name.split(".")
        k = len(parts)
        if any(comps[i : i + k] == parts for i in range(len(comps) - k + 1)):
            return True
    return False


def is_trainable(param_name: str, num_layers: int, freeze_layers: int, trainable_modules: Modules = ALL) -> bool:
    """Whether a parameter trains under freeze tuning (see the module docstring)."""
    names = module_names(trainable_modules)
    found = _LAYER.search(param_name)
    if found and "vision" not in param_name[: found.start()]:  # a decoder layer, not a vision encoder's
        if int(found.group(1)) < num_layers - freeze_layers:
            return False
        return names is None or matches(found.group(2), names)
    return names is not None and matches(param_name, names)


def describe(freeze_layers: int, trainable_modules: Modules = ALL) -> str:
    names = module_names(trainable_modules)
    what = "every module" if names is None else ", ".join(names)
    return f"the last {freeze_layers} decoder layer(s) ({what})"
