"""Fidelity of zerowizard's memory model against real DeepSpeed engines on the CPU.

Runs real DeepSpeed engines (DS_ACCELERATOR=cpu, gloo) with 1, 2 and 4 ranks on random-weight Llama
models of ~1M-20M parameters, for ZeRO stages 0-3; full, LoRA and QLoRA (QLoRA on stages 0-2);
offload_optimizer cpu on stages 1-3; offload_param cpu on stage 3; bf16 and fp32.

At two points of the second training step (after backward before the optimizer step - the peak of
the model states - and after the step) every rank walks the engine's module, the ZeRO optimizer and
the wrapped torch optimizer, collects every tensor it can reach, deduplicates them by storage
(``untyped_storage().data_ptr()``) and sorts the bytes into parts:

    weights    16-bit (or fp32 in fp32 mode) model parameters, ZeRO-3 partitions, 4-bit QLoRA storage
               and its quantisation constants, frozen fp32 params (peft's kbit upcast)
    grads      gradients: param.grad, ZeRO's flat gradient partitions, the fp32 gradient partition
               handed to the optimizer, ZeRO-3 gradient partitions
    gradbuf    ZeRO's gradient reduction buckets (ipg buffers of reduce_bucket_size elements)
    optimizer  fp32 master weights + Adam moments (exp_avg, exp_avg_sq) + step counters

and compares them with ``zerowizard.core.memory.state_parts`` for the same plan (same model config,
world size, precision, bucket sizes), through ``zerowizard.core.analysis.analyze``. Offloaded parts are on
the host, which on the CPU accelerator is the same memory; they are compared all the same.

Beside ours it prints DeepSpeed's own estimate_zero2/zero3_model_states_mem_needs_all_params.

    python benchmarks/fidelity.py                 # full sweep (about 10 minutes on 2 cores)
    python benchmarks/fidelity.py --quick         # a handful of configs, 2 ranks
    python benchmarks/fidelity.py --world 2 --only 'full-bf16-z2*'
    python benchmarks/fidelity.py --peak          # peak tensor memory with activations (fidelity_peak.py)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_ranks
import llama_shapes as _llama_shapes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DS_ACCELERATOR", "cpu")

RESULTS = ROOT / "benchmarks" / "results" / "fidelity.json"
PARTS = ("weights", "grads", "gradbuf", "optimizer")
POINTS = ("epilogue", "backward_end", "after_backward", "in_step", "after_step")

# Llama shapes: (hidden, intermediate, layers, heads, kv_heads, vocab)
SIZES = {
    "1M": (128, 352, 2, 4, 2, 2048),  # ~1.2M params
    "5M": (256, 704, 4, 8, 4, 4096),  # ~5.0M
    "20M": (512, 1408, 4, 8, 4, 8192),  # ~19.9M
}
BUCKET = 200_000  # reduce/allgather bucket elements, set explicitly so buffers are comparable
PREFETCH = 100_000
LIVE = 1_000_000
PERSIST = 0  # no persistent (unpartitioned) small params under ZeRO-3: every param is partitioned
SEQ = 32
LORA_R = 8
GRAD_ACCUM = int(os.environ.get("ZW_FIDELITY_GRAD_ACCUM", "1"))  # --grad-accum (env: reaches the ranks)


@dataclass(frozen=True)
class Config:
    size: str
    method: str  # full | lora | qlora | freeze
    precision: str  # bf16 | fp32
    stage: int
    offload_optimizer: str = "none"
    offload_param: str = "none"

    @property
    def name(self) -> str:
        n = f"{self.method}-{self.precision}-z{self.stage}-{self.size}"
        if self.offload_optimizer != "none":
            n += "-optcpu"
        if self.offload_param != "none":
            n += "-parcpu"
        return n


def sweep(world: int) -> list[Config]:
    """The configs run at one world size (4 ranks: a lean subset, 2 cores are shared)."""
    out: list[Config] = []
    size = {1: "5M", 2: "20M", 4: "5M"}[world]
    small = "1M"
    for st in range(4):
        out.append(Config(size, "full", "bf16", st))
        out.append(Config(small, "full", "fp32", st))
        out.append(Config(size, "lora", "bf16", st))
    for st in range(3):
        out.append(Config(size, "qlora", "bf16", st))
    for st in (1, 2, 3):
        out.append(Config(size, "full", "bf16", st, "cpu"))
    out.append(Config(size, "full", "bf16", 3, "cpu", "cpu"))
    out.append(Config(size, "lora", "bf16", 2, "cpu"))
    out.append(Config(small, "full", "fp32", 2, "cpu"))
    if world == 4:
        keep = {
            "full-bf16-z0",
            "full-bf16-z1",
            "full-bf16-z2",
            "full-bf16-z3",
            "lora-bf16-z3",
            "qlora-bf16-z2",
            "full-fp32-z2",
            "full-bf16-z2-optcpu",
            "full-bf16-z3-optcpu-parcpu",
        }
        out = [c for c in out if any(c.name == k + "-" + c.size or c.name.startswith(k + "-" + c.size) for k in keep)]
    return out


QUICK = [
    Config("1M", "full", "bf16", 1),
    Config("1M", "full", "bf16", 2),
    Config("1M", "full", "bf16", 3),
    Config("1M", "lora", "bf16", 2),
    Config("1M", "full", "fp32", 2),
]


# ---------------------------------------------------------------------------------------------
# models beyond the Llama sweep (issue 15): a tiny Mixtral-shaped mixture of experts (fused 3-D
# experts and a router, as transformers 5 builds them) and freeze tuning (the last layers train)

# Mixtral shapes: (hidden, expert width, layers, heads, kv_heads, vocab, experts, experts per token)
EXTRA_SIZES = {
    "moe2M": (128, 256, 2, 4, 2, 2048, 4, 2),  # ~1.5M params, 0.8M of them experts
}
FREEZE_LAYERS = 1  # freeze tuning: the last layer of the two trains


def extra_sweep(world: int) -> list[Config]:
    """The MoE and freeze configs at one world size (2 ranks: ZeRO-2 and ZeRO-3 each)."""
    if world != 2:
        return []
    return [
        Config("moe2M", "full", "bf16", 2),
        Config("moe2M", "full", "bf16", 3),
        Config("moe2M", "lora", "bf16", 2),  # peft's all-linear: attention, router and every expert
        Config("moe2M", "full", "bf16", 1),
        Config("moe2M", "full", "bf16", 2, "cpu"),
        Config("1M", "freeze", "bf16", 2),
        Config("1M", "freeze", "bf16", 3),
        Config("moe2M", "freeze", "bf16", 2),
    ]


def dims(size: str) -> tuple[int, ...]:
    return EXTRA_SIZES.get(size) or SIZES[size]


def mixtral_config_dict(size: str) -> dict:
    *shape, e, k = EXTRA_SIZES[size]
    return {
        "model_type": "mixtral",
        "architectures": ["MixtralForCausalLM"],
        **_llama_shapes.shape_fields(tuple(shape)),
        "num_local_experts": e,
        "num_experts_per_tok": k,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "router_jitter_noise": 0.0,
        "output_router_logits": False,
    }


def extra_model_dir(root: Path, size: str) -> str:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    d = root / f"mixtral-{size}"
    if not (d / "model.safetensors").exists():
        kw = {k: v for k, v in mixtral_config_dict(size).items() if k not in ("model_type", "architectures")}
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(AutoConfig.for_model("mixtral", **kw)).to(torch.bfloat16).save_pretrained(d)
    return str(d)


def init_fused_experts(model) -> None:
    """transformers 5.24 leaves the fused experts and the router uninitialised when an MoE model is
    built from a config inside deepspeed.zero.Init (gate_up_proj all zeros, down_proj and the router
    ~1e36 garbage: the first step overflows and is skipped). Give them the normal init, on rank 0."""
    import deepspeed
    import torch

    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if ".experts." in name or name.endswith("mlp.gate.weight"):
            with deepspeed.zero.GatheredParameters([p], modifier_rank=0), torch.no_grad():
                p.normal_(0.0, model.config.initializer_range)


def freeze_model(model) -> None:
    """The runner's freeze (zerowizard/runner/train.py freeze_layers): the last FREEZE_LAYERS train."""
    from zerowizard.core.freeze import is_trainable

    layers = model.config.num_hidden_layers
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name, layers, FREEZE_LAYERS))


