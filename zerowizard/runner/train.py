"""The per-rank entry: ``python -m zerowizard.runner.train --workdir DIR``.

Reads ``plan.yaml``, ``ds_config.json`` and ``runner.json`` that the launcher wrote into DIR,
builds the model (partitioned under ZeRO-3), the data and an HF Trainer driving DeepSpeed with
that exact JSON, and streams events. Each rank's stdout/stderr goes to ``DIR/logs/rankN.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zerowizard.runner import lifeline, memlimit
from zerowizard.runner.events import EventWriter

if TYPE_CHECKING:
    from zerowizard.core.plan import Plan
    from zerowizard.runner.runspec import RunnerSpec


def _redirect_logs(workdir: Path, rank: int) -> None:
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    fh = open(logs / f"rank{rank}.log", "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as stdout
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fh.fileno(), 1)
    os.dup2(fh.fileno(), 2)
    sys.stdout = sys.stderr = fh


def _quiet_libraries() -> None:
    import logging

    import transformers

    transformers.utils.logging.set_verbosity_warning()
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)


def load_model(spec: RunnerSpec, plan: Plan, ds_config: dict, precision: str) -> Any:
    """The model (peft-wrapped for LoRA/QLoRA); under ZeRO-3 it is created partitioned."""
    import torch
    import torch._dynamo
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    path = spec["model_path"]
    config = AutoConfig.from_pretrained(path, trust_remote_code=spec.get("trust_remote_code", False))
    cls: Any
    try:  # import the model class now: its lazy imports must not run inside zero.Init
        cls = AutoModelForCausalLM._model_mapping[type(config)]
    except KeyError:
        cls = AutoModelForCausalLM
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.get("trust_remote_code", False)}
    method = plan.method.type
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,
        )
    # TrainingArguments(deepspeed=...) was built before this call, so transformers sees the
    # HfDeepSpeedConfig and from_pretrained runs under deepspeed.zero.Init for stage 3.
    model = cls.from_pretrained(path, **kwargs)
    model.config.use_cache = False
    spec["zero3_partitioned"] = any(hasattr(p, "ds_id") for p in model.parameters())
    if method == "full":
        return model
    if method == "freeze":
        freeze_layers(model, plan)
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=plan.batch.grad_checkpointing)
    targets = plan.method.target_modules
    lora = LoraConfig(
        r=plan.method.lora_r,
        lora_alpha=plan.method.lora_alpha,
        lora_dropout=plan.method.lora_dropout,
        task_type="CAUSAL_LM",
        target_modules="all-linear" if targets == "all-linear" else list(targets),
    )
    # Adapters take the model's 16-bit dtype, not peft's fp32 upcast: ZeRO-3 needs every
    # trainable partition in one dtype, and DeepSpeed keeps its own fp32 master copy anyway.
    model = get_peft_model(model, lora, autocast_adapter_dtype=False)
    if method == "qlora":
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(dtype)
    return model


def freeze_layers(model: Any, plan: Plan) -> None:
    """Freeze tuning: only the last ``freeze_layers`` decoder layers (narrowed to ``trainable_modules``)
    keep ``requires_grad``; the predicate is the one the memory model counts with (core.freeze)."""
    from zerowizard.core.freeze import is_trainable

    config = getattr(model.config, "text_config", None) or model.config
    layers = int(config.num_hidden_layers)
    m = plan.method
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name, layers, m.freeze_layers, m.trainable_modules))


def load_data(spec: RunnerSpec, plan: Plan, tok: Any) -> list[dict]:
    from zerowizard.runner import data

    src = spec["data"]
    records = data.load_hub_records(src["path"]) if src.get("hub") else data.load_records(src["path"])
    return data.build_examples(tok, records, plan.batch.seq_len, plan.data.format, plan.data.packing)


def _int(value: Any, fallback: int) -> int:
    return value if isinstance(value, int) else fallback


def training_arguments(spec: RunnerSpec, plan: Plan, ds_config: dict, precision: str, workdir: Path) -> Any:
    from transformers import TrainingArguments

    t = plan.train
    clip = ds_config.get("gradient_clipping")
    return TrainingArguments(
        output_dir=str(workdir / "checkpoints"),
        per_device_train_batch_size=_int(ds_config.get("train_micro_batch_size_per_gpu"), plan.batch.micro_batch),
        gradient_accumulation_steps=_int(ds_config.get("gradient_accumulation_steps"), plan.batch.grad_accum),
        max_grad_norm=float(clip) if isinstance(clip, (int, float)) else plan.max_grad_norm,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type="cosine",
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if spec.get("save", True) else "no",
        save_steps=t.save_steps or 10**9,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=spec["accelerator"] == "cpu",
        deepspeed=ds_config,
        gradient_checkpointing=plan.batch.grad_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        seed=t.seed,
        data_seed=t.seed,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # per-rank token mean, as DeepSpeed averages grads; no extra collective per step
        average_tokens_across_devices=False,
    )


FINAL_STAGING = ".final.partial"


def save_final(trainer: Any, final: Path, ds_config: dict) -> None:
    """LoRA: the adapter in peft format. Full: a from_pretrained directory; under ZeRO-3 the
    16-bit weights are gathered even when the JSON leaves stage3_gather_16bit_weights_on_model_save
    off (the Trainer would then write only a DeepSpeed checkpoint).

    Written as a checkpoint is: into ``.final.partial`` next to it, then (after every rank is done)
    rank 0 writes the marker listing every file and renames the folder to ``final``. A kill or a
    full disk halfway leaves no half-written ``final/`` for export-model or a user to load; the
    partial folder is removed on failure and before the next attempt."""
    from zerowizard.runner import checkpoints
    from zerowizard.runner.committing import barrier

    staging = final.parent / FINAL_STAGING
    rank0 = trainer.args.process_index == 0
    if rank0:
        shutil.rmtree(staging, ignore_errors=True)
    barrier()
    try:
        zero = ds_config.get("zero_optimization", {})
        if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
            state = trainer.model_wrapped._zero3_consolidated_16bit_state_dict()  # every rank joins
            if trainer.args.should_save:
                trainer._save(str(staging), state_dict=state)
        else:
            trainer.save_model(str(staging))
        barrier()  # every rank's part is written
        if rank0:
            checkpoints.commit(staging, final, {"step": trainer.state.global_step, "final": True})
    except BaseException:
        if rank0:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    barrier()


def _counting_trainer(base: type) -> type:
    """The Trainer, counting this rank's non-padding tokens without a collective per step
    (the Trainer's own include_num_input_tokens_seen gathers across ranks every micro step)."""

    class CountingTrainer(base):
        tokens_local = 0

        def training_step(self, model, inputs, *args, **kwargs):
            mask = inputs.get("attention_mask")
            if mask is not None:  # a device tensor: summed lazily, read only when logging
                self.tokens_local = self.tokens_local + mask.sum()
            return super().training_step(model, inputs, *args, **kwargs)

        def local_tokens(self) -> int:
            return int(self.tokens_local)

    return CountingTrainer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zerowizard.runner.train")
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    rank = int(os.environ.get("RANK", "0"))
    lifeline.guard()  # die with the launcher, even when it is killed with SIGKILL
    if os.environ.get("ZEROWIZARD_RANK_LOGS", "1") == "1":
        _redirect_logs(workdir, rank)
    events = EventWriter(workdir / "events.jsonl", source=f"rank{rank}")
    try:
        code = _train(workdir, rank, events)
        # Everything is written (events with os.write, models closed): skip the interpreter's
        # slow teardown of DeepSpeed, gloo and thread pools (seconds on a busy CPU).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and not exc.code):
            raise
        _report(events, rank, exc)
        return 1


def _report(events: EventWriter, rank: int, exc: BaseException) -> None:
    """The error event and the traceback in the rank log; on a full or read-only disk either may
    fail, and the launcher then finds the cause itself (faults.probe_folder)."""
    from zerowizard.runner import faults

    fields: dict = {"rank": rank, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
    fields["kind"] = memlimit.error_kind(exc)  # oom | crash
    if fields["kind"] != memlimit.OOM and (faults.is_disk_error(exc) or faults.disk_fault_in(str(exc))):
        fields.update(kind="disk", path=getattr(exc, "filename", None) or faults.path_in(str(exc)))
    with contextlib.suppress(OSError):
        events.emit("error", **fields)
    with contextlib.suppress(OSError):
        traceback.print_exc()
        sys.stdout.flush()


def _train(workdir: Path, rank: int, events: EventWriter) -> int:
    import json

    from zerowizard.core.plan import load_plan
    from zerowizard.runner.phases import Phases, watch_op_builds
    from zerowizard.runner.runspec import read_spec

    started = time.time()
    phases = Phases(events if rank == 0 else None, rank, started)
    phases.begin("imports", "importing torch, transformers and DeepSpeed")
    spec = read_spec(workdir)
    plan = load_plan(workdir / "plan.yaml")
    ds_config = json.loads((workdir / "ds_config.json").read_text(encoding="utf-8"))
    precision = spec["precision"]
    if spec.get("resume_universal"):  # written by another rank count: converted by the launcher
        ds_config = {**ds_config, "checkpoint": {**ds_config.get("checkpoint", {}), "load_universal": True}}
    _quiet_libraries()

    from transformers import AutoTokenizer, Trainer

    from zerowizard.runner.callbacks import EventsCallback, TestHooks
    from zerowizard.runner.committing import committing_trainer
    from zerowizard.runner.data import Collator

    watch_op_builds(phases)
    phases.begin("tokenizer", f"loading the tokenizer of {spec['model_path']}")
    targs = training_arguments(spec, plan, ds_config, precision, workdir)
    tok = AutoTokenizer.from_pretrained(spec["model_path"], trust_remote_code=spec.get("trust_remote_code", False))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        from zerowizard.runner.tinymodel import CHAT_TEMPLATE

        tok.chat_template = CHAT_TEMPLATE
    phases.begin("data", f"reading and tokenizing {spec['data']['path']} (sequence length {plan.batch.seq_len})")
    examples = load_data(spec, plan, tok)
    memlimit.apply_before_model(spec, ds_config, rank, workdir)  # --memory-limit: before the model loads
    zero3 = ds_config.get("zero_optimization", {}).get("stage") == 3
    phases.begin("model", f"loading the model {spec['model_path']}" + (", partitioned (ZeRO-3)" if zero3 else ""))
    model = load_model(spec, plan, ds_config, precision)
    collator = Collator(tok.pad_token_id)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cb = EventsCallback(events if rank == 0 else None, spec, plan, collator, world, started, workdir)
    trainer_cls = committing_trainer(_counting_trainer(Trainer), workdir, plan.train.save_total_limit)
    trainer = trainer_cls(
        model=model,
        args=targs,
        train_dataset=examples,
        data_collator=collator,
        processing_class=tok,
        callbacks=[cb, TestHooks(rank)],
    )
    cb.trainer = trainer
    cb.phases = phases  # ends the start-up phases when training begins (setup_phases_s)
    phases.begin("engine", "DeepSpeed init: engine, optimizer and process group" + _resuming(spec))
    trainer.train(resume_from_checkpoint=spec.get("resume_from"))
    final = workdir / "final" if spec.get("save", True) else None
    if final is not None:
        save_final(trainer, final, ds_config)
    cb.finish(trainer, final)
    return 0


def _resuming(spec: RunnerSpec) -> str:
    return f"; loading {spec['resume_from']}" if spec.get("resume_from") else ""


if __name__ == "__main__":
    sys.exit(main())
