"""What a probe candidate costs, beside a plain run of the same plan.

1. Overhead, interleaved (``--rounds``, medians): a plain ``zerowizard run --headless --no-save``
   of ``warmup + steps`` steps, then ``zerowizard probe --candidates <the plan's own variant>``
   over the same plan: the candidate's wall time (launch to exit) and the whole probe command's
   against the plain run's wall time. Target: a candidate costs its launch plus the steps it
   measures, i.e. about 1.0x the plain run (the probe's own work is a plan analysis and a file).
2. Per candidate (``--candidates``): wall time, time to the first step (launch, imports, data,
   model, engine, the first step), the timed steps, what is left (the ranks' shutdown), and the
   wall time against the plain run's time to first step plus the candidate's own timed steps.

On a shared 2-core machine the set-up (mostly imports) varies by tens of seconds between runs, so
part 1 interleaves and takes medians. Ratios are within one run on one machine.

    python benchmarks/probe.py                               # tiny default, 2 CPU ranks, z1,z2,z3
    python benchmarks/probe.py --rounds 5 --candidates z2,z2@1 --steps 5 -- --seq-len 256
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAN = ["--gpus", "2", "--seq-len", "96", "--micro-batch", "2", "--no-grad-checkpointing"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def plain_run(plan: list[str], steps: int, workdir: Path) -> dict:
    from zerowizard.runner.events import read_events

    cmd = [sys.executable, "-m", "zerowizard", "run", "--headless", "--no-save", *plan]
    cmd += ["--max-steps", str(steps), "--save-steps", "0", "--logging-steps", "1", "--output", str(workdir)]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=workdir.parent, env=_env(), capture_output=True, text=True)
    wall = time.time() - t0
    if res.returncode != 0:
        sys.exit(f"plain run failed (exit {res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    evs = read_events(workdir / "events.jsonl")
    steps_ev = [e for e in evs if e["event"] == "step"]
    times = [t for e in steps_ev for t in e.get("step_times_s") or []]
    return {"wall_s": wall, "first_step_s": steps_ev[0]["time"] - t0, "later_steps_s": sum(times[1:])}


def probe_json(plan: list[str], candidates: str, steps: int, warmup: int, cwd: Path) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "zerowizard", "probe", *plan, "--json", "--candidates", candidates]
    cmd += ["--steps", str(steps), "--warmup", str(warmup)]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    wall = time.time() - t0
    if res.returncode not in (0, 1):
        sys.exit(f"probe failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout), wall


def own_variant(plan: list[str]) -> str:
    """The plan's own variant as a --candidates item (what the plain run trains)."""
    sys.path.insert(0, str(ROOT))
    from zerowizard.cli import build_parser
    from zerowizard.core.analysis import analyze
    from zerowizard.planflags import plan_from_args

    v = analyze(plan_from_args(build_parser().parse_args(["estimate", *plan]))).selected.variant
    return (
        f"z{v.stage}"
        + ("+opt" if v.offload_optimizer == "cpu" else "")
        + ("+param" if v.offload_param == "cpu" else "")
    )


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", default="z1,z2,z3")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per candidate")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved plain/probe pairs for the overhead")
    ap.add_argument("plan", nargs="*", help="plan flags after --, default: " + " ".join(PLAN))
    args = ap.parse_args(argv)
    plan = args.plan or PLAN
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="zw-bench-probe-") as tmp:
        root = Path(tmp)
        plain_run(plan, total, root / "warm")  # a first run pays the one-off costs (op build, page cache)
        plains, cands, probes = [], [], []
        for i in range(args.rounds):
            plains.append(plain_run(plan, total, root / f"plain{i}"))
            out, wall = probe_json(plan, own_variant(plan), args.steps, args.warmup, root)
            cands.append(out["candidates"][0]["measured"]["wall_s"])
            probes.append(wall)
        plain_wall = _med([p["wall_s"] for p in plains])
        plain = {k: _med([p[k] for p in plains]) for k in plains[0]}
        out, probe_wall = probe_json(plan, args.candidates, args.steps, args.warmup, root)
    print(f"plan: {' '.join(plan)}; {args.warmup} warm-up + {args.steps} timed steps per candidate")
    print(f"1. overhead, {args.rounds} interleaved rounds (medians):")
    print(
        f"   plain run wall {plain_wall:.1f} s (time to first step {plain['first_step_s']:.1f} s, "
        f"later steps {plain['later_steps_s']:.2f} s)"
    )
    print(
        f"   one-candidate probe: candidate wall {_med(cands):.1f} s = {_med(cands) / plain_wall:.2f}x the plain run; "
        f"whole probe command {_med(probes):.1f} s = {_med(probes) / plain_wall:.2f}x"
    )
    print(f"2. per candidate ({args.candidates}):")
    head = f"{'candidate':<26}{'status':<8}{'wall s':>8}{'1st step s':>12}{'steps s':>9}{'rest s':>8}{'vs plain':>10}"
    print(head)
    ratios = []
    for c in out["candidates"]:
        m = c["measured"]
        times = m["step_times_s"]
        later = sum(times)  # the timed steps (warm-up steps after the first count as "rest")
        first = m["first_step_s"]
        wall = m["wall_s"]
        ratio = wall / (plain["first_step_s"] + later) if first is not None else None
        rest = wall - first - later if first is not None else None
        ratios.append(ratio)
        print(
            f"{c['label']:<26}{c['status']:<8}{wall:>8.1f}{first if first is not None else float('nan'):>12.1f}"
            f"{later:>9.2f}{rest if rest is not None else float('nan'):>8.1f}"
            f"{'' if ratio is None else f'{ratio:.2f}x':>10}"
        )
    ok = [r for r in ratios if r is not None]
    print(f"probe wall {probe_wall:.1f} s for {len(out['candidates'])} candidates; winner: {out['winner']}")
    if ok:
        print(
            f"candidate wall / (plain time to first step + its timed steps): median {sorted(ok)[len(ok) // 2]:.2f}x, "
            f"worst {max(ok):.2f}x (target: 1.0x plus the ranks' shutdown)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