# ---------------------------------------------------------------------------------------------
# the model directory and the prediction (pure Python side)


def llama_config_dict(size: str) -> dict:
    return _llama_shapes.llama_config_dict(SIZES[size], 256)


def ds_config(cfg: Config) -> dict:
    zo: dict = {
        "stage": cfg.stage,
        "reduce_bucket_size": BUCKET,
        "allgather_bucket_size": BUCKET,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "stage3_prefetch_bucket_size": PREFETCH,
        "stage3_max_live_parameters": LIVE,
        "stage3_param_persistence_threshold": PERSIST,
    }
    if cfg.offload_optimizer != "none":
        zo["offload_optimizer"] = {"device": cfg.offload_optimizer, "pin_memory": False}
    if cfg.offload_param != "none":
        zo["offload_param"] = {"device": cfg.offload_param, "pin_memory": False}
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": GRAD_ACCUM,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": cfg.precision == "bf16"},
        "zero_optimization": zo,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def predict(cfg: Config, world: int, model_dir: str) -> dict:
    """zerowizard's prediction for the same plan, through the same path as the CLI (core.analyze)."""
    from zerowizard.core import analysis, memory
    from zerowizard.core.plan import plan_from_dict

    path = Path(model_dir) / "ds.json"
    path.write_text(json.dumps(ds_config(cfg)))
    plan = plan_from_dict(
        {
            "model": {"name": model_dir},
            "method": {
                "type": cfg.method,
                "lora_r": LORA_R,
                "lora_alpha": 16,
                "lora_dropout": 0.0,
                "target_modules": "all-linear",
                "freeze_layers": FREEZE_LAYERS,
            },
            "hardware": {"gpu": "cpu", "gpus_per_node": world, "host_ram_gb": 1024},
            "batch": {"micro_batch": 1, "seq_len": SEQ, "grad_checkpointing": False},
            "precision": cfg.precision,
            "deepspeed": str(path),
            "zero": {
                "stage": cfg.stage,
                "offload_optimizer": cfg.offload_optimizer,
                "offload_param": cfg.offload_param,
            },
        }
    )
    a = analysis.analyze(plan)
    if a.workload is None:
        raise RuntimeError(f"no workload: {a.model_error or a.base_error} {[p.message for p in a.errors]}")
    v = memory.Variant(cfg.stage, cfg.offload_optimizer, cfg.offload_param)
    from dataclasses import replace

    # the harness walks allocated tensors, not the resident set: the buckets count whole
    parts = memory.state_parts(replace(a.workload, grad_accum=GRAD_ACCUM, reduce_bucket_size=BUCKET), v)
    return {"parts": parts, "total_params": a.workload.total_params, "trainable_params": a.workload.trainable_params}


