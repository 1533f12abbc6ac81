"""Where a model comes from: the catalog of cards in presets/models/ (the published config.json values
of popular models), a local directory's config.json, or a raw count (``--params 7B``, see
``core.scaling``); each read into a :class:`~.modelspec.ModelSpec`. Every problem is a
:class:`ModelNotFound` whose message names the field and the fix.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from .layers import FAMILIES, MOE_FAMILIES
from .modelspec import ModelSpec
from .paths import PRESETS
from .prequant import detect
from .text import did_you_mean, excerpt
from .validation import InputError, check_model_config, is_directory, load_json, read_text

__all__ = ["ModelNotFound", "card_spec", "catalog", "family_label", "family_order", "find_card", "resolve_model"]


_FAMILY_LABELS = {
    "llama": "Llama (incl. Yi, R1 distills)",
    "mistral": "Mistral",
    "mixtral": "Mixtral (MoE)",
    "qwen2": "Qwen2.5 (incl. R1 distills)",
    "qwen3": "Qwen3",
    "qwen3_moe": "Qwen3 MoE",
    "qwen2_moe": "Qwen MoE",
    "gemma": "Gemma",
    "gemma2": "Gemma 2",
    "gemma3_text": "Gemma 3",
    "phi3": "Phi-3.5 / Phi-4",
    "internlm2": "InternLM2 / 2.5",
    "internlm3": "InternLM3",
    "olmoe": "OLMoE (MoE)",
    "deepseek_v2": "DeepSeek-V2 (MoE)",
}


def family_label(family: str) -> str:
    return _FAMILY_LABELS.get(family, family)


def family_order(family: str) -> int:
    return list(_FAMILY_LABELS).index(family) if family in _FAMILY_LABELS else len(_FAMILY_LABELS)


class ModelNotFound(ValueError):
    pass


def _int(cfg: dict, *keys: str, default: int = 0) -> int:
    for k in keys:
        v = cfg.get(k)
        if v is not None and not isinstance(v, bool):
            return int(v)
    return default


def _moe_fields(cfg: dict, family: str, layers: int) -> dict:
    """Normalise the MoE keys of each family's config.json into ModelSpec fields."""
    experts = _int(cfg, "num_local_experts", "num_experts", "n_routed_experts")
    if family not in MOE_FAMILIES or experts <= 0:
        return {}
    width = _int(cfg, "intermediate_size") if family in ("mixtral", "olmoe") else _int(cfg, "moe_intermediate_size")
    shared = 0
    if family == "qwen2_moe":
        shared = _int(cfg, "shared_expert_intermediate_size")
    elif family == "deepseek_v2":
        shared = _int(cfg, "n_shared_experts") * width
    if family == "deepseek_v2":
        dense = tuple(range(min(layers, _int(cfg, "first_k_dense_replace"))))
    elif family in ("qwen2_moe", "qwen3_moe"):
        step = max(1, _int(cfg, "decoder_sparse_step", default=1))
        only = {int(i) for i in cfg.get("mlp_only_layers") or []}
        dense = tuple(i for i in range(layers) if i in only or (i + 1) % step != 0)
    else:
        dense = ()
    return {
        "num_experts": experts,
        "experts_per_token": _int(cfg, "num_experts_per_tok", default=2),
        "moe_intermediate_size": width,
        "shared_expert_intermediate_size": shared,
        "dense_layer_ids": dense,
    }


def _text_config(cfg: dict) -> dict:
    """A multimodal config's language model (Gemma 3 4B-27B: model_type gemma3 + text_config)."""
    text = cfg.get("text_config")
    if isinstance(text, dict) and str(cfg.get("model_type", "")).lower() in ("gemma3",):
        merged = {**text, "model_type": text.get("model_type", "gemma3_text")}
        if "quantization_config" in cfg:
            merged["quantization_config"] = cfg["quantization_config"]
        merged.setdefault("tie_word_embeddings", cfg.get("tie_word_embeddings", True))
        if isinstance(cfg.get("vision_config"), dict):
            merged["vision_config"] = cfg["vision_config"]
        return merged
    return cfg


