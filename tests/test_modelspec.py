"""Analytic parameter counts: published totals, and transformers/peft on the meta device."""

import json

import pytest

from zerowizard.core.modelspec import ModelNotFound, catalog, resolve_model

PUBLISHED = {  # sum(p.numel()) of the released checkpoints
    "llama-3-8b": 8_030_261_248,
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-7b": 7_615_616_512,
    "qwen2.5-0.5b": 494_032_768,
    "gemma-2-9b": 9_241_705_984,
    "llama-3-70b": 70_553_706_496,
    "qwen2.5-72b": 72_706_203_648,
    "internlm2-chat-7b": 7_737_708_544,
}


def test_catalog_has_ten_popular_models():
    assert len([n for n in catalog() if n != "tiny-llama"]) >= 10


@pytest.mark.parametrize("name,total", sorted(PUBLISHED.items()))
def test_published_totals(name, total):
    assert resolve_model(name).total_params == total


def _hf_config(spec):
    from transformers import AutoConfig

    c = spec.card
    kw = dict(
        hidden_size=c["hidden_size"],
        intermediate_size=c["intermediate_size"],
        num_hidden_layers=c["num_hidden_layers"],
        num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c["num_key_value_heads"],
        vocab_size=c["vocab_size"],
        tie_word_embeddings=c["tie_word_embeddings"],
    )
    if "head_dim" in c:
        kw["head_dim"] = c["head_dim"]
    return AutoConfig.for_model(spec.family, **kw)


META_MODELS = ["tiny-llama", "llama-3-8b", "llama-2-7b", "mistral-7b", "qwen2.5-0.5b", "qwen2.5-7b", "gemma-2-9b"]


@pytest.mark.parametrize("name", META_MODELS)
def test_counts_equal_transformers_and_peft_on_meta(name):
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    spec = resolve_model(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(_hf_config(spec))
    assert sum(p.numel() for p in model.parameters()) == spec.total_params
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n}
    assert sum(m.weight.numel() for m in linears.values()) == spec.quantizable_params
    biggest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    assert biggest == spec.largest_layer_params
    peft_model = get_peft_model(model, LoraConfig(r=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert trainable == spec.lora_params(16, "all-linear")
    if name == "llama-3-8b":
        assert spec.lora_params(8, ["q_proj", "v_proj"]) == 8 * 32 * ((4096 + 4096) + (4096 + 1024))


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


def test_raw_count_borrows_an_architecture():
    spec = resolve_model("my-model", 13_000_000_000)
    assert spec.total_params == 13_000_000_000 and spec.card["borrowed_from"] == "llama-2-13b"


def test_unknown_model_suggests():
    with pytest.raises(ModelNotFound, match="did you mean 'llama-3-8b'"):
        resolve_model("llama-3-9b")
    with pytest.raises(ModelNotFound, match="not in the catalog"):
        resolve_model("zzz")


def test_hub_id_of_a_card():
    assert resolve_model("meta-llama/Meta-Llama-3-8B").name == "llama-3-8b"