def deepspeed_estimates(cfg: Config, world: int, total: int, trainable: int, largest: int) -> dict:
    """DeepSpeed's own estimators for the same config: bytes per GPU and CPU (model states only).

    They take the *total* parameter count and treat it as trainable: a LoRA/QLoRA run is
    estimated as a full fine-tune (the known 10-30x error of the issue trackers)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    off_opt = cfg.offload_optimizer != "none"
    if cfg.stage == 3:
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            total,
            largest,
            num_gpus_per_node=world,
            num_nodes=1,
            cpu_offload=off_opt,
            cpu_offload_params=cfg.offload_param != "none",
            zero_init=True,
            additional_buffer_factor=1.5,
        )
    else:
        cpu, gpu = estimate_zero2_model_states_mem_needs(
            total, num_gpus_per_node=world, num_nodes=1, cpu_offload=off_opt, additional_buffer_factor=1.5
        )
    # both return (cpu_mem, gpu_mem): per GPU, and per node for the host (all ranks of a node)
    offloaded = off_opt or cfg.offload_param != "none"
    return {
        "gpu": int(gpu),
        "cpu_per_node": int(cpu),
        "per_rank": int(gpu) + (int(cpu) // world if offloaded else 0),
        "which": "zero3" if cfg.stage == 3 else "zero2 (used for stages 0-2)",
    }


# ---------------------------------------------------------------------------------------------
# the measurement (per rank, torch side)


def _storage_key(t):
    try:
        s = t.untyped_storage()
        return s.data_ptr(), s.nbytes()
    except Exception:  # noqa: BLE001 - meta / sparse tensors
        return None


def collect(engine, model) -> list[tuple[str, object]]:
    """Every (path, tensor) reachable from the module's parameters and the optimizers."""
    import torch

    found: list[tuple[str, object]] = []
    seen: set[int] = set()

    def add(path, t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            found.append((path, t))
            g = getattr(t, "grad", None)
            if isinstance(g, torch.Tensor):
                found.append((path + ".grad", g))
            ds = getattr(t, "ds_tensor", None)
            if isinstance(ds, torch.Tensor):
                add(path + ".ds_tensor", ds)
            qs = getattr(t, "quant_state", None)
            if qs is not None:
                walk(qs, path + ".quant_state", 0)

    def walk(obj, path, depth):
        if depth > 7 or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
            return
        if isinstance(obj, torch.Tensor):
            add(path, obj)
            return
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            return  # the module is walked once, below, by parameter name
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                if isinstance(k, torch.Tensor):
                    add(f"{path}[key]", k)
                walk(v, f"{path}.{k}" if isinstance(k, str) else f"{path}[]", depth + 1)
            return
        if isinstance(obj, (list, tuple, set)):
            for v in obj:
                walk(v, f"{path}[]", depth + 1)
            return
        mod = type(obj).__module__ or ""
        if not mod.startswith(("deepspeed", "torch.optim", "bitsandbytes", "collections")):
            return
        d = getattr(obj, "__dict__", None)
        if d:
            for k, v in list(d.items()):
                if k in ("module", "_module", "model", "engine", "param_names", "ds_config", "_config"):
                    continue
                walk(v, f"{path}.{k}", depth + 1)

    for name, p in model.named_parameters():
        add(f"module.{name}", p)
    for name, b in model.named_buffers():
        add(f"buffer.{name}", b)
    opt = engine.optimizer
    walk(opt, "zero", 0)
    inner = getattr(opt, "optimizer", None)
    if inner is not None and id(inner) not in seen:
        walk(inner, "torch_opt", 0)
    return found


def classify(path: str, t, precision: str) -> str:
    """Which part a tensor belongs to, from where it was found."""
    p = path
    if p.startswith("buffer."):
        return "other"
    if p.endswith(".grad") or ".grad." in p:
        if "fp32" in p or "single_partition" in p:
            return "grads"
        return "grads"
    low = p.lower()
    if "ipg" in low or "bucket" in low or "reduce_buffer" in low or "temp_grad" in low:
        return "gradbuf"
    if (
        ("grad" in low and "partition" in low)
        or "averaged_gradients" in low
        or "accumulated_grads" in low
        or "grads_in_partition" in low
        or "grad_partition" in low
        or "__param_id_to_grad" in low
    ):
        return "grads"
    if (
        low.startswith(("zero.state", "torch_opt.state"))
        or ".state." in low
        or low.startswith("zero.optimizer.state")
        or ("torch_opt" in low and "state" in low)
    ):
        return "optimizer"
    if "fp32" in low or "single_partition" in low or "master" in low:
        return "optimizer"
    if p.startswith("module."):
        return "weights"
    if "bit16" in low or "fp16" in low or "lp_param" in low or "ds_tensor" in low or "partitioned_groups_flat" in low:
        return "weights"
    return "other"


PRIORITY = {"weights": 0, "optimizer": 1, "gradbuf": 2, "grads": 3, "other": 4}  # grads point into buckets


def measure(engine, model, precision: str, detail: bool = False) -> dict:
    by_storage: dict[int, tuple[int, str, str]] = {}
    for path, t in collect(engine, model):
        key = _storage_key(t)
        if key is None or key[1] == 0:
            continue
        ptr, nbytes = key
        part = classify(path, t, precision)
        old = by_storage.get(ptr)
        if old is None or PRIORITY[part] < PRIORITY[old[1]] or (old[0] < nbytes):
            if old is not None and PRIORITY[old[1]] < PRIORITY[part]:
                part, path = old[1], old[2]
            by_storage[ptr] = (max(nbytes, old[0] if old else 0), part, path)
    parts = {k: 0 for k in (*PARTS, "other")}
    for nbytes, part, _ in by_storage.values():
        parts[part] += nbytes
    out = {"parts": parts}
    if detail:
        agg: dict[tuple[str, str], list[int]] = {}
        for nbytes, part, path in by_storage.values():
            generic = "".join(c if not c.isdigit() else "#" for c in path)
            a = agg.setdefault((part, generic), [0, 0])
            a[0] += nbytes
            a[1] += 1
        out["detail"] = sorted(([p, g, b, n] for (p, g), (b, n) in agg.items()), key=lambda r: -r[2])
    return out


def _total(m: dict) -> int:
    return sum(m["parts"][k] for k in PARTS)


def build_model(cfg: Config, model_dir: str, ds: dict):
    import torch
    import torch._dynamo
    from transformers import AutoConfig, AutoModelForCausalLM  # the Llama sweep, or an extra model

    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        q = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,
        )
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, quantization_config=q)
    elif cfg.stage == 3:
        import deepspeed

        with deepspeed.zero.Init(config_dict_or_path=ds, dtype=dtype):
            model = AutoModelForCausalLM.from_config(config)
        if cfg.size in EXTRA_SIZES:
            init_fused_experts(model)
    else:
        model = AutoModelForCausalLM.from_config(config).to(dtype)
    model.config.use_cache = False
    if cfg.method == "full":
        return model
    if cfg.method == "freeze":
        freeze_model(model)
        return model
    # the runner's path (zerowizard/runner/train.py load_model), step for step
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(r=LORA_R, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM", target_modules="all-linear")
    model = get_peft_model(model, lora, autocast_adapter_dtype=False)
    if cfg.method == "qlora":
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(dtype)
    return model


def run_one(cfg: Config, model_dir: str, rank: int, detail: bool) -> dict:
    import deepspeed
    import torch

    ds = ds_config(cfg)
    model = build_model(cfg, model_dir, ds)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=ds, model_parameters=trainable)
    vocab = dims(cfg.size)[5]
    g = torch.Generator().manual_seed(rank)
    ids = torch.randint(0, vocab, (1, SEQ), generator=g)
    out: dict = {}
    armed = [False]
    live = {"engine": engine, "model": model}  # the probes' view; the names are deleted at the end

    def probe(point, fn):
        def wrapped(*a, **k):
            if armed[0]:
                m = measure(live["engine"], live["model"], cfg.precision, detail)
                if point not in out or _total(m) > _total(out[point]):
                    out[point] = m
            return fn(*a, **k)

        return wrapped

    zopt = engine.optimizer
    # the end of autograd's backward: every 16-bit gradient computed, ZeRO-1/2's epilogue not yet run
    if hasattr(zopt, "overlapping_partition_gradients_reduce_epilogue"):
        zopt.overlapping_partition_gradients_reduce_epilogue = probe(
            "epilogue", zopt.overlapping_partition_gradients_reduce_epilogue
        )
    # the end of backward: every bucket reduced, ZeRO-1/2's ipg buffers not yet released
    if hasattr(zopt, "_release_ipg_buffers"):
        zopt._release_ipg_buffers = probe("backward_end", zopt._release_ipg_buffers)
    # inside the step: the fp32 gradient partitions are handed to the torch optimizer
    inner = getattr(zopt, "optimizer", None)
    if inner is not None and hasattr(inner, "step"):
        inner.step = probe("in_step", inner.step)
    ga = GRAD_ACCUM
    for micro in range(2 * ga):  # two optimizer steps; measure in the second
        armed[0] = micro >= ga  # Adam's moments exist from the first step on (torch allocates lazily)
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        if armed[0]:
            m = measure(engine, model, cfg.precision, detail)
            if "after_backward" not in out or _total(m) > _total(out["after_backward"]):
                out["after_backward"] = m
        engine.step()  # DeepSpeed steps the optimizer only at the accumulation boundary
    out["after_step"] = measure(engine, model, cfg.precision, detail)
    out["loss"] = float(loss.detach().float())
    out["optimizer_class"] = type(engine.optimizer).__name__
    if hasattr(engine, "destroy"):
        engine.destroy()
    live.clear()
    del engine, opt, model
    import gc

    gc.collect()
    return out


