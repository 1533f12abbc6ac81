"""The run's options: built once from the flags, the plan, the launcher variables and (with
``--resume``) the saved run, validated before anything is written, then handed on as one frozen
:class:`RunOptions` (the runner never reads the argparse Namespace).

Imports nothing heavy (the CLI imports this for its parser).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerowizard.core.plan import Plan, PlanError, TrainSection, plan_from_dict, plan_to_dict
from zerowizard.core.text import excerpt
from zerowizard.core.validation import InputError, parse_number

LAUNCHERS = ("auto", "torchrun", "slurm", "single")
ON_OOM = ("retry", "stop")
WORK_DIRS = Path("work_dirs")

RESUME_RULE = (
    "continue a run from its latest checkpoint: DIR, else --output, else the newest run under "
    "./work_dirs. The run's saved plan.yaml is the base (--plan or a recipe replaces it); every flag "
    "given on this command line applies on top of it, and each field that changes is printed in one line"
)

# runner flag dest -> (plan field in `train`, flag)
TRAIN_FLAGS = {
    "epochs": "epochs",
    "max_steps": "max_steps",
    "save_steps": "save_steps",
    "lr": "learning_rate",
    "logging_steps": "logging_steps",
}


@dataclass(frozen=True)
class Topology:
    """Where this launcher's ranks sit in the job."""

    nproc: int | None  # ranks on this node; None: the plan's gpus_per_node
    nnodes: int = 1
    node_rank: int = 0
    addr: str | None = None  # rank 0's host
    port: int | None = None  # rank 0's port; None: a free one (one node)


