"""``zerowizard --export DS.json``, ``--save-plan PLAN.yaml``, ``--export-sbatch JOB.sh``: one
export, whichever of them are given, written all together or not at all.

Exit codes: 0 written; 2 bad input (a plan with errors, an empty name, a directory, a device or
FIFO, a missing folder, a bad sbatch value): nothing written; 1 the disk refused (full, read-only,
no permission): nothing written either.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .commands import _console, print_problems
from .core.analysis import analyze
from .core.plan import Plan, dump_plan
from .core.writer import Output, resolve_target, write_all


def cmd_export(args: argparse.Namespace, plan: Plan) -> int:
    from .slurm.sbatch import SbatchError, prepare_sbatch

    err = _console(stderr=True)
    named = [(flag, getattr(args, dest)) for flag, dest in _TARGETS if getattr(args, dest, None) is not None]
    for flag, target in named:
        resolve_target(target, flag)  # InputError (exit 2) before any work
    a = analyze(plan)
    if a.errors:
        print_problems(a.errors, err)
        shown = ", ".join(str(t) for _, t in named)
        err.print(f"not written: {shown} (fix the errors above; an existing file is left as it was)", markup=False)
        return 2
    assert a.ds is not None  # no errors: the base was read
    outputs: list[Output] = []
    if args.export is not None:
        outputs.append(Output(args.export, json.dumps(a.ds.config, indent=2, allow_nan=False) + "\n"))
    if args.save_plan is not None:
        outputs.append(Output(args.save_plan, dump_plan(plan)))
    job = None
    if args.export_sbatch is not None:
        try:
            job = prepare_sbatch(
                plan,
                args.export_sbatch,
                partition=getattr(args, "partition", None),
                time=getattr(args, "time", None),
                account=getattr(args, "account", None),
            )
        except SbatchError as exc:
            print_problems(exc.problems, err)
            err.print(exc.message, markup=False)
            return 2
        outputs.extend(job.outputs)
    try:
        write_all(outputs, named[0][0])
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        err.print(f"error: cannot write: {exc.strerror or exc}{where}; nothing was written", markup=False)
        return 1
    _report(args, a, job, plan, err)
    return 0


_TARGETS = (("--export", "export"), ("--save-plan", "save_plan"), ("--export-sbatch", "export_sbatch"))


def _report(args: argparse.Namespace, a: Any, job: Any, plan: Plan, err: Any) -> None:
    from rich.markup import escape

    out = _console()
    if args.export is not None:
        out.print(f"wrote {args.export} (base: {a.ds.base}, ZeRO-{a.zero.stage}, {a.precision})", markup=False)
        for o in a.ds.overrides:
            tag = {"override": "[yellow]override[/]", "auto": "auto", "removed": "[yellow]removed[/]"}[o.kind]
            out.print(f"  {tag} {escape(o.describe())}")
    if args.save_plan is not None:
        out.print(f"wrote {args.save_plan}", markup=False)
    if job is not None:
        from .slurm.sbatch import describe_written

        describe_written(job, plan, out, err)
        return
    warnings = [p for p in a.problems if p.severity == "warning"]
    if warnings:
        print_problems(warnings, err)
