"""The Trainer side of atomic checkpoints (runs on every rank; see checkpoints.py for the layout).

:func:`committing_trainer` wraps a Trainer class so that ``_save_checkpoint`` writes into
``checkpoints/.staging/checkpoint-N`` (the Trainer's own code, unchanged, with ``_get_output_dir``
pointing at the staging folder for the duration of the save), then, after a barrier, rank 0
writes the marker and renames the folder into place; a node that still sees its staging folder
afterwards (node-local storage) commits its own copy; a last barrier and only then the next step.
The Trainer's own rotation is off (``save_total_limit`` is not given to it: it counts folders by
mtime, an interrupted one included, and could delete the last intact checkpoint); ours counts
intact checkpoints only (checkpoints.rotate).

Test hook: ``ZEROWIZARD_TEST_SAVE_PAUSE=STEP`` makes rank 0 stop in the middle of that step's save
(DeepSpeed's shards written, trainer_state.json not yet), touch ``WORKDIR/.test_save_paused`` and
wait to be killed, so a test can interrupt a save at a known point.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from zerowizard.runner import checkpoints

PAUSE_FLAG = ".test_save_paused"
PAUSE_LIMIT_S = 300.0


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def committing_trainer(base: type, workdir: Path, keep: int = 0) -> type:
    """A subclass of ``base`` (an HF Trainer class) whose checkpoints are committed atomically."""

    class CommittingTrainer(base):
        _zw_staging = False
        _zw_cleared = False

        def _get_output_dir(self, trial: Any) -> str:
            out = super()._get_output_dir(trial)
            return str(Path(out) / checkpoints.STAGING) if self._zw_staging else out

        def _zw_facts(self) -> dict:
            ds = getattr(self, "deepspeed", None)
            cfg = ds.config if ds is not None and hasattr(ds, "config") else {}
            zero = cfg.get("zero_optimization", {}) if isinstance(cfg, dict) else {}
            return {
                "step": self.state.global_step,
                "world_size": self.args.world_size,
                "zero_stage": zero.get("stage") if isinstance(zero, dict) else None,
                "micro_batch": self.args.per_device_train_batch_size,
                "grad_accum": self.args.gradient_accumulation_steps,
            }

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            name = f"checkpoint-{self.state.global_step}"
            root = Path(self.args.output_dir)
            staging = root / checkpoints.STAGING / name
            local0 = self.args.local_process_index == 0
            if local0:  # leftovers of interrupted saves (all of them at the first save of this run)
                checkpoints.clear_staging(workdir, None if not self._zw_cleared else name)
            self._zw_cleared = True
            barrier()
            self._zw_staging = True
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._zw_staging = False
            barrier()  # every rank's shards are written
            facts = self._zw_facts()
            tag_file = staging / "latest"
            if tag_file.is_file():
                facts["tag"] = tag_file.read_text(encoding="utf-8").strip()
            if self.args.process_index == 0:
                checkpoints.commit(staging, root / name, facts)
            barrier()
            if local0 and self.args.process_index != 0 and staging.is_dir():
                checkpoints.commit(staging, root / name, {**facts, "node_local": True})
                checkpoints.rotate(workdir, keep)
            if self.args.process_index == 0:
                checkpoints.rotate(workdir, keep)
            barrier()

        def _save_rng_state(self, output_dir: str) -> None:
            super()._save_rng_state(output_dir)
            pause = os.environ.get("ZEROWIZARD_TEST_SAVE_PAUSE", "")
            if pause and int(pause) == self.state.global_step and self.args.process_index == 0:
                (workdir / PAUSE_FLAG).write_text(str(output_dir))
                deadline = time.monotonic() + PAUSE_LIMIT_S
                while time.monotonic() < deadline:
                    time.sleep(0.1)

    return CommittingTrainer
