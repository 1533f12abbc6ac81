"""Model architecture and analytic parameter counts.

A model comes from a card in presets/models/ (real architecture numbers of popular models), from a
local directory's config.json, or from a raw count (`--params 7B`). Counts are exact: they equal what
transformers (`sum(p.numel())` on the meta device) and peft (`get_nb_trainable_parameters`) report
for the same config, which tests/test_modelspec_meta.py checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from .paths import PRESETS
from .text import did_you_mean, excerpt
from .validation import InputError, check_model_config, is_directory, load_json, read_text

FAMILIES = ("llama", "mistral", "qwen2", "internlm2", "gemma2", "gemma")

# Decoder linear layers per family: (name, in_features, out_features, has_bias) from the card.
# peft's "all-linear" targets every nn.Linear except the output layer, i.e. exactly these.


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_embeddings: bool
    attention_bias: bool = False
    hub_id: str | None = None
    local_dir: str | None = None
    source: str = "catalog"  # catalog | local | params
    raw_params: int | None = None  # --params: the total the user gave
    card: dict = field(default_factory=dict, compare=False, hash=False)

    # -- layer shapes ---------------------------------------------------------------------
    def linear_layers(self) -> list[tuple[str, int, int, bool]]:
        """(name, in, out, bias) of one decoder layer's nn.Linear modules."""
        h, f, d = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_heads * d, self.num_kv_heads * d
        if self.family == "internlm2":
            return [
                ("wqkv", h, q + 2 * kv, self.attention_bias),
                ("wo", q, h, self.attention_bias),
                ("w1", h, f, False),
                ("w3", h, f, False),
                ("w2", f, h, False),
            ]
        qkv_bias = self.attention_bias or self.family == "qwen2"
        o_bias = self.attention_bias and self.family != "qwen2"
        return [
            ("q_proj", h, q, qkv_bias),
            ("k_proj", h, kv, qkv_bias),
            ("v_proj", h, kv, qkv_bias),
            ("o_proj", q, h, o_bias),
            ("gate_proj", h, f, False),
            ("up_proj", h, f, False),
            ("down_proj", f, h, False),
        ]

    @property
    def norms_per_layer(self) -> int:
        return 4 if self.family == "gemma2" else 2

    # -- counts ---------------------------------------------------------------------------
    @property
    def layer_linear_weights(self) -> int:
        return sum(i * o for _, i, o, _ in self.linear_layers())

    @property
    def layer_biases(self) -> int:
        return sum(o for _, _, o, b in self.linear_layers() if b)

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab_size * self.hidden_size

    @property
    def _exact_total(self) -> int:
        per_layer = self.layer_linear_weights + self.layer_biases + self.norms_per_layer * self.hidden_size
        return self.embedding_params + self.num_layers * per_layer + self.hidden_size + self.lm_head_params

    @property
    def scale(self) -> float:
        """For --params: the factor from the borrowed architecture to the stated count."""
        return self.raw_params / self._exact_total if self.raw_params else 1.0

    @property
    def total_params(self) -> int:
        return self.raw_params or self._exact_total

    @property
    def quantizable_params(self) -> int:
        """Weights of the decoder's linear layers: what bitsandbytes stores in 4 bits."""
        return round(self.num_layers * self.layer_linear_weights * self.scale)

    @property
    def unquantized_params(self) -> int:
        """Embeddings, norms, biases, lm_head: stay 16-bit under QLoRA."""
        return self.total_params - self.quantizable_params

    @property
    def largest_layer_params(self) -> int:
        """The largest single module's parameters (what ZeRO-3 gathers whole at once)."""
        biggest_linear = max(i * o + (o if b else 0) for _, i, o, b in self.linear_layers())
        return round(max(self.embedding_params, self.lm_head_params, biggest_linear) * self.scale)

    def target_linears(self, target_modules) -> list[tuple[str, int, int, bool]]:
        layers = self.linear_layers()
        if target_modules in (None, "all-linear", "all_linear"):
            return layers
        names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
        return [layer for layer in layers if any(layer[0] == n or layer[0].endswith("." + n) for n in names)]

    def lora_params(self, r: int, target_modules="all-linear") -> int:
        """Adapter parameters: r * (in + out) per targeted linear, per layer (peft's count).

        For a raw count (--params) the widths scale with the square root of the size ratio."""
        per_layer = sum(r * (i + o) for _, i, o, _ in self.target_linears(target_modules))
        return round(self.num_layers * per_layer * (self.scale**0.5))

    def trainable_params(self, method: str, r: int = 64, target_modules="all-linear") -> int:
        return self.total_params if method == "full" else self.lora_params(r, target_modules)


