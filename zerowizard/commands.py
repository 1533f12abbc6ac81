"""The headless subcommands: estimate, validate, --export, gpus, presets (printing with rich)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .core.analysis import Analysis, analyze, estimate_json
from .core.problems import Problem, errors, sort_problems
from .core.text import fmt_cc, gib_figure

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 120  # a pipe or a log file: wide enough for the table
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def print_problems(problems, console=None) -> None:
    console = console or _console()
    for p in sort_problems(problems):
        fix = f"\n    fix: {p.fix}" if p.fix else ""
        console.print(f"[{STYLE[p.severity]}]{p.severity:7s}[/] [bold]{p.field}[/]: {p.message}{fix}", markup=True)


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


def cmd_estimate(args, plan) -> int:
    a = analyze(plan)
    if args.json:
        print(json.dumps(estimate_json(a), indent=2))
        return 2 if a.model is None else 0
    from rich.table import Table

    con = _console()
    con.print(_header(a))
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
        con.print(
            f"[bold]recommended:[/] {a.recommendation_reason}"
            + (f"\n  {a.recommended.variant.flags}" if a.recommended else "")
        )
    print_problems(a.problems, con)
    return 2 if a.model is None else 0


def cmd_export(args, plan) -> int:
    from .core.dsconfig import write_json_atomic, write_text_atomic
    from .core.plan import dump_plan

    a = analyze(plan)
    err = _console(stderr=True)
    if a.errors:
        print_problems(a.errors, err)
        target = args.export or args.save_plan
        err.print(f"[red]not written:[/] {target} (fix the errors above; an existing file is left as it was)")
        return 2
    for target in (args.export, args.save_plan):
        if target and Path(target).is_dir():
            err.print(f"[red]error:[/] {target} is a directory; give a file name")
            return 2
        if target and not Path(target).resolve().parent.is_dir():
            err.print(f"[red]error:[/] the folder of {target} does not exist; create it first")
            return 2
    out = _console()
    try:
        if args.export:
            write_json_atomic(args.export, a.ds.config)
            out.print(f"wrote {args.export} (base: {a.ds.base}, ZeRO-{a.zero.stage}, {a.precision})")
            for o in a.ds.overrides:
                tag = {"override": "[yellow]override[/]", "auto": "auto", "removed": "[yellow]removed[/]"}[o.kind]
                out.print(f"  {tag} {o.describe()}")
        if args.save_plan:
            write_text_atomic(args.save_plan, dump_plan(plan))
            out.print(f"wrote {args.save_plan}")
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write: {exc.strerror or exc} ({exc.filename or ''})")
        return 1
    warnings = [p for p in a.problems if p.severity == "warning"]
    if warnings:
        print_problems(warnings, err)
    return 0


def _looks_like_json(path: Path) -> bool:
    if path.suffix.lower() == ".json":
        return True
    if path.suffix.lower() in (".yaml", ".yml"):
        return False
    try:
        return path.read_text(encoding="utf-8", errors="replace").lstrip().startswith("{")
    except OSError:
        return False


def cmd_validate(args) -> int:
    from .core.dsconfig import DsConfigError, build, deepspeed_check, read_json
    from .core.dsrules import check_ds_config
    from .core.plan import PlanError, replace
    from .planflags import plan_from_args

    path = Path(args.file)
    con = _console()
    if not path.is_file():
        print(f"zerowizard: error: validate: no such file {str(path)!r}", file=sys.stderr)
        return 2
    if _looks_like_json(path):
        try:
            cfg = read_json(path, field=str(path))
        except DsConfigError as exc:
            print(f"zerowizard: error: {exc}", file=sys.stderr)
            return 2
        plan = plan_from_args(args)
        plan = replace(plan, deepspeed=str(path))
        a = analyze(plan)
        hw = a.hardware
        problems = check_ds_config(
            cfg, world_size=hw.world_size, compute_capability=hw.compute_capability, is_cpu=hw.is_cpu
        )
        overrides = build(
            plan,
            precision=a.precision,
            world_size=hw.world_size,
            hidden_size=a.model.hidden_size if a.model else None,
            base=cfg,
        ).overrides
        ds_errors = []
        if args.deepspeed_check:
            built = build(plan, precision=a.precision, world_size=hw.world_size, base=cfg).config
            ds_errors = deepspeed_check(built, hw.world_size)
            problems += [Problem("error", "deepspeed", e, "fix the field DeepSpeed names") for e in ds_errors]
        if args.json:
            print(
                json.dumps(
                    {
                        "file": str(path),
                        "kind": "deepspeed",
                        "problems": [p.as_dict() for p in sort_problems(problems)],
                        "overrides": [
                            {"key": o.key, "old": _j(o.old), "new": _j(o.new), "kind": o.kind, "why": o.why}
                            for o in overrides
                        ],
                    },
                    indent=2,
                )
            )
        else:
            con.print(f"{path}: DeepSpeed JSON as written, world size {hw.world_size}")
            print_problems(problems, con)
            if not problems:
                con.print("[green]no problems[/]")
            if overrides:
                con.print("\n[bold]the plan would change (zerowizard --export):[/]")
                for o in overrides:
                    con.print(f"  {o.describe()}")
            if args.deepspeed_check and not ds_errors:
                con.print("[green]DeepSpeed's own parser accepts the exported config[/]")
        return 2 if errors(problems) else 0
    try:
        args.plan = str(path)
        plan = plan_from_args(args)
    except PlanError as exc:
        if args.json:
            print(
                json.dumps(
                    {
                        "file": str(path),
                        "kind": "plan",
                        "problems": [
                            {
                                "severity": "error",
                                "field": e.split(":", 1)[0],
                                "message": e.split(":", 1)[-1].strip(),
                                "fix": "",
                            }
                            for e in exc.errors
                        ],
                    },
                    indent=2,
                )
            )
        else:
            for e in exc.errors:
                con.print(f"[bold red]error  [/] {e}")
        return 2
    a = analyze(plan)
    if args.json:
        print(json.dumps({"file": str(path), "kind": "plan", "problems": [p.as_dict() for p in a.problems]}, indent=2))
    else:
        con.print(f"{path}: plan")
        con.print(_header(a))
        print_problems(a.problems, con)
    return 2 if a.errors else 0


def _j(v):
    return v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else None


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
