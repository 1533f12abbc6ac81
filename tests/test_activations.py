"""The activation term against the tensors measured on the CPU (benchmarks/fidelity_peak.py), and
how it combines with the model states: the step's peak is the larger of the activation peak (beside
the weights and optimizer states) and the states' own peak, not their sum."""

from dataclasses import replace

import pytest

from zerowizard.core.memory import Variant, Workload, activations, estimate_variant, zero_phases

# the harness's Llama: hidden 256, MLP 704, 8 heads of 32, 4 KV heads, vocab 8192
H, F, A, KV, V = 256, 704, 8, 128, 8192


def _w(layers=2, method="full", s=512, b=1, ckpt=False, dropout=0.0, cpu=True, **kw) -> Workload:
    per_rank = layers * (7 * H + 2 * H + 2 * KV + 3 * F)
    return Workload(
        total_params=7_000_000,
        trainable_params=7_000_000 if method == "full" else 8 * per_rank,
        method=method,
        quantizable_params=0,
        largest_layer_params=V * H,
        largest_linear_params=V * H,
        hidden_size=H,
        intermediate_size=F,
        num_layers=layers,
        num_heads=A,
        kv_dim=KV,
        q_dim=H,
        vocab_size=V,
        micro_batch=b,
        seq_len=s,
        grad_checkpointing=ckpt,
        precision="bf16",
        lora_dropout=dropout,
        is_cpu=cpu,
        world_size=2,
        **kw,
    )


def per_layer(**kw) -> int:
    return activations(_w(layers=3, **kw)) - activations(_w(layers=2, **kw))


def test_a_full_layer_keeps_what_was_measured():
    # 11,304 bytes per token and layer, measured (s 512, micro batch 1 and 4 alike without padding)
    assert per_layer() == 512 * (16 * H + 4 * H + 4 * KV + 8 * F + 4 * A + 8) == 512 * 11_304


def test_a_lora_layer_keeps_what_was_measured():
    assert per_layer(method="lora") == 512 * 10_392  # dropout 0: the adapters share the norm outputs
    # dropout keeps a dropped copy and its noise (2+2 bytes on the CPU) of every adapter's input
    assert per_layer(method="lora", dropout=0.1) == 512 * 16_920
    cuda = per_layer(method="lora", dropout=0.1, cpu=False)  # CUDA's dropout mask is a bool
    assert cuda == 512 * (16_920 - (5 * H + H + F))


def test_padding_expands_kv_and_keeps_a_mask_per_layer():
    # micro batch 4 is padded: +4(q - kv) + 2s per token and layer (measured: +1536 at s 512)
    assert per_layer(b=4) == 4 * 512 * (11_304 + 4 * (H - KV) + 2 * 512)


def test_the_loss_peaks_at_three_fp32_copies_of_the_logits():
    one, two = activations(_w(layers=2)), activations(_w(layers=2, s=1024))
    assert two - 2 * one == 0  # linear in tokens without padding
    assert activations(_w(layers=0)) == 512 * (8 * H + 12 * V)  # the final norm, lm_head input, loss


def test_checkpointing_peaks_at_the_loss_or_one_recomputed_layer():
    big_v = activations(_w(layers=3, ckpt=True))
    assert big_v == 512 * (3 * 2 * H + 8 * H + 12 * V)  # the loss's 12V beats one layer here
    small = replace(_w(layers=3, ckpt=True), vocab_size=512)
    layer = 11_304 + 2 * H + 2 * F + 4 * 512
    assert activations(small) == 512 * (3 * 2 * H + 8 * H + layer)  # measured within 1%


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_the_peak_is_the_larger_of_activations_and_the_states_peak(stage):
    w, v = _w(layers=4, s=512, b=4), Variant(stage)
    e = estimate_variant(w, v).per_gpu
    back = zero_phases(w, v)["backward"]
    states_peak = e.weights + e.grads + e.optimizer + e.buffers
    held = back["weights"][0] + back["optimizer"][0]  # no gradient of this step exists yet
    assert states_peak + e.activations == max(states_peak, held + activations(w))
    tiny = replace(w, seq_len=8, micro_batch=1)  # activations smaller than the gradients to come
    assert estimate_variant(tiny, v).per_gpu.activations == 0


def test_zero3_keeps_its_gradient_partition_beside_the_activations():
    w = _w(layers=4, s=512, b=4)
    e = estimate_variant(w, Variant(3)).per_gpu
    back = zero_phases(w, Variant(3))["backward"]
    held = sum(back[k][0] for k in ("weights", "optimizer", "grads", "gradbuf", "transient"))
    states_peak = e.weights + e.grads + e.optimizer + e.buffers
    assert states_peak + e.activations == max(states_peak, held + activations(w))
