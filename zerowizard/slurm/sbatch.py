"""``zerowizard --export-sbatch JOB.sh``: an sbatch script for a plan, with the plan and the
DeepSpeed JSON beside it.

    JOB.sh               #SBATCH nodes / tasks per node (one per GPU) / gres / output / error,
                         then ``srun --kill-on-bad-exit=1 zerowizard run --headless --launcher slurm
                         --plan JOB.plan.yaml --output ...``
    JOB.plan.yaml        the plan, made portable: absolute paths, nodes and GPUs per node explicit
    JOB.ds_config.json   the DeepSpeed JSON the run will build (the run writes the same into its folder)

Pure Python: no torch, no deepspeed (the CLI and the TUI import this).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from zerowizard import __version__


@dataclass(frozen=True)
class SbatchFiles:
    script: Path
    plan: Path
    ds_config: Path


def files_for(script: str | Path) -> SbatchFiles:
    """job.sh -> job.sh, job.plan.yaml, job.ds_config.json (absolute)."""
    script = Path(script).expanduser().absolute()
    stem = script.stem if script.suffix in (".sh", ".sbatch", ".slurm") else script.name
    return SbatchFiles(script, script.with_name(f"{stem}.plan.yaml"), script.with_name(f"{stem}.ds_config.json"))


def _abs_if_local(value: str | None, base: Path) -> str | None:
    """A path that exists relative to ``base`` becomes absolute; names (catalog, hub ids) stay."""
    if not value:
        return value
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    cand = base / p
    if cand.exists() or value.startswith((".", "~")) or p.suffix.lower() in (".json", ".jsonl", ".yaml", ".yml"):
        return str(cand.resolve())
    return value


def portable_plan(plan, hardware, base: Path | None = None):
    """The plan as the job will read it on another machine, from another folder: relative paths
    made absolute (against ``base``, default the current folder) and the topology pinned, so the
    nodes the script asks for and the plan the ranks read cannot disagree."""
    from zerowizard.core.plan import update

    base = Path.cwd() if base is None else base
    plan = update(plan, "model", name=_abs_if_local(plan.model.name, base))
    plan = update(plan, None, deepspeed=_abs_if_local(plan.deepspeed, base))
    if plan.data.path:
        plan = update(plan, "data", path=_abs_if_local(plan.data.path, base))
    if plan.zero.nvme_path and not Path(plan.zero.nvme_path).is_absolute():
        plan = update(plan, "zero", nvme_path=str((base / plan.zero.nvme_path).resolve()))
    if plan.output:
        plan = update(plan, None, output=str((base / Path(plan.output).expanduser()).resolve()))
    return update(plan, "hardware", nodes=hardware.nodes, gpus_per_node=hardware.gpus_per_node)


def job_name(files: SbatchFiles) -> str:
    return "zw-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in files.plan.name[: -len(".plan.yaml")])


def render(
    analysis,
    files: SbatchFiles,
    *,
    partition: str | None = None,
    time: str | None = None,
    account: str | None = None,
    output_dir: str | None = None,
) -> str:
    """The sbatch script text for an analysed (error-free) plan."""
    hw = analysis.hardware
    plan = analysis.plan
    stem = files.plan.name[: -len(".plan.yaml")]
    folder = files.script.parent
    q = shlex.quote
    out = output_dir or f"{folder}/work_dirs/{stem}_${{SLURM_JOB_ID}}"
    model = analysis.model.name if analysis.model else plan.model.name
    zero = analysis.zero
    offload = [
        f"{name}={dev}"
        for name, dev in (("offload_optimizer", zero.offload_optimizer), ("offload_param", zero.offload_param))
        if dev not in (None, "none")
    ]
    lines = [
        "#!/bin/bash",
        f"# Written by zerowizard {__version__}: {model}, {plan.method.type}, ZeRO-{zero.stage}"
        + (f" ({', '.join(offload)})" if offload else "")
        + f", {analysis.precision}.",
        f"# {hw.nodes} node(s) x {hw.gpus_per_node} {'CPU rank(s)' if hw.is_cpu else hw.name} "
        f"= world size {hw.world_size}; one SLURM task per {'rank' if hw.is_cpu else 'GPU'}.",
        f"# Plan: {files.plan}",
        f"# DeepSpeed JSON: {files.ds_config}",
        "# Submit from an environment where `zerowizard` is on PATH (sbatch passes it on): sbatch "
        + q(str(files.script)),
        f"#SBATCH --job-name={job_name(files)}",
        f"#SBATCH --nodes={hw.nodes}",
        f"#SBATCH --ntasks-per-node={hw.gpus_per_node}",
    ]
    if not hw.is_cpu:
        lines.append(f"#SBATCH --gres=gpu:{hw.gpus_per_node}")
    lines += [f"#SBATCH --output={folder}/{stem}-%j.out", f"#SBATCH --error={folder}/{stem}-%j.err"]
    for flag, value in (("partition", partition), ("time", time), ("account", account)):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [
        "",
        "set -euo pipefail",
        "# One OpenMP thread per rank unless the job asks for more CPUs per task (torchrun's default).",
        'export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"',
        "# The ranks take RANK, WORLD_SIZE, LOCAL_RANK and the master address (the first host of",
        "# SLURM_JOB_NODELIST) from SLURM; set MASTER_PORT here to choose the port.",
        "",
        "srun --kill-on-bad-exit=1 zerowizard run --headless --launcher slurm \\",
        f"    --plan {q(str(files.plan))} \\",
        f'    --output "{out}"',
        "",
    ]
    return "\n".join(lines) + "\n"


class SbatchError(ValueError):
    """Nothing was written. ``problems``: the plan's errors (Problem objects), ``message``: why."""

    def __init__(self, message: str, problems=()):
        super().__init__(message)
        self.message, self.problems = message, list(problems)


