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

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerowizard import __version__
from zerowizard.core.text import excerpt
from zerowizard.core.validation import InputError


@dataclass(frozen=True)
class SbatchFiles:
    script: Path
    plan: Path
    ds_config: Path


# SLURM's --time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds; or no limit.
_TIME_FORMATS = (
    re.compile(r"(?P<m>\d{1,9})"),
    re.compile(r"(?P<m>\d{1,9}):(?P<s>\d{1,2})"),
    re.compile(r"(?P<h>\d{1,9}):(?P<m>\d{1,2}):(?P<s>\d{1,2})"),
    re.compile(r"(?P<d>\d{1,6})-(?P<h>\d{1,2})"),
    re.compile(r"(?P<d>\d{1,6})-(?P<h>\d{1,2}):(?P<m>\d{1,2})"),
    re.compile(r"(?P<d>\d{1,6})-(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})"),
)
_NO_LIMIT = ("unlimited", "infinite")
_SLURM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
TIME_HELP = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED (e.g. 30, 24:00:00, 2-00:00:00)"


def check_time(value: str) -> str:
    """A SLURM time limit as typed (``--time``), or InputError saying which formats SLURM takes."""
    text = str(value).strip()
    if text.lower() in _NO_LIMIT:
        return text
    for pattern in _TIME_FORMATS:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        parts = m.groupdict()
        leading = next(k for k in ("d", "h", "m", "s") if parts.get(k) is not None)
        limits = {"h": 24, "m": 60, "s": 60}
        for key, limit in limits.items():
            if key != leading and parts.get(key) is not None and int(parts[key]) >= limit:
                raise InputError(f"--time: {excerpt(value)} has {parts[key]} {_UNITS[key]}; at most {limit - 1}")
        return text
    raise InputError(f"--time: {excerpt(value)} is not a SLURM time limit; use {TIME_HELP}")


_UNITS = {"h": "hours", "m": "minutes", "s": "seconds"}


def check_slurm_name(flag: str, value: str, *, many: bool = False) -> str:
    """A partition (``many``: a comma-separated list of them) or account name as SLURM names
    them: letters, digits, ``_ . + -``; never a space, a quote, a ``$`` or a newline."""
    text = str(value)
    names = text.split(",") if many else [text]
    for name in names:
        if not _SLURM_NAME.fullmatch(name):
            what = "a partition" if flag == "--partition" else "an account"
            listing = " (or a comma-separated list of them)" if many else ""
            raise InputError(
                f"{flag}: {excerpt(value)} is not {what} name; SLURM names are letters, digits and _ . + -"
                f"{listing}, e.g. gpu"
            )
    return text


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


def _one_line(text: object) -> str:
    """Text for a comment line of the script: control characters (a newline would end the
    comment and start a command) shown as '?'."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _slurm_path(path: str) -> str:
    """A path for an #SBATCH filename option: '%' doubled (SLURM reads %j, %N... as patterns),
    then quoted as one argument (sbatch reads '...' and "..." in #SBATCH lines as the shell does)."""
    return shlex.quote(path.replace("%", "%%"))


def render(
    analysis,
    files: SbatchFiles,
    *,
    partition: str | None = None,
    time: str | None = None,
    account: str | None = None,
    output_dir: str | None = None,
) -> str:
    """The sbatch script text for an analysed (error-free) plan.

    Nothing typed by the user reaches the script unquoted: names and paths in comments are one
    line each (control characters shown as '?'), #SBATCH values are validated SLURM names or
    quoted paths, and the srun line quotes every path (the job id is the only expansion)."""
    hw = analysis.hardware
    plan = analysis.plan
    stem = files.plan.name[: -len(".plan.yaml")]
    folder = files.script.parent
    q = shlex.quote
    if output_dir:
        out = q(output_dir)
    else:
        out = q(f"{folder}/work_dirs/{stem}_") + '"${SLURM_JOB_ID}"'
    model = analysis.model.name if analysis.model else plan.model.name
    zero = analysis.zero
    offload = [
        f"{name}={dev}"
        for name, dev in (("offload_optimizer", zero.offload_optimizer), ("offload_param", zero.offload_param))
        if dev not in (None, "none")
    ]
    lines = [
        "#!/bin/bash",
        _one_line(
            f"# Written by zerowizard {__version__}: {model}, {plan.method.type}, ZeRO-{zero.stage}"
            + (f" ({', '.join(offload)})" if offload else "")
            + f", {analysis.precision}."
        ),
        _one_line(
            f"# {hw.nodes} node(s) x {hw.gpus_per_node} {'CPU rank(s)' if hw.is_cpu else hw.name} "
            f"= world size {hw.world_size}; one SLURM task per {'rank' if hw.is_cpu else 'GPU'}."
        ),
        _one_line(f"# Plan: {files.plan}"),
        _one_line(f"# DeepSpeed JSON: {files.ds_config}"),
        _one_line(
            "# Submit from an environment where `zerowizard` is on PATH (sbatch passes it on): sbatch "
            + q(str(files.script))
        ),
        f"#SBATCH --job-name={job_name(files)}",
        f"#SBATCH --nodes={int(hw.nodes)}",
        f"#SBATCH --ntasks-per-node={int(hw.gpus_per_node)}",
    ]
    if not hw.is_cpu:
        lines.append(f"#SBATCH --gres=gpu:{int(hw.gpus_per_node)}")
    lines += [
        f"#SBATCH --output={_slurm_path(f'{folder}/{stem}')}-%j.out",
        f"#SBATCH --error={_slurm_path(f'{folder}/{stem}')}-%j.err",
    ]
    for flag, value in (("partition", partition), ("time", time), ("account", account)):
        if value:
            lines.append(f"#SBATCH --{flag}={q(value)}")
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
        f"    --output {out}",
        "",
    ]
    return "\n".join(lines) + "\n"


