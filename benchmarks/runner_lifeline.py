"""What the user sees while a run starts, and what is left when the launcher is killed.

For each run of `zerowizard run --headless` (the tiny default, two CPU ranks, a few steps) prints:

- the seconds to the launcher's first line, to the first rank phase line and to the first step;
- the longest silence on stdout before the first step, and its share of the start-up (before the
  phase events, the whole start-up was silent: a share of 1.0);
- with --kill: the seconds from `kill -9` of the launcher (at the first step) until no process of
  the run is left, and how many processes the run had.

    python benchmarks/runner_lifeline.py [--runs 3] [--kill]
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
FAST = ["--max-steps", "3", "--seq-len", "96", "--micro-batch", "2", "--save-steps", "0", "--no-grad-checkpointing"]


def _procs(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid != os.getpid() and any(marker in c for c in p.info["cmdline"] or []):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def one_run(kill: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "zerowizard", "run", "--headless", *FAST, "--output", str(out)]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[tuple[float, str]] = []
        first_step = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append((time.monotonic() - t0, line.rstrip()))
                if line.startswith("step "):
                    first_step.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        result: dict = {}
        if kill:
            first_step.wait(timeout=900)
            result["processes"] = len(_procs(str(out)))
            os.kill(proc.pid, signal.SIGKILL)
            k0 = time.monotonic()
            while _procs(str(out)) and time.monotonic() - k0 < 60:
                time.sleep(0.05)
            result["gone_s"] = time.monotonic() - k0
            result["left"] = len(_procs(str(out)))
        proc.wait(timeout=900)
        reader.join(timeout=5)
    step_at = next((t for t, line in lines if line.startswith("step ")), None)
    rank_at = next((t for t, line in lines if line.startswith("[rank 0")), None)
    before = [0.0] + [t for t, _ in lines if step_at is None or t <= step_at]
    gaps = [b - a for a, b in itertools.pairwise(before)]
    result.update(
        first_line_s=lines[0][0] if lines else None,
        first_rank_phase_s=rank_at,
        first_step_s=step_at,
        longest_silence_s=max(gaps) if gaps else None,
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--kill", action="store_true", help="kill -9 the launcher at the first step")
    args = ap.parse_args()
    rows = [one_run(args.kill) for _ in range(args.runs)]
    for i, r in enumerate(rows, 1):
        print(f"run {i}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows if r.get(key) is not None)

    print(
        f"median: first line {med('first_line_s'):.2f}s, first rank phase {med('first_rank_phase_s'):.1f}s, "
        f"first step {med('first_step_s'):.1f}s, longest silence before it {med('longest_silence_s'):.1f}s "
        f"({med('longest_silence_s') / med('first_step_s'):.2f} of the start-up)"
    )
    if args.kill:
        print(
            f"kill -9 of the launcher: every process of the run gone after {med('gone_s'):.2f}s (median), "
            f"{max(r['gone_s'] for r in rows):.2f}s at most; processes left: {max(r['left'] for r in rows)}"
        )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
