"""The command line: `zerowizard [COMMAND] [plan flags]`.

Bare `zerowizard` opens the wizard; the subcommands run headless on the same core.
Exit codes: 0 ok, 2 invalid input (a bad flag or file, a plan or JSON with errors; `estimate` prints its
table and still exits 2 when the plan has errors), 1 runtime failure or a bug (the traceback is saved
under ~/.cache/zerowizard/crash/, never printed), 130/143 stopped.
"""

from __future__ import annotations

import argparse
import os
import sys

from .core.plan import PlanError
from .core.validation import InputError
from .planflags import add_plan_arguments, plan_from_args

EPILOG = """examples:
  zerowizard                                        open the wizard (loads ./zerowizard.yaml if present)
  zerowizard estimate --model llama-3-8b --method lora --gpus 8xA100-80GB
  zerowizard estimate --model internlm2-chat-7b --method qlora --gpus 1xA10-24GB --json
  zerowizard --export ds.json --model qwen2.5-7b --gpus 4xH100-80GB --deepspeed deepspeed_zero3
  zerowizard --export ds.json --deepspeed my_ds.json --micro-batch 4 --grad-accum 8
  zerowizard validate my_ds.json --gpus 8
  zerowizard validate plan.yaml
  zerowizard run --headless                         train the embedded tiny default (CPU is fine)
  zerowizard run --headless --recipe internlm2_chat_7b_qlora_oasst1_e3 --deepspeed deepspeed_zero2
  zerowizard gpus --json
  zerowizard presets
  zerowizard probe --memory-limit 24 --apply plan.yaml   measure candidate configs, keep the fastest that fits
  zerowizard export-model work_dirs/RUN --merge-lora   a Hugging Face folder out of a run
  zerowizard calibrate                              measure this machine for the time model (CPU runs)

exit codes: 0 ok; 2 bad input (a flag, a file, a plan or JSON with errors: `estimate` still prints its
table); 1 a runtime failure or a bug (one line; the traceback is saved under ~/.cache/zerowizard/crash/);
130/143 stopped by a signal
"""

COMMANDS = ("estimate", "validate", "gpus", "presets", "run", "probe", "export-model", "calibrate")


def _plan_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    add_plan_arguments(p)
    return p


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    common = _plan_parser()
    parser = argparse.ArgumentParser(
        prog="zerowizard",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Plan, check and run DeepSpeed ZeRO fine-tuning (full, LoRA, QLoRA): which ZeRO stage "
        "fits your GPUs, and the exact DeepSpeed JSON to run.",
        epilog=EPILOG,
    )
    parser.add_argument("--export", metavar="DS.json", help="write the final DeepSpeed JSON and exit (no UI)")
    parser.add_argument("--save-plan", metavar="PLAN.yaml", help="write the resolved plan (YAML) and exit")
    parser.add_argument(
        "--export-sbatch",
        metavar="JOB.sh",
        help="write an sbatch script for the plan (the DeepSpeed JSON and plan beside it) and exit",
    )
    parser.add_argument("--partition", help="sbatch: SLURM partition")
    parser.add_argument("--time", help="sbatch: time limit, e.g. 24:00:00")
    parser.add_argument("--account", help="sbatch: SLURM account")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter
    est = sub.add_parser(
        "estimate",
        parents=[common],
        formatter_class=fmt,
        help="per-GPU memory for every ZeRO stage and offload variant (exit 2 if the plan has errors)",
        description="Per-GPU memory for every ZeRO stage and offload variant, the recommendation and the "
        "plan's problems. Exit 0 when the plan has no errors; exit 2 when it has any (the estimate is still "
        "printed, the errors below it).",
        epilog="examples:\n  zerowizard estimate --model llama-3-70b --method qlora --gpus 8xA100-80GB\n"
        "  zerowizard estimate --params 13B --gpus 4xA100-40GB --json",
    )
    est.add_argument("--json", action="store_true", help="machine-readable output (bytes as integers)")
    val = sub.add_parser(
        "validate",
        parents=[common],
        formatter_class=fmt,
        help="check a plan (YAML) or a DeepSpeed JSON; exit 2 on any error",
        epilog="examples:\n  zerowizard validate ds.json --gpus 8\n  zerowizard validate plan.yaml\n"
        "  zerowizard validate ds.json --deepspeed-check   (also ask the installed DeepSpeed)",
    )
    val.add_argument("file", metavar="FILE", help="a plan .yaml or a DeepSpeed .json")
    val.add_argument(
        "--deepspeed-check",
        action="store_true",
        help="also run the installed DeepSpeed's own config parser (in a child process, a few seconds) on "
        "the file as HF Trainer passes it and on the exported config; keys that version does not read are "
        "errors. Off by default so that validate stays fast; an error if DeepSpeed is not installed",
    )
    val.add_argument("--json", action="store_true", help="machine-readable output")
    gp = sub.add_parser(
        "gpus",
        formatter_class=fmt,
        help="the GPUs NVML sees, or the catalog",
        epilog="examples:\n  zerowizard gpus\n  zerowizard gpus --catalog --json",
    )
    gp.add_argument("--json", action="store_true")
    gp.add_argument("--catalog", action="store_true", help="list the GPU catalog used by --gpus NxNAME")
    sub.add_parser("presets", help="DeepSpeed presets, model cards and recipes")
    cal = sub.add_parser(
        "calibrate",
        formatter_class=fmt,
        help="measure this machine's CPU accelerator for the time model (about a minute)",
        epilog="examples:\n  zerowizard calibrate\n  zerowizard calibrate --ranks 4 --json",
    )
    cal.add_argument("--ranks", type=int, metavar="N", help="ranks to measure with (default: a CPU run's, 2)")
    cal.add_argument("--quick", action="store_true", help="fewer repeats")
    cal.add_argument("--json", action="store_true", help="print the measurements as JSON")
    run = sub.add_parser(
        "run",
        parents=[common],
        formatter_class=fmt,
        help="train (headless: rich progress)",
        epilog="examples:\n  zerowizard run --headless\n"
        "  zerowizard run --headless --plan plan.yaml --output work_dirs/exp1\n"
        "  NPROC_PER_NODE=8 zerowizard run --headless --recipe llama3_8b_lora_alpaca_e3",
    )
    from .runner.export_model import add_parser as add_export_model

    add_export_model(sub)
    if command == "run":
        from .runner.launch import add_run_arguments

        add_run_arguments(run)
    from .probecmd import add_probe_parser

    add_probe_parser(sub, common)
    return parser