def export_sbatch(
    plan, target: str | Path, *, partition: str | None = None, time: str | None = None, account: str | None = None
):
    """Write JOB.sh, JOB.plan.yaml and JOB.ds_config.json for ``plan``; returns (files, analysis).

    For the CLI and the TUI alike. Raises :class:`SbatchError` (nothing written) on plan errors or
    a bad target; OSError when a file cannot be written."""
    from zerowizard.core.analysis import analyze
    from zerowizard.core.dsconfig import write_json_atomic, write_text_atomic
    from zerowizard.core.plan import dump_plan

    target = Path(target)
    a = analyze(plan)
    if a.errors:
        raise SbatchError(f"not written: {target} (fix the errors above; an existing file is left as it was)", a.errors)
    if target.is_dir():
        raise SbatchError(f"{target} is a directory; give a file name, e.g. {target / 'job.sh'}")
    if not target.absolute().parent.is_dir():
        raise SbatchError(f"the folder of {target} does not exist; create it first")
    files = files_for(target)
    job_plan = portable_plan(plan, a.hardware)
    a = analyze(job_plan)  # the exact plan the ranks will read
    if a.errors:  # a path made absolute that no longer resolves: say so rather than write a bad job
        raise SbatchError(f"not written: {target}", a.errors)
    text = render(a, files, partition=partition, time=time, account=account, output_dir=job_plan.output)
    write_text_atomic(files.plan, dump_plan(job_plan))
    write_json_atomic(files.ds_config, a.ds.config)
    write_text_atomic(files.script, text, mode=0o755)
    return files, a


def cmd_export_sbatch(args, plan) -> int:
    """``zerowizard --export-sbatch JOB.sh``. 0 written; 2 plan errors or a bad target (nothing
    written); 1 a file could not be written."""
    from zerowizard.commands import _console, print_problems

    err = _console(stderr=True)
    try:
        files, a = export_sbatch(
            plan,
            args.export_sbatch,
            partition=getattr(args, "partition", None),
            time=getattr(args, "time", None),
            account=getattr(args, "account", None),
        )
    except SbatchError as exc:
        if exc.problems:
            print_problems(exc.problems, err)
            err.print(f"[red]{exc.message}[/]")
        else:
            err.print(f"[red]error:[/] {exc.message}")
        return 2
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write: {exc.strerror or exc} ({exc.filename or ''})")
        return 1
    out = _console()
    hw = a.hardware
    out.print(
        f"wrote {files.script} ({hw.nodes} node(s) x {hw.gpus_per_node} tasks, ZeRO-{a.zero.stage}, {a.precision})"
    )
    out.print(f"wrote {files.plan}")
    out.print(f"wrote {files.ds_config}")
    out.print(f"submit: sbatch {shlex.quote(str(files.script))}")
    if hw.is_cpu and plan.hardware.gpu.strip().lower() == "auto":
        err.print(
            "[yellow]note:[/] no GPU here, so the job is sized for CPU ranks; pass --gpus NxGPU "
            "(e.g. --gpus 8xA100-80GB) to size it for the cluster's GPUs"
        )
    warnings = [p for p in a.problems if p.severity == "warning"]
    if warnings:
        print_problems(warnings, err)
    return 0
