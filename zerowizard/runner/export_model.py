"""``zerowizard export-model RUN_DIR``: one Hugging Face folder out of any run.

Sources, in this order unless ``--checkpoint N`` names one: the run's ``final/`` folder, else its
newest intact checkpoint. From a checkpoint the weights come from DeepSpeed's own shards
(``deepspeed.utils.zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint``: the fp32 master
weights, consolidated across ranks, for ZeRO-1, 2 and 3 alike), so a ZeRO-3 checkpoint saved
without ``stage3_gather_16bit_weights_on_model_save`` still exports. The result is written in the
run's 16-bit precision (fp32 runs stay fp32):

- full fine-tune: ``model.safetensors`` + ``config.json`` + ``generation_config.json`` + tokenizer;
- LoRA / QLoRA: the adapter (``adapter_model.safetensors`` + ``adapter_config.json``) + tokenizer,
  or with ``--merge-lora`` the adapter merged into the 16-bit base model (for QLoRA: the original
  16-bit weights, not the 4-bit ones), a plain model folder.

The folder is written under a temporary name beside ``--out`` and renamed when complete.
Bad input is one line and exit 2; torch, transformers, peft and DeepSpeed are imported only
once the input has been checked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zerowizard.runner import checkpoints

EPILOG = """examples:
  zerowizard export-model work_dirs/tiny-llama_full_20250101_120000
  zerowizard export-model work_dirs/run1 --checkpoint 200 --out exported/run1-200
  zerowizard export-model work_dirs/lora_run --merge-lora --out exported/merged
"""


class ExportError(RuntimeError):
    """Input that cannot be exported; the message names the field and the fix."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export-model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="a Hugging Face folder (safetensors, config, tokenizer) out of a run",
        description="Write a Hugging Face model folder from a zerowizard run: ZeRO shards consolidated, "
        "a LoRA/QLoRA adapter saved or merged into the 16-bit base.",
        epilog=EPILOG,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (`zerowizard run` prints it as 'run folder:')")
    p.add_argument("--checkpoint", metavar="N", type=str, help="export checkpoint-N (default: final/, else the newest)")
    p.add_argument("--merge-lora", action="store_true", help="LoRA/QLoRA: merge the adapter into the 16-bit base")
    p.add_argument("--out", metavar="DIR", help="where to write (default: RUN_DIR/export, RUN_DIR/export-merged)")
    return p


def _fail(field: str, what: str, fix: str) -> ExportError:
    from zerowizard.core.text import excerpt

    return ExportError(f"{field}: {excerpt(what, 200, quote=False)} ; {fix}")


def _load_run(run_dir: Path) -> tuple[Any, dict]:
    from zerowizard.core.plan import load_plan
    from zerowizard.core.validation import InputError, load_json, read_text

    if not run_dir.exists():
        raise _fail("RUN_DIR", f"no such folder {run_dir}", "give the folder `zerowizard run` printed as 'run folder:'")
    if not run_dir.is_dir():
        raise _fail("RUN_DIR", f"{run_dir} is not a folder", "give a run folder")
    if not (run_dir / "plan.yaml").is_file() or not (run_dir / "runner.json").is_file():
        raise _fail(
            "RUN_DIR",
            f"{run_dir} is not a zerowizard run (no plan.yaml and runner.json)",
            "give the folder `zerowizard run` printed as 'run folder:'",
        )
    try:
        plan = load_plan(run_dir / "plan.yaml")
        spec = load_json(read_text(run_dir / "runner.json", "runner.json"), "runner.json")
    except (InputError, ValueError) as exc:
        errors = getattr(exc, "errors", None) or [str(exc)]
        raise _fail("RUN_DIR", f"{run_dir}: {errors[0]}", "the run folder is damaged; export another run") from None
    if not isinstance(spec, dict) or not spec.get("model_path"):
        raise _fail("RUN_DIR", f"{run_dir}/runner.json names no model", "the run folder is damaged")
    return plan, spec


def _final_usable(final: Path, method: str) -> bool:
    need = "adapter_model.safetensors" if method != "full" else "config.json"
    if not (final / need).is_file():
        return False
    weights = [p for p in final.glob("*.safetensors")]
    return bool(weights) and all(checkpoints._format_problem(p) is None for p in weights)


def choose_source(run_dir: Path, method: str, checkpoint: str | None) -> tuple[Path, bool]:
    """(folder, is_deepspeed_checkpoint)."""
    if checkpoint is not None:
        if not checkpoint.isdigit():
            raise _fail("--checkpoint", f"{checkpoint!r} is not a step number", "give N of a checkpoint-N folder")
        path = checkpoints.checkpoints_dir(run_dir) / f"checkpoint-{int(checkpoint)}"
        if not path.is_dir():
            have = ", ".join(p.name.split("-")[1] for p in checkpoints.list_checkpoints(run_dir)) or "none"
            raise _fail("--checkpoint", f"no checkpoint-{int(checkpoint)} in {path.parent}", f"steps saved: {have}")
        problem = checkpoints.check(path)
        if problem:
            raise _fail("--checkpoint", f"{path.name} is damaged: {problem}", "export another checkpoint")
        return path, True
    final = run_dir / "final"
    if _final_usable(final, method):
        return final, False
    ckpt, _notes = checkpoints.resumable(run_dir)
    if ckpt is None:
        raise _fail(
            "RUN_DIR",
            f"{run_dir} has no final model and no intact checkpoint",
            "let the run finish or save checkpoints (--save-steps N)",
        )
    return ckpt, True


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise _fail("--out", f"{out} exists and is not empty", "choose a new folder or delete it first")


