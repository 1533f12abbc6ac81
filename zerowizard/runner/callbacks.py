"""Trainer callbacks: the event stream (rank 0) and the test hooks (crash, stop)."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from zerowizard.runner.events import EventWriter

if TYPE_CHECKING:
    from zerowizard.core.plan import Plan
    from zerowizard.runner.phases import Phases
    from zerowizard.runner.runspec import RunnerSpec


def device_memory_bytes(accelerator: str) -> int:
    """This rank's ``memory_bytes`` figure: CUDA peak allocated, the process RSS on the CPU."""
    from zerowizard.runner.memlimit import current_bytes, measure

    return int(current_bytes(measure(accelerator), accelerator) or 0)


class EventsCallback(TrainerCallback):
    """Turns the Trainer's logs and saves into ``start``/``step``/``checkpoint``/``eval``/``end``."""

    def __init__(
        self,
        writer: EventWriter | None,
        spec: RunnerSpec,
        plan: Plan,
        collator: Any,
        world: int,
        started: float,
        workdir: Path,
    ):
        self.writer, self.spec, self.plan = writer, spec, plan
        self.collator, self.world, self.started = collator, world, started
        self.workdir = workdir
        self.rank = int(os.environ.get("RANK", "0"))
        self.mem_dir = workdir / ".mem"
        self.mem_dir.mkdir(exist_ok=True)
        self.first_step_at: tuple[float, int] | None = None  # (wall time, global step)
        self.first_step = 0
        self.last = (0, time.time())
        self.last_loss: float | None = None
        self.steps_logged = 0
        self.phases: Phases | None = None  # set by train.py: ends the start-up phases
        self.trainer: Any = None  # the Trainer (set by train.py): its local token count
        self.step_mark = time.time()
        self.step_times: list[float] = []  # wall seconds of each optimizer step this session
        self.unreported = 0  # step times not yet in a step event

    def _emit(self, kind, **fields):
        if self.writer is not None:
            self.writer.emit(kind, **fields)

    def on_train_begin(self, args, state, control, **kw):
        from zerowizard.core.plan import load_plan, plan_to_dict

        self.first_step = state.global_step
        self.last = (self._tokens(), time.time())
        self.step_mark = time.time()
        self._emit(
            "start",
            plan=plan_to_dict(load_plan(self.workdir / "plan.yaml")),
            ds_config=str(self.workdir / "ds_config.json"),
            world_size=self.world,
            predicted_per_gpu_bytes=self.spec.get("predicted_per_gpu_bytes"),
            predicted_step_s=self.spec.get("predicted_step_s"),
            predicted_tokens_per_s=self.spec.get("predicted_tokens_per_s"),
            accelerator=self.spec["accelerator"],
            precision=self.spec["precision"],
            total_steps=state.max_steps,
            start_step=state.global_step,
            resumed_from=self.spec.get("resume_from"),
            output=str(self.workdir),
            zero3_partitioned=self.spec.get("zero3_partitioned", False),
            method=self.plan.method.type,
            setup_s=round(time.time() - self.started, 2),
            setup_phases_s=self.phases.end() if self.phases is not None else None,
            attempt=self.spec.get("attempt", 1),
        )

    def _tokens(self) -> int:
        """Non-padding tokens this session, all ranks: rank 0's count times the world size
        (an estimate that needs no collective; ranks see equally sized shares of the data)."""
        return self.trainer.local_tokens() * self.world if self.trainer is not None else 0

    def _memory(self) -> tuple[list[int | None], list[dict | None]]:
        """Every rank's figure: each writes its own measurement to ``.mem/rankN``, rank 0 reads all."""
        from zerowizard.runner.memlimit import current_bytes, measure

        acc = self.spec["accelerator"]
        tmp = self.mem_dir / f".rank{self.rank}.tmp"
        tmp.write_text(json.dumps(measure(acc)))
        tmp.replace(self.mem_dir / f"rank{self.rank}")
        details: list[dict | None] = []
        for r in range(self.world):
            try:
                details.append(json.loads((self.mem_dir / f"rank{r}").read_text()))
            except (OSError, ValueError):
                details.append(None)
        return [current_bytes(d, acc) for d in details], details

    def _memory_fields(self, details: list[dict | None]) -> dict:
        from zerowizard.runner.memlimit import PEAK_KIND, peak_bytes

        acc = self.spec["accelerator"]
        return {
            "peak_bytes_per_rank": [peak_bytes(d, acc) for d in details],
            "peak_kind": PEAK_KIND.get(acc, "rss_peak"),
            "memory_detail": details,
        }

    def on_step_end(self, args, state, control, **kw):
        now = time.time()
        self.step_times.append(now - self.step_mark)  # from the previous step's end: data, forward,
        self.step_mark = now  # backward, optimizer step and the previous step's logging
        self.unreported += 1

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "loss" not in logs:
            return
        memory, details = self._memory()
        now = time.time()
        tokens, then = self.last
        seen = self._tokens()
        rate = (seen - tokens) / max(now - then, 1e-9)
        self.last = (seen, now)
        if self.first_step_at is None:
            self.first_step_at = (now, state.global_step)
        t0, s0 = self.first_step_at
        done = state.global_step - s0
        eta = (now - t0) / done * (state.max_steps - state.global_step) if done > 0 else None
        self.last_loss = logs["loss"]
        self._emit(
            "step",
            step=state.global_step,
            total_steps=state.max_steps,
            epoch=round(state.epoch or 0.0, 4),
            loss=logs["loss"],
            learning_rate=logs.get("learning_rate"),
            grad_norm=logs.get("grad_norm"),
            tokens_per_s=round(rate, 1),
            tokens_seen=seen,
            elapsed_s=round(now - self.started, 2),
            eta_s=None if eta is None else round(eta, 1),
            memory_bytes=memory,
            memory_kind="cuda_max_allocated" if self.spec["accelerator"] == "cuda" else "rss",
            step_times_s=[round(t, 4) for t in self.step_times[len(self.step_times) - self.unreported :]],
            **self._memory_fields(details),
        )
        self.unreported = 0

    def on_save(self, args, state, control, **kw):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self._emit("checkpoint", step=state.global_step, path=str(path))

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        self._emit("eval", step=state.global_step, metrics=metrics or {})

    def finish(self, trainer, final: Path | None) -> None:
        state = trainer.state
        self._memory()  # every rank's final figures, then wait for all of them
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        _, details = self._memory()
        times = self.step_times[1:] or self.step_times  # the first step includes the warm-up
        self._emit(
            "end",
            status="completed",
            step=state.global_step,
            total_steps=state.max_steps,
            loss=self.last_loss,
            final_model=str(final) if final is not None else None,
            method=self.plan.method.type,
            elapsed_s=round(time.time() - self.started, 2),
            tokens=self._tokens(),
            steps_timed=len(self.step_times),
            step_s_first=round(self.step_times[0], 4) if self.step_times else None,
            step_s_median=round(statistics.median(times), 4) if times else None,
            **self._memory_fields(details),
        )


