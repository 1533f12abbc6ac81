"""What `--deepspeed-check` costs, and why it is not the default.

Prints the median wall time of `zerowizard validate ds.json` (the static checks), the same with
`--deepspeed-check` (the installed DeepSpeed's parser in a child process), and
`python -c "import deepspeed"` measured in the same run, with the ratios to it.

    python benchmarks/validate.py [--runs 5]
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

DS = {
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "overlap_comm": True, "reduce_bucket_size": "auto"},
}


def median_wall(cmd: list[str], runs: int, cwd: str) -> float:
    times = []
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, capture_output=True, check=False, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as cwd:
        with open(os.path.join(cwd, "ds.json"), "w") as fh:
            json.dump(DS, fh)
        zw = [sys.executable, "-m", "zerowizard", "validate", "ds.json", "--gpus", "8xA100-80GB"]
        figures = {
            'python -c "import deepspeed"': median_wall([sys.executable, "-c", "import deepspeed"], runs, cwd),
            "zerowizard validate ds.json": median_wall(zw, runs, cwd),
            "zerowizard validate ds.json --deepspeed-check": median_wall([*zw, "--deepspeed-check"], runs, cwd),
        }
    base = figures['python -c "import deepspeed"']
    print(f"median of {runs} runs")
    for name, seconds in figures.items():
        print(f"  {name:48s} {seconds:6.2f} s   {seconds / base:5.2f} x import deepspeed")


if __name__ == "__main__":
    main()
