"""``--params``: a model of a stated size, shaped the way real model families grow.

A bare count has no shapes, but activations, buffers and ZeRO-3's gathered module need them. The
dense catalog card nearest in size (log scale) lends its *proportions*, and every dimension is
scaled together, as a family's sizes do (Llama 3: 8B -> 70B -> 405B is hidden 4096 -> 8192 -> 16384,
layers 32 -> 80 -> 126, the MLP at ~3.25-3.5x the width, head size and vocabulary held):

- hidden size and depth grow together at the donor's aspect ratio (hidden / layers);
- the MLP keeps its ratio to the hidden size, attention heads keep theirs (head size held);
- the vocabulary, the key/value heads and the embedding tying are held.

The architecture is then the nearest one to the stated total on that path (hidden size in steps of
64 or 128), and the stated total is kept exactly (``ModelSpec.scale``, within a fraction of a percent
of 1). The old way, scaling the borrowed card's largest layer linearly, made a 1T model's embedding
~17B parameters and ZeRO-3's gather buffers ~32 GiB per GPU; scaled like this it is ~2.9B.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

from .modelcards import card_spec, catalog
from .modelspec import ModelSpec


def _step(h: int) -> int:
    return math.gcd(h, 128) if h >= 64 else max(1, math.gcd(h, 16))


def _round(x: float, step: int) -> int:
    return max(step, round(x / step) * step)


def resize(donor: ModelSpec, hidden: int) -> ModelSpec:
    """The donor's family at a new hidden size, every other dimension following it."""
    if hidden == donor.hidden_size:
        return donor
    h, d = donor.hidden_size, donor
    factor = hidden / h
    layers = max(1, round(d.num_layers * factor))
    kv = d.num_kv_heads
    heads = max(kv, _round(d.num_heads * factor, kv))
    step = _step(h) if h >= 128 else 16
    ffn = _round(d.intermediate_size * factor, step) if d.intermediate_size else 0
    moe = _round(d.moe_intermediate_size * factor, step) if d.moe_intermediate_size else 0
    shared = _round(d.shared_expert_intermediate_size * factor, step) if d.shared_expert_intermediate_size else 0
    n_dense = len([i for i in d.dense_layer_ids if i < d.num_layers])
    dense = tuple(range(min(layers, n_dense))) if n_dense else ()
    return replace(
        d,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=ffn,
        moe_intermediate_size=moe,
        shared_expert_intermediate_size=shared,
        dense_layer_ids=dense,
    )


def scaled_architecture(donor: ModelSpec, params: int, name: str | None = None) -> ModelSpec:
    """``donor``'s family grown (or shrunk) to ``params`` parameters; the total is ``params`` exactly."""
    step = _step(donor.hidden_size) if donor.hidden_size >= 128 else 16

    def total(m: int) -> int:
        return resize(donor, m * step)._exact_total

    lo, hi = 1, max(2, donor.hidden_size // step)
    while total(hi) < params and hi < 10**6:
        hi *= 2
    while lo < hi:  # the smallest multiple whose total reaches params (totals grow with the width)
        mid = (lo + hi) // 2
        if total(mid) < params:
            lo = mid + 1
        else:
            hi = mid
    best = min((m for m in (lo - 1, lo) if m >= 1), key=lambda m: abs(total(m) - params))
    spec = resize(donor, best * step)
    shapes = {
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "intermediate_size": spec.intermediate_size,
        "num_attention_heads": spec.num_heads,
    }
    return replace(
        spec,
        name=name or donor.name,
        hub_id=None,
        local_dir=None,
        source="params",
        raw_params=params,
        card={**donor.card, **shapes, "borrowed_from": donor.name},
    )


@lru_cache(maxsize=1)
def _donors() -> tuple[ModelSpec, ...]:
    """Dense, unquantized cards with distinct shapes (of equal shapes the shortest name: llama-3-70b
    rather than deepseek-r1-distill-llama-70b)."""
    seen, out = set(), []
    for name in sorted(catalog(), key=lambda n: (len(n), n)):
        spec = card_spec(name)
        key = (spec.family, spec.hidden_size, spec.num_layers, spec.intermediate_size, spec.vocab_size)
        if spec.is_moe or spec.quantization or key in seen:
            continue
        seen.add(key)
        out.append(spec)
    return tuple(out)


def nearest_donor(params: int) -> ModelSpec:
    return min(_donors(), key=lambda s: abs(math.log(s.total_params / params)))


def borrowed_architecture(name: str, params: int) -> ModelSpec:
    """A raw parameter count: the nearest dense card's family scaled to that size."""
    return scaled_architecture(nearest_donor(params), params, name=name)