class TestHooks(TrainerCallback):
    """Faults on demand for the tests: ZEROWIZARD_TEST_CRASH='RANK:STEP' raises on that rank;
    ZEROWIZARD_TEST_STOP_AT=STEP stops cleanly after that step (checkpoint saved);
    ZEROWIZARD_TEST_HOLD='STEP:FILE' waits at the end of that step until FILE exists (the test
    breaks the disk meanwhile); STEP 'end' waits after training's last checkpoint, before the final
    model is written."""

    def __init__(self, rank: int):
        self.rank = rank
        crash = os.environ.get("ZEROWIZARD_TEST_CRASH", "")
        self.crash = tuple(int(x) for x in crash.split(":")) if crash else None
        stop = os.environ.get("ZEROWIZARD_TEST_STOP_AT", "")
        self.stop = int(stop) if stop else None
        hold = os.environ.get("ZEROWIZARD_TEST_HOLD", "")
        at, _, release = hold.partition(":")
        self.hold = (-1 if at == "end" else int(at), Path(release)) if hold else None

    def _wait(self) -> None:
        assert self.hold is not None
        deadline = time.time() + 600
        while not self.hold[1].exists() and time.time() < deadline:
            time.sleep(0.1)

    def on_train_end(self, args, state, control, **kw):
        if self.hold and self.hold[0] == -1:
            self._wait()

    def on_step_end(self, args, state, control, **kw):
        if self.hold and state.global_step == self.hold[0]:
            self._wait()
        if self.crash and self.crash[0] == self.rank and state.global_step >= self.crash[1]:
            raise RuntimeError(f"injected crash on rank {self.rank} at step {state.global_step} (test hook)")
        if self.stop and state.global_step >= self.stop:
            control.should_training_stop = True
            control.should_save = True