def _command_of(argv: list[str]) -> str | None:
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            continue
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (argparse's own errors exit 2 via SystemExit).

    Bad input of any kind is one line on stderr and exit 2. Anything else unexpected is a bug:
    one line pointing at a saved traceback, exit 1 (:mod:`zerowizard.crash`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_command_of(argv))
        args = parser.parse_args(argv)
        return _dispatch(args)
    except PlanError as exc:
        _errors(exc.errors)
        return 2
    except InputError as exc:
        _errors([str(exc)])
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - the top-level guard: a bug, reported without a traceback
        from .crash import report

        return report(exc, argv)


def _quiet_stdout() -> None:
    """After a closed pipe (`zerowizard presets | head`), let the interpreter exit without a
    second BrokenPipeError while flushing stdout."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _errors(lines: list[str]) -> None:
    for line in lines:
        print(f"zerowizard: error: {line}", file=sys.stderr)


def _export_targets(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) is not None for k in ("export", "save_plan", "export_sbatch"))


def _dispatch(args: argparse.Namespace) -> int:
    from . import __version__

    if args.version:
        print(f"zerowizard {__version__}")
        return 0
    cmd = args.command
    if cmd == "validate":
        from .validate import cmd_validate

        return cmd_validate(args)
    if cmd == "calibrate":
        from .commands import cmd_calibrate

        return cmd_calibrate(args)
    if cmd == "export-model":
        from .runner.export_model import cmd_export_model

        return cmd_export_model(args)
    if cmd in ("gpus", "presets"):
        from . import commands

        return commands.cmd_gpus(args) if cmd == "gpus" else commands.cmd_presets()
    exporting = cmd is None and _export_targets(args)
    if cmd is None and not exporting:
        _check_terminal()
        if getattr(args, "plan", None) is None and os.path.isfile("zerowizard.yaml"):
            args.plan = "zerowizard.yaml"
    plan = plan_from_args(args)
    if cmd == "estimate":
        from .commands import cmd_estimate

        return cmd_estimate(args, plan)
    if cmd == "run":
        from .runner.launch import run_headless

        return run_headless(plan, args)
    if cmd == "probe":
        from .probecmd import cmd_probe

        return cmd_probe(args, plan)
    if exporting:
        from .export import cmd_export

        return cmd_export(args, plan)
    from .tui.app import make_app

    app = make_app(plan, getattr(args, "plan", None))
    app.run()
    return int(getattr(app, "return_code", 0) or 0)


def _check_terminal() -> None:
    """The wizard reads keys from a terminal; from a script or a pipe it would wait forever."""
    try:
        interactive = sys.stdin.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if not interactive:
        raise InputError(
            "the interactive wizard needs a terminal (stdin is not one); in a script use a command "
            "(estimate, validate, run --headless) or --export/--save-plan/--export-sbatch FILE"
        )


def entry() -> None:
    """Console-script entry point."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    entry()
