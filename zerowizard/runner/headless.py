"""Headless progress: a rich progress bar on a terminal, plain lines otherwise (CI, SLURM logs).

Both printers consume the same events (see :mod:`zerowizard.runner.events`) plus rank log lines.
"""

from __future__ import annotations

import sys

_NOISE = (
    "it/s]",
    "s/it]",
    "FutureWarning",
    "warnings.warn(",
    "return func(*args",
    "{'loss':",
    "{'train_runtime'",
    # known harmless start-up chatter on the CPU: bitsandbytes' optional kernels package,
    # DeepSpeed probing async_io (libaio) and loading its shared-memory comm op
    "gemm_4bit_forward from kernels-community",
    "cannot find -laio",
    "collect2: error: ld returned 1 exit status",
    "deepspeed_shm_comm_op built successfully",
)


def interesting(line: str) -> bool:
    """Rank log lines worth showing (progress bars and known deprecation noise are dropped)."""
    return bool(line.strip()) and not any(n in line for n in _NOISE)


def _fmt_s(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _gib(b) -> str:
    return "?" if b is None else f"{b / 2**30:.2f}"


def _vs(predicted: float | None) -> str:
    return f" (predicted {predicted:.0f})" if predicted else ""


def describe(ev: dict, predicted: float | None = None) -> str:
    """One plain line for an event (``predicted``: the start event's tokens/s, shown beside a step's)."""
    kind = ev.get("event")
    if kind == "start":
        pred = ev.get("predicted_per_gpu_bytes")
        extra = f", predicted {_gib(pred)} GiB per device" if pred else ""
        if ev.get("predicted_tokens_per_s"):
            extra += f", {ev['predicted_tokens_per_s']:.0f} tok/s"
        resumed = f", resumed from {ev['resumed_from']}" if ev.get("resumed_from") else ""
        return (
            f"start: world size {ev.get('world_size')}, {ev.get('accelerator')} "
            f"{ev.get('precision')}, {ev.get('total_steps')} steps{extra}{resumed} "
            f"(set-up {ev.get('setup_s')}s)"
        )
    if kind == "step":
        mem = ",".join(_gib(m) for m in ev.get("memory_bytes") or [])
        gn = ev.get("grad_norm")
        lr = ev.get("learning_rate")
        return (
            f"step {ev['step']}/{ev['total_steps']} epoch {ev.get('epoch', 0):.2f} "
            f"loss {ev['loss']:.4f} lr {lr if lr is None else f'{lr:.2e}'} "
            f"grad {gn if gn is None else f'{gn:.3f}'} tok/s {ev.get('tokens_per_s', 0):.0f}{_vs(predicted)} "
            f"eta {_fmt_s(ev.get('eta_s'))} mem GiB [{mem}]"
        )
    if kind == "checkpoint":
        return f"checkpoint at step {ev['step']}: {ev['path']}"
    if kind == "eval":
        return f"eval at step {ev['step']}: {ev.get('metrics')}"
    if kind == "error":
        return f"error on rank {ev.get('rank')}: {ev.get('error')}"
    if kind == "end":
        return (
            f"end: {ev.get('status')} at step {ev.get('step')}/{ev.get('total_steps')}, "
            f"loss {ev.get('loss')}, {ev.get('elapsed_s')}s"
        )
    return str(ev)


class PlainPrinter:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.predicted = None  # tokens/s from the start event

    def notice(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def log(self, rank: int, line: str) -> None:
        print(f"[rank{rank}] {line}", file=self.stream, flush=True)

    def event(self, ev: dict) -> None:
        if ev.get("event") == "start":
            self.predicted = ev.get("predicted_tokens_per_s")
        print(describe(ev, self.predicted), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichPrinter:
    """A live progress bar (step/total, loss, tokens/s, ETA); logs and events print above it."""

    def __init__(self, stream=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(file=stream or sys.stdout)
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss [cyan]{task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s{task.fields[pred]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=self.console,
            transient=False,
        )
        self.task = None

    def notice(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def log(self, rank: int, line: str) -> None:
        self.console.print(f"[dim]\\[rank{rank}] {line}", highlight=False)

    def event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.progress.start()
            self.task = self.progress.add_task(
                "train",
                total=ev.get("total_steps") or None,
                completed=ev.get("start_step") or 0,
                loss="-",
                tps="-",
                pred=f" (predicted {ev['predicted_tokens_per_s']:.0f})" if ev.get("predicted_tokens_per_s") else "",
                eta="?",
            )
            self.console.print(describe(ev), markup=False, highlight=False)
        elif kind == "step" and self.task is not None:
            self.progress.update(
                self.task,
                completed=ev["step"],
                total=ev["total_steps"],
                loss=f"{ev['loss']:.4f}",
                tps=f"{ev.get('tokens_per_s', 0):.0f}",
                eta=_fmt_s(ev.get("eta_s")),
            )
        else:
            style = "red" if kind == "error" else "green" if kind == "end" else ""
            self.console.print(describe(ev), style=style, markup=False, highlight=False)

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


def make_printer(stream=None):
    stream = stream or sys.stdout
    return RichPrinter(stream) if getattr(stream, "isatty", lambda: False)() else PlainPrinter(stream)
