"""``zerowizard validate FILE``: a plan (YAML) or a DeepSpeed JSON, every problem; exit 2 on any error.

For a DeepSpeed JSON, ``--deepspeed-check`` also asks the installed DeepSpeed (in a child
process: a few seconds, so not by default; ``validate`` alone stays well under a second) to
parse the file as HF Trainer passes it and the exported config, and reports which top-level
keys the installed version does not read (:mod:`zerowizard.core.dsverdict`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .commands import _console, _header, print_problems
from .core.analysis import Analysis, analyze
from .core.problems import Problem, errors, sort_problems
from .core.text import excerpt
from .core.validation import InputError, path_kind, read_text


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.file)
    kind = path_kind(path)
    shown = excerpt(str(path), 120)
    if kind == "missing":
        raise InputError(f"validate: no such file {shown}")
    if kind != "file":
        why = kind[len("invalid: ") :] if kind.startswith("invalid") else f"is a {kind}, not a file"
        raise InputError(f"validate: {shown} {why}; give a plan .yaml or a DeepSpeed .json")
    if _looks_like_json(path):
        return _validate_json(args, path)
    return _validate_plan(args, path)


def _looks_like_json(path: Path) -> bool:
    if path.suffix.lower() == ".json":
        return True
    if path.suffix.lower() in (".yaml", ".yml"):
        return False
    try:
        return read_text(path, "validate").lstrip().startswith("{")
    except InputError:
        return False  # the plan reader says what is wrong with it


def _validate_json(args: argparse.Namespace, path: Path) -> int:
    from .core.dsconfig import DsConfigError, read_json
    from .core.dsrules import check_ds_config
    from .core.plan import replace
    from .planflags import plan_from_args

    try:
        cfg = read_json(path, field=str(path))
    except DsConfigError as exc:
        raise InputError(str(exc)) from None
    plan = replace(plan_from_args(args), deepspeed=str(path))
    a = analyze(plan)  # builds the export from this very file, once: shown and checked alike
    hw = a.hardware
    problems = check_ds_config(
        cfg, world_size=hw.world_size, compute_capability=hw.compute_capability, is_cpu=hw.is_cpu
    )
    verdict = None
    if args.deepspeed_check and a.ds is not None:
        problems, verdict = _ask_deepspeed(cfg, a, problems)
    if args.json:
        _print_json_report(path, problems, a, verdict)
    else:
        _print_json_human(path, problems, a, verdict)
    return 2 if errors(problems) else 0


def _ask_deepspeed(cfg: dict, a: Analysis, problems: list[Problem]) -> tuple[list[Problem], Any]:
    from .core.dsverdict import ask, hf_view, verdict_problems

    world = a.hardware.world_size
    assert a.ds is not None
    verdict = ask({"file": hf_view(cfg, a.ds, world), "export": a.ds.config}, world)
    found, judged = verdict_problems(verdict, cfg)
    kept = [p for p in problems if not (p.field in judged and p.message.startswith("unknown key"))]
    return kept + found, verdict


def _overrides(a: Analysis) -> list[dict]:
    if a.ds is None:
        return []
    return [{"key": o.key, "old": _j(o.old), "new": _j(o.new), "kind": o.kind, "why": o.why} for o in a.ds.overrides]


def _print_json_report(path: Path, problems: list[Problem], a: Analysis, verdict: Any) -> None:
    report: dict[str, Any] = {
        "file": str(path),
        "kind": "deepspeed",
        "problems": [p.as_dict() for p in sort_problems(problems)],
        "overrides": _overrides(a),
        "exported": a.ds.config if a.ds is not None else None,  # what --export writes (and is checked)
    }
    if verdict is not None:
        report["deepspeed_check"] = verdict.as_dict()
    print(json.dumps(report, indent=2))


def _print_json_human(path: Path, problems: list[Problem], a: Analysis, verdict: Any) -> None:
    from rich.markup import escape

    from .core.dsverdict import installed_version

    con = _console()
    con.print(f"{path}: DeepSpeed JSON as written, world size {a.hardware.world_size}", markup=False)
    print_problems(problems, con)
    if not problems:
        con.print("[green]no problems[/]")
    if a.ds is not None and a.ds.overrides:
        con.print("\n[bold]the plan would change (zerowizard --export):[/]")
        for o in a.ds.overrides:
            con.print(f"  {escape(o.describe())}")
    if verdict is not None and verdict.failure is None:
        refused = {name for name, errs in verdict.errors.items() if errs}
        for name in ("file", "export"):
            if name not in refused:
                what = "the file as HF Trainer passes it" if name == "file" else "the exported config"
                con.print(f"[green]DeepSpeed {escape(str(verdict.version))}'s own parser accepts {what}[/]")
    elif verdict is None:
        version = installed_version()
        if version is not None:
            con.print(
                f"DeepSpeed {escape(version)} is installed: add --deepspeed-check for its own parser's verdict "
                "(a few seconds)",
                style="dim",
            )


def _validate_plan(args: argparse.Namespace, path: Path) -> int:
    from .core.plan import PlanError
    from .planflags import plan_from_args

    con = _console()
    try:
        args.plan = str(path)
        plan = plan_from_args(args)
    except PlanError as exc:
        if args.json:
            rows = [
                {"severity": "error", "field": e.split(":", 1)[0], "message": e.split(":", 1)[-1].strip(), "fix": ""}
                for e in exc.errors
            ]
            print(json.dumps({"file": str(path), "kind": "plan", "problems": rows}, indent=2))
        else:
            from rich.markup import escape

            for e in exc.errors:
                con.print(f"[bold red]error  [/] {escape(e)}")
        return 2
    a = analyze(plan)
    problems, verdict = list(a.problems), None
    if args.deepspeed_check and a.ds is not None and not a.errors:
        from .core.dsverdict import ask, verdict_problems

        verdict = ask({"export": a.ds.config}, a.hardware.world_size)
        problems += verdict_problems(verdict, {})[0]
    if args.json:
        report: dict[str, Any] = {"file": str(path), "kind": "plan", "problems": [p.as_dict() for p in problems]}
        if verdict is not None:
            report["deepspeed_check"] = verdict.as_dict()
        print(json.dumps(report, indent=2))
    else:
        con.print(f"{path}: plan", markup=False)
        con.print(_header(a), markup=False)
        print_problems(problems, con)
        if verdict is not None and verdict.failure is None and not verdict.errors.get("export"):
            con.print(f"DeepSpeed {verdict.version}'s own parser accepts the exported config", style="green")
    return 2 if errors(problems) else 0


def _j(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else None
