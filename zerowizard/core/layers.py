"""One decoder layer's parameters, per architecture family, as transformers 5 lays them out.

Every family the catalog knows is a variation on a few parts: an attention block (separate or fused
q/k/v projections, or DeepSeek's multi-head latent attention), an MLP (SwiGLU gate/up/down, fused
gate_up, or InternLM2's w1/w3/w2), its norms (two or four RMSNorms, per-head q/k norms) and, for a
mixture of experts, the routed experts, a router and optional shared experts.

Names are module paths inside ``model.layers.N``, exactly as transformers names them, so that freeze
tuning (``core.freeze``), LoRA targets and the runner agree on what a name means.

Two facts of transformers 5 that decide MoE memory (checked in modeling_mixtral.py,
modeling_qwen3_moe.py, modeling_olmoe.py, modeling_deepseek_v2.py, 5.24):
- routed experts are stored fused, as two 3-D ``nn.Parameter`` per layer (``experts.gate_up_proj``
  ``[E, 2f, h]`` and ``experts.down_proj`` ``[E, h, f]``), and the router is an ``nn.Parameter``
  ``[E, h]``: none of them is an ``nn.Linear``. peft's ``all-linear`` therefore does not reach the
  experts or the router (only attention, shared experts, dense MLPs), bitsandbytes leaves them in
  16 bits under QLoRA, and ZeRO-3 gathers one layer's experts whole (the largest module);
- shared experts (Qwen2-MoE ``shared_expert`` + ``shared_expert_gate``, DeepSeek ``shared_experts``)
  are ordinary ``nn.Linear`` MLPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .modelspec import ModelSpec

Linear = tuple[str, int, int, bool]  # (path inside the layer, in_features, out_features, bias)

DENSE_FAMILIES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
    "internlm2",
    "internlm3",
)
MOE_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2")
FAMILIES = DENSE_FAMILIES + MOE_FAMILIES


@dataclass(frozen=True)
class LayerShape:
    """The parameters of one decoder layer."""

    linears: tuple[Linear, ...]  # every nn.Linear (attention, dense MLP, shared experts, shared gate)
    norms: tuple[tuple[str, int], ...]  # (path, size) of every norm weight
    hidden: int = 0
    experts: int = 0  # routed experts, fused 3-D parameters (not nn.Linear)
    expert_width: int = 0  # moe_intermediate_size
    moe_prefix: str = "mlp"

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def router_params(self) -> int:
        return self.experts * self.hidden

    @property
    def expert_params(self) -> int:
        """All routed experts' weights (gate, up and down of every expert)."""
        return self.experts * 3 * self.hidden * self.expert_width

    @property
    def per_expert_params(self) -> int:
        return 3 * self.hidden * self.expert_width

    def tensors(self) -> list[tuple[str, int]]:
        """(path, numel) of every parameter tensor of the layer."""
        out = []
        for name, i, o, bias in self.linears:
            out.append((f"{name}.weight", i * o))
            if bias:
                out.append((f"{name}.bias", o))
        out.extend((f"{name}.weight", n) for name, n in self.norms)
        if self.experts:
            e, h, f = self.experts, self.hidden, self.expert_width
            out.append((f"{self.moe_prefix}.experts.gate_up_proj", e * 2 * f * h))
            out.append((f"{self.moe_prefix}.experts.down_proj", e * h * f))
            out.append((f"{self.moe_prefix}.gate.weight", e * h))
        return out

    def modules(self) -> list[int]:
        """Each module's own parameters (what ZeRO-3 gathers at once when the module runs)."""
        out = [i * o + (o if bias else 0) for _, i, o, bias in self.linears]
        out.extend(n for _, n in self.norms)
        if self.experts:
            out += [self.expert_params, self.router_params]
        return out

    @property
    def params(self) -> int:
        return sum(n for _, n in self.tensors())

    @property
    def linear_weights(self) -> int:
        return sum(i * o for _, i, o, _ in self.linears)

    @property
    def biases(self) -> int:
        return sum(o for _, _, o, b in self.linears if b)

    def active_params(self, experts_per_token: int) -> int:
        """Parameters one token touches: everything but the experts it is not routed to."""
        if not self.experts:
            return self.params
        return self.params - self.expert_params + experts_per_token * self.per_expert_params


