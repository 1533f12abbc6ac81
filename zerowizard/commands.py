"""The headless subcommands: estimate, validate, --export, gpus, presets (printing with rich)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from .core.analysis import Analysis, analyze, estimate_json
from .core.plan import Plan
from .core.problems import Problem, sort_problems
from .core.text import fmt_cc, gib_figure

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
        con.print("★ recommended  ▶ the plan's choice")
        from rich.markup import escape

        con.print(
            f"[bold]recommended:[/] {escape(a.recommendation_reason)}"
            + (f"\n  {escape(a.recommended.variant.flags)}" if a.recommended else "")
        )
    print_problems(a.problems, con)
    return 2 if a.errors else 0


def cmd_gpus(args) -> int:
    from .core.hardware import CATALOG, detect_gpus, host_ram_bytes

    det = None if args.catalog else detect_gpus()
    if args.json:
        if args.catalog:
            print(
                json.dumps(
                    [
                        {
                            "name": g.name,
                            "memory_bytes": g.memory_bytes,
                            "compute_capability": fmt_cc(g.compute_capability),
                        }
                        for g in CATALOG.values()
                    ],
                    indent=2,
                )
            )
        else:
            print(
                json.dumps(
                    {
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
                            }
                            for g in det.gpus
                        ],
                    },
                    indent=2,
                )
            )
        return 0
    from rich.table import Table

    con = _console()
    if det is not None:
        con.print(f"host RAM {gib_figure(host_ram_bytes())} GiB; NVIDIA driver {det.driver or '-'}")
        if det.gpus:
            t = Table()
            for c in ("index", "name", "memory GiB", "free GiB", "compute capability"):
                t.add_column(c)
            for g in det.gpus:
                t.add_row(
                    str(g.index),
                    g.name,
                    gib_figure(g.memory_bytes),
                    gib_figure(g.free_bytes),
                    fmt_cc(g.compute_capability),
                )
            con.print(t)
            return 0
        con.print(
            f"[yellow]{det.note}[/]; plans use the CPU accelerator unless you name GPUs "
            "(--gpus 8xA100-80GB). The catalog:"
        )
    t = Table()
    for c in ("name", "memory GiB", "compute capability", "bf16"):
        t.add_column(c)
    for g in CATALOG.values():
        t.add_row(
            g.name,
            gib_figure(g.memory_bytes),
            fmt_cc(g.compute_capability),
            "yes" if g.compute_capability >= (8, 0) else "no (fp16)",
        )
    con.print(t)
    return 0


def _size(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 0.995e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def cmd_presets() -> int:
    from rich.table import Table

    from .core.dsconfig import load_base, zero_settings
    from .core.modelspec import catalog, family_label, family_order, resolve_model
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
