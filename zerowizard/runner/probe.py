"""``zerowizard probe``: measure candidate configurations on the real stack and pick the fastest
that fits with a margin.

Each candidate (see :mod:`zerowizard.runner.probe_candidates`) runs ``warmup + steps`` optimizer
steps through exactly ``zerowizard run --headless --no-save`` (same launcher, trainer, data and
DeepSpeed JSON as a real run), as a subprocess in its own session and process group with its own
run folder, so a candidate that runs out of memory, crashes or hangs cannot poison the next.
Its events give the measurement (:mod:`zerowizard.runner.probe_measure`).

The parent imports no torch: the TUI calls :func:`run_probe` from a worker thread, with a
progress callback and a cancel event.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from zerowizard.core import memory
from zerowizard.core.analysis import analyze
from zerowizard.core.memory import Change
from zerowizard.core.plan import Plan, dump_plan, update
from zerowizard.runner.events import EventTail
from zerowizard.runner.probe_candidates import Candidate, candidates, capacity_bytes, limited_workload
from zerowizard.runner.probe_measure import Measured, measure_run

HEADROOM = 0.10  # the winner leaves this share of the capacity free (allocator growth, longer batches)
CANDIDATE_TIMEOUT_S = 1800.0
TERM_GRACE_S = 15.0  # the run's supervisor stops its ranks on SIGTERM within its own grace


@dataclass(frozen=True)
class ProbeOptions:
    candidates: str = "auto"  # auto | all | a list (see probe_candidates)
    steps: int = 3  # timed optimizer steps per candidate
    warmup: int = 1  # untimed steps first (allocator warm-up, first-call kernels)
    memory_limit_gib: float | None = None
    headroom: float = HEADROOM
    output: Path | None = None  # candidate run folders (default: a temp folder, removed)
    timeout_s: float = CANDIDATE_TIMEOUT_S


@dataclass
class CandidateResult:
    candidate: Candidate
    status: str  # ok | oom | failed
    reason: str | None
    measured: Measured
    run_dir: str | None  # None once the temporary folder is removed (keep them with --output)
    exit_code: int | None
    fits: bool = False  # completed, and its peak leaves the headroom free


@dataclass
class ProbeProgress:
    """One report to the caller: a candidate ``start``ed, reached a ``step``, or is ``done``."""

    index: int
    total: int
    candidate: Candidate
    phase: str  # start | step | done
    step: int = 0
    total_steps: int = 0
    result: CandidateResult | None = None


@dataclass
class ProbeResult:
    plan: Plan
    results: list[CandidateResult]
    winner: int | None
    capacity_bytes: int
    limited: bool  # capacity is --memory-limit (else the device, a share of host RAM on the CPU)
    headroom: float
    accelerator: str
    world_size: int
    fix: Change | None = None  # the model's cheapest change, when nothing fits
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        """``zerowizard probe --json`` (bytes as integers, seconds as floats)."""
        out = []
        for r in self.results:
            c, est = r.candidate, r.candidate.predicted
            out.append(
                {
                    "variant": {
                        "stage": c.variant.stage,
                        "offload_optimizer": c.variant.offload_optimizer,
                        "offload_param": c.variant.offload_param,
                    },
                    "label": c.label,
                    "micro_batch": c.micro_batch,
                    "grad_accum": c.grad_accum,
                    "status": r.status,
                    "reason": r.reason,
                    "fits": r.fits,
                    "exit_code": r.exit_code,
                    "run_dir": r.run_dir,
                    "measured": r.measured.as_json(),
                    "predicted": {
                        "per_gpu_total": est.per_gpu.total if est else None,
                        "per_gpu": est.per_gpu.as_dict() if est else None,
                        "per_node_host": est.per_node_host if est else None,
                        "fits": est.fits if est else None,
                        "step_s": c.predicted_step_s,
                    },
                }
            )
        fix = self.fix
        return {
            "candidates": out,
            "winner": self.winner,
            "capacity_bytes": self.capacity_bytes,
            "capacity": "memory_limit" if self.limited else "device",
            "headroom": self.headroom,
            "accelerator": self.accelerator,
            "world_size": self.world_size,
            "cancelled": self.cancelled,
            "cheapest_change": None
            if fix is None
            else {"description": fix.description, "fields": fix.fields, "variant": fix.variant.label},
        }

    @property
    def winner_result(self) -> CandidateResult | None:
        return None if self.winner is None else self.results[self.winner]

    def winner_plan(self) -> Plan | None:
        """The user's plan with the winner's ZeRO fields and batch split (its own train section)."""
        w = self.winner_result
        if w is None:
            return None
        c = w.candidate.plan
        p = update(
            self.plan,
            "zero",
            stage=c.zero.stage,
            offload_optimizer=c.zero.offload_optimizer,
            offload_param=c.zero.offload_param,
        )
        return update(p, "batch", micro_batch=c.batch.micro_batch, grad_accum=c.batch.grad_accum)


class ProbeCancelled(Exception):
    pass


def _launch_args(c: Candidate, run_dir: Path, opts: ProbeOptions) -> list[str]:
    # --on-oom stop: an out-of-memory candidate is a result, not something for the runner to work around
    args = [sys.executable, "-m", "zerowizard", "run", "--headless", "--no-save", "--on-oom", "stop"]
    args += ["--plan", str(run_dir / "candidate.yaml"), "--output", str(run_dir / "run")]
    if opts.memory_limit_gib:
        args += ["--memory-limit", repr(float(opts.memory_limit_gib))]
    return args


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the candidate's launcher (it stops its ranks), then SIGKILL its whole group."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=TERM_GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def run_candidate(
    c: Candidate,
    run_dir: Path,
    opts: ProbeOptions,
    on_step: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> CandidateResult:
    """Train one candidate for ``warmup + steps`` steps and measure it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    total = opts.warmup + opts.steps
    plan = update(c.plan, "train", max_steps=total, save_steps=0, logging_steps=1)
    plan = update(plan, None, output=None)
    (run_dir / "candidate.yaml").write_text(dump_plan(plan), encoding="utf-8")
    events = run_dir / "run" / "events.jsonl"
    tail, seen = EventTail(events), 0
    t0 = time.time()
    with open(run_dir / "probe.log", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            _launch_args(c, run_dir, opts),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own session and process group
        )
        timed_out = False
        try:
            while proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    _stop(proc)
                    raise ProbeCancelled
                if time.time() - t0 > opts.timeout_s:
                    timed_out = True
                    _stop(proc)
                    break
                for ev in tail.poll():
                    if ev.get("event") == "step" and on_step is not None:
                        seen = int(ev.get("step") or seen)
                        on_step(seen, total)
                time.sleep(0.2)
        except BaseException:
            if proc.poll() is None:
                _stop(proc)
            raise
    wall = time.time() - t0
    status, reason, measured = measure_run(run_dir / "run", proc.returncode, opts.warmup, run_dir / "probe.log", t0)
    measured.wall_s = round(wall, 2)
    if timed_out:
        status, reason = "failed", f"timed out after {opts.timeout_s:.0f} s (stopped)"
    return CandidateResult(c, status, reason, measured, str(run_dir), proc.returncode)


