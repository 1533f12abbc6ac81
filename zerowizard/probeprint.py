"""The probe's result as a rich table: measured beside predicted, the winner starred, and what to do."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from zerowizard.core.text import fmt_gib


def _gib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**30:.2f}"


def _s(x: float | None) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def _peak(values: list[int | None]) -> int | None:
    return max((v for v in values if v is not None), default=None)


def capacity_words(result: Any) -> str:
    if result.limited:
        return "the memory limit"
    return "the device" if result.accelerator == "cuda" else "a rank's share of host RAM"


def rows(result: Any) -> list[list[str]]:
    """One row per candidate: #, candidate, status, peak measured / predicted GiB, step s measured /
    predicted, tokens/s per GPU, the candidate's wall time."""
    out = []
    for i, r in enumerate(result.results):
        c, m, est = r.candidate, r.measured, r.candidate.predicted
        status = r.status if r.fits or r.status != "ok" else "ok, tight"
        peak = _gib(_peak(m.device_peak_bytes))
        if r.status == "oom" and result.limited:
            peak = f">{_gib(result.capacity_bytes)}"  # it reached the limit
        out.append(
            [
                f"{'★' if i == result.winner else ''}{i}",
                c.label,
                status,
                f"{peak} / {_gib(est.per_gpu.total if est else None)}",
                f"{_s(m.step_s)} / {_s(c.predicted_step_s)}",
                "-" if m.tokens_per_s_per_gpu is None else f"{m.tokens_per_s_per_gpu:,.0f}",
                _s(m.wall_s),
            ]
        )
    return out


HEADERS = ["#", "candidate", "status", "peak GiB meas / pred", "step s meas / pred", "tok/s/GPU", "wall s"]


def print_result(result: Any, stream: TextIO | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = stream or sys.stdout
    console = Console(file=out, width=None if out.isatty() else 120)
    cap = (
        "the memory limit" if result.limited else "the device" if result.accelerator == "cuda" else "a rank's RAM share"
    )
    table = Table(
        title=f"probe: {len(result.results)} candidates, {result.world_size} ranks, {result.accelerator}; "
        f"capacity {fmt_gib(result.capacity_bytes)} per rank ({cap}), {result.headroom:.0%} headroom",
        title_justify="left",
    )
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("candidate", "status") else "right")
    styles = {"ok": "", "oom": "red", "failed": "yellow"}
    for row, r in zip(rows(result), result.results, strict=True):
        table.add_row(*row, style=styles.get(r.status, ""))
    console.print(table)
    for i, r in enumerate(result.results):
        if r.reason:
            console.print(f"  {i}: {r.status}: {r.reason}", highlight=False, markup=False)
    kind = {"rss_peak": "peak resident set", "cuda_max_reserved": "CUDA peak reserved + context"}
    peak_kinds = {r.measured.peak_kind for r in result.results if r.measured.peak_kind}
    if peak_kinds:
        console.print(f"peak: {', '.join(kind.get(k, k) for k in sorted(peak_kinds))} per rank (the largest rank)")
    if result.cancelled:
        console.print("[yellow]cancelled: the remaining candidates were not run")
    w = result.winner_result
    if w is not None:
        v, c = w.candidate.variant, w.candidate
        console.print(
            f"[bold green]winner[/]: {c.label}: {_s(w.measured.step_s)} s a step, "
            f"peak {_gib(_peak(w.measured.device_peak_bytes))} GiB of {fmt_gib(result.capacity_bytes)}",
            highlight=False,
        )
        console.print(
            f"  use: {v.flags} --micro-batch {c.micro_batch} --grad-accum {c.grad_accum}  (or --apply PLAN.yaml)",
            highlight=False,
            markup=False,
        )
        return
    console.print(
        f"[bold red]nothing fits[/] in {fmt_gib(result.capacity_bytes)} per rank ({cap}) with "
        f"{result.headroom:.0%} headroom",
        highlight=False,
    )
    if result.fix is not None:
        console.print(f"  cheapest change (memory model): {result.fix.description}", highlight=False, markup=False)
    else:
        console.print(
            "  the memory model finds no change that fits: more or larger devices, LoRA/QLoRA, or a shorter sequence",
            highlight=False,
        )