def worker(rank: int, world: int, port: int, out_dir: str, configs: list[dict], dirs: dict, detail: bool):
    cpu_ranks.init_rank(rank, world, port)
    from transformers import LlamaForCausalLM, MixtralForCausalLM  # noqa: F401 - before zero.Init

    results = cpu_ranks.each(configs, lambda c: run_one(Config(**c), dirs[c["size"]], rank, detail))
    for r, c in zip(results, configs, strict=True):
        r["config"] = c
    cpu_ranks.finish_rank(rank, out_dir, results)


def make_model_dirs(root: Path, sizes) -> dict:
    """config.json + random safetensors per size (QLoRA loads through from_pretrained)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dirs = {}
    for size in sorted(set(sizes)):
        if size in EXTRA_SIZES:
            dirs[size] = extra_model_dir(root, size)
            continue
        d = root / f"llama-{size}"
        if not (d / "model.safetensors").exists():
            cfg = LlamaConfig(
                **{k: v for k, v in llama_config_dict(size).items() if k not in ("model_type", "architectures")}
            )
            torch.manual_seed(0)
            LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(d)
        dirs[size] = str(d)
    return dirs


def run_world(world: int, configs: list[Config], dirs: dict, detail: bool) -> list[dict]:
    per_rank = cpu_ranks.run_ranks(worker, world, [asdict(c) for c in configs], dirs, detail)
    rows = []
    for i, cfg in enumerate(configs):
        ranks = [per_rank[r][i] for r in range(world)]
        rows.append({"config": cfg, "world": world, "ranks": ranks})
    return rows


def rel(measured: int, predicted: int) -> float | None:
    if measured == 0:
        return None if predicted == 0 else float("inf")
    return (predicted - measured) / measured


def summarize(row: dict, dirs: dict) -> dict:
    cfg: Config = row["config"]
    world = row["world"]
    ranks = row["ranks"]
    err = next((r["error"] for r in ranks if r.get("error")), None)
    out = {
        "name": cfg.name,
        "world": world,
        "config": asdict(cfg),
        "error": err,
        "seconds": max(r.get("seconds", 0) for r in ranks),
    }
    if err:
        out["traceback"] = next(r.get("traceback") for r in ranks if r.get("error"))
        return out
    pred = predict(cfg, world, dirs[cfg.size])
    pparts = pred["parts"]

    h, f, *_ = dims(cfg.size)
    v = dims(cfg.size)[5]
    largest = max(v * h, h * f)
    out["params"] = {"total": pred["total_params"], "trainable": pred["trainable_params"]}
    out["optimizer_class"] = ranks[0].get("optimizer_class")
    out["deepspeed_estimate"] = deepspeed_estimates(cfg, world, pred["total_params"], pred["trainable_params"], largest)
    out["predicted"] = {k: pparts[k] for k in PARTS}
    out["predicted_peak_phase"] = pparts["peak_phase"]
    out["predicted_transient"] = pparts["transient"]
    # the peak point: after backward, before the step (grads and optimizer states both live)
    points = [p for p in POINTS if all(p in r for r in ranks)]
    for point in points:
        per_rank = [r[point]["parts"] for r in ranks]
        worst = max(per_rank, key=lambda p: sum(p[k] for k in PARTS))
        out[point] = {"max_rank": worst, "per_rank": per_rank}
        if "detail" in ranks[0][point]:
            out[point]["detail_rank0"] = ranks[0][point]["detail"]
    # the peak: the point where the model states (all parts) are largest on the worst rank
    peak = max(points, key=lambda p: sum(out[p]["max_rank"][k] for k in PARTS))
    out["peak_point"] = peak
    out["peak"] = out[peak]["max_rank"]
    # each phase against its own measurement: backward (end of backward) and step (inside it)
    meas_phase = {
        "backward": max(
            [p for p in ("epilogue", "backward_end", "after_backward") if p in out],
            key=lambda p: sum(out[p]["max_rank"][k] for k in PARTS),
        ),
        "step": "in_step" if "in_step" in out else "after_step",
    }
    out["phases"] = {}
    for ph, point in meas_phase.items():
        mp, pp = out[point]["max_rank"], pparts["phases"][ph]
        out["phases"][ph] = {
            "measured_at": point,
            "measured": {k: mp[k] for k in PARTS},
            "predicted": {k: pp[k] for k in PARTS},
            "rel_error": {k: rel(mp[k], pp[k]) for k in PARTS},
            "rel_error_states": rel(sum(mp[k] for k in PARTS), sum(pp[k] for k in PARTS)),
        }
    m = out["peak"]
    out["rel_error"] = {k: rel(m[k], pparts[k]) for k in PARTS}
    ms = sum(m[k] for k in PARTS)
    ps = sum(pparts[k] for k in PARTS)
    out["measured_states"] = ms
    out["predicted_states"] = ps
    out["rel_error_states"] = rel(ms, ps)
    out["deepspeed_rel_error_states"] = rel(ms, out["deepspeed_estimate"]["per_rank"])
    return out


def fmt_b(n: int) -> str:
    return f"{n / 2**20:8.2f}"


def fmt_e(e) -> str:
    if e is None:
        return "    -  "
    if e == float("inf"):
        return "   inf "
    return f"{100 * e:+6.2f}%"


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'config':36} {'N':>1} | "
        + " | ".join(f"{k:^25}" for k in PARTS)
        + f" | {'W+G+O (MiB)':^25} | {'DeepSpeed est.':^17}"
    )
    print(head)
    print(
        f"{'':36} {'':>1} | "
        + " | ".join(f"{'meas':>8} {'pred':>8} {'err':>7}" for _ in PARTS)
        + f" | {'meas':>8} {'pred':>8} {'err':>7} | {'MiB':>8} {'err':>8}"
    )
    print("-" * len(head))
    for r in rows:
        if r.get("error"):
            print(f"{r['name']:36} {r['world']} | ERROR {r['error'][:150]}")
            continue
        m, p, e = r["peak"], r["predicted"], r["rel_error"]
        cells = " | ".join(f"{fmt_b(m[k])} {fmt_b(p[k])} {fmt_e(e[k])}" for k in PARTS)
        dsv = r["deepspeed_estimate"]["per_rank"]
        print(
            f"{r['name']:36} {r['world']} | {cells} | {fmt_b(r['measured_states'])} "
            f"{fmt_b(r['predicted_states'])} {fmt_e(r['rel_error_states'])} | {fmt_b(dsv)} "
            f"{fmt_e(r['deepspeed_rel_error_states']):>8}"
        )


def family(r: dict) -> str:
    c = r["config"]
    n = f"{c['method']}-{c['precision']}-z{c['stage']}"
    return (
        n
        + ("-optcpu" if c["offload_optimizer"] != "none" else "")
        + ("-parcpu" if c["offload_param"] != "none" else "")
    )


def families(rows: list[dict]) -> list[dict]:
    """Per config family (method, precision, stage, offload; all sizes and world sizes): max |error|."""
    out: dict[str, dict] = {}
    for r in rows:
        if r.get("error"):
            continue
        f = out.setdefault(
            family(r),
            {
                "family": family(r),
                "configs": 0,
                "worlds": set(),
                **{k: 0.0 for k in PARTS},
                "states": 0.0,
                "deepspeed": 0.0,
            },
        )
        f["configs"] += 1
        f["worlds"].add(r["world"])
        for k in PARTS:
            e = r["rel_error"][k]
            if e is not None and e != float("inf"):
                f[k] = max(f[k], abs(e))
            elif e == float("inf"):
                f[k] = float("inf")
        f["states"] = max(f["states"], abs(r["rel_error_states"]))
        f["deepspeed"] = max(f["deepspeed"], abs(r["deepspeed_rel_error_states"]))
    for f in out.values():
        f["worlds"] = sorted(f["worlds"])
    return list(out.values())


def markdown_families(fams: list[dict]) -> str:
    pct = lambda e: "∞" if e == float("inf") else f"{100 * e:.2f}%"  # noqa: E731
    lines = [
        "| family | configs | ranks | weights | grads | gradbuf | optimizer | **W+G+O** | DeepSpeed's estimator |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in fams:
        lines.append(
            f"| {f['family']} | {f['configs']} | {','.join(map(str, f['worlds']))} | "
            + " | ".join(pct(f[k]) for k in PARTS)
            + f" | **{pct(f['states'])}** | {pct(f['deepspeed'])} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--peak" in argv:  # peak tensor memory beyond the model states: benchmarks/fidelity_peak.py
        import fidelity_peak

        return fidelity_peak.main([a for a in argv if a != "--peak"])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=int, action="append", help="world sizes to run (default 1 2 4)")
    ap.add_argument("--only", help="fnmatch pattern on config names")
    ap.add_argument("--quick", action="store_true", help="a handful of 1M configs at 2 ranks")
    ap.add_argument("--detail", action="store_true", help="keep per-tensor-path byte counts in the JSON")
    ap.add_argument("--out", help=f"the report (default {RESULTS.name}; with --rescore the rescored file)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--grad-accum", type=int, help="gradient accumulation steps (default 1)")
    ap.add_argument("--rescore", metavar="JSON", help="re-predict a previous run's measurements (no DeepSpeed)")
    ap.add_argument("--extra", action="store_true", help="only the MoE and freeze-tuning configs (EXTRA), 2 ranks")
    args = ap.parse_args(argv)
    if args.grad_accum:
        global GRAD_ACCUM
        GRAD_ACCUM = args.grad_accum
        os.environ["ZW_FIDELITY_GRAD_ACCUM"] = str(args.grad_accum)  # the spawned ranks re-import
    if args.rescore:
        return rescore(args)
    worlds = args.world or ([2] if args.quick or args.extra else [1, 2, 4])
    plan = {}
    for w in worlds:
        cfgs = QUICK if args.quick else extra_sweep(w) if args.extra else sweep(w) + extra_sweep(w)
        if args.only:
            cfgs = [c for c in cfgs if fnmatch.fnmatch(c.name, args.only)]
        if cfgs:
            plan[w] = cfgs
    cache = cpu_ranks.model_cache()
    dirs = make_model_dirs(cache, [c.size for cs in plan.values() for c in cs])
    t0 = time.time()
    rows = []
    for w, cfgs in plan.items():
        print(f"# {len(cfgs)} configs at {w} rank(s)", flush=True)
        for row in run_world(w, cfgs, dirs, args.detail):
            rows.append(summarize(row, dirs))
    print_table(rows)
    ok = [r for r in rows if not r.get("error")]
    worst = max(ok, key=lambda r: abs(r["rel_error_states"]), default=None)
    report = {
        "deepspeed": _version("deepspeed"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        "bitsandbytes": _version("bitsandbytes"),
        "bucket_elements": BUCKET,
        "seq_len": SEQ,
        "grad_accum": GRAD_ACCUM,
        "lora_r": LORA_R,
        "seconds": round(time.time() - t0, 1),
        "max_abs_rel_error_states": abs(worst["rel_error_states"]) if worst else None,
        "worst_config": worst["name"] if worst else None,
        "errors": [r["name"] for r in rows if r.get("error")],
        "rows": rows,
    }
    if worst:
        print(
            f"\nmax |relative error| of weights+grads+optimizer (incl. ZeRO grad buffers): "
            f"{100 * abs(worst['rel_error_states']):.2f}% ({worst['name']}, {worst['world']} ranks)"
        )
        dsw = max(ok, key=lambda r: abs(r["deepspeed_rel_error_states"]))
        print(
            f"DeepSpeed's estimator, same measure: max |relative error| "
            f"{100 * abs(dsw['deepspeed_rel_error_states']):.1f}% ({dsw['name']}, {dsw['world']} ranks)"
        )
    report["families"] = families(rows)
    print("\nmax |relative error| per config family (peak point, worst rank):")
    print(markdown_families(report["families"]))
    print(f"{len(rows)} configs in {report['seconds']} s; errors: {report['errors'] or 'none'}")
    if not args.no_write:
        out = Path(args.out or RESULTS)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"wrote {out}")
    return 0 if not report["errors"] else 1


def rescore(args) -> int:
    """Predictions of the current memory model against the measurements stored in a report, under
    the report's own settings (its gradient accumulation, unless --grad-accum says otherwise)."""
    global GRAD_ACCUM
    old = json.loads(Path(args.rescore).read_text())
    GRAD_ACCUM = args.grad_accum or int(old.get("grad_accum") or 1)
    if old.get("bucket_elements", BUCKET) != BUCKET or old.get("seq_len", SEQ) != SEQ:
        print(f"note: measured with bucket {old.get('bucket_elements')}, sequence {old.get('seq_len')}; "
              f"predicted with {BUCKET}, {SEQ}", file=sys.stderr)  # fmt: skip
    cache = cpu_ranks.model_cache()
    done = [r for r in old["rows"] if not r.get("error")]
    if args.only:
        done = [r for r in done if fnmatch.fnmatch(r["name"], args.only)]
    dirs = make_model_dirs(cache, [r["config"]["size"] for r in done])
    rows = []
    for r in done:
        world = r["world"]
        ranks = [{} for _ in range(world)]
        for point in POINTS:
            if point in r:
                for i, parts in enumerate(r[point]["per_rank"]):
                    ranks[i][point] = {"parts": parts}
        for i in range(world):
            ranks[i]["optimizer_class"] = r.get("optimizer_class")
            ranks[i]["seconds"] = r.get("seconds", 0)
        rows.append(summarize({"config": Config(**r["config"]), "world": world, "ranks": ranks}, dirs))
    print_table(rows)
    worst = max(rows, key=lambda r: abs(r["rel_error_states"]))
    print(
        f"\nmax |relative error| of weights+grads+optimizer: {100 * abs(worst['rel_error_states']):.2f}% "
        f"({worst['name']}, {worst['world']} ranks)"
    )
    print(markdown_families(families(rows)))
    if not args.no_write:
        report = {
            **old,
            "rows": rows,
            "rescored": True,
            "families": families(rows),
            "max_abs_rel_error_states": abs(worst["rel_error_states"]),
            "worst_config": worst["name"],
        }
        Path(args.out or args.rescore).write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


def _version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    sys.exit(main())
