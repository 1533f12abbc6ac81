"""Analytic parameter counts: published totals, and transformers/peft on the meta device."""

import json
from dataclasses import replace

import pytest

from zerowizard.core.modelcards import ModelNotFound, catalog, resolve_model

# sum(p.numel()) of the released checkpoints, as the Hub's safetensors metadata and the model
# cards/papers report them (tied embeddings counted once). Where a model card gives a rounded
# figure, the exact one is the safetensors total of the same checkpoint:
#   Llama 3.1/3.2/3.3 model cards (8.03B, 70.6B, 405B, 1.24B, 3.21B); Qwen2.5 and Qwen3 technical
#   reports (Qwen3 Table 1: 0.6B/1.7B/4B are tied; the Hub lists 0.75B/2.03B for 0.6B/1.7B because
#   those safetensors store the tied matrix twice); Mixtral paper (46.7B / 12.9B active, 8x22B 141B);
#   Mistral-Nemo 12.2B; Gemma 2 report (2.61B, 9.24B, 27.2B); Gemma 3 report (1B text; 4B/12B/27B
#   with the 417M SigLIP encoder); Phi-3.5-mini 3.82B, Phi-4 14.7B, Phi-4-mini 3.84B;
#   InternLM2.5 1.89B/7.74B/19.9B, InternLM3 8.80B; Yi-1.5 6.06B/8.83B/34.4B; OLMoE paper (6.9B,
#   1.3B active); DeepSeek-V2 paper (V2-Lite 15.7B, 2.4B active); Qwen1.5-MoE-A2.7B 14.3B.
PUBLISHED = {
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "llama-3.1-405b": 405_853_388_800,
    "llama-3.2-1b": 1_235_814_400,
    "llama-3.2-3b": 3_212_749_824,
    "llama-3.3-70b": 70_553_706_496,
    "qwen2.5-0.5b": 494_032_768,
    "qwen2.5-1.5b": 1_543_714_304,
    "qwen2.5-3b": 3_085_938_688,
    "qwen2.5-7b": 7_615_616_512,
    "qwen2.5-14b": 14_770_033_664,
    "qwen2.5-32b": 32_763_876_352,
    "qwen2.5-72b": 72_706_203_648,
    "qwen2.5-7b-instruct-awq": 7_615_616_512,  # the unquantized shapes (the AWQ files pack 8 weights per int32)
    "qwen3-0.6b": 596_049_920,
    "qwen3-1.7b": 1_720_574_976,
    "qwen3-4b": 4_022_468_096,
    "qwen3-8b": 8_190_735_360,
    "qwen3-14b": 14_768_307_200,
    "qwen3-32b": 32_762_123_264,
    "qwen3-30b-a3b": 30_532_122_624,
    "qwen3-235b-a22b": 235_093_634_560,
    "qwen1.5-moe-a2.7b": 14_315_784_192,
    "mistral-7b": 7_241_732_096,
    "mistral-7b-v0.3": 7_248_023_552,
    "mistral-nemo-12b": 12_247_782_400,
    "mixtral-8x7b": 46_702_792_704,
    "mixtral-8x22b": 140_620_634_112,
    "gemma-2-2b": 2_614_341_888,
    "gemma-2-9b": 9_241_705_984,
    "gemma-2-27b": 27_227_128_320,
    "gemma-3-1b": 999_885_952,
    "gemma-3-4b": 4_300_079_472,
    "gemma-3-12b": 12_187_325_040,
    "gemma-3-27b": 27_432_406_640,
    "phi-3.5-mini": 3_821_079_552,
    "phi-4": 14_659_507_200,
    "phi-4-mini": 3_836_021_760,
    "internlm2-chat-7b": 7_737_708_544,
    "internlm2-chat-20b": 19_861_149_696,
    "internlm2.5-1.8b": 1_889_110_016,
    "internlm2.5-7b": 7_737_708_544,
    "internlm2.5-20b": 19_861_149_696,
    "internlm3-8b": 8_804_241_408,
    "yi-1.5-6b": 6_061_035_520,
    "yi-1.5-9b": 8_829_407_232,
    "yi-1.5-34b": 34_388_917_248,
    "deepseek-r1-distill-qwen-1.5b": 1_777_088_000,
    "deepseek-r1-distill-qwen-7b": 7_615_616_512,
    "deepseek-r1-distill-qwen-14b": 14_770_033_664,
    "deepseek-r1-distill-qwen-32b": 32_763_876_352,
    "deepseek-r1-distill-llama-8b": 8_030_261_248,
    "deepseek-r1-distill-llama-70b": 70_553_706_496,
    "olmoe-1b-7b": 6_919_161_856,
    "deepseek-v2-lite": 15_706_484_224,
}
# active parameters per token of the MoE cards (papers and model cards, rounded there)
PUBLISHED_ACTIVE_B = {
    "mixtral-8x7b": 12.9,
    "mixtral-8x22b": 39.2,
    "qwen3-30b-a3b": 3.3,
    "qwen3-235b-a22b": 22.2,
    "olmoe-1b-7b": 1.3,
    "qwen1.5-moe-a2.7b": 2.7,
    "deepseek-v2-lite": 2.7,  # the paper's 2.4B leaves out the 0.2B input embedding (a lookup)
}


