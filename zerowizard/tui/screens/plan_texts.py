"""The plan screen's short texts, from an analysis: hardware, model, recommendation."""

from __future__ import annotations

from rich.text import Text

from zerowizard.core.analysis import Analysis
from zerowizard.core.hardware import Detection
from zerowizard.core.text import fmt_cc, fmt_gib

from ..widgets.memory_bars import secs


def fmt_duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def count(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def nvml_line(det: Detection) -> str:
    """'NVML: 8 × NVIDIA H100 80GB HBM3 (79.6 GiB)', or why none is visible (hover for the detail)."""
    if not det.gpus:
        return "NVML: no GPU visible"
    names = {(g.name, g.memory_bytes) for g in det.gpus}
    if len(names) == 1:
        name, mem = names.pop()
        return f"NVML: {len(det.gpus)} × {name} ({fmt_gib(mem)})"
    return "NVML: " + ", ".join(g.name for g in det.gpus)


def hardware_text(a: Analysis, det: Detection) -> str:
    """Two short lines (the bars' header has the memory and the host RAM)."""
    hw = a.hardware
    cc = f", cc {fmt_cc(hw.compute_capability)}" if hw.compute_capability else ""
    nodes = f" × {hw.nodes} nodes" if hw.nodes > 1 else ""
    return f"{nvml_line(det)}\n→ {hw.gpus_per_node} × {hw.name}{nodes}{cc}"


def model_text(a: Analysis) -> str:
    if a.model is None:
        return f"✖ {a.model_error}"
    pct = 100 * a.params_trainable / max(a.params_total, 1)
    how = "auto" if a.plan.precision == "auto" else "set"
    if a.params_trainable >= a.params_total:
        trainable = "all trainable"
    else:
        trainable = f"{count(a.params_trainable)} trainable {pct:.2g}%"
    return f"{count(a.params_total)} · {trainable}\nprecision → {a.precision} ({how})"


def recommend_text(a: Analysis) -> Text:
    """'▶ ZeRO-2  36.4 GiB  ETA 2h03m · 1.11s/step  the plan' over
    '★ ZeRO-1  47.1 GiB  fastest that fits · ^g uses it' (ETA and step time: the time model's)."""
    sel, rec = a.selected, a.recommended
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append("▶ ", "bold")
    out.append(f"{sel.variant.label}  {fmt_gib(sel.per_gpu.total)}" if sel else "?", "bold")
    eta = getattr(a, "eta_s", None)  # the time model (zerowizard.core.speed), where it is there
    if eta:
        out.append(f"  ETA {fmt_duration(eta)}", "bold")
    t = (getattr(a, "times", None) or {}).get(sel.variant) if sel else None
    if t is not None:
        out.append(f" · {secs(t.step_s)}/step", "dim")
    out.append("  the plan", "dim")
    if rec is None:
        out.append("\n✖ " + a.recommendation_reason, "#ff6b6b")
        return out
    fastest = getattr(a, "fastest", None)
    why = "fastest that fits" if fastest is not None and fastest.variant == rec.variant else "recommended"
    out.append("\n★ ", "bold #61d68a")
    out.append(f"{rec.variant.label}  {fmt_gib(rec.per_gpu.total)}", "bold")
    if sel is not None and rec.variant == sel.variant:
        out.append(f"  {why}: the plan uses it", "dim")
    else:
        out.append(f"  {why} · ^g uses it", "dim")
    return out