@dataclass(frozen=True)
class RunOptions:
    """Everything ``zerowizard run`` acts on, validated."""

    plan: Plan  # flags, recipe and saved run merged
    launcher: str  # auto | torchrun | slurm | single
    topology: Topology
    output: Path | None  # the run folder given (--output or the resumed run), else None: a new one
    resume: bool  # continue output's latest checkpoint
    on_oom: str = "retry"  # retry | stop
    memory_limit_gib: float | None = None  # per-rank memory limit (--memory-limit)
    save: bool = True  # False (--no-save): no checkpoint, no final model
    name: str = "run"  # a new run folder's name stem
    changes: tuple[str, ...] = ()  # one line per field the merge with the saved run changed

    @property
    def leads(self) -> bool:
        """Whether this launcher leads the job: writes its events, prints the summary, holds the lock
        (node rank 0 under torchrun; task 0 under SLURM)."""
        if self.launcher == "slurm":
            return os.environ.get("SLURM_PROCID", "0") == "0"
        return self.topology.node_rank == 0


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The runner's options on the CLI's ``run`` subparser (flags it already has are kept)."""
    have = set(parser._option_string_actions)
    dests = {a.dest for a in parser._actions}
    g = parser.add_argument_group(
        "run",
        description="Resuming: `--resume DIR --max-steps 200 --lr 1e-4` replays DIR/plan.yaml with these two "
        "changes, printed as `resume: train.max_steps: 100 -> 200`. Every flag is checked before anything "
        "is written; one run at a time per --output folder.",
    )

    def opt(*flags: str, **kw: Any) -> None:
        if not any(f in have for f in flags):
            g.add_argument(*flags, **kw)

    if "recipe_name" not in dests:
        g.add_argument(
            "recipe_name",
            nargs="?",
            metavar="RECIPE",
            help="a recipe name, as in `xtuner train NAME` (same as --recipe NAME)",
        )
    opt("--headless", action="store_true", help="print progress (rich on a terminal, plain lines otherwise)")
    opt("--output", metavar="DIR", help="run folder (default: a new folder under ./work_dirs); one run at a time")
    opt("--resume", nargs="?", const="latest", metavar="DIR", help=RESUME_RULE)
    opt("--launcher", choices=LAUNCHERS, default="auto", help="how ranks start (default: auto)")
    opt("--nproc-per-node", metavar="N", help="ranks on this node (env NPROC_PER_NODE)")
    opt("--nnodes", metavar="N", help="nodes (env NNODES)")
    opt("--node-rank", metavar="I", help="this node's rank, 0 to nodes-1 (env NODE_RANK)")
    opt("--master-addr", metavar="HOST", help="rank 0's address (env ADDR, else MASTER_ADDR)")
    opt("--master-port", metavar="PORT", help="rank 0's port, 1-65535 (env PORT, else MASTER_PORT)")
    opt("--data", metavar="FILE|ID", help="training data: alpaca/chat/oasst1 JSON(L), or a hub dataset id")
    opt("--epochs", metavar="N", help="training epochs (above 0)")
    opt("--max-steps", metavar="N", help="stop after N optimizer steps (1 or more)")
    opt("--save-steps", metavar="N", help="checkpoint every N steps (0: only at the end)")
    opt("--lr", metavar="LR", help="peak learning rate (0 or more)")
    opt("--logging-steps", metavar="N", help="a step event (loss, tokens/s, memory) every N steps (1 or more)")
    opt(
        "--memory-limit",
        metavar="GiB",
        help="cap each rank's memory as if the device had GiB (CUDA: allocator fraction; CPU: a cgroup)",
    )
    opt("--no-save", action="store_true", help="write no checkpoint and no final model (measuring: zerowizard probe)")
    opt(
        "--on-oom",
        choices=ON_OOM,
        default="retry",
        help="when a rank runs out of memory: retry from the last checkpoint with half the micro batch and "
        "twice the accumulation (then a higher ZeRO stage, then offload), or stop (default: retry)",
    )


class _Errors(list[str]):
    def number(self, text: str | None, label: str, fix: str, **bounds: Any) -> Any:
        """The parsed value of a flag or variable, or None (the problem recorded)."""
        if text is None:
            return None
        try:
            return parse_number(text, **bounds)
        except InputError as exc:
            self.append(f"{label}: {exc}; {fix}")
            return None


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value is not None and value != "" else None


_HOST = re.compile(r"[A-Za-z0-9_.:\[\]-]+")


def _topology(args: argparse.Namespace, launcher: str, errors: _Errors) -> Topology:
    """Flags first, then XTuner's variables (NPROC_PER_NODE, NNODES, NODE_RANK, ADDR, PORT), then
    torch's MASTER_ADDR/MASTER_PORT; under SLURM the topology comes from SLURM_* and only
    MASTER_ADDR/MASTER_PORT are read."""

    def pick(dest: str, var: str) -> tuple[str | None, str]:
        flag = getattr(args, dest, None)
        if flag is not None:
            return str(flag), "--" + dest.replace("_", "-")
        if launcher == "slurm":
            return None, var
        value = _env(var)
        return value, f"{var}={excerpt(value, 20, quote=False)}" if value is not None else var

    text, label = pick("nproc_per_node", "NPROC_PER_NODE")
    nproc = errors.number(text, label, "give the number of ranks on this node (1 or more)", integer=True, minimum=1)
    text, label = pick("nnodes", "NNODES")
    nnodes = errors.number(text, label, "give the number of nodes (1 or more)", integer=True, minimum=1) or 1
    text, label = pick("node_rank", "NODE_RANK")
    node_rank = errors.number(
        text, label, f"give this node's rank, 0 to {nnodes - 1}", integer=True, minimum=0, maximum=nnodes - 1
    )
    text, label = pick("master_addr", "ADDR")
    if text is None and _env("MASTER_ADDR") is not None:
        text, label = _env("MASTER_ADDR"), f"MASTER_ADDR={excerpt(_env('MASTER_ADDR'), 20, quote=False)}"
    addr = text
    if text is not None and not _HOST.fullmatch(text):
        errors.append(f"{label}: {excerpt(text)} is not a host name or address; give rank 0's host, e.g. 10.0.0.1")
        addr = None
    text, label = pick("master_port", "PORT")
    if text is None and _env("MASTER_PORT") is not None:
        text, label = _env("MASTER_PORT"), f"MASTER_PORT={excerpt(_env('MASTER_PORT'), 20, quote=False)}"
    port = errors.number(text, label, "give a free TCP port, 1 to 65535", integer=True, minimum=1, maximum=65535)
    return Topology(nproc=nproc, nnodes=nnodes, node_rank=node_rank or 0, addr=addr, port=port)


def _train_values(args: argparse.Namespace, errors: _Errors) -> dict[str, Any]:
    """--epochs/--max-steps/--save-steps/--lr/--logging-steps, bounded by the plan's own fields."""
    meta = {f.name: f.metadata for f in dataclasses.fields(TrainSection)}
    out = {}
    for dest, key in TRAIN_FLAGS.items():
        text = getattr(args, dest, None)
        if text is None:
            continue
        m = meta[key]
        integer, minimum = m["kind"] is int, m["minimum"]
        what = "a whole number" if integer else "a number"
        bound = f"{minimum:g} or more" if integer or minimum == 0 else f"above 0 (at least {minimum:g})"
        value = errors.number(
            text, "--" + dest.replace("_", "-"), f"give {what}, {bound} ({m['doc']})", integer=integer, minimum=minimum
        )
        if value is not None:
            out[key] = value
    return out


