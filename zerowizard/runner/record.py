"""Prediction in, measurement out: the time model's figures for a run, and the run's own afterwards.

:func:`predicted` goes into runner.json and the start event (beside ``predicted_per_gpu_bytes``);
:func:`record` reads a finished run's events.jsonl and adds its measured step time and per-rank peak
memory to the calibration store (:mod:`zerowizard.core.calibration`), which later estimates on this
machine and device use ("calibrated from 3 runs on this machine").
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

WARMUP_STEPS = 2  # the first optimizer steps (allocation, first collectives) are left out


def predicted(analysis: Any) -> dict:
    """The selected variant's predicted step, for runner.json and the start event."""
    sel = getattr(analysis, "selected", None)
    t = analysis.times.get(sel.variant) if sel is not None else None
    if t is None:
        return {}
    b = analysis.plan.batch
    per_step = t.tokens_per_s_per_gpu * t.step_s * analysis.hardware.world_size  # tokens, not padding
    return {
        "predicted_step_s": round(t.step_s, 6),
        "predicted_tokens_per_s": round(t.tokens_per_s_per_gpu * analysis.hardware.world_size, 3),
        "predicted_tokens_per_s_per_gpu": round(t.tokens_per_s_per_gpu, 3),
        "predicted_source": t.source,
        "formula_step_s": round(t.step_s / (t.correction or 1.0), 6),
        "predicted_tokens_per_step": round(per_step)
        if per_step > 0
        else b.micro_batch * b.seq_len * b.grad_accum * analysis.hardware.world_size,
    }


def measured(events: list[dict]) -> dict | None:
    """Median seconds per optimizer step after the warm-up, tokens per step, per-rank peak memory."""
    steps = [e for e in events if e.get("event") == "step" and isinstance(e.get("elapsed_s"), (int, float))]
    steps = [e for e in steps if e.get("step", 0) > WARMUP_STEPS]
    per_step, tokens = [], []
    for a, b in itertools.pairwise(steps):
        ds = b["step"] - a["step"]
        if ds > 0 and b["elapsed_s"] > a["elapsed_s"]:
            per_step.append((b["elapsed_s"] - a["elapsed_s"]) / ds)
            if isinstance(a.get("tokens_seen"), int) and isinstance(b.get("tokens_seen"), int):
                tokens.append((b["tokens_seen"] - a["tokens_seen"]) / ds)
    if not per_step:
        return None
    peaks: list[int] = []
    for e in events:
        if e.get("event") != "step":
            continue
        for r, m in enumerate(e.get("memory_bytes") or []):
            if isinstance(m, int):
                peaks.extend([0] * (r + 1 - len(peaks)))
                peaks[r] = max(peaks[r], m)
    return {
        "measured_step_s": statistics.median(per_step),
        "measured_tokens_per_step": statistics.median(tokens) if tokens else None,
        "peak_memory_bytes": peaks,
        "steps_measured": len(per_step),
    }


def record(workdir: Path, analysis: Any, printer: Any = None) -> Path | None:
    """Add a finished run to the calibration store; None when it is too short to measure.

    The prediction is made on the data the run reads, so the tokens it assumed and the tokens the
    run processed agree to within the estimate of token lengths; what is left is scaled away. A run
    whose tokens differ by more than ``calibration.TOKENS_AGREE`` was not the run the formula
    described (a prediction on other data): it is not recorded, since it would skew every later
    estimate on the machine."""
    from zerowizard.core import calibration
    from zerowizard.runner.events import read_events
    from zerowizard.runner.runspec import read_spec

    try:
        spec: dict = dict(read_spec(workdir))
    except (OSError, ValueError):
        return None
    got = measured(read_events(workdir / "events.jsonl"))
    formula = spec.get("formula_step_s")
    sel = getattr(analysis, "selected", None)
    if got is None or not formula or sel is None:
        return None
    step = got["measured_step_s"]
    tokens, want = got["measured_tokens_per_step"], spec.get("predicted_tokens_per_step")
    if tokens and want and tokens > 0:
        if not calibration.tokens_agree(tokens, want):
            if printer is not None:
                printer.notice(
                    f"step time {got['measured_step_s']:.3f} s measured over {tokens:.0f} tokens a step, but the "
                    f"prediction assumed {want}: not recorded for later estimates"
                )
            return None
        step *= want / tokens  # compute grows with tokens
    hw = analysis.hardware
    run = {
        "variant": calibration.variant_key(sel.variant),
        "world_size": hw.world_size,
        "gpus_per_node": hw.gpus_per_node,
        "model": analysis.plan.model.name,
        "method": analysis.plan.method.type,
        "precision": analysis.precision,
        "formula_step_s": formula,
        "measured_step_s": step,
        "measured_step_s_raw": got["measured_step_s"],
        "measured_tokens_per_step": tokens,
        "predicted_tokens_per_step": want,
        "peak_memory_bytes": got["peak_memory_bytes"],
        "predicted_per_gpu_bytes": spec.get("predicted_per_gpu_bytes"),
        "workdir": str(workdir),
    }
    path = calibration.record_run(calibration.device_key(hw), run)
    if printer is not None:
        printer.notice(
            f"step time {got['measured_step_s']:.3f} s measured (predicted {_seconds(spec.get('predicted_step_s'))}); "
            f"recorded for later estimates on this machine ({path})"
        )
    return path


def _seconds(x: object) -> str:
    return f"{x:.3f} s" if isinstance(x, (int, float)) else "unknown"