def _fits(r: CandidateResult, capacity: int, headroom: float) -> bool:
    peaks = [p for p in r.measured.device_peak_bytes if p is not None]
    return (
        r.status == "ok" and bool(peaks) and max(peaks) <= capacity * (1 - headroom) and r.measured.step_s is not None
    )


def pick_winner(results: list[CandidateResult]) -> int | None:
    """The fastest candidate that fits (median step time; the global batch is the same for all)."""
    fitting = [i for i, r in enumerate(results) if r.fits]
    return min(fitting, key=lambda i: (results[i].measured.step_s, i)) if fitting else None


def run_probe(
    plan: Plan,
    options: ProbeOptions | None = None,
    on_progress: Callable[[ProbeProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> ProbeResult:
    """Measure every candidate in turn; InputError for bad options (before anything runs)."""
    opts = options or ProbeOptions()
    limit = int(opts.memory_limit_gib * 2**30) if opts.memory_limit_gib else None
    base = analyze(plan)
    cands = candidates(plan, opts.candidates, limit)
    result = ProbeResult(
        plan=plan,
        results=[],
        winner=None,
        capacity_bytes=capacity_bytes(base, limit),
        limited=limit is not None,
        headroom=opts.headroom,
        accelerator=base.hardware.accelerator,
        world_size=base.hardware.world_size,
    )
    root = Path(opts.output) if opts.output else Path(tempfile.mkdtemp(prefix="zerowizard-probe-"))
    root.mkdir(parents=True, exist_ok=True)
    report = on_progress or (lambda _p: None)
    try:
        for i, c in enumerate(cands):
            report(ProbeProgress(i, len(cands), c, "start", 0, opts.warmup + opts.steps))
            name = f"{i:02d}-z{c.variant.stage}{_offload_tag(c)}-mb{c.micro_batch}"

            def on_step(step: int, total: int, i: int = i, c: Candidate = c) -> None:
                report(ProbeProgress(i, len(cands), c, "step", step, total))

            try:
                r = run_candidate(c, root / name, opts, on_step, cancel)
            except ProbeCancelled:
                result.cancelled = True
                break
            r.fits = _fits(r, result.capacity_bytes, opts.headroom)
            result.results.append(r)
            report(ProbeProgress(i, len(cands), c, "done", r.measured.steps_done, opts.warmup + opts.steps, r))
    finally:
        if opts.output is None:
            shutil.rmtree(root, ignore_errors=True)
            for r in result.results:
                r.run_dir = None  # removed with the temporary folder
    result.winner = pick_winner(result.results)
    if result.winner is None and base.workload is not None:
        w = limited_workload(base.workload, limit)
        result.fix = memory.cheapest_fix(replace(w), bool(base.zero.nvme_path))
    return result


def _offload_tag(c: Candidate) -> str:
    v = c.variant
    return ("-opt" if v.offload_optimizer != "none" else "") + ("-param" if v.offload_param != "none" else "")