def _plan_namespace(args: argparse.Namespace, **changes: Any) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def _base_plan(args: argparse.Namespace, plan: Plan, errors: _Errors) -> tuple[Plan, Path | None, Plan | None]:
    """(the plan to run before the runner flags, the run folder to resume, the resumed run's saved plan)."""
    from zerowizard.planflags import plan_from_args
    from zerowizard.runner import prepare

    recipe = getattr(args, "recipe_name", None)
    if recipe and getattr(args, "recipe", None) and recipe != args.recipe:
        errors.append(f"RECIPE: {recipe!r} and --recipe {args.recipe!r}; name the recipe once")
    elif recipe and not getattr(args, "recipe", None):
        plan = plan_from_args(_plan_namespace(args, recipe=recipe))
    resume = getattr(args, "resume", None)
    if not resume:
        return plan, None, None
    output = getattr(args, "output", None)
    workdir = prepare.resume_dir(resume, output, WORK_DIRS)  # PrepareError: nothing to resume
    if output and resume != "latest" and Path(output).resolve() != workdir.resolve():
        errors.append(f"--output: --resume {resume} continues in that folder; drop --output or resume {output}")
    saved_file = workdir / "plan.yaml"
    saved = None
    if saved_file.is_file():
        from zerowizard.core.plan import load_plan

        saved = load_plan(saved_file)
        if not (getattr(args, "plan", None) or getattr(args, "recipe", None) or recipe):
            plan = plan_from_args(_plan_namespace(args, plan=str(saved_file)))
    return plan, workdir, saved


def _apply(plan: Plan, args: argparse.Namespace, train: dict[str, Any], top: Topology, output: Path | None) -> Plan:
    data = plan_to_dict(plan)
    data["train"].update(train)
    if getattr(args, "data", None):
        data["data"]["path"] = args.data
    if output is not None:
        data["output"] = str(output)
    if top.nproc:
        data["hardware"]["gpus_per_node"] = top.nproc
    if top.nnodes > 1:
        data["hardware"]["nodes"] = top.nnodes
    return plan_from_dict(data)


def plan_changes(before: Plan, after: Plan) -> list[str]:
    """One line per field that differs: ``batch.micro_batch: 4 -> 2``."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(plan_to_dict(before)), flat(plan_to_dict(after))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in b if a.get(k) != b.get(k) and k != "output"]


def _new_name(args: argparse.Namespace, plan: Plan) -> str:
    recipe = getattr(args, "recipe", None) or getattr(args, "recipe_name", None)
    return str(recipe) if recipe else f"{Path(plan.model.name).name}_{plan.method.type}"


def build_run_options(args: argparse.Namespace, plan: Plan) -> RunOptions:
    """Validate every run flag and launcher variable with the plan, merge the saved run for
    ``--resume``; raise PlanError listing every problem (nothing is written here)."""
    from zerowizard.runner.prepare import PrepareError

    errors = _Errors()
    launcher = getattr(args, "launcher", None) or "auto"
    top = _topology(args, launcher, errors)
    train = _train_values(args, errors)
    limit = errors.number(
        getattr(args, "memory_limit", None),
        "--memory-limit",
        "give GiB per rank, e.g. --memory-limit 24",
        minimum=0.001,
    )
    try:
        base, resume_dir, saved = _base_plan(args, plan, errors)
    except PrepareError as exc:
        errors.append(str(exc))
        raise PlanError(errors) from None
    output = resume_dir or (Path(args.output) if getattr(args, "output", None) else None)
    if output is None and base.output:
        output = Path(base.output)
    if output is None and top.nnodes > 1:
        errors.append(
            "--output: several nodes need one run folder: give --output DIR, the same path on every node "
            "(shared storage, so rank 0's checkpoints are found)"
        )
    if top.nnodes > 1 and top.port is None and launcher != "slurm":
        errors.append("--master-port: several nodes meet at rank 0's port; give the same --master-port on every node")
    if errors:
        raise PlanError(errors)
    final = _apply(base, args, train, top, output)  # PlanError names the field
    return RunOptions(
        plan=final,
        launcher=launcher,
        topology=top,
        output=output,
        resume=resume_dir is not None,
        on_oom=getattr(args, "on_oom", None) or "retry",
        memory_limit_gib=limit,
        save=not getattr(args, "no_save", False),
        name=_new_name(args, final),
        changes=tuple(plan_changes(saved, final)) if saved is not None else (),
    )