def test_catalog_has_35_cards_and_every_card_a_published_total():
    cards = [n for n in catalog() if n != "tiny-llama"]
    assert len(cards) >= 35
    assert sorted(cards) == sorted(PUBLISHED)


@pytest.mark.parametrize("name,total", sorted(PUBLISHED.items()))
def test_published_totals(name, total):
    assert resolve_model(name).total_params == total


@pytest.mark.parametrize("name,active", sorted(PUBLISHED_ACTIVE_B.items()))
def test_moe_active_parameters(name, active):
    spec = resolve_model(name)
    assert spec.is_moe and abs(spec.active_params / 1e9 - active) < 0.06  # the published figure is rounded
    assert spec.matmul_params_per_token < spec.active_params  # no embedding lookup, norms or biases


def test_existing_names_and_aliases_resolve():
    assert resolve_model("meta-llama/Meta-Llama-3-8B").name == "llama-3-8b"
    assert resolve_model("Qwen/Qwen3-30B-A3B-Instruct-2507").name == "qwen3-30b-a3b"
    assert resolve_model("mistral-7b-v0.1").name == "mistral-7b"
    assert resolve_model("Llama-3.1-8B-Instruct").name == "llama-3.1-8b"
    for name in ("llama-3-8b", "llama-2-7b", "mistral-7b", "gemma-2-9b", "internlm2-chat-7b", "qwen2.5-7b"):
        assert resolve_model(name).name == name  # recipes and saved plans keep working


def _hf_config(spec, layers: int | None = None):
    from transformers import AutoConfig

    ours = {"name", "family", "hub_id", "aliases", "router", "unquantized", "vision_config", "mm_tokens_per_image"}
    kw = {k: v for k, v in spec.card.items() if k not in ours}
    if layers is not None:
        kw["num_hidden_layers"] = layers
    if "vision_config" in spec.card:
        vision = {k: v for k, v in spec.card["vision_config"].items() if k != "model_type"}
        text = AutoConfig.for_model("gemma3_text", **kw).to_dict()
        return AutoConfig.for_model(
            "gemma3", text_config=text, vision_config=vision, mm_tokens_per_image=spec.card["mm_tokens_per_image"]
        )
    return AutoConfig.for_model(spec.family, **kw)


def _meta_counts(spec, layers, r=16, targets="all-linear"):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(_hf_config(spec, layers))
    total = sum(p.numel() for p in model.parameters())
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n}
    quantizable = sum(m.weight.numel() for m in linears.values())
    biggest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    names = [n for n, _ in model.named_parameters()]
    peft_model = get_peft_model(model, LoraConfig(r=r, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM"))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    return total, quantizable, biggest, trainable, names


# every family of the installed transformers, the MoE ones included; shallow copies (3 layers:
# DeepSeek's dense first layer and two MoE layers) keep this fast, full depth for two of them
META_SHALLOW = [
    "tiny-llama",
    "llama-3.2-1b",
    "qwen2.5-0.5b",
    "qwen3-0.6b",
    "mistral-nemo-12b",
    "gemma-2-2b",
    "gemma-3-1b",
    "gemma-3-4b",
    "phi-3.5-mini",
    "phi-4",
    "mixtral-8x7b",
    "qwen3-30b-a3b",
    "qwen1.5-moe-a2.7b",
    "olmoe-1b-7b",
    "deepseek-v2-lite",
]


@pytest.mark.parametrize("name", META_SHALLOW)
def test_counts_equal_transformers_and_peft_on_meta(name):
    pytest.importorskip("torch")
    spec = resolve_model(name)
    layers = min(3, spec.num_layers)
    shallow = replace(spec, num_layers=layers)
    total, quantizable, biggest, lora, _ = _meta_counts(spec, layers)
    assert total == shallow.total_params
    assert quantizable == shallow.quantizable_params
    assert biggest == shallow.largest_layer_params
    assert lora == shallow.lora_params(16, "all-linear")


@pytest.mark.parametrize("name", ["llama-3-8b", "mixtral-8x7b"])
def test_full_depth_counts_on_meta(name):
    pytest.importorskip("torch")
    spec = resolve_model(name)
    total, quantizable, biggest, lora, _ = _meta_counts(spec, None)
    assert (total, quantizable, biggest, lora) == (
        spec.total_params,
        spec.quantizable_params,
        spec.largest_layer_params,
        spec.lora_params(16),
    )
    if name == "llama-3-8b":
        assert spec.lora_params(8, ["q_proj", "v_proj"]) == 8 * 32 * ((4096 + 4096) + (4096 + 1024))
    else:  # the largest module is one layer's fused experts: what ZeRO-3 gathers at once
        assert biggest == 8 * 3 * 4096 * 14336


@pytest.mark.parametrize(
    "name,targets",
    [
        ("mixtral-8x7b", ["q_proj", "v_proj"]),
        ("qwen3-30b-a3b", ["gate_proj", "up_proj", "down_proj"]),
        ("qwen3-30b-a3b", ["q_proj", "gate"]),
        ("deepseek-v2-lite", ["kv_b_proj", "o_proj"]),
    ],
)
def test_lora_target_lists_on_moe_match_peft(name, targets):
    pytest.importorskip("torch")
    spec = resolve_model(name)
    shallow = replace(spec, num_layers=min(3, spec.num_layers))
    *_, lora, _ = _meta_counts(spec, shallow.num_layers, r=8, targets=targets)
    assert lora == shallow.lora_params(8, targets)


def test_peft_refuses_dropout_on_expert_adapters():
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    spec = resolve_model("mixtral-8x7b")
    assert spec.lora_wraps_parameters("all-linear") and not spec.lora_wraps_parameters(["q_proj"])
    assert not resolve_model("qwen1.5-moe-a2.7b").lora_wraps_parameters("all-linear")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(_hf_config(spec, 1))
    with pytest.raises(ValueError, match="lora_dropout"):
        get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.1, task_type="CAUSAL_LM"))
    assert spec.lora_problems(["gate_proj"]) == []  # Mixtral's experts are w1/w3 in peft's remap
    assert "up_proj" in resolve_model("qwen3-30b-a3b").lora_problems(["gate_proj"])[0]