def _spec_from_config(
    cfg: dict, name: str, *, source: str, hub_id: str | None = None, local_dir: str | None = None
) -> ModelSpec:
    raw = cfg
    cfg = _text_config(cfg)  # a multimodal checkpoint: its language model (and its vision tower)
    family = str(cfg.get("family") or cfg.get("model_type") or "").lower()
    if family == "gemma3":
        family = "gemma3_text"
    if family not in FAMILIES:
        raise ModelNotFound(
            f"model {name!r}: family/model_type {family!r} is not supported; "
            f"supported: {', '.join(FAMILIES)} (or give --params)"
        )
    heads = int(cfg["num_attention_heads"])
    h = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    if family == "deepseek_v2":
        head_dim = int(cfg["qk_nope_head_dim"]) + int(cfg["qk_rope_head_dim"])
    else:
        head_dim = int(cfg.get("head_dim") or h // heads)
    tie_default = family.startswith("gemma")
    return ModelSpec(
        name=name,
        family=family,
        hidden_size=h,
        intermediate_size=int(cfg.get("intermediate_size") or 0),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        vocab_size=int(cfg["vocab_size"]),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", tie_default)),
        attention_bias=bool(cfg.get("attention_bias", cfg.get("bias", False))),
        hub_id=hub_id if hub_id is not None else cfg.get("hub_id"),
        local_dir=local_dir,
        source=source,
        quantization=detect(cfg),
        card={**cfg, "model_type": raw.get("model_type", family)} if raw is not cfg else dict(cfg),
        **_moe_fields(cfg, family, layers),
    )


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", name.lower())


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict]:
    """Model cards by name (presets/models/*.yaml)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 60 cards in ~20 ms, not ~300
    cards = {}
    for path in sorted((PRESETS / "models").glob("*.yaml")):
        card = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # a safe loader (C or Python)
        cards[card["name"]] = card
    return cards


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    """Every accepted spelling (name, aliases, hub id) -> card name."""
    out: dict[str, str] = {}
    for name, card in catalog().items():
        for key in [name, *(card.get("aliases") or []), card.get("hub_id")]:
            if key:
                out.setdefault(_norm(str(key)), name)
    return out


def find_card(name: str) -> dict | None:
    found = _index().get(_norm(name))
    return catalog()[found] if found else None


def card_spec(name: str) -> ModelSpec:
    """The spec of a catalog card by its exact name."""
    return _card_spec(name)


@lru_cache(maxsize=128)
def _card_spec(name: str) -> ModelSpec:
    card = catalog()[name]
    return _spec_from_config(card, card["name"], source="catalog")


_LOCAL_CACHE: dict[tuple, dict] = {}


def _load_local(path: str) -> dict:
    """A local model's config.json, read boundedly and checked (InputError naming the problem);
    cached per file version, so an edited config.json is read again."""
    file = Path(path) / "config.json"
    try:
        st = file.stat()
        key: tuple | None = (str(file), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is not None and key in _LOCAL_CACHE:
        return _LOCAL_CACHE[key]
    cfg = check_model_config(load_json(read_text(file, "model"), f"model: {file}"), f"model: {file}")
    if key is not None:
        if len(_LOCAL_CACHE) > 64:
            _LOCAL_CACHE.clear()
        _LOCAL_CACHE[key] = cfg
    return cfg


def _local_spec(name: str) -> ModelSpec:
    if not (Path(name) / "config.json").is_file():
        raise ModelNotFound(
            f"model: directory {excerpt(name, 120)} has no config.json; point --model at a transformers model directory"
        )
    try:
        cfg = _load_local(str(Path(name).resolve()))
    except InputError as exc:
        raise ModelNotFound(str(exc)) from None
    try:
        return _spec_from_config(cfg, Path(name).name, source="local", local_dir=str(Path(name)))
    except KeyError as exc:
        raise ModelNotFound(f"model: {name}/config.json lacks {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ModelNotFound(f"model: {name}/config.json has a value that is not a number ({exc})") from None


def resolve_model(name: str, params: int | None = None) -> ModelSpec:
    """A ModelSpec for a catalog name (or alias, or a card's hub id), a local directory, or a raw
    count. With ``params`` the named architecture lends its shapes and is scaled to that size."""
    from .scaling import borrowed_architecture, scaled_architecture

    card = find_card(name)
    if card is not None:
        spec = card_spec(card["name"])
    elif is_directory(name):
        spec = _local_spec(name)
    elif params is not None:
        return borrowed_architecture(name, params)
    else:
        fix = did_you_mean(
            name,
            list(catalog()) + [a for c in catalog().values() for a in c.get("aliases") or []],
            "see `zerowizard presets`, or give --params 7B",
        )
        raise ModelNotFound(f"model: {excerpt(name, 120)} is not in the catalog nor a local directory; {fix}")
    if params is not None:
        return scaled_architecture(spec, params)
    return spec
