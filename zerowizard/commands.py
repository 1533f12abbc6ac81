"""The headless subcommands: estimate, validate, --export, gpus, presets (printing with rich)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .core.analysis import Analysis, analyze, estimate_json
from .core.memory import Variant
from .core.plan import Plan
from .core.problems import Problem, sort_problems
from .core.speed import StepTime
from .core.text import fmt_cc, gib_figure

if TYPE_CHECKING:
    from .core.hardware import Detection

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 120  # a pipe or a log file: wide enough for the table
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def print_problems(problems: Iterable[Problem], console: Any = None) -> None:
    """One line per problem (and its fix), errors first. The field, message and fix may quote
    the user's values: they are escaped, never read as rich markup."""
    from rich.markup import escape

    console = console or _console()
    for p in sort_problems(problems):
        fix = f"\n    fix: {escape(p.fix)}" if p.fix else ""
        console.print(
            f"[{STYLE[p.severity]}]{p.severity:7s}[/] [bold]{escape(p.field)}[/]: {escape(p.message)}{fix}",
            markup=True,
        )


def _header(a: Analysis) -> str:
    hw, m = a.hardware, a.model
    gpu = "CPU ranks" if hw.is_cpu else f"{hw.name} ({gib_figure(hw.memory_bytes)} GiB)"
    cc = f", cc {fmt_cc(hw.compute_capability)}" if hw.compute_capability else ""
    model = (
        f"{m.name}: {a.params_total / 1e9:.2f}B params, {a.params_trainable / 1e6:,.1f}M trainable"
        if m
        else "model unknown"
    )
    meth = a.plan.method
    lora = f" r={meth.lora_r}" if meth.type in ("lora", "qlora") else ""
    if meth.type == "freeze":
        lora = f" (last {meth.freeze_layers} layers)"
    b = a.plan.batch
    return (
        f"{hw.nodes} node(s) x {hw.gpus_per_node} x {gpu}{cc} = world size {hw.world_size}\n"
        f"{model}; {meth.type}{lora}; {a.precision} ({a.precision_reason})\n"
        f"micro batch {b.micro_batch} x accumulation {b.grad_accum}, {b.seq_len} tokens, "
        f"gradient checkpointing {'on' if b.grad_checkpointing else 'off'}"
    )