class SbatchError(ValueError):
    """Nothing was written. ``problems``: the plan's errors (Problem objects), ``message``: why."""

    def __init__(self, message: str, problems=()):
        super().__init__(message)
        self.message, self.problems = message, list(problems)


@dataclass(frozen=True)
class SbatchJob:
    """An sbatch export ready to write: its files, the analysis of the job's plan, the outputs."""

    files: SbatchFiles
    analysis: Any  # zerowizard.core.analysis.Analysis (imported lazily)
    outputs: tuple


def prepare_sbatch(
    plan, target: str | Path, *, partition: str | None = None, time: str | None = None, account: str | None = None
) -> SbatchJob:
    """Everything of an sbatch export except the writing (so another export can join it and all
    files appear together). InputError for a bad value or target, SbatchError for plan errors."""
    from zerowizard.core.analysis import analyze
    from zerowizard.core.plan import dump_plan
    from zerowizard.core.writer import Output, resolve_target

    partition = check_slurm_name("--partition", partition, many=True) if partition is not None else None
    account = check_slurm_name("--account", account) if account is not None else None
    time = check_time(time) if time is not None else None
    resolve_target(target, "--export-sbatch")  # empty, a directory, a device, a missing folder, a newline
    target = Path(target)
    a = analyze(plan)
    if a.errors:
        raise SbatchError(f"not written: {target} (fix the errors above; an existing file is left as it was)", a.errors)
    files = files_for(target)
    job_plan = portable_plan(plan, a.hardware)
    a = analyze(job_plan)  # the exact plan the ranks will read
    if a.errors:  # a path made absolute that no longer resolves: say so rather than write a bad job
        raise SbatchError(f"not written: {target}", a.errors)
    text = render(a, files, partition=partition, time=time, account=account, output_dir=job_plan.output)
    assert a.ds is not None  # no errors: the base was read
    outputs = (
        Output(files.plan, dump_plan(job_plan)),
        Output(files.ds_config, json.dumps(a.ds.config, indent=2, allow_nan=False) + "\n"),
        Output(files.script, text, 0o755),
    )
    return SbatchJob(files, a, outputs)


def export_sbatch(
    plan, target: str | Path, *, partition: str | None = None, time: str | None = None, account: str | None = None
):
    """Write JOB.sh, JOB.plan.yaml and JOB.ds_config.json for ``plan``, all three or none;
    returns (files, analysis).

    For the CLI and the TUI alike. Raises :class:`SbatchError` (nothing written) on plan errors,
    InputError (nothing written) on a bad value or target; OSError (nothing written) when a file
    cannot be written."""
    from zerowizard.core.writer import write_all

    job = prepare_sbatch(plan, target, partition=partition, time=time, account=account)
    write_all(job.outputs, "--export-sbatch")
    return job.files, job.analysis


def describe_written(job: SbatchJob, plan, out, err) -> None:
    """What `--export-sbatch` prints after writing (rich consoles ``out`` and ``err``)."""
    from zerowizard.commands import print_problems

    a = job.analysis
    files = job.files
    hw = a.hardware
    out.print(
        f"wrote {files.script} ({hw.nodes} node(s) x {hw.gpus_per_node} tasks, ZeRO-{a.zero.stage}, {a.precision})",
        markup=False,
    )
    out.print(f"wrote {files.plan}", markup=False)
    out.print(f"wrote {files.ds_config}", markup=False)
    out.print(f"submit: sbatch {shlex.quote(str(files.script))}", markup=False)
    if hw.is_cpu and plan.hardware.gpu.strip().lower() == "auto":
        err.print(
            "[yellow]note:[/] no GPU here, so the job is sized for CPU ranks; pass --gpus NxGPU "
            "(e.g. --gpus 8xA100-80GB) to size it for the cluster's GPUs"
        )
    warnings = [p for p in a.problems if p.severity == "warning"]
    if warnings:
        print_problems(warnings, err)