# -- the heavy part (torch, transformers, peft, DeepSpeed) ------------------------------------------


def _dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def _deepspeed_state(ckpt: Path) -> dict:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    # every parameter the engine trained, fp32, gathered from all ranks' shards (frozen ones are
    # included where the checkpoint holds them; HF leaves a LoRA base out of its checkpoints)
    return dict(get_fp32_state_dict_from_zero_checkpoint(str(ckpt)))


def _lora_config(plan: Any, src: Path) -> Any:
    from peft import LoraConfig, PeftConfig

    if (src / "adapter_config.json").is_file():
        return PeftConfig.from_pretrained(str(src))
    m = plan.method
    return LoraConfig(
        r=m.lora_r,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        task_type="CAUSAL_LM",
        target_modules="all-linear" if m.target_modules == "all-linear" else list(m.target_modules),
    )


def _load_into(model: Any, state: dict, only: str | None = None) -> None:
    """Copy ``state`` into ``model``'s parameters; every key must land, and (``only`` given)
    every parameter whose name contains it must be covered."""
    params = dict(model.named_parameters())
    unknown = [k for k in state if k not in params and k not in dict(model.named_buffers())]
    if unknown:
        raise ExportError(f"checkpoint: {len(unknown)} weights do not fit the model (first: {unknown[0]})")
    wanted = [k for k in params if only is None or only in k]
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    missing = [k for k in wanted if k not in state and k not in tied]
    if missing:
        raise ExportError(f"checkpoint: {len(missing)} weights are missing (first: {missing[0]})")
    import torch

    with torch.no_grad():
        for k, v in state.items():
            target = params.get(k)
            if target is not None:
                target.copy_(v.to(target.dtype))


def _tokenizer(src: Path, base: str, trust: bool) -> Any:
    from transformers import AutoTokenizer

    where = str(src) if (src / "tokenizer_config.json").is_file() else base
    tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust)
    if not getattr(tok, "chat_template", None):
        from zerowizard.runner.tinymodel import CHAT_TEMPLATE

        tok.chat_template = CHAT_TEMPLATE
    return tok


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The libraries' progress bars, warnings and banners go to a scratch file (fd level: DeepSpeed
    and tqdm write to the raw streams); replayed on stderr if something unexpected fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile("w+b") as scratch:
        os.dup2(scratch.fileno(), 1)
        os.dup2(scratch.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        except ExportError:  # our own one-line message says it all
            ok = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if not ok:
                scratch.seek(0)
                sys.stderr.write(scratch.read()[-8000:].decode("utf-8", "replace"))


def export(run_dir: Path, out: Path, checkpoint: str | None = None, merge_lora: bool = False) -> dict:
    """Write the folder; returns a summary (source, kind, files). ExportError on bad input."""
    plan, spec = _load_run(run_dir)
    method = plan.method.type
    if merge_lora and method == "full":
        raise _fail("--merge-lora", f"{run_dir} is a full fine-tune (no adapter)", "drop --merge-lora")
    _check_out(out)
    src, is_ckpt = choose_source(run_dir, method, checkpoint)
    base = spec["model_path"]
    if not Path(base).is_dir() and not (src / "config.json").is_file():
        raise _fail("RUN_DIR", f"the base model {base} is not on this machine", "download it first")
    with _quiet():
        return _write(plan, spec, src, is_ckpt, out, merge_lora)


def _write(plan: Any, spec: dict, src: Path, is_ckpt: bool, out: Path, merge_lora: bool) -> dict:
    method = plan.method.type
    base, trust = spec["model_path"], bool(spec.get("trust_remote_code"))

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    dtype = _dtype(spec.get("precision", "bf16"))
    tok = _tokenizer(src, base, trust)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.device("cpu"):
            if method == "full":
                model = AutoModelForCausalLM.from_pretrained(
                    str(src) if not is_ckpt and (src / "config.json").is_file() else base,
                    dtype=dtype,
                    trust_remote_code=trust,
                )
                if is_ckpt:
                    _load_into(model, _deepspeed_state(src))
                kind = "model"
            else:
                from peft import PeftModel, get_peft_model

                model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, trust_remote_code=trust)
                if is_ckpt:  # merging: keep the fp32 master adapters until the merge
                    peft_model = get_peft_model(model, _lora_config(plan, src), autocast_adapter_dtype=merge_lora)
                    state = {k: v for k, v in _deepspeed_state(src).items() if "lora_" in k}
                    _load_into(peft_model, state, only="lora_")
                else:
                    peft_model = PeftModel.from_pretrained(model, str(src), is_trainable=False)
                if merge_lora:
                    model, kind = peft_model.merge_and_unload(), "merged model"
                else:
                    model, kind = peft_model, "adapter"
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        summary = {
            "source": str(src),
            "kind": kind,
            "method": method,
            "dtype": str(dtype).removeprefix("torch."),
            "files": sorted(p.name for p in tmp.iterdir()),
        }
        (tmp / "zerowizard_export.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # checked empty above
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def cmd_export_model(args: Any) -> int:
    run_dir = Path(args.run_dir)
    default = "export-merged" if args.merge_lora else "export"
    out = Path(args.out) if args.out else run_dir / default
    try:
        summary = export(run_dir, out, args.checkpoint, args.merge_lora)
    except ExportError as exc:
        print(f"zerowizard: error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary['kind']} ({summary['dtype']}) from {summary['source']}")
    print(f"written: {out}  ({', '.join(summary['files'])})")
    return 0