def _mlp(family: str, h: int, f: int, prefix: str = "mlp", bias: bool = False) -> list[Linear]:
    if family == "internlm2":
        return [("feed_forward.w1", h, f, False), ("feed_forward.w3", h, f, False), ("feed_forward.w2", f, h, False)]
    if family == "phi3" and prefix == "mlp":
        return [("mlp.gate_up_proj", h, 2 * f, False), ("mlp.down_proj", f, h, False)]
    return [(f"{prefix}.gate_proj", h, f, bias), (f"{prefix}.up_proj", h, f, bias), (f"{prefix}.down_proj", f, h, bias)]


def _mla(card: dict, h: int, heads: int) -> tuple[list[Linear], list[tuple[str, int]]]:
    """DeepSeek-V2 multi-head latent attention (modeling_deepseek_v2.py DeepseekV2Attention)."""
    nope, rope = int(card["qk_nope_head_dim"]), int(card["qk_rope_head_dim"])
    v, kv_rank = int(card["v_head_dim"]), int(card["kv_lora_rank"])
    q_rank = card.get("q_lora_rank")
    bias = bool(card.get("attention_bias", False))
    linears: list[Linear] = []
    norms: list[tuple[str, int]] = []
    if q_rank:
        linears += [
            ("self_attn.q_a_proj", h, int(q_rank), bias),
            ("self_attn.q_b_proj", int(q_rank), heads * (nope + rope), False),
        ]
        norms.append(("self_attn.q_a_layernorm", int(q_rank)))
    else:
        linears.append(("self_attn.q_proj", h, heads * (nope + rope), False))
    linears += [
        ("self_attn.kv_a_proj_with_mqa", h, kv_rank + rope, bias),
        ("self_attn.kv_b_proj", kv_rank, heads * (nope + v), False),
        ("self_attn.o_proj", heads * v, h, bias),
    ]
    norms.append(("self_attn.kv_a_layernorm", kv_rank))
    return linears, norms


