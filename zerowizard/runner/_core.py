"""ADAPTER (temporary): ``analyze(plan)`` from the core, or a minimal stand-in.

The runner relies on ``zerowizard.core.analyze``. While the core is being written this module
supplies the few fields the runner reads (hardware.accelerator, model, precision, ds.config,
errors, estimate) so the runner can be built and tested; it is used only when the import of
``zerowizard.core`` fails. Delete the fallback once the core is in.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace


def analyze(plan):
    try:
        from zerowizard.core import analyze as core_analyze
    except ImportError:
        return _fallback(plan)
    return core_analyze(plan)


@dataclass
class _Problem:
    severity: str
    field: str
    message: str
    fix: str


@dataclass
class _Analysis:
    hardware: object
    model: object
    precision: str
    ds: object
    problems: list = field(default_factory=list)
    estimate: object = None

    @property
    def errors(self):
        return [p for p in self.problems if p.severity == "error"]


def _fallback(plan) -> _Analysis:
    from zerowizard.modelspec import resolve_model
    from zerowizard.paths import PRESETS

    cuda = os.path.exists("/dev/nvidia0") and plan.hardware.gpu != "cpu"
    hw = SimpleNamespace(accelerator="cuda" if cuda else "cpu", world_size=None,
                         gpus_per_node=plan.hardware.gpus_per_node, nodes=plan.hardware.nodes)
    model = resolve_model(plan.model.name, plan.model.params)
    precision = plan.precision if plan.precision != "auto" else "bf16"
    src = Path(plan.deepspeed)
    if not src.is_file():
        src = PRESETS / "deepspeed" / f"{plan.deepspeed}.json"
    cfg = json.loads(src.read_text(encoding="utf-8"))
    auto = {"gradient_accumulation_steps": plan.batch.grad_accum,
            "train_micro_batch_size_per_gpu": plan.batch.micro_batch,
            "gradient_clipping": plan.max_grad_norm}
    for key, value in auto.items():
        cfg[key] = value
    cfg["bf16"] = {"enabled": precision == "bf16"}
    cfg["fp16"] = {**cfg.get("fp16", {}), "enabled": precision == "fp16"}
    zero = cfg.setdefault("zero_optimization", {})
    if plan.zero.stage is not None:
        zero["stage"] = plan.zero.stage
    problems = []
    if plan.method.type == "qlora" and zero.get("stage") == 3:
        problems.append(_Problem("error", "zero.stage", "QLoRA cannot be combined with ZeRO-3: "
                                 "4-bit weights cannot be partitioned", "use deepspeed_zero2, or LoRA"))
    if precision == "fp16" and hw.accelerator == "cpu":
        problems.append(_Problem("error", "precision", "fp16 is not supported on the CPU accelerator",
                                 "use bf16"))
    return _Analysis(hardware=hw, model=model, precision=precision,
                     ds=SimpleNamespace(config=cfg, overrides=[]), problems=problems)
