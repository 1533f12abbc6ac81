"""Headless progress: a rich progress bar on a terminal, plain lines otherwise (CI, SLURM logs).

Both printers consume the same events (see :mod:`zerowizard.runner.events`) plus rank log lines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO, cast

from zerowizard.runner.events import (
    CheckpointEvent,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    FallbackEvent,
    PhaseEvent,
    StartEvent,
    StepEvent,
)

# Rank log lines kept in logs/rankN.log but not shown (headless output, the TUI's log pane):
# progress bars, the Trainer's own dict logs, deprecation warnings, and the harmless start-up
# chatter of the CPU stack (bitsandbytes' optional `kernels` package, DeepSpeed probing libaio for
# async_io and announcing its comm op; the phase events say what is happening instead).
_NOISE = (
    "it/s]",
    "s/it]",
    "FutureWarning",
    "warnings.warn(",
    "return func(*args",
    "{'loss':",
    "{'train_runtime'",
    "gemm_4bit_forward from kernels-community",
    "No module named 'kernels'",
    "cannot find -laio",
    "collect2: error: ld returned 1 exit status",
    "deepspeed_shm_comm_op built successfully",
    "Setting accelerator to CPU",
    "Time to load ",
)


class Printer(Protocol):
    """What the launcher prints through: the plain and the rich printer."""

    def notice(self, text: str) -> None: ...
    def log(self, rank: int, line: str) -> None: ...
    def event(self, ev: Mapping[str, Any]) -> None: ...
    def close(self) -> None: ...


def interesting(line: str) -> bool:
    """Rank log lines worth showing (progress bars and known deprecation noise are dropped)."""
    return bool(line.strip()) and not any(n in line for n in _NOISE)


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _gib(b: int | None) -> str:
    return "?" if b is None else f"{b / 2**30:.2f}"


# One formatter per kind, typed with its TypedDict (zerowizard.runner.events): a key the schema does
# not have is a type error here, as it is in the writers.


def _phase(ev: PhaseEvent) -> str:
    who = "launcher" if ev.get("rank") is None else f"rank {ev.get('rank')}"
    return f"[{who} {_fmt_s(ev.get('elapsed_s'))}] {ev.get('message')}"


def _fallback(ev: FallbackEvent) -> str:
    return f"out of memory: attempt {ev.get('attempt')}: {ev.get('change')} (global batch {ev.get('global_batch')})"


def _start(ev: StartEvent) -> str:
    pred = ev.get("predicted_per_gpu_bytes")
    extra = f", predicted {_gib(pred)} GiB per device" if pred else ""
    tps = ev.get("predicted_tokens_per_s")
    extra += f", {tps:.0f} tok/s" if tps else ""
    resumed = f", resumed from {ev.get('resumed_from')}" if ev.get("resumed_from") else ""
    return (
        f"start: world size {ev.get('world_size')}, {ev.get('accelerator')} "
        f"{ev.get('precision')}, {ev.get('total_steps')} steps{extra}{resumed} "
        f"(set-up {ev.get('setup_s')}s)"
    )


def _vs(predicted: float | None) -> str:
    return f" (predicted {predicted:.0f})" if predicted else ""


def _step(ev: StepEvent, predicted: float | None = None) -> str:
    mem = ",".join(_gib(m) for m in ev.get("memory_bytes") or [])
    gn, lr = ev.get("grad_norm"), ev.get("learning_rate")
    return (
        f"step {ev['step']}/{ev['total_steps']} epoch {ev.get('epoch', 0):.2f} "
        f"loss {ev['loss']:.4f} lr {lr if lr is None else f'{lr:.2e}'} "
        f"grad {gn if gn is None else f'{gn:.3f}'} tok/s {ev.get('tokens_per_s', 0):.0f}{_vs(predicted)} "
        f"eta {_fmt_s(ev.get('eta_s'))} mem GiB [{mem}]"
    )


def _checkpoint(ev: CheckpointEvent) -> str:
    return f"checkpoint at step {ev['step']}: {ev['path']}"


def _eval(ev: EvalEvent) -> str:
    return f"eval at step {ev['step']}: {ev.get('metrics')}"


def _error(ev: ErrorEvent) -> str:
    who = "the launcher" if ev.get("rank") is None else f"rank {ev.get('rank')}"
    return f"error on {who}: {ev.get('error')}"


def _end(ev: EndEvent) -> str:
    if ev.get("status") != "completed" and ev.get("step") is None:
        return f"end: {ev.get('status')}" + (f": {ev.get('error')}" if ev.get("error") else "")
    return (
        f"end: {ev.get('status')} at step {ev.get('step')}/{ev.get('total_steps')}, "
        f"loss {ev.get('loss')}, {ev.get('elapsed_s')}s"
    )


_LINES: dict[str, Callable[[Any], str]] = {
    "phase": _phase,
    "fallback": _fallback,
    "start": _start,
    "step": _step,
    "checkpoint": _checkpoint,
    "eval": _eval,
    "error": _error,
    "end": _end,
}


def describe(ev: Mapping[str, Any], predicted: float | None = None) -> str:
    """One plain line for an event (any event of :data:`zerowizard.runner.events.SCHEMAS`);
    ``predicted``: the start event's tokens/s, shown beside each step's measured one."""
    if ev.get("event") == "step" and predicted:
        return _step(cast("StepEvent", ev), predicted)  # the "event" key says which TypedDict it is
    line = _LINES.get(str(ev.get("event")))
    return line(ev) if line else str(dict(ev))


class PlainPrinter:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.predicted: float | None = None  # tokens/s from the start event

    def notice(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def log(self, rank: int, line: str) -> None:
        print(f"[rank{rank}] {line}", file=self.stream, flush=True)

    def event(self, ev: Mapping[str, Any]) -> None:
        if ev.get("event") == "start":
            self.predicted = ev.get("predicted_tokens_per_s")
        print(describe(ev, self.predicted), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichPrinter:
    """A live progress bar (step/total, loss, tokens/s, ETA); logs and events print above it."""

    def __init__(self, stream: TextIO | None = None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

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
        self.task: TaskID | None = None

    def notice(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def log(self, rank: int, line: str) -> None:
        self.console.print(f"[dim]\\[rank{rank}] {line}", highlight=False)

    def event(self, ev: Mapping[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "start":
            total, done = ev.get("total_steps") or None, ev.get("start_step") or 0
            if self.task is None:
                self.progress.start()
                tps = ev.get("predicted_tokens_per_s")
                pred = f" (predicted {tps:.0f})" if tps else ""
                self.task = self.progress.add_task(
                    "train", total=total, completed=done, loss="-", tps="-", pred=pred, eta="?"
                )
            else:  # a restart (out-of-memory fallback): the same bar goes on
                self.progress.update(self.task, total=total, completed=done)
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


def make_printer(stream: TextIO | None = None) -> Printer:
    stream = stream or sys.stdout
    return RichPrinter(stream) if getattr(stream, "isatty", lambda: False)() else PlainPrinter(stream)
