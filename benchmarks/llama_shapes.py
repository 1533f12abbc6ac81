"""The random-weight model configs the benchmarks build (fidelity.py, fidelity_peak.py, gpu_peak.py,
speed.py): a decoder's shape as the six numbers (hidden, mlp width, layers, heads, kv heads, vocab)."""

from __future__ import annotations

Dims = tuple[int, int, int, int, int, int]


def shape_fields(dims: Dims) -> dict:
    """The config.json fields of a decoder's shape (Llama, Qwen2 and Mixtral name them alike)."""
    h, f, n, a, kv, v = dims
    return {
        "hidden_size": h,
        "intermediate_size": f,
        "num_hidden_layers": n,
        "num_attention_heads": a,
        "num_key_value_heads": kv,
        "vocab_size": v,
    }


def llama_config_dict(dims: Dims, max_positions: int) -> dict:
    """A transformers config.json of a Llama (untied, no biases)."""
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        **shape_fields(dims),
        "max_position_embeddings": max_positions,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "rope_theta": 10000.0,
    }