def attention(spec: ModelSpec) -> tuple[list[Linear], list[tuple[str, int]]]:
    """The attention block's linears and its own norms (q/k norms, latent norms)."""
    fam, h, d = spec.family, spec.hidden_size, spec.head_dim
    q, kv = spec.num_heads * d, spec.num_kv_heads * d
    bias = spec.attention_bias
    if fam == "deepseek_v2":
        return _mla(spec.card, h, spec.num_heads)
    if fam == "internlm2":
        return [("attention.wqkv", h, q + 2 * kv, bias), ("attention.wo", q, h, bias)], []
    if fam == "phi3":
        return [("self_attn.qkv_proj", h, q + 2 * kv, False), ("self_attn.o_proj", q, h, False)], []
    qkv_bias, o_bias = bias, bias
    if fam in ("qwen2", "qwen2_moe"):  # q, k, v always biased (qwen2), or per config.qkv_bias (qwen2_moe)
        qkv_bias, o_bias = bool(spec.card.get("qkv_bias", True)) if fam == "qwen2_moe" else True, False
    elif fam == "internlm3":
        qkv_bias, o_bias = bool(spec.card.get("qkv_bias", False)), bool(spec.card.get("bias", False))
    linears = [
        ("self_attn.q_proj", h, q, qkv_bias),
        ("self_attn.k_proj", h, kv, qkv_bias),
        ("self_attn.v_proj", h, kv, qkv_bias),
        ("self_attn.o_proj", q, h, o_bias),
    ]
    norms: list[tuple[str, int]] = []
    if fam in ("qwen3", "qwen3_moe", "gemma3_text"):
        norms = [("self_attn.q_norm", d), ("self_attn.k_norm", d)]
    elif fam == "olmoe":
        norms = [("self_attn.q_norm", h), ("self_attn.k_norm", (h // spec.num_heads) * spec.num_kv_heads)]
    return linears, norms


def _layer_norms(family: str, h: int) -> list[tuple[str, int]]:
    if family == "internlm2":
        return [("attention_norm", h), ("ffn_norm", h)]
    names = ["input_layernorm", "post_attention_layernorm"]
    if family in ("gemma2", "gemma3_text"):
        names += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
    return [(n, h) for n in names]


def decoder_layer(spec: ModelSpec, sparse: bool) -> LayerShape:
    """One layer of ``spec``: the MoE form when ``sparse``, else the dense form."""
    fam, h = spec.family, spec.hidden_size
    linears, norms = attention(spec)
    mlp_bias = bool(spec.card.get("mlp_bias", False))
    if not sparse:
        linears += _mlp(fam, h, spec.intermediate_size, bias=mlp_bias)
        return LayerShape(tuple(linears), tuple(norms + _layer_norms(fam, h)), hidden=h)
    if spec.shared_expert_intermediate_size:
        name = "mlp.shared_experts" if fam == "deepseek_v2" else "mlp.shared_expert"
        linears += _mlp(fam, h, spec.shared_expert_intermediate_size, prefix=name, bias=mlp_bias)
        if fam == "qwen2_moe":
            linears.append(("mlp.shared_expert_gate", h, 1, False))
    return LayerShape(
        tuple(linears),
        tuple(norms + _layer_norms(fam, h)),
        hidden=h,
        experts=spec.num_experts,
        expert_width=spec.moe_intermediate_size,
    )


def top_level_names(family: str) -> tuple[str, str, str]:
    """(input embedding, final norm, output head) module paths of the causal LM."""
    if family == "internlm2":
        return "model.tok_embeddings", "model.norm", "output"
    return "model.embed_tokens", "model.norm", "lm_head"


@dataclass(frozen=True)
class VisionTower:
    """A multimodal checkpoint's SigLIP vision tower and projector (Gemma 3 4B-27B), which
    AutoModelForCausalLM loads with the language model (Gemma3ForConditionalGeneration). It does not
    run on text-only data, but its weights are in memory and, unless frozen, train."""

    hidden: int
    width: int  # MLP intermediate size
    layers: int
    patch: int
    image: int
    text_hidden: int
    channels: int = 3

    @property
    def layer_linears(self) -> tuple[Linear, ...]:
        h, f = self.hidden, self.width
        attn = tuple((f"self_attn.{n}", h, h, True) for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
        return (*attn, ("mlp.fc1", h, f, True), ("mlp.fc2", f, h, True))

    @property
    def layer_params(self) -> int:
        return sum(i * o + o for _, i, o, _ in self.layer_linears) + 4 * self.hidden  # two LayerNorms

    @property
    def params(self) -> int:
        h = self.hidden
        patches = (self.image // self.patch) ** 2
        embeddings = self.channels * self.patch * self.patch * h + h + patches * h
        projector = h * self.text_hidden + h  # mm_input_projection_weight + mm_soft_emb_norm
        return embeddings + self.layers * self.layer_params + 2 * h + projector

    @property
    def linear_weights(self) -> int:
        return self.layers * sum(i * o for _, i, o, _ in self.layer_linears)

    @property
    def largest_module(self) -> int:
        h = self.hidden
        return max((self.image // self.patch) ** 2 * h, h * self.text_hidden, self.width * h + self.width)


def vision_tower(card: dict, text_hidden: int) -> VisionTower | None:
    v = card.get("vision_config")
    if not isinstance(v, dict):
        return None
    return VisionTower(
        hidden=int(v["hidden_size"]),
        width=int(v["intermediate_size"]),
        layers=int(v["num_hidden_layers"]),
        patch=int(v["patch_size"]),
        image=int(v["image_size"]),
        text_hidden=text_hidden,
        channels=int(v.get("num_channels", 3)),
    )
