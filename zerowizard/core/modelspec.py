"""Model architecture and analytic parameter counts (where a model comes from: ``core.modelcards``).

Counts are exact: they equal what transformers (``sum(p.numel())`` on the meta device) and peft
(``get_nb_trainable_parameters``) report for the same config, which tests/test_modelspec.py checks
for every family the installed transformers has.

Mixture-of-experts models count every expert (``total_params``) and, separately, what one token
touches (``active_params``: the shared parts plus ``experts_per_token`` routed experts per MoE layer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from . import freeze as _freeze
from .freeze import Modules
from .layers import (
    FAMILIES,
    LayerShape,
    Linear,
    VisionTower,
    decoder_layer,
    top_level_names,
    vision_tower,
)
from .lora import Adapter, Targets
from .lora import resolve as lora_targets
from .prequant import Quantization

__all__ = ["FAMILIES", "ModelSpec", "Trainable"]


@dataclass(frozen=True)
class Trainable:
    """What trains, in the shapes the memory model needs."""

    params: int
    layer_tensors: tuple[tuple[int, int], ...]  # (numel, count) of trainable tensors in the decoder layers
    embedding: int = 0  # trainable input-embedding parameters (0: frozen)
    head: int = 0  # trainable untied output head
    backprop_layers: int = 0  # layers whose activations autograd keeps (from the lowest trainable one up)
    lora_inputs: int = 0  # per layer: in_features summed over the targeted linears (LoRA dropout copies)

    @property
    def largest_tensor(self) -> int:
        return max([n for n, _ in self.layer_tensors] + [self.embedding, self.head], default=0)


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
    # mixture of experts (0: a dense model)
    num_experts: int = 0  # routed experts per MoE layer
    experts_per_token: int = 0  # top-k
    moe_intermediate_size: int = 0  # one routed expert's MLP width
    shared_expert_intermediate_size: int = 0  # width of the always-on shared expert MLP (0: none)
    dense_layer_ids: tuple[int, ...] = ()  # layers with a dense MLP in an MoE model
    quantization: Quantization | None = None  # a pre-quantized checkpoint (GPTQ, AWQ, FP8, bnb)
    card: dict = field(default_factory=dict, compare=False, hash=False)

    # -- layer shapes ---------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def _shapes(self) -> tuple[LayerShape, LayerShape]:
        cached = self.__dict__.get("_shape_cache")
        if cached is None:
            dense = decoder_layer(self, sparse=False)
            cached = (dense, decoder_layer(self, sparse=True) if self.is_moe else dense)
            object.__setattr__(self, "_shape_cache", cached)
        return cached

    def layer(self, index: int) -> LayerShape:
        """The shape of decoder layer ``index``."""
        dense, sparse = self._shapes()
        return dense if index in self.dense_layer_ids else sparse

    def layer_groups(self) -> list[tuple[int, LayerShape]]:
        """(how many layers, shape): the dense and the MoE layers."""
        dense, sparse = self._shapes()
        n_dense = sum(1 for i in set(self.dense_layer_ids) if 0 <= i < self.num_layers)
        if sparse is dense:
            return [(self.num_layers, dense)]
        return [(c, s) for c, s in ((n_dense, dense), (self.num_layers - n_dense, sparse)) if c]

    @property
    def vision(self) -> VisionTower | None:
        """A multimodal checkpoint's vision tower (Gemma 3 4B-27B), loaded with the language model."""
        if "_vision_cache" not in self.__dict__:
            object.__setattr__(self, "_vision_cache", vision_tower(self.card, self.hidden_size))
        return self.__dict__["_vision_cache"]

    @property
    def vision_params(self) -> int:
        return self.vision.params if self.vision else 0

    def _vision_layer(self) -> LayerShape | None:
        if "_vision_layer_cache" not in self.__dict__:
            v = self.vision
            layer = LayerShape(v.layer_linears, (), hidden=v.hidden) if v else None
            object.__setattr__(self, "_vision_layer_cache", layer)
        return self.__dict__["_vision_layer_cache"]

    def linear_layers(self) -> list[Linear]:
        """(name, in, out, bias) of one decoder layer's nn.Linear modules (the last layer's; for an
        MoE model the attention and shared-expert linears: routed experts are not nn.Linear)."""
        return [(n.rsplit(".", 1)[-1], i, o, b) for n, i, o, b in self.layer(self.num_layers - 1).linears]

    @property
    def norms_per_layer(self) -> int:
        return len(self.layer(self.num_layers - 1).norms)

    # -- counts ---------------------------------------------------------------------------
    @property
    def layer_linear_weights(self) -> int:
        return self.layer(self.num_layers - 1).linear_weights

    @property
    def layer_biases(self) -> int:
        return self.layer(self.num_layers - 1).biases

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab_size * self.hidden_size

    @property
    def _exact_total(self) -> int:
        layers = sum(c * s.params for c, s in self.layer_groups())
        return self.embedding_params + layers + self.hidden_size + self.lm_head_params + self.vision_params

    @property
    def scale(self) -> float:
        """For --params: the factor from the (scaled) architecture's own count to the stated one."""
        return self.raw_params / self._exact_total if self.raw_params else 1.0

    def _scaled(self, n: int) -> int:
        return round(n * self.scale) if self.raw_params else n

    @property
    def total_params(self) -> int:
        return self.raw_params or self._exact_total

    @property
    def expert_params(self) -> int:
        """Every routed expert's weights, all MoE layers (0 for a dense model)."""
        return self._scaled(sum(c * s.expert_params for c, s in self.layer_groups()))

    @property
    def active_params(self) -> int:
        """Parameters one token touches: total minus the routed experts it is not sent to (embedding
        and head included, as model cards count them: Qwen3-30B-A3B -> 3.3B). Dense: the total."""
        if not self.is_moe:
            return self.total_params
        k = self.experts_per_token
        layers = sum(c * s.active_params(k) for c, s in self.layer_groups())
        return self._scaled(self.embedding_params + layers + self.hidden_size + self.lm_head_params)

    @property
    def matmul_params_per_token(self) -> int:
        """Weights each token multiplies in the forward pass: every layer's linears, the routed
        experts it reaches, the routers, and the output head (the tied embedding when tied). The input
        embedding is a lookup and norms are elementwise: neither is counted."""
        k = self.experts_per_token
        per = sum(
            c * (s.linear_weights + (k * s.per_expert_params + s.router_params if s.is_moe else 0))
            for c, s in self.layer_groups()
        )
        return self._scaled(per + self.vocab_size * self.hidden_size)

    def attention_flops_per_token(self, seq_len: int, causal: bool = True) -> int:
        """Forward FLOPs per token of the attention scores and the weighted sum (QK^T and AV),
        which grow with the sequence; a causal mask halves them on average."""
        qk, v = self.num_heads * self.head_dim, self.num_heads * self.head_dim
        if self.family == "deepseek_v2":
            v = self.num_heads * int(self.card.get("v_head_dim", self.head_dim))
        span = (seq_len + 1) / 2 if causal else seq_len
        return round(self.num_layers * 2 * (qk + v) * span)

    def forward_flops_per_token(self, seq_len: int, causal: bool = True) -> int:
        """2 FLOPs per multiplied weight plus the attention term (Kaplan et al. 2020, Sec. 2.1)."""
        return 2 * self.matmul_params_per_token + self.attention_flops_per_token(seq_len, causal)

    @property
    def quantizable_params(self) -> int:
        """Weights of the decoder's nn.Linear layers: what bitsandbytes stores in 4 bits (routed
        experts are fused 3-D parameters, not nn.Linear: they stay 16-bit)."""
        vision = self.vision.linear_weights if self.vision else 0
        return self._scaled(sum(c * s.linear_weights for c, s in self.layer_groups()) + vision)

    @property
    def quantized_linears(self) -> int:
        """How many nn.Linear modules bitsandbytes replaces (each carries its QuantState constants)."""
        vision = self.vision.layers * len(self.vision.layer_linears) if self.vision else 0
        return sum(c * len(s.linears) for c, s in self.layer_groups()) + vision

    @property
    def quantized_rows(self) -> int:
        """Output rows of the quantized linears (per-row scales of 8-bit and FP8 checkpoints)."""
        return sum(c * sum(o for _, _, o, _ in s.linears) for c, s in self.layer_groups())

    @property
    def unquantized_params(self) -> int:
        """Embeddings, norms, biases, lm_head, routers and routed experts: stay 16-bit under QLoRA."""
        return self.total_params - self.quantizable_params

    @property
    def largest_layer_params(self) -> int:
        """The largest single module's own parameters (what ZeRO-3 gathers whole at once): the
        embedding, the head, a linear, or one MoE layer's fused experts."""
        biggest = max(max(s.modules()) for _, s in self.layer_groups())
        biggest = max(biggest, self.vision.largest_module if self.vision else 0)
        return self._scaled(max(self.embedding_params, self.lm_head_params, biggest))

    @property
    def largest_linear_params(self) -> int:
        """The largest nn.Linear weight in a decoder layer (QLoRA dequantises one at a time)."""
        return self._scaled(max(i * o for _, s in self.layer_groups() for _, i, o, _ in s.linears))

    def target_linears(self, target_modules: Targets, layer: LayerShape | None = None) -> list[Linear]:
        """The nn.Linear modules of a layer peft's LoRA wraps ('all-linear': every nn.Linear but the
        head, less the expert names peft 0.21 remaps to parameters on MoE models, see core.lora)."""
        layer = layer or self.layer(self.num_layers - 1)
        by_path = {lin[0]: lin for lin in layer.linears}
        return [by_path[a.name] for a in self.adapters(target_modules, layer) if a.name in by_path]

    def adapters(self, target_modules: Targets, layer: LayerShape | None = None) -> list[Adapter]:
        """peft's LoRA adapters in one layer (nn.Linear modules, and on MoE models the router and
        the fused experts, see core.lora)."""
        return self._lora(target_modules, layer)[0]

    def _lora(self, target_modules: Targets, layer: LayerShape | None) -> tuple[list[Adapter], list[str]]:
        layer = layer or self.layer(self.num_layers - 1)
        key = (tuple(target_modules) if isinstance(target_modules, list) else target_modules, id(layer))
        cache = self.__dict__.setdefault("_lora_cache", {})
        if key not in cache:
            cache[key] = lora_targets(self.family, layer, target_modules)
        return cache[key]

    def lora_problems(self, target_modules: Targets) -> list[str]:
        """What peft would refuse about these targets on this model (empty: nothing)."""
        out: list[str] = []
        for _, s in self.layer_groups():
            out += [p for p in self._lora(target_modules, s)[1] if p not in out]
        return out

    def lora_wraps_parameters(self, target_modules: Targets) -> bool:
        """Whether peft puts a ParamWrapper on the router or experts (it refuses lora_dropout > 0)."""
        return any(a.on_parameter for _, s in self.layer_groups() for a in self.adapters(target_modules, s))

    def lora_params(self, r: int, target_modules: Targets = "all-linear") -> int:
        """Adapter parameters: r * (in + out) per adapter (per expert on expert parameters), per
        layer (peft's count). For a raw count (--params) the widths scale with the square root of
        the size ratio."""
        total = sum(c * sum(a.params(r) for a in self.adapters(target_modules, s)) for c, s in self._lora_groups())
        return round(total * (self.scale**0.5))

    def _lora_groups(self) -> list[tuple[int, LayerShape]]:
        """The decoder layers, and the vision tower's layers (peft's all-linear reaches them too)."""
        vision = self._vision_layer()
        return self.layer_groups() + ([(self.vision.layers, vision)] if self.vision and vision else [])

    # -- freeze tuning --------------------------------------------------------------------
    def named_tensors(self) -> Iterator[tuple[str, int]]:
        """(transformers parameter name, numel) of every parameter, unscaled."""
        emb, norm, head = top_level_names(self.family)
        yield f"{emb}.weight", self.embedding_params
        for i in range(self.num_layers):
            for path, n in self.layer(i).tensors():
                yield f"model.layers.{i}.{path}", n
        yield f"{norm}.weight", self.hidden_size
        if not self.tie_embeddings:
            yield f"{head}.weight", self.lm_head_params
        if self.vision:  # one entry for the tower's non-layer parameters, then its layers
            v = self.vision
            yield "model.vision_tower.embeddings_and_projector", v.params - v.layers * v.layer_params
            for i in range(v.layers):
                for path, i_f, o_f, _ in v.layer_linears:
                    yield f"model.vision_tower.vision_model.encoder.layers.{i}.{path}.weight", i_f * o_f
                    yield f"model.vision_tower.vision_model.encoder.layers.{i}.{path}.bias", o_f
                yield f"model.vision_tower.vision_model.encoder.layers.{i}.layer_norms", 4 * v.hidden

    def freeze_layout(self, freeze_layers: int, trainable_modules: Modules = "all") -> Trainable:
        """Freeze tuning: the last ``freeze_layers`` layers (narrowed to ``trainable_modules``) train."""
        key = (freeze_layers, tuple(trainable_modules) if isinstance(trainable_modules, list) else trainable_modules)
        cache = self.__dict__.setdefault("_freeze_cache", {})
        if key not in cache:
            cache[key] = self._freeze_layout(freeze_layers, trainable_modules)
        return cache[key]

    def _freeze_layout(self, freeze_layers: int, trainable_modules: Modules) -> Trainable:
        emb_name, _, head_name = top_level_names(self.family)
        k = min(max(0, freeze_layers), self.num_layers)
        counts: dict[int, int] = {}
        total = emb = head = 0
        lowest = self.num_layers
        for name, n in self.named_tensors():
            if not _freeze.is_trainable(name, self.num_layers, k, trainable_modules):
                continue
            total += n
            if name.startswith(f"{emb_name}."):
                emb = n
            elif name.startswith(f"{head_name}."):
                head = n
            else:
                counts[n] = counts.get(n, 0) + 1
                if name.startswith("model.layers."):
                    lowest = min(lowest, int(name.split(".")[2]))
        backprop = self.num_layers if emb else self.num_layers - lowest
        return Trainable(
            params=self._scaled(total),
            layer_tensors=tuple(sorted((self._scaled(n), c) for n, c in counts.items())),
            embedding=self._scaled(emb),
            head=self._scaled(head),
            backprop_layers=backprop,
        )

    def unmatched_modules(self, trainable_modules: Modules) -> list[str]:
        """Names in ``trainable_modules`` that match no parameter of this model."""
        names = _freeze.module_names(trainable_modules) or ()
        paths = [p for p, _ in self.named_tensors()]
        return [n for n in names if not any(_freeze.matches(p, [n]) for p in paths)]

    def trainable(
        self,
        method: str,
        r: int = 64,
        target_modules: Targets = "all-linear",
        freeze_layers: int = 2,
        trainable_modules: Modules = "all",
    ) -> Trainable:
        """What trains under ``method`` (full | lora | qlora | freeze)."""
        if method == "freeze":
            return self.freeze_layout(freeze_layers, trainable_modules)
        if method == "full":
            counts: dict[int, int] = {}
            for c, s in self.layer_groups():
                for _, n in s.tensors():
                    counts[self._scaled(n)] = counts.get(self._scaled(n), 0) + c
            if self.vision:
                for name, n in self.named_tensors():
                    if "vision_tower" in name:
                        counts[n] = counts.get(n, 0) + 1
            return Trainable(
                params=self.total_params,
                layer_tensors=tuple(sorted(counts.items())),
                embedding=self._scaled(self.embedding_params),
                head=self._scaled(self.lm_head_params),
                backprop_layers=self.num_layers,
            )
        widen = self.scale**0.5
        counts = {}
        inputs = 0
        for c, s in self._lora_groups():
            adapters = self.adapters(target_modules, s)
            inputs += c * sum(a.in_features for a in adapters if not a.on_parameter)
            for a in adapters:
                for n in a.tensors(r):
                    n = round(n * widen)
                    counts[n] = counts.get(n, 0) + c
        return Trainable(
            params=self.lora_params(r, target_modules),
            layer_tensors=tuple(sorted(counts.items())),
            backprop_layers=self.num_layers,
            lora_inputs=round(inputs * widen / max(1, self.num_layers)),
        )

    def trainable_params(
        self,
        method: str,
        r: int = 64,
        target_modules: Targets = "all-linear",
        freeze_layers: int = 2,
        trainable_modules: Modules = "all",
    ) -> int:
        if method == "full":
            return self.total_params
        if method == "freeze":
            return self.freeze_layout(freeze_layers, trainable_modules).params
        return self.lora_params(r, target_modules)
