"""``zerowizard run --headless``: check the plan, prepare the run folder, launch the ranks.

Imports nothing heavy at module level (the CLI imports this for its argument parser).

Launchers: ``single`` (one process, still a DeepSpeed engine), ``torchrun`` (one node or several:
--nproc-per-node/--nnodes/--node-rank/--master-addr/--master-port, or XTuner's NPROC_PER_NODE,
NNODES, NODE_RANK, ADDR, PORT), ``slurm`` (one task per rank from SLURM_* variables, as
``srun zerowizard run --headless --launcher slurm``), ``auto`` (single for one rank, else torchrun).

The steps, each its own function: options (validated, nothing written) → check the plan → prepare
(model, data, run folder) → lock the folder → for each attempt: write the run files, launch and
supervise the ranks, then finish (summary), fall back (out of memory) or report (crash, disk fault,
interrupt). Exit status: 0 done, 2 bad input (nothing started), 1 failure, 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zerowizard.runner.options import LAUNCHERS, WORK_DIRS, RunOptions, Topology, add_run_arguments

if TYPE_CHECKING:
    from zerowizard.core.analysis import Analysis
    from zerowizard.core.plan import Plan
    from zerowizard.runner.headless import Printer
    from zerowizard.runner.runspec import MemoryLimit
    from zerowizard.runner.supervise import Outcome

__all__ = ["LAUNCHERS", "add_run_arguments", "run", "run_headless"]


def run_headless(plan: Plan, args: argparse.Namespace) -> int:
    """The ``run`` command: options from the flags, then :func:`run`."""
    from zerowizard.core.plan import PlanError
    from zerowizard.runner import report
    from zerowizard.runner.options import build_run_options

    try:
        opts = build_run_options(args, plan)
    except PlanError as exc:
        for line in exc.errors:
            report.error(line)
        print("zerowizard: nothing was written or started", file=sys.stderr)
        return 2
    return run(opts)


def run(opts: RunOptions) -> int:
    from zerowizard.runner import faults, report
    from zerowizard.runner.headless import make_printer

    printer = make_printer()
    try:
        return Run(opts, printer).main()
    except OSError as exc:  # a fault no step caught: one line (a bug goes to cli.main's crash guard)
        report.error(faults.describe(exc))
        return 1
    finally:
        printer.close()


@dataclass(frozen=True)
class Prepared:
    """What every attempt of the run needs, resolved once."""

    workdir: Path
    model_path: str
    trust_remote_code: bool
    data: dict[str, Any]
    slurm: dict[str, str] | None
    resume_from: Path | None
    resume_universal: bool  # resume_from was written by another rank count: load DeepSpeed's universal form
    memory_limit: MemoryLimit | None  # runner.json's memory_limit (a new cgroup token per attempt)
    plan: Plan  # the plan to run (with --resume on another rank count: the batch adapted)
    analysis: Analysis


class Run:
    def __init__(self, opts: RunOptions, printer: Printer):
        from zerowizard.runner.report import LauncherEvents

        self.opts, self.printer = opts, printer
        self.sink = LauncherEvents(printer, leads=opts.leads)

    def main(self) -> int:
        from zerowizard.core.validation import InputError
        from zerowizard.runner import faults, report
        from zerowizard.runner.lock import LockError, RunLock, job_key
        from zerowizard.runner.prepare import PrepareError

        for line in self.opts.changes:
            self.printer.notice(f"resume: {line}")
        self.sink.phase("prepare", "checking the plan: memory model, rules, DeepSpeed JSON")
        analysis = self._check(self.opts.plan)
        if analysis is None:
            return 2
        try:
            prep = self._prepare(analysis)
        except (PrepareError, InputError) as exc:
            report.error(str(exc))
            return 2
        top = self.opts.topology
        lock = RunLock(
            prep.workdir, job_key(self.opts.launcher, top.addr, top.port), self.opts.leads, self.printer.notice
        )
        try:
            lock.acquire()
        except LockError as exc:
            report.error(str(exc))
            return 2
        except OSError as exc:
            self.sink.attach(prep.workdir)  # the fault goes into the stream if it can be written
            return report.disk_fault(self.sink, None, prep.workdir, exc)
        try:
            self.sink.attach(prep.workdir)
            return self._attempts(prep)
        except OSError as exc:
            if not faults.is_disk_error(exc):
                raise
            return report.disk_fault(self.sink, None, prep.workdir, exc)
        finally:
            lock.release()

    def _check(self, plan: Plan) -> Analysis | None:
        from zerowizard.core.analysis import analyze
        from zerowizard.runner import report

        analysis = analyze(plan)
        if analysis.errors:
            for p in analysis.errors:
                report.error(f"{p.field}: {p.message} — {p.fix}")
            print("zerowizard: nothing was started; fix the plan and run again", file=sys.stderr)
            return None
        return analysis

    def _prepare(self, analysis: Analysis) -> Prepared:
        from zerowizard.runner import memlimit, prepare

        opts = self.opts
        self.sink.phase("prepare", "resolving the model and the data")
        if opts.output is not None:
            workdir = opts.output
        elif opts.launcher == "slurm" and os.environ.get("SLURM_JOB_ID"):
            workdir = WORK_DIRS / f"slurm_{os.environ['SLURM_JOB_ID']}"
        else:
            workdir = prepare.new_output_dir(WORK_DIRS, opts.name)
        model_path, trust = prepare.resolve_model(analysis.model, None)
        data = prepare.resolve_data(opts.plan.data.path, opts.plan.data.format)
        slurm = prepare.slurm_env() if opts.launcher == "slurm" else None
        limit = memlimit.limit_spec(opts.memory_limit_gib, analysis.hardware.accelerator)
        plan, resume_from, universal = opts.plan, None, False
        if opts.resume:  # the newest intact checkpoint, checked before any rank starts (runner/resume.py)
            from zerowizard.core.plan import update
            from zerowizard.runner.resume import find_resume_point

            hw = analysis.hardware
            world = (opts.topology.nproc or hw.gpus_per_node) * opts.topology.nnodes
            point = find_resume_point(
                str(workdir), update(plan, None, output=str(workdir)), WORK_DIRS, world, self.printer.notice
            )
            resume_from = point.checkpoint.resolve()
            if point.analysis is not None:  # another rank count: the global batch kept
                plan, analysis = point.plan, point.analysis
            universal = point.convert(hw.accelerator, self.printer.notice)
        return Prepared(
            workdir.resolve(), model_path, trust, data, slurm, resume_from, universal, limit, plan, analysis
        )

    # ---- attempts -------------------------------------------------------------------------
    def _attempts(self, prep: Prepared) -> int:
        from zerowizard.core.plan import update
        from zerowizard.runner import record, report

        plan, analysis = update(prep.plan, None, output=str(prep.workdir)), prep.analysis
        attempt, resume_from = 1, prep.resume_from
        while True:
            self._write_files(plan, analysis, prep, resume_from, attempt)
            outcome, ranks = self._launch(analysis, prep, attempt)
            if outcome.oom_killed is not None:  # the kernel ended a rank at its --memory-limit
                outcome.error = self.sink.emit("error", **outcome.oom_killed)
            if outcome.signum is not None:
                return report.interrupted(self.sink, outcome, prep.workdir)
            if outcome.rc == 0 and (outcome.ended is not None or not self.opts.leads):
                if self.opts.leads:  # one summary per job (not every SLURM task / node)
                    report.summary(self.printer, prep.workdir)
                    record.record(prep.workdir, analysis, self.printer)  # calibrates later estimates
                return 0
            if outcome.error is not None and outcome.error.get("kind") == "oom":
                nxt = self._fallback(plan, analysis, outcome, prep, attempt)
                if isinstance(nxt, str):
                    return report.out_of_memory(self.sink, outcome, attempt - 1, nxt)
                plan, analysis, resume_from = nxt
                attempt += 1
                continue
            if self._disk_fault(outcome, prep.workdir):
                return report.disk_fault(self.sink, outcome, prep.workdir)
            return report.crashed(self.sink, outcome, prep.workdir, ranks)

    def _write_files(
        self, plan: Plan, analysis: Analysis, prep: Prepared, resume_from: Path | None, attempt: int
    ) -> None:
        from zerowizard.runner import memlimit, prepare, record
        from zerowizard.runner.runspec import RunnerSpec

        selected = analysis.selected
        spec: RunnerSpec = {
            "model_path": prep.model_path,
            "trust_remote_code": prep.trust_remote_code,
            "data": {"path": prep.data["path"], "hub": prep.data["hub"]},
            "precision": analysis.precision,
            "accelerator": analysis.hardware.accelerator,
            "resume_from": str(resume_from) if resume_from else None,
            # a checkpoint of another rank count (only the one resumed, not a later attempt's own)
            "resume_universal": prep.resume_universal and resume_from == prep.resume_from,
            "predicted_per_gpu_bytes": selected.per_gpu.total if selected else None,
            "attempt": attempt,
            "memory_limit": {**prep.memory_limit, "token": memlimit.new_token()} if prep.memory_limit else None,
            "save": self.opts.save,
            **record.predicted(self._timed_on_the_data(plan, analysis, prep)),
        }
        assert analysis.ds is not None  # an analysis without errors has its DeepSpeed JSON
        prepare.write_run_files(prep.workdir, plan, analysis.ds.config, spec)

    @staticmethod
    def _timed_on_the_data(plan: Plan, analysis: Analysis, prep: Prepared) -> Analysis:
        """The analysis whose time model sees the data this run reads (the shipped sample when the
        plan names none): its examples' lengths, not the full sequence length, so the predicted
        tokens/s compare with the measured ones."""
        if prep.data["hub"] or plan.data.path:
            return analysis
        from zerowizard.core.analysis import analyze
        from zerowizard.core.plan import update

        return analyze(update(plan, "data", path=prep.data["path"]))

    def _launch(self, analysis: Analysis, prep: Prepared, attempt: int) -> tuple[Outcome, list[int]]:
        from zerowizard.runner.supervise import Supervisor

        hw = analysis.hardware
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if hw.accelerator == "cpu":
            env["DS_ACCELERATOR"] = "cpu"
            if attempt == 1:
                self.printer.notice(
                    "notice: no CUDA device: training on the CPU accelerator (DS_ACCELERATOR=cpu, "
                    f"gloo, {analysis.precision}); slow, but every path is real"
                )
        if attempt == 1:
            self.printer.notice(f"run folder: {prep.workdir}")
        nproc = self.opts.topology.nproc or hw.gpus_per_node
        cmd, ranks, how = command(self.opts.launcher, nproc, self.opts.topology, prep.workdir, env, prep.slurm)
        self.sink.phase("launch", f"starting {how}")
        return Supervisor(cmd, env, prep.workdir, self.printer, ranks, leads=self.opts.leads).run(), ranks

    def _disk_fault(self, outcome: Outcome, workdir: Path) -> bool:
        from zerowizard.runner import faults

        err = outcome.error or {}
        if err.get("kind") == "disk" or faults.disk_fault_in(err.get("error", "")):
            return True
        return faults.probe_folder(workdir) is not None

    def _fallback(
        self, plan: Plan, analysis: Analysis, outcome: Outcome, prep: Prepared, attempt: int
    ) -> tuple[Plan, Analysis, Path | None] | str:
        """(plan, analysis, checkpoint) for the next attempt after an out-of-memory error, or, when there
        is none, why not (one line for the report)."""
        from zerowizard.runner import oom, report

        nxt = oom.next_fallback(plan, analysis)
        if nxt is None:
            label = analysis.selected.variant.label if analysis.selected else "this ZeRO variant"
            return (
                f"nothing smaller is left to try (micro batch {plan.batch.micro_batch}, {label}): use more GPUs "
                "or nodes, a shorter --seq-len, gradient checkpointing, or LoRA/QLoRA"
            )
        if self.opts.on_oom != "retry":
            return f"--on-oom stop; --on-oom retry would restart with {nxt.change}"
        if not self._can_restart():
            each = "SLURM task" if self.opts.launcher == "slurm" else "node"
            again = oom.flags(plan, nxt)
            return f"this job has a launcher per {each}, which cannot restart the others; run it again with {again}"
        ckpt = report.last_checkpoint(prep.workdir, outcome) or prep.resume_from
        self.sink.emit(
            "fallback",
            reason="oom",
            attempt=attempt + 1,
            change=nxt.change,
            micro_batch=nxt.plan.batch.micro_batch,
            grad_accum=nxt.plan.batch.grad_accum,
            global_batch=oom.global_batch(nxt.plan, analysis.hardware.world_size),
            variant=nxt.variant,
            resume_from=str(ckpt) if ckpt else None,
        )
        self.printer.notice(
            f"restarting from {ckpt or 'the beginning'}; the plan is updated in {prep.workdir / 'plan.yaml'}"
        )
        return nxt.plan, nxt.analysis, Path(ckpt) if ckpt else None

    def _can_restart(self) -> bool:
        """One launcher owns the whole job (a SLURM step or several nodes restart from outside)."""
        return self.opts.launcher != "slurm" and self.opts.topology.nnodes == 1


def command(
    launcher: str, nproc: int, top: Topology, workdir: Path, env: dict[str, str], slurm: dict[str, str] | None
) -> tuple[list[str], list[int], str]:
    """(the command, the global ranks it runs, what it is in words); ``env`` is completed in place."""
    from zerowizard.runner.prepare import free_port

    py = sys.executable
    entry = ["-m", "zerowizard.runner.train", "--workdir", str(workdir)]
    world = nproc * top.nnodes
    if launcher == "auto":
        launcher = "single" if world == 1 else "torchrun"
    if launcher == "slurm":
        assert slurm is not None
        env.update(slurm)
        env.update({k: str(v) for k, v in (("MASTER_ADDR", top.addr), ("MASTER_PORT", top.port)) if v})
        rank = int(slurm["RANK"])
        return [py, *entry], [rank], f"rank {rank} of {slurm['WORLD_SIZE']} (SLURM task)"
    if launcher == "single":
        env.update(
            {
                "RANK": "0",
                "WORLD_SIZE": "1",
                "LOCAL_RANK": "0",
                "LOCAL_WORLD_SIZE": "1",
                "MASTER_ADDR": top.addr or "127.0.0.1",
                "MASTER_PORT": str(top.port or free_port()),
            }
        )
        return [py, *entry], [0], "1 rank (one process)"
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    cmd = [
        py,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        f"--nnodes={top.nnodes}",
        f"--node-rank={top.node_rank}",
        f"--master-addr={top.addr or '127.0.0.1'}",
        f"--master-port={top.port or free_port()}",
        *entry,
    ]
    first = top.node_rank * nproc
    nodes = f", node {top.node_rank} of {top.nnodes}" if top.nnodes > 1 else ""
    return cmd, list(range(first, first + nproc)), f"{nproc} ranks with torchrun{nodes}"
