"""``zerowizard probe``: its parser, the progress lines, the table, ``--json`` and ``--apply``.

The measuring is :func:`zerowizard.runner.probe.run_probe`; this module only talks to the user.
Nothing heavy is imported here (the CLI builds every parser at start-up).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EPILOG = """examples:
  zerowizard probe                                  the tiny default: candidates the model says may fit
  zerowizard probe --candidates z1,z2,z3,z2@1 --steps 3
  zerowizard probe --plan plan.yaml --memory-limit 24 --apply plan.probed.yaml
  zerowizard probe --candidates all --json > probe.json

--candidates: auto (a few that may fit, fastest first), all, or a list of zN[+opt][+param][@MB]
(a preset name works too; @MB a micro batch, @* the plan's and every smaller one). Exit 0 with a
winner, 1 when nothing fits (the cheapest change the memory model finds is named), 2 on bad input.
"""


@dataclass(frozen=True)
class ProbeArgs:
    """The probe's own options, checked once (the plan flags build the plan)."""

    candidates: str
    steps: int
    warmup: int
    memory_limit_gib: float | None
    headroom: float
    output: Path | None
    apply: Path | None
    json: bool


def add_probe_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "probe",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run a few real steps of each candidate config: measured vs predicted, the fastest that fits",
        epilog=EPILOG,
    )
    p.add_argument("--candidates", default="auto", metavar="auto|all|LIST", help="what to measure (default: auto)")
    p.add_argument("--steps", default="3", metavar="N", help="timed optimizer steps per candidate (default: 3)")
    p.add_argument("--warmup", default="1", metavar="N", help="untimed steps before them (default: 1)")
    p.add_argument("--memory-limit", metavar="GiB", help="probe as if each device had GiB (CUDA and CPU)")
    p.add_argument("--headroom", default="0.1", metavar="SHARE", help="the winner leaves this share free (0.1)")
    p.add_argument("--output", metavar="DIR", help="keep each candidate's run folder under DIR")
    p.add_argument("--apply", metavar="PLAN.yaml", help="write the winner's plan (validate accepts it, run trains it)")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")


def probe_args(args: argparse.Namespace) -> ProbeArgs:
    from zerowizard.core.validation import InputError, parse_number

    def num(flag: str, text: Any, **bounds: Any) -> Any:
        try:
            return parse_number(str(text), **bounds)
        except InputError as exc:
            raise InputError(f"{flag}: {exc}") from None

    limit = getattr(args, "memory_limit", None)
    return ProbeArgs(
        candidates=str(args.candidates or "auto"),
        steps=int(num("--steps", args.steps, integer=True, minimum=1, maximum=10_000)),
        warmup=int(num("--warmup", args.warmup, integer=True, minimum=0, maximum=10_000)),
        memory_limit_gib=None if limit is None else float(num("--memory-limit", limit, minimum=0.001, maximum=1e6)),
        headroom=float(num("--headroom", args.headroom, minimum=0.0, maximum=0.9)),
        output=Path(args.output) if args.output else None,
        apply=Path(args.apply) if args.apply else None,
        json=bool(args.json),
    )


def _gib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**30:.2f}"


def _s(x: float | None) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def _progress(p: Any) -> None:
    c = p.candidate
    if p.phase == "start":
        print(f"probe {p.index + 1}/{p.total}: {c.label} ...", file=sys.stderr, flush=True)
    elif p.phase == "done" and p.result is not None:
        r, m = p.result, p.result.measured
        peak = max((x for x in m.device_peak_bytes if x is not None), default=None)
        what = f"{_s(m.step_s)} s/step, peak {_gib(peak)} GiB" if r.status == "ok" else (r.reason or "")
        print(f"  {r.status}: {what} ({_s(m.wall_s)} s)", file=sys.stderr, flush=True)


def cmd_probe(args: argparse.Namespace, plan: Any) -> int:
    from zerowizard.core.validation import InputError
    from zerowizard.runner.probe import ProbeOptions, run_probe

    try:
        pa = probe_args(args)
        if pa.candidates not in ("auto", "all"):
            from zerowizard.runner.probe_candidates import parse_list

            parse_list(pa.candidates, plan)  # a bad list is refused before anything runs
        if pa.memory_limit_gib:
            from zerowizard.runner.memlimit import limit_spec

            limit_spec(str(pa.memory_limit_gib), _accelerator(plan))
        if pa.apply is not None and pa.apply.parent and not pa.apply.parent.is_dir():
            raise InputError(f"--apply: no folder {pa.apply.parent}; create it first")
    except InputError as exc:
        print(f"zerowizard: error: {exc}", file=sys.stderr)
        return 2
    opts = ProbeOptions(
        candidates=pa.candidates,
        steps=pa.steps,
        warmup=pa.warmup,
        memory_limit_gib=pa.memory_limit_gib,
        headroom=pa.headroom,
        output=pa.output,
    )
    cancel = threading.Event()
    try:
        result = run_probe(plan, opts, _progress, cancel)
    except KeyboardInterrupt:
        print("zerowizard: probe interrupted; the running candidate was stopped", file=sys.stderr)
        return 130
    if pa.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        from zerowizard.probeprint import print_result

        print_result(result)
    if result.winner is None:
        return 1
    won = result.winner_plan()
    if pa.apply is not None and won is not None:
        from zerowizard.core.dsconfig import write_text_atomic
        from zerowizard.core.plan import dump_plan

        write_text_atomic(pa.apply, dump_plan(won))
        print(f"wrote {pa.apply}: zerowizard run --headless --plan {pa.apply} trains it", file=sys.stderr)
    return 0


def _accelerator(plan: Any) -> str:
    from zerowizard.core.hardware import resolve_hardware

    return resolve_hardware(plan.hardware).accelerator
