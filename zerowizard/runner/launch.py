"""``zerowizard run --headless``: check the plan, prepare the run folder, launch the ranks.

Imports nothing heavy at module level (the CLI imports this for its argument parser).

Launchers: ``single`` (one process, still a DeepSpeed engine), ``torchrun`` (one node or several:
--nproc-per-node/--nnodes/--node-rank/--master-addr/--master-port, or XTuner's NPROC_PER_NODE,
NNODES, NODE_RANK, ADDR, PORT), ``slurm`` (one task per rank from SLURM_* variables, as
``srun zerowizard run --headless --launcher slurm``), ``auto`` (single for one rank, else torchrun).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LAUNCHERS = ("auto", "torchrun", "slurm", "single")


def add_run_arguments(parser) -> None:
    """The runner's options on the CLI's ``run`` subparser (flags it already has are kept)."""
    have = set(parser._option_string_actions)
    dests = {a.dest for a in parser._actions}
    g = parser.add_argument_group("run")

    def opt(*flags, **kw):
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
    opt("--output", metavar="DIR", help="run folder (default: a new folder under ./work_dirs)")
    opt(
        "--resume",
        nargs="?",
        const="latest",
        metavar="DIR",
        help="continue from the latest checkpoint of DIR (default: --output, else the newest run)",
    )
    opt("--launcher", choices=LAUNCHERS, default="auto", help="how ranks start (default: auto)")
    opt("--nproc-per-node", type=int, metavar="N", help="ranks on this node (env NPROC_PER_NODE)")
    opt("--nnodes", type=int, metavar="N", help="nodes (env NNODES)")
    opt("--node-rank", type=int, metavar="I", help="this node's rank (env NODE_RANK)")
    opt("--master-addr", metavar="HOST", help="rank 0's address (env ADDR)")
    opt("--master-port", type=int, metavar="PORT", help="rank 0's port (env PORT)")
    opt("--data", metavar="FILE|ID", help="training data: alpaca/chat/oasst1 JSON(L), or a hub dataset id")
    opt("--epochs", type=float, metavar="N", help="training epochs")
    opt("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    opt("--save-steps", type=int, metavar="N", help="checkpoint every N steps (0: only at the end)")
    opt("--lr", type=float, metavar="LR", help="peak learning rate")
    opt("--logging-steps", type=int, metavar="N", help="a step event (loss, tokens/s, memory) every N steps")
    opt(
        "--memory-limit",
        metavar="GiB",
        help="cap each rank's memory as if the device had GiB (CUDA: allocator fraction; CPU: a cgroup)",
    )
    opt("--no-save", action="store_true", help="write no checkpoint and no final model (measuring: zerowizard probe)")


def _env_int(name: str):
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else None


def topology(args, analysis_hw=None) -> dict:
    """nproc, nnodes, node_rank, master address/port from flags, then XTuner's variables."""
    nproc = getattr(args, "nproc_per_node", None) or _env_int("NPROC_PER_NODE")
    return {
        "nproc": nproc,
        "nnodes": getattr(args, "nnodes", None) or _env_int("NNODES") or 1,
        "node_rank": getattr(args, "node_rank", None)
        if getattr(args, "node_rank", None) is not None
        else (_env_int("NODE_RANK") or 0),
        "addr": getattr(args, "master_addr", None) or os.environ.get("ADDR"),
        "port": getattr(args, "master_port", None) or _env_int("PORT"),
    }


def apply_run_options(plan, args):
    """Fold the runner flags that are plan fields (data, epochs, steps, output, topology) in."""
    from zerowizard.core.plan import update

    if getattr(args, "recipe_name", None) and not getattr(args, "recipe", None):
        from zerowizard.planflags import plan_from_args

        args.recipe = args.recipe_name
        plan = plan_from_args(args)
    if getattr(args, "data", None):
        plan = update(plan, "data", path=args.data)
    train = {
        k: getattr(args, a)
        for k, a in (
            ("epochs", "epochs"),
            ("max_steps", "max_steps"),
            ("save_steps", "save_steps"),
            ("learning_rate", "lr"),
            ("logging_steps", "logging_steps"),
        )
        if getattr(args, a, None) is not None
    }
    if train:
        plan = update(plan, "train", **train)
    if getattr(args, "output", None):
        plan = update(plan, None, output=args.output)
    top = topology(args)
    if top["nproc"]:
        plan = update(plan, "hardware", gpus_per_node=top["nproc"])
    if top["nnodes"] > 1:
        plan = update(plan, "hardware", nodes=top["nnodes"])
    return plan