def cmd_estimate(args: argparse.Namespace, plan: Plan) -> int:
    """The estimate (table or --json). Exit 0 when the plan has no errors, 2 when it has any:
    the estimate is printed either way, the errors below it."""
    a = analyze(plan)
    if args.json:
        print(json.dumps(estimate_json(a), indent=2))
        return 2 if a.errors else 0
    from rich.table import Table

    con = _console()
    con.print(_header(a), markup=False)
    if a.estimates:
        from rich import box

        t = Table(
            title="per GPU, GiB" if not a.hardware.is_cpu else "per rank, GiB",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for col in (
            "",
            "stage",
            "offload opt/param",
            "weights",
            "grads",
            "optim",
            "activ",
            "buffers",
            "overhead",
            "total",
            "host/node",
            "fits",
        ):
            t.add_column(col, justify="left" if col in ("", "stage", "offload opt/param") else "right", no_wrap=True)
        sel = a.selected.variant if a.selected else None
        rec = a.recommended.variant if a.recommended else None
        for e in a.estimates:
            b = e.per_gpu
            mark = ("★" if e.variant == rec else " ") + ("▶" if e.variant == sel else " ")
            v = e.variant
            off = (
                "-"
                if v.offload_optimizer == v.offload_param == "none"
                else f"{v.offload_optimizer.replace('none', '-')}/{v.offload_param.replace('none', '-')}"
            )
            fits = "[green]yes[/]" if e.fits else ("[red]no (host)[/]" if e.fits_gpu else "[red]no[/]")
            t.add_row(
                mark,
                f"ZeRO-{v.stage}",
                off,
                gib_figure(b.weights),
                gib_figure(b.grads),
                gib_figure(b.optimizer),
                gib_figure(b.activations),
                gib_figure(b.buffers),
                gib_figure(b.overhead),
                f"[bold]{gib_figure(b.total)}[/]",
                gib_figure(e.per_node_host),
                fits,
            )
        con.print(t)
        con.print(_speed_table(a, sel, rec))
        con.print("★ recommended  ▶ the plan's choice   slower: x the step time of the fastest that fits")
        con.print(_speed_line(a))
        from rich.markup import escape

        con.print(
            f"[bold]recommended:[/] {escape(a.recommendation_reason)}"
            + (f"\n  {escape(a.recommended.variant.flags)}" if a.recommended else "")
        )
    print_problems(a.problems, con)
    return 2 if a.errors else 0


def _speed_table(a: Analysis, sel: Variant | None, rec: Variant | None) -> Any:
    """Per variant: the predicted optimizer step, tokens/s per GPU, the slowdown and where time goes."""
    from rich import box
    from rich.table import Table

    from .core.speed import fmt_seconds

    best = a.times[a.fastest.variant].step_s if a.fastest and a.fastest.variant in a.times else None
    t = Table(title="per optimizer step (predicted)", title_justify="left", box=box.SIMPLE_HEAD)
    cols = ("", "stage", "offload opt/param", "fits", "step", "tok/s/GPU", "slower", "compute", "comm", "offload")
    for col in (*cols, "ETA"):
        t.add_column(col, justify="left" if col in cols[:4] else "right", no_wrap=True)
    for e in a.estimates:
        v, tm = e.variant, a.times.get(e.variant)
        if tm is None:
            continue
        mark = ("★" if v == rec else " ") + ("▶" if v == sel else " ")
        off = (
            "-"
            if v.offload_optimizer == v.offload_param == "none"
            else f"{v.offload_optimizer.replace('none', '-')}/{v.offload_param.replace('none', '-')}"
        )

        def share(x: float, tm: StepTime = tm) -> str:
            return f"{x / tm.step_s:.0%}" if tm.step_s > 0 else "-"

        t.add_row(
            mark,
            f"ZeRO-{v.stage}",
            off,
            "[green]yes[/]" if e.fits else "[red]no[/]",
            fmt_seconds(tm.step_s),
            f"{tm.tokens_per_s_per_gpu:,.0f}",
            f"{tm.step_s / best:.1f}x" if best and e.fits else "-",
            share(tm.compute_s),
            share(tm.comm_s),
            share(tm.offload_s),
            fmt_seconds(a.total_steps * tm.step_s) if a.total_steps else "-",
        )
    return t


def _speed_line(a: Analysis) -> str:
    """Where the step times come from, and the ETA of the plan's variant."""
    from .core.speed import fmt_seconds

    t = next(iter(a.times.values()), None)
    source = t.source if t is not None else "formula"
    line = f"step times: {source}"
    if a.rates is not None and a.rates.notes:
        line += "; " + "; ".join(a.rates.notes)
    if a.hardware.assumed:
        line += "; assumed: " + ", ".join(a.hardware.assumed)
    if a.eta_s is not None and a.total_steps:
        hours = f" ({a.gpu_hours:,.1f} GPU-hours)" if a.gpu_hours is not None else ""
        steps = f"{a.total_steps:,} optimizer step{'s' if a.total_steps != 1 else ''}"
        line += f"\nETA {fmt_seconds(a.eta_s)} for {steps}{hours}"
    return line


def cmd_gpus(args: argparse.Namespace) -> int:
    from .core.hardware import CATALOG, detect_gpus, host_ram_bytes

    det = None if args.catalog else detect_gpus()
    if args.json:
        print(json.dumps(_catalog_json() if det is None else _detection_json(det), indent=2))
        return 0
    from rich.table import Table

    con = _console()
    if det is not None:
        con.print(f"host RAM {gib_figure(host_ram_bytes())} GiB; NVIDIA driver {det.driver or '-'}")
        if det.gpus:
            t = Table()
            for c in ("index", "name", "memory GiB", "free GiB", "compute capability", "catalog"):
                t.add_column(c)
            for g in det.gpus:
                t.add_row(
                    str(g.index),
                    g.name,
                    gib_figure(g.memory_bytes),
                    gib_figure(g.free_bytes),
                    fmt_cc(g.compute_capability),
                    _catalog_name(g) or "- (not in the catalog)",
                )
            con.print(t)
            return 0
        con.print(
            f"[yellow]{det.note}[/]; plans use the CPU accelerator unless you name GPUs "
            "(--gpus 8xA100-80GB). The catalog:"
        )
    t = Table()
    for c in ("name", "memory GiB", "cc", "bf16", "TFLOPS", "memory GB/s", "link", "link GB/s", "PCIe"):
        t.add_column(c, justify="left" if c in ("name", "bf16", "link") else "right")
    for m in CATALOG.values():
        t.add_row(
            m.name,
            gib_figure(m.memory_bytes),
            fmt_cc(m.compute_capability),
            "yes" if m.compute_capability >= (8, 0) else "no (fp16)",
            f"{m.bf16_tflops or m.fp16_tflops:g}",
            f"{m.memory_gbs:g}",
            m.interconnect,
            f"{m.link_gbs:g}",
            f"gen{m.pcie_gen}",
        )
    con.print(t)
    con.print("TFLOPS: dense bf16 (fp16 where there is no bf16) tensor peak; link GB/s: per GPU per direction")
    return 0


def _catalog_json() -> list[dict[str, Any]]:
    """`gpus --catalog --json`: every catalog entry."""
    from .core.hardware import CATALOG

    return [
        {
            "name": g.name,
            "memory_bytes": g.memory_bytes,
            "compute_capability": fmt_cc(g.compute_capability),
            "bf16_tflops": g.bf16_tflops,
            "fp16_tflops": g.fp16_tflops,
            "fp32_tflops": g.fp32_tflops,
            "memory_gbs": g.memory_gbs,
            "interconnect": g.interconnect,
            "link_gbs": g.link_gbs,
            "pcie_gen": g.pcie_gen,
            "aliases": list(g.aliases),
            "nvml": list(g.nvml),
            "source": g.source,
        }
        for g in CATALOG.values()
    ]


def _detection_json(det: Detection) -> dict[str, Any]:
    """`gpus --json`: what NVML sees."""
    from .core.hardware import host_ram_bytes

    return {
        "driver": det.driver,
        "note": det.note,
        "host_ram_bytes": host_ram_bytes(),
        "gpus": [
            {
                "index": g.index,
                "name": g.name,
                "memory_bytes": g.memory_bytes,
                "free_bytes": g.free_bytes,
                "compute_capability": fmt_cc(g.compute_capability),
                "catalog": _catalog_name(g),
            }
            for g in det.gpus
        ],
    }


def _catalog_name(g: Any) -> str | None:
    """The catalog entry NVML's name resolves to (what the time model uses for this card)."""
    from .core.hardware import match_nvml

    m = match_nvml(g.name, g.memory_bytes)
    return m.name if m else None


def _size(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 0.995e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def cmd_presets() -> int:
    from rich.table import Table

    from .core.dsconfig import load_base, zero_settings
    from .core.modelcards import catalog, family_label, family_order, resolve_model
    from .core.plan import PRESET_NAMES, Plan
    from .core.recipes import list_recipes

    con = _console()
    t = Table(title="DeepSpeed presets (--deepspeed NAME)", title_justify="left")
    for c in ("name", "stage", "offload optimizer", "offload param"):
        t.add_column(c)
    for name in PRESET_NAMES:
        zs = zero_settings(Plan(), load_base(name))
        t.add_row(name, str(zs.stage), zs.offload_optimizer, zs.offload_param)
    con.print(t)
    t = Table(title="model cards (--model NAME), by family", title_justify="left")
    for c in ("family", "name", "params", "active", "layers", "hidden", "experts", "vocab", "context"):
        t.add_column(
            c,
            justify="right" if c not in ("family", "name") else "left",
            no_wrap=c != "family",
            max_width=22 if c == "family" else None,
        )
    specs = sorted((resolve_model(name) for name in catalog()), key=lambda s: (family_order(s.family), s.total_params))
    last = None
    for s in specs:
        experts = f"{s.experts_per_token}/{s.num_experts}" if s.is_moe else "-"
        quant = f" ({s.quantization.label})" if s.quantization else ""
        t.add_row(
            family_label(s.family) if s.family != last else "",
            s.name + quant,
            _size(s.total_params),
            _size(s.active_params) if s.is_moe else "",
            str(s.num_layers),
            str(s.hidden_size),
            experts,
            str(s.vocab_size),
            str(s.card.get("max_position_embeddings", "")),
        )
        last = s.family
    con.print(t)
    t = Table(title="recipes (--recipe NAME)", title_justify="left")
    t.add_column("name")
    t.add_column("runs with")
    for r in list_recipes():
        t.add_row(r["name"], r["command"])
    con.print(t)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure this machine's CPU accelerator and store it (zerowizard/runner/calibrate.py)."""
    if args.ranks is not None and args.ranks < 1:
        print("zerowizard: error: --ranks: use 1 or more", file=sys.stderr)
        return 2
    from .runner.calibrate import run_calibration

    con = _console(stderr=args.json)  # --json: stdout is the JSON alone
    con.print("measuring matmuls, attention, a Llama's forward/backward, gloo, AdamW and DeepSpeed steps ...")
    try:
        bench, path = run_calibration(args.ranks, args.quick)
    except (RuntimeError, OSError) as exc:
        print(f"zerowizard: error: calibrate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(bench, indent=2))
        return 0
    coll = bench.get("collectives", {}).get("all_reduce", {})
    con.print(
        f"per rank ({bench['ranks']} ranks x {bench['threads_per_rank']} threads): "
        f"matmuls {bench['flops_per_rank'] / 1e9:.0f} GFLOP/s, attention {bench['attn_flops_per_rank'] / 1e9:.0f} "
        f"GFLOP/s, AdamW {bench['adam_params_per_s'] / 1e6:.0f} M params/s; gloo all-reduce "
        f"{coll.get('bytes_per_s', 0) / 1e9:.2f} GB/s + {coll.get('latency_s', 0) * 1e3:.2f} ms; DeepSpeed "
        f"per module (ZeRO-3) {bench.get('module_s', 0) * 1e6:.0f} us"
    )
    con.print(f"stored in {path}; estimates on this machine now use it")
    return 0
