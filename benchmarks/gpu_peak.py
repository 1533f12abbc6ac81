"""Peak GPU memory of real DeepSpeed training steps against zerowizard's predicted total per GPU.

For a CUDA machine (one GPU). Random-weight Llama models of 0.5B-3B built from a config (nothing
downloaded), ZeRO stages 0-3, full / LoRA / QLoRA, gradient checkpointing on/off, a few micro batch
and sequence lengths. For each config: a few real training steps through deepspeed.initialize (a
client fused torch AdamW, as HF Trainer passes by default), recording torch.cuda.max_memory_allocated and
max_memory_reserved, against the core's prediction for the same plan (core.analyze):

    allocated  vs  weights + grads + optimizer + activations + buffers   (what PyTorch allocates)
    reserved   vs  the same + the fragmentation margin                   (the caching allocator)
    device     vs  the predicted total (adds the CUDA context constant)  (cudaMemGetInfo at peak)

    python benchmarks/gpu_peak.py --dry-run            # list configs and predictions, no CUDA
    python benchmarks/gpu_peak.py                      # the default set, about 6 minutes on one H100
    python benchmarks/gpu_peak.py --subset quick       # 6 configs, about 2 minutes
    python benchmarks/gpu_peak.py --subset 'full-*-1B*' --budget 300

Configs run in one process, one after another (stage 3 last); the budget (default 420 s) stops
launching new configs so the whole script stays within 8 minutes; what ran is reported.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_shapes as _llama_shapes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "gpu_peak.json"

# Llama shapes (hidden, intermediate, layers, heads, kv_heads, vocab): random weights, no download
SIZES = {
    "0.5B": (1280, 3584, 24, 20, 4, 32000),  # about 0.51B
    "1B": (2048, 5632, 22, 32, 4, 32000),  # TinyLlama-1.1B shapes
    "3B": (3072, 8192, 28, 24, 8, 32000),  # Llama-3.2-3B shapes, 32k vocab: about 3.0B
}
BUCKET = 50_000_000  # reduce/allgather bucket elements, explicit so the buffers are comparable
LORA_R = 16


@dataclass(frozen=True)
class Config:
    size: str
    method: str  # full | lora | qlora
    stage: int
    gc: bool
    micro_batch: int
    seq: int
    offload_optimizer: str = "none"

    @property
    def name(self) -> str:
        n = f"{self.method}-z{self.stage}-{self.size}-b{self.micro_batch}s{self.seq}-{'gc' if self.gc else 'nogc'}"
        return n + ("-optcpu" if self.offload_optimizer != "none" else "")


def default_configs() -> list[Config]:
    c: list[Config] = []
    # full fine-tune: every stage on 0.5B and 1B; 3B full fits stage 0..3 on 80 GB at one GPU (48 GB states)
    for size in ("0.5B", "1B"):
        for st in range(4):
            c.append(Config(size, "full", st, True, 2, 1024))
    c.append(Config("0.5B", "full", 2, False, 2, 1024))
    c.append(Config("0.5B", "full", 2, False, 4, 512))
    c.append(Config("1B", "full", 2, False, 1, 2048))
    c.append(Config("3B", "full", 2, True, 1, 1024))
    # LoRA / QLoRA (QLoRA: stages 0-2), checkpointing on/off, batch/seq variety
    for st in range(4):
        c.append(Config("3B", "lora", st, True, 2, 1024))
    c.append(Config("3B", "lora", 2, False, 1, 1024))
    c.append(Config("1B", "lora", 2, False, 4, 2048))
    for st in range(3):
        c.append(Config("3B", "qlora", st, True, 2, 1024))
    c.append(Config("3B", "qlora", 2, False, 1, 2048))
    c.append(Config("1B", "qlora", 2, True, 8, 512))
    return sorted(c, key=lambda x: (x.stage == 3, x.method == "qlora"))  # ZeRO-3 last (zero.Init state)


QUICK = [
    "full-z0-0.5B-b2s1024-gc",
    "full-z2-1B-b2s1024-gc",
    "full-z2-0.5B-b2s1024-nogc",
    "lora-z2-3B-b2s1024-gc",
    "qlora-z2-3B-b2s1024-gc",
    "full-z3-1B-b2s1024-gc",
]


def config_dict(size: str) -> dict:
    return _llama_shapes.llama_config_dict(SIZES[size], 4096)


def ds_config(cfg: Config) -> dict:
    zo = {
        "stage": cfg.stage,
        "reduce_bucket_size": BUCKET,
        "allgather_bucket_size": BUCKET,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "stage3_prefetch_bucket_size": BUCKET,
        "stage3_max_live_parameters": 1_000_000_000,
        "stage3_param_persistence_threshold": 100_000,
    }
    if cfg.offload_optimizer != "none":
        zo["offload_optimizer"] = {"device": cfg.offload_optimizer, "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": True},
        "zero_optimization": zo,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
    }


def model_dir(root: Path, size: str) -> str:
    d = root / f"llama-{size}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config_dict(size)))
    return str(d)


def predict(cfg: Config, mdir: str, gpu: str = "H100-80GB") -> dict:
    from zerowizard.core import analysis, memory
    from zerowizard.core.plan import plan_from_dict

    ds_path = Path(mdir) / f"ds-{cfg.name}.json"
    ds_path.write_text(json.dumps(ds_config(cfg)))
    plan = plan_from_dict(
        {
            "model": {"name": mdir},
            "method": {
                "type": cfg.method,
                "lora_r": LORA_R,
                "lora_alpha": 32,
                "lora_dropout": 0.0,
                "target_modules": "all-linear",
            },
            "hardware": {"gpu": gpu, "gpus_per_node": 1},
            "batch": {"micro_batch": cfg.micro_batch, "seq_len": cfg.seq, "grad_checkpointing": cfg.gc},
            "precision": "bf16",
            "deepspeed": str(ds_path),
            "zero": {"stage": cfg.stage, "offload_optimizer": cfg.offload_optimizer},
        }
    )
    a = analysis.analyze(plan)
    if a.workload is None:
        raise RuntimeError(a.model_error or a.base_error or "no workload")
    e = memory.estimate_variant(a.workload, memory.Variant(cfg.stage, cfg.offload_optimizer, "none"))
    b = e.per_gpu
    allocated = b.weights + b.grads + b.optimizer + b.activations + b.buffers
    return {
        "breakdown": b.as_dict(),
        "allocated": allocated,
        "reserved": allocated + int(allocated * memory.FRAGMENTATION),
        "total": b.total,
        "params_total": a.workload.total_params,
        "params_trainable": a.workload.trainable_params,
    }


def build_model(cfg: Config, mdir: str, ds: dict):
    import torch
    import torch._dynamo
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(mdir)
    config.use_cache = False
    torch.manual_seed(0)
    if cfg.method == "qlora":
        # bitsandbytes quantises on the way to the GPU: build in bf16 on the GPU, then swap every
        # decoder nn.Linear for a Linear4bit (NF4, double quant), as from_pretrained would.
        import bitsandbytes as bnb

        with torch.device("cuda"):
            model = LlamaForCausalLM(config).to(torch.bfloat16)
        for layer in model.model.layers:
            for parent in (layer.self_attn, layer.mlp):
                for name, lin in list(parent.named_children()):
                    if isinstance(lin, torch.nn.Linear):
                        q = bnb.nn.Linear4bit(
                            lin.in_features,
                            lin.out_features,
                            bias=lin.bias is not None,
                            compute_dtype=torch.bfloat16,
                            quant_type="nf4",
                            compress_statistics=True,
                            quant_storage=torch.bfloat16,
                        )
                        q.weight = bnb.nn.Params4bit(
                            lin.weight.data.cpu(),
                            requires_grad=False,
                            quant_type="nf4",
                            compress_statistics=True,
                            quant_storage=torch.bfloat16,
                        )
                        q = q.cuda()
                        setattr(parent, name, q)
                        del lin
        torch.cuda.empty_cache()
    elif cfg.stage == 3:
        import deepspeed

        with deepspeed.zero.Init(config_dict_or_path=ds, dtype=torch.bfloat16):
            model = LlamaForCausalLM(config)
    else:
        with torch.device("cuda"):
            model = LlamaForCausalLM(config).to(torch.bfloat16)
    if cfg.gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    if cfg.gc:
        model.enable_input_require_grads()
    lora = LoraConfig(r=LORA_R, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM", target_modules="all-linear")
    return get_peft_model(model, lora, autocast_adapter_dtype=False)


def run_one(cfg: Config, mdir: str, steps: int) -> dict:
    import deepspeed
    import torch

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base_alloc = torch.cuda.memory_allocated()
    free0, total = torch.cuda.mem_get_info()
    ds = ds_config(cfg)
    t0 = time.time()
    model = build_model(cfg, mdir, ds)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-5, fused=True)  # the HF Trainer's default (adamw_torch_fused)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=ds, model_parameters=trainable)
    vocab = SIZES[cfg.size][5]
    ids = torch.randint(0, vocab, (cfg.micro_batch, cfg.seq), device="cuda")
    step_s = []
    min_free = free0
    for _ in range(steps):
        s0 = time.time()
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        min_free = min(min_free, torch.cuda.mem_get_info()[0])
        engine.step()
        torch.cuda.synchronize()
        min_free = min(min_free, torch.cuda.mem_get_info()[0])
        step_s.append(round(time.time() - s0, 3))
    out = {
        "max_allocated": torch.cuda.max_memory_allocated() - base_alloc,
        "max_reserved": torch.cuda.max_memory_reserved(),
        "device_used_peak_sampled": total - min_free,
        "gpu_total": total,
        "loss": float(loss.detach().float()),
        "step_seconds": step_s,
        "build_seconds": round(time.time() - t0 - sum(step_s), 2),
    }
    if hasattr(engine, "destroy"):
        engine.destroy()
    del engine, opt, model, trainable, ids, loss
    gc.collect()
    torch.cuda.empty_cache()
    return out


def rel(measured, predicted):
    return None if not measured else (predicted - measured) / measured


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="list configs and predictions; no CUDA needed")
    ap.add_argument("--subset", help="'quick', or an fnmatch pattern on config names (comma-separated)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=420.0, help="stop launching configs after this many seconds")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    configs = default_configs()
    if args.subset:
        pats = QUICK if args.subset == "quick" else args.subset.split(",")
        configs = [c for c in configs if any(fnmatch.fnmatch(c.name, p) for p in pats)]
    tmp = Path(tempfile.mkdtemp(prefix="zw-gpu-peak-"))
    dirs = {s: model_dir(tmp, s) for s in SIZES}
    rows = []
    for c in configs:
        p = predict(c, dirs[c.size])
        rows.append({"name": c.name, "config": asdict(c), "predicted": p})
    if args.dry_run:
        print(f"{'config':38} {'params':>8} {'trainable':>10} {'pred alloc GiB':>15} {'pred total GiB':>15}")
        for r in rows:
            p = r["predicted"]
            print(
                f"{r['name']:38} {p['params_total'] / 1e9:7.2f}B {p['params_trainable'] / 1e6:9.1f}M "
                f"{p['allocated'] / 2**30:15.2f} {p['total'] / 2**30:15.2f}"
            )
        print(f"{len(rows)} configs (dry run: nothing executed)")
        return 0
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: use --dry-run here", file=sys.stderr)
        return 2
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    import deepspeed
    import transformers
    from transformers import LlamaForCausalLM  # noqa: F401  (import before zero.Init)

    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    transformers.utils.logging.set_verbosity_error()
    deepspeed.init_distributed(dist_backend="nccl", verbose=False)
    started = time.time()
    done = []
    for r in rows:
        if time.time() - started > args.budget:
            r["skipped"] = "budget"
            continue
        c = Config(**r["config"])
        t0 = time.time()
        try:
            m = run_one(c, dirs[c.size], args.steps)
            r["measured"] = m
            p = r["predicted"]
            r["rel_error"] = {
                "allocated": rel(m["max_allocated"], p["allocated"]),
                "reserved": rel(m["max_reserved"], p["reserved"]),
                "device": rel(m["device_used_peak_sampled"], p["total"]),
            }
        except Exception as exc:  # noqa: BLE001 - an OOM or a failure is a result too
            r["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
            r["traceback"] = traceback.format_exc()[-2000:]
            gc.collect()
            torch.cuda.empty_cache()
        r["seconds"] = round(time.time() - t0, 1)
        done.append(r)
        e = r.get("rel_error", {})
        print(
            f"{r['name']:38} "
            + (
                f"alloc {r['measured']['max_allocated'] / 2**30:6.2f} GiB "
                f"pred {r['predicted']['allocated'] / 2**30:6.2f} "
                f"({100 * e['allocated']:+.1f}%)  reserved "
                f"{r['measured']['max_reserved'] / 2**30:6.2f} ({100 * e['reserved']:+.1f}%)"
                if "measured" in r
                else f"ERROR {r['error'][:120]}"
            )
            + f"  [{r['seconds']} s]",
            flush=True,
        )
    report = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "deepspeed": deepspeed.__version__,
        "transformers": transformers.__version__,
        "seconds": round(time.time() - started, 1),
        "bucket_elements": BUCKET,
        "rows": rows,
    }
    ok = [r for r in rows if "rel_error" in r]
    if ok:
        report["max_abs_rel_error_allocated"] = max(abs(r["rel_error"]["allocated"]) for r in ok)
        report["under_predicted"] = [r["name"] for r in ok if r["rel_error"]["allocated"] < 0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(ok)}/{len(rows)} configs measured in {report['seconds']} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