def run_headless(plan, args) -> int:
    """Check, prepare, launch, follow. Returns the exit status (2: plan errors, nothing started)."""
    from zerowizard.core.analysis import analyze
    from zerowizard.core.validation import InputError
    from zerowizard.runner import memlimit, prepare
    from zerowizard.runner.headless import make_printer

    printer = make_printer()
    try:
        plan = _resumed_plan(plan, args)
        plan = apply_run_options(plan, args)
    except Exception as exc:  # noqa: BLE001 - PlanError from a positional recipe or a saved plan
        for line in getattr(exc, "errors", [str(exc)]):
            print(f"zerowizard: error: {line}", file=sys.stderr)
        return 2
    analysis = analyze(plan)
    if analysis.errors:
        for p in analysis.errors:
            print(f"zerowizard: error: {p.field}: {p.message} — {p.fix}", file=sys.stderr)
        print("zerowizard: nothing was started; fix the plan and run again", file=sys.stderr)
        return 2
    hw = analysis.hardware
    launcher = getattr(args, "launcher", "auto") or "auto"
    top = topology(args)
    nproc = top["nproc"] or hw.gpus_per_node
    root = Path("work_dirs")
    try:
        if getattr(args, "resume", None):
            workdir = prepare.resume_dir(args.resume, plan.output, root)
            ckpt = prepare.latest_checkpoint(workdir)
            if ckpt is None:
                raise prepare.PrepareError(f"--resume: no checkpoint in {workdir / 'checkpoints'}")
        else:
            ckpt = None
            if plan.output:
                workdir = Path(plan.output)
            elif top["nnodes"] > 1:
                raise prepare.PrepareError(
                    "several nodes: give --output DIR, the same path on every "
                    "node (shared storage, so rank 0's checkpoints are found)"
                )
            elif launcher == "slurm" and os.environ.get("SLURM_JOB_ID"):
                workdir = root / f"slurm_{os.environ['SLURM_JOB_ID']}"
            else:
                name = getattr(args, "recipe", None) or f"{Path(plan.model.name).name}_{plan.method.type}"
                workdir = prepare.new_output_dir(root, name)
        model_path, trust = prepare.resolve_model(analysis.model, None)
        data = prepare.resolve_data(plan.data.path, plan.data.format)
        slurm = prepare.slurm_env() if launcher == "slurm" else None
        mem_limit = memlimit.limit_spec(getattr(args, "memory_limit", None), hw.accelerator)
    except (prepare.PrepareError, InputError) as exc:
        print(f"zerowizard: error: {exc}", file=sys.stderr)
        return 2
    workdir = workdir.resolve()
    selected = getattr(analysis, "selected", None)
    spec = {
        "model_path": model_path,
        "trust_remote_code": trust,
        "data": data,
        "precision": analysis.precision,
        "accelerator": hw.accelerator,
        "resume_from": str(ckpt) if ckpt else None,
        "predicted_per_gpu_bytes": selected.per_gpu.total if selected else None,
        "memory_limit": mem_limit,
        "save": not getattr(args, "no_save", False),
    }
    prepare.write_run_files(workdir, plan, analysis.ds.config, spec)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if hw.accelerator == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
        printer.notice(
            "notice: no CUDA device: training on the CPU accelerator (DS_ACCELERATOR=cpu, "
            f"gloo, {analysis.precision}); slow, but every path is real"
        )
    printer.notice(f"run folder: {workdir}")
    cmd, ranks, writes = _command(launcher, nproc, top, workdir, env, slurm)
    from zerowizard.runner.supervise import Supervisor

    sup = Supervisor(cmd, env, workdir, printer, ranks, writes_events=writes)
    try:
        rc = sup.run()
    finally:
        printer.close()
    if rc == 0 and writes:  # one summary per job: rank 0's launcher (not every SLURM task / node)
        _summary(printer, workdir)
    return rc


def _resumed_plan(plan, args):
    """`--resume` without --plan/--recipe continues the run's own saved plan.yaml (the runner
    flags --max-steps/--epochs/--save-steps still apply on top)."""
    if (
        not getattr(args, "resume", None)
        or getattr(args, "plan", None)
        or getattr(args, "recipe", None)
        or getattr(args, "recipe_name", None)
    ):
        return plan
    from zerowizard.core.plan import load_plan, update
    from zerowizard.runner import prepare

    try:
        workdir = prepare.resume_dir(args.resume, getattr(args, "output", None) or plan.output, Path("work_dirs"))
    except prepare.PrepareError:
        return plan  # reported later, with the rest of the resume checks
    saved = workdir / "plan.yaml"
    return update(load_plan(saved), None, output=str(workdir)) if saved.is_file() else plan


def _command(launcher, nproc, top, workdir: Path, env: dict, slurm):
    py = sys.executable
    entry = ["-m", "zerowizard.runner.train", "--workdir", str(workdir)]
    world = nproc * top["nnodes"]
    if launcher == "auto":
        launcher = "single" if world == 1 else "torchrun"
    if launcher == "slurm":
        env.update(slurm)
        rank = int(slurm["RANK"])
        return [py, *entry], [rank], rank == 0
    if launcher == "single":
        from zerowizard.runner.prepare import free_port

        env.update(
            {
                "RANK": "0",
                "WORLD_SIZE": "1",
                "LOCAL_RANK": "0",
                "LOCAL_WORLD_SIZE": "1",
                "MASTER_ADDR": top["addr"] or "127.0.0.1",
                "MASTER_PORT": str(top["port"] or free_port()),
            }
        )
        return [py, *entry], [0], True
    from zerowizard.runner.prepare import free_port

    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    cmd = [
        py,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        f"--nnodes={top['nnodes']}",
        f"--node-rank={top['node_rank']}",
        f"--master-addr={top['addr'] or '127.0.0.1'}",
        f"--master-port={top['port'] or free_port()}",
        *entry,
    ]
    first = top["node_rank"] * nproc
    return cmd, list(range(first, first + nproc)), top["node_rank"] == 0


def _summary(printer, workdir: Path) -> None:
    from zerowizard.runner.events import read_events

    events = read_events(workdir / "events.jsonl")
    steps = [e for e in events if e.get("event") == "step"]
    end = next((e for e in reversed(events) if e.get("event") == "end"), {})
    ckpts = [e["path"] for e in events if e.get("event") == "checkpoint"]
    if steps:
        printer.notice(f"loss {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f} over {steps[-1]['step']} steps")
    printer.notice(f"final model:   {end.get('final_model', workdir / 'final')}")
    if ckpts:
        printer.notice(f"checkpoint:    {ckpts[-1]}")
    printer.notice(f"DeepSpeed JSON: {workdir / 'ds_config.json'}")
    printer.notice(f"plan:          {workdir / 'plan.yaml'}")
    printer.notice(f"events:        {workdir / 'events.jsonl'}")
    printer.notice(f"rank logs:     {workdir / 'logs'}")
