"""Freeze tuning and a chosen optimizer, for real: two CPU ranks train the tiny Llama with only its
last layers unfrozen, and DeepSpeed builds the optimizer the plan names."""

from __future__ import annotations

import json

import pytest

from .conftest import FAST, check_ok, run_zw, spec_json

pytestmark = pytest.mark.slow  # real training: the CI tier, not the edit loop


def _changed(base_dir, final_dir) -> dict[str, bool]:
    from safetensors.torch import load_file

    base = load_file(str(base_dir / "model.safetensors"))
    final = load_file(str(final_dir / "model.safetensors"))
    # the base is saved in fp32, the run in bf16: a frozen weight is the base rounded to bf16, exactly
    return {name: not final[name].equal(base[name].to(final[name].dtype)) for name in final if name in base}


@pytest.mark.parametrize("stage", [2, 3])
def test_freeze_trains_only_the_last_layers(tmp_path, workdir, stage):
    from pathlib import Path

    from zerowizard.core.freeze import is_trainable

    res = run_zw(
        tmp_path,
        *FAST,
        "--method",
        "freeze",
        "--freeze-layers",
        "2",
        "--optimizer",
        "sgd_momentum",
        "--lr",
        "0.5",  # SGD steps visible in bf16 weights after four steps
        "--deepspeed",
        f"deepspeed_zero{stage}",
        "--output",
        str(workdir),
    )
    check_ok(res, workdir)
    ds = json.loads((workdir / "ds_config.json").read_text())
    assert ds["optimizer"]["type"] == "SGD" and ds["optimizer"]["params"]["momentum"] == 0.9
    changed = _changed(Path(spec_json(workdir)["model_path"]), workdir / "final")
    layers = 4  # the tiny card
    trained = {n for n, c in changed.items() if c}
    expected = {n for n in changed if is_trainable(n, layers, 2)}
    assert trained <= expected  # every other weight is the base's, bit for bit
    # every linear of the last two layers moved (a norm's weight near 1.0 may not, in bf16)
    assert {n for n in expected if "_proj" in n} <= trained
    assert any(".layers.3." in n for n in trained) and not any(".layers.0." in n for n in trained)