class ModelNotFound(ValueError):
    pass


def _spec_from_config(cfg: dict, name: str, *, source: str, hub_id=None, local_dir=None) -> ModelSpec:
    family = str(cfg.get("family") or cfg.get("model_type") or "").lower()
    if family not in FAMILIES:
        raise ModelNotFound(
            f"model {name!r}: family/model_type {family!r} is not supported; "
            f"supported: {', '.join(FAMILIES)} (or give --params)"
        )
    heads = int(cfg["num_attention_heads"])
    h = int(cfg["hidden_size"])
    head_dim = int(cfg.get("head_dim") or h // heads)
    return ModelSpec(
        name=name,
        family="gemma2" if family == "gemma2" else family,
        hidden_size=h,
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        vocab_size=int(cfg["vocab_size"]),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", family in ("gemma", "gemma2"))),
        attention_bias=bool(cfg.get("attention_bias", cfg.get("bias", False))),
        hub_id=hub_id if hub_id is not None else cfg.get("hub_id"),
        local_dir=local_dir,
        source=source,
        card=dict(cfg),
    )


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", name.lower())


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict]:
    """Model cards by name (presets/models/*.yaml)."""
    import yaml

    cards = {}
    for path in sorted((PRESETS / "models").glob("*.yaml")):
        card = yaml.safe_load(path.read_text(encoding="utf-8"))
        cards[card["name"]] = card
    return cards


def find_card(name: str) -> dict | None:
    key = _norm(name)
    for card in catalog().values():
        if _norm(card["name"]) == key or (card.get("hub_id") and _norm(card["hub_id"]) == key):
            return card
    return None


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


def resolve_model(name: str, params: int | None = None) -> ModelSpec:
    """A ModelSpec for a catalog name, hub id of a card, local directory, or raw count."""
    card = find_card(name)
    if card is not None:
        spec = _spec_from_config(card, card["name"], source="catalog")
    elif is_directory(name):
        if not (Path(name) / "config.json").is_file():
            raise ModelNotFound(
                f"model: directory {excerpt(name, 120)} has no config.json; "
                "point --model at a transformers model directory"
            )
        try:
            cfg = _load_local(str(Path(name).resolve()))
        except InputError as exc:
            raise ModelNotFound(str(exc)) from None
        try:
            spec = _spec_from_config(cfg, Path(name).name, source="local", local_dir=str(Path(name)))
        except KeyError as exc:
            raise ModelNotFound(f"model: {name}/config.json lacks {exc}") from None
    elif params is not None:
        return borrowed_architecture(name, params)
    else:
        fix = did_you_mean(name, catalog(), "see `zerowizard presets`, or give --params 7B")
        raise ModelNotFound(f"model: {excerpt(name, 120)} is not in the catalog nor a local directory; {fix}")
    if params is not None:
        spec = replace(spec, raw_params=params)
    return spec


def borrowed_architecture(name: str, params: int) -> ModelSpec:
    """A raw parameter count borrows the shapes of the catalog model nearest in size.

    Activations need shapes (hidden size, layers, vocab); a bare count has none, so the nearest
    catalog card lends them and the counts are scaled to the stated total.
    """
    best = None
    for card in catalog().values():
        spec = _spec_from_config(card, card["name"], source="catalog")
        gap = abs(spec.total_params - params)
        if best is None or gap < best[0]:
            best = (gap, spec)
    spec = best[1]
    return replace(
        spec, name=name, hub_id=None, source="params", raw_params=params, card={**spec.card, "borrowed_from": spec.name}
    )