def test_freeze_counts_match_the_runner_predicate_on_meta():
    pytest.importorskip("torch")
    from zerowizard.core.freeze import is_trainable

    for name, k, modules in [
        ("qwen3-30b-a3b", 2, "all"),
        ("llama-3.2-1b", 1, ["mlp", "lm_head"]),
        ("gemma-3-4b", 2, ["self_attn", "embed_tokens"]),
        ("deepseek-v2-lite", 3, ["mlp.experts"]),
    ]:
        spec = replace(resolve_model(name), num_layers=3)
        import torch
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(_hf_config(resolve_model(name), 3))
        trained = sum(p.numel() for n, p in model.named_parameters() if is_trainable(n, 3, k, modules))
        assert trained == spec.freeze_layout(k, modules).params, name


def test_local_directory(tmp_path):
    cfg = dict(
        model_type="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    )
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    spec = resolve_model(str(tmp_path))
    assert spec.source == "local" and spec.total_params == PUBLISHED["qwen2.5-0.5b"]


@pytest.mark.parametrize("name", ["mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v2-lite", "olmoe-1b-7b", "gemma-3-4b"])
def test_every_family_reads_a_local_config_json(tmp_path, name):
    """A card is a config.json: written out as one (Gemma 3 in its multimodal form), it reads back the same."""
    card = dict(catalog()[name])
    for k in ("name", "family", "hub_id", "aliases", "router"):
        card.pop(k, None)
    spec = resolve_model(name)
    if "vision_config" in card:
        vision = card.pop("vision_config")
        cfg = {"model_type": "gemma3", "text_config": {**card, "model_type": "gemma3_text"}, "vision_config": vision}
    else:
        cfg = {**card, "model_type": spec.family}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    local = resolve_model(str(tmp_path))
    assert (local.total_params, local.active_params, local.largest_layer_params) == (
        spec.total_params,
        spec.active_params,
        spec.largest_layer_params,
    )


def test_raw_count_borrows_an_architecture():
    spec = resolve_model("my-model", 13_000_000_000)
    assert spec.total_params == 13_000_000_000 and spec.card["borrowed_from"] == "llama-2-13b"
    assert spec.hidden_size == 5120 and spec.num_layers == 40  # the nearest card's own shapes


def test_raw_count_scales_every_dimension_like_a_family():
    spec = resolve_model("custom-1T", 10**12)
    assert spec.card["borrowed_from"] == "llama-3.1-405b"
    assert spec.vocab_size == 128256 and spec.head_dim == 128 and spec.num_kv_heads == 8  # held
    assert 20_000 < spec.hidden_size < 25_000 and 150 < spec.num_layers < 200  # grown together
    assert abs(spec.intermediate_size / spec.hidden_size - 3.25) < 0.01
    assert abs(spec.scale - 1) < 0.01  # the shapes nearly add up to the stated total by themselves
    assert spec.largest_layer_params < 3.5e9  # the embedding, not a ~17B linearly scaled layer


def test_unknown_model_suggests():
    with pytest.raises(ModelNotFound, match="did you mean 'llama-3-8b'"):
        resolve_model("llama-3-9b")
    with pytest.raises(ModelNotFound, match="not in the catalog"):
        resolve_model("zzz")


def test_prequantized_card_is_detected():
    spec = resolve_model("qwen2.5-7b-instruct-awq")
    assert spec.quantization.method == "awq" and spec.quantization.bits == 4
    assert resolve_model("qwen2.5-7b").quantization is None
