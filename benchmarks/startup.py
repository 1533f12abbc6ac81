"""Start-up cost of the headless commands, beside `python -c "import deepspeed"`.

DeepSpeed's own estimators (estimate_zero2/3_model_states_mem_needs) need `import deepspeed` (and
torch) before they can say anything; zerowizard's core answers without either. Prints the median
wall time of each command over several runs and its ratio to the DeepSpeed import, measured in the
same run. Target: each zerowizard command under 0.3 s on this machine.

    python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "zerowizard --help": [sys.executable, "-m", "zerowizard", "--help"],
    "zerowizard estimate": [
        sys.executable,
        "-m",
        "zerowizard",
        "estimate",
        "--model",
        "llama-3-8b",
        "--gpus",
        "8xA100-80GB",
        "--method",
        "lora",
    ],
    "zerowizard --export ds.json": [
        sys.executable,
        "-m",
        "zerowizard",
        "--export",
        "ds.json",
        "--model",
        "llama-3-8b",
        "--gpus",
        "8xA100-80GB",
        "--method",
        "lora",
    ],
    'python -c "import deepspeed"': [sys.executable, "-c", "import deepspeed"],
}


def time_command(cmd, runs: int, cwd: str) -> float:
    samples = []
    env = dict(os.environ, DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"))
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, env=env)
        samples.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.decode()[-500:]}")
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    cwd = tempfile.mkdtemp()
    results = {name: time_command(cmd, args.runs, cwd) for name, cmd in COMMANDS.items()}
    ref = results['python -c "import deepspeed"']
    print(f"median of {args.runs} runs, {os.cpu_count()} CPUs")
    print(f"{'command':34s} {'seconds':>8s} {'x import deepspeed':>19s}  target")
    for name, secs in results.items():
        target = ""
        if name.startswith("zerowizard"):
            target = "ok (<0.3 s)" if secs < 0.3 else "OVER 0.3 s"
        print(f"{name:34s} {secs:8.3f} {secs / ref:19.3f}  {target}")


if __name__ == "__main__":
    main()
