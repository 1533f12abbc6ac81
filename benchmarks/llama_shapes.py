"""The random-weight Llama config both memory harnesses build (fidelity.py on the CPU, gpu_peak.py)."""

from __future__ import annotations


def llama_config_dict(dims: tuple[int, int, int, int, int, int], max_positions: int) -> dict:
    """A transformers config.json for (hidden, mlp width, layers, heads, kv heads, vocab)."""
    h, f, n, a, kv, v = dims
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": h,
        "intermediate_size": f,
        "num_hidden_layers": n,
        "num_attention_heads": a,
        "num_key_value_heads": kv,
        "vocab_size": v,
        "max_position_embeddings": max_positions,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "rope_theta": 10000.0,
    }
