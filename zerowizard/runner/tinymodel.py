"""The embedded tiny model: a Llama built from a model card with random weights, and a
byte-level BPE tokenizer trained locally with ``tokenizers`` on the shipped data.

Both are written once as an ordinary pretrained directory (config, safetensors, tokenizer)
in a cache folder keyed by the card and the data, so every rank and every method (full, LoRA,
QLoRA, ZeRO-3 partitioned init) loads it with ``from_pretrained`` like a real model.
Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}
# Human/Assistant turns, the oasst1/guanaco form; used when a tokenizer has no template.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}### Human: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}### Assistant: {{ m['content'] }}{{ eos_token }}\n"
    "{% else %}### System: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Assistant: {% endif %}"
)
_VERSION = "1"


def presets_dir() -> Path:
    from zerowizard.core.paths import PRESETS

    return Path(os.environ.get("ZEROWIZARD_PRESETS") or PRESETS)


def cache_dir() -> Path:
    base = os.environ.get("ZEROWIZARD_CACHE") or Path.home() / ".cache" / "zerowizard"
    return Path(base)


def default_data_file() -> Path:
    return presets_dir() / "data" / "alpaca_sample.json"


def load_card(name: str = "tiny-llama") -> dict:
    import yaml

    path = presets_dir() / "models" / f"{name}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def is_tiny(card: dict | None) -> bool:
    """A card with an architecture but no hub id is built locally."""
    return card is not None and not card.get("hub_id") and "hidden_size" in card


def _key(card: dict, data_files: list[Path], seed: int) -> str:
    h = hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode())
    for f in data_files:
        h.update(Path(f).read_bytes())
    h.update(f"{seed}:{_VERSION}".encode())
    return h.hexdigest()[:16]


def tiny_model_dir(card: dict, data_files: list[Path] | None = None, seed: int = 0, root: Path | None = None) -> Path:
    """The pretrained directory for ``card``, built on first use (atomic rename)."""
    data_files = [Path(f) for f in (data_files or [default_data_file()])]
    target = Path(root or cache_dir() / "tiny") / f"{card.get('name', 'tiny')}-{_key(card, data_files, seed)}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok = train_tokenizer(data_files, int(card.get("vocab_size", 1024)))
    tok.save_pretrained(tmp)
    model = build_model(card, len(tok), tok, seed)
    model.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _corpus(data_files: list[Path]):
    from zerowizard.runner.data import load_records, to_messages

    for f in data_files:
        for rec in load_records(f):
            for m in to_messages(rec):
                prefix = "### Human: " if m["role"] == "user" else "### Assistant: "
                yield prefix + m["content"] + "\n"


def train_tokenizer(data_files: list[Path], vocab_size: int):
    """A byte-level BPE tokenizer trained on the data, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_corpus(data_files)), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(card: dict, vocab_size: int, tok, seed: int):
    """A LlamaForCausalLM with random weights from the card's architecture fields."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    keys = (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "tie_word_embeddings",
        "attention_bias",
        "max_position_embeddings",
        "rms_norm_eps",
    )
    config = LlamaConfig(
        **{k: card[k] for k in keys if k in card},
        vocab_size=vocab_size,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)
