"""Peak tensor memory per rank on the CPU, beyond the model states (``fidelity.py --peak``).

Two real DeepSpeed ranks (gloo, DS_ACCELERATOR=cpu, ZeRO-2, bf16) train small random-weight models
of two families (Llama: untied, GQA; Qwen2: q/k/v biases, tied embeddings) over a grid of
sequence length × micro batch × gradient checkpointing × method (full, LoRA with the runner's
dropout), the way the runner does it (HF model classes, SDPA attention, peft, non-reentrant
checkpointing, the model's own loss). In the second step every rank records its CPU allocator with
torch's profiler (``profile_memory``: every allocation and free, in order) and takes

    peak = the tensors alive before the step (walked, deduplicated by storage)
         + the largest running sum of the allocations during the step (forward, backward, step),

the phase where that peak falls, and the activation peak (the running sum at the end of forward).
It compares the worst rank's peak with zerowizard's ``weights + grads + optimizer + activations +
buffers`` for the same plan (core.analyze, the same bucket sizes; the overhead term is not tensor
memory). Target: within 5% at every grid point.

A micro batch over 1 is right-padded by a quarter (the runner's collator pads), so SDPA gets an
attention mask; a micro batch of 1 is not padded and SDPA runs causal without one.

    python benchmarks/fidelity.py --peak                  # the grid (~5 minutes on 2 cores)
    python benchmarks/fidelity.py --peak --only 'llama-full-*'
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_ranks  # noqa: E402
import llama_shapes  # noqa: E402

os.environ.setdefault("DS_ACCELERATOR", "cpu")

RESULTS = ROOT / "benchmarks" / "results" / "fidelity_peak.json"
WORLD = 2
BUCKET = 200_000
LORA_R = 8
LORA_DROPOUT = 0.1  # the runner's default (plan.method.lora_dropout)
# (hidden, intermediate, layers, heads, kv heads, vocab)
DIMS = {"llama": (256, 704, 4, 8, 4, 8192), "qwen2": (256, 768, 3, 8, 2, 8192)}


@dataclass(frozen=True)
class Point:
    family: str  # llama | qwen2
    method: str  # full | lora
    seq: int
    micro: int
    ckpt: bool

    @property
    def pad(self) -> bool:
        """A micro batch over 1 is padded, as the runner's collator pads it (an attention mask)."""
        return self.micro > 1

    @property
    def name(self) -> str:
        return f"{self.family}-{self.method}-s{self.seq}-b{self.micro}" + ("-ckpt" if self.ckpt else "")


def grid() -> list[Point]:
    return [
        Point(fam, m, s, b, ck)
        for fam in DIMS
        for m in ("full", "lora")
        for s in (128, 512)
        for b in (1, 4)
        for ck in (False, True)
    ]


def config_dict(family: str) -> dict:
    llama = {**llama_shapes.llama_config_dict(DIMS[family], 1024), "rms_norm_eps": 1e-6}
    if family == "qwen2":  # q/k/v biases are Qwen2's own; tied embeddings
        rest = {k: v for k, v in llama.items() if k not in ("attention_bias", "mlp_bias")}
        return {**rest, "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "tie_word_embeddings": True}
    return llama


def model_dirs(root: Path) -> dict[str, str]:
    out = {}
    for fam in DIMS:
        d = root / f"peak-{fam}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(config_dict(fam)))
        out[fam] = str(d)
    return out


def ds_config(p: Point) -> dict:
    return {
        "train_micro_batch_size_per_gpu": p.micro,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": True},
        "zero_optimization": {
            "stage": 2,
            "reduce_bucket_size": BUCKET,
            "allgather_bucket_size": BUCKET,
            "overlap_comm": False,
            "contiguous_gradients": True,
        },
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
    }


# ---- the prediction (pure Python) ----------------------------------------------------------


def predict(p: Point, model_dir: str) -> dict:
    from zerowizard.core import analysis, memory
    from zerowizard.core.plan import plan_from_dict

    ds_path = Path(model_dir) / f"ds-{p.micro}.json"
    ds_path.write_text(json.dumps(ds_config(p)))
    plan = plan_from_dict(
        {
            "model": {"name": model_dir},
            "method": {"type": p.method, "lora_r": LORA_R, "lora_alpha": 16, "lora_dropout": LORA_DROPOUT},
            "hardware": {"gpu": "cpu", "gpus_per_node": WORLD, "host_ram_gb": 1024},
            "batch": {"micro_batch": p.micro, "seq_len": p.seq, "grad_checkpointing": p.ckpt},
            "precision": "bf16",
            "deepspeed": str(ds_path),
        }
    )
    a = analysis.analyze(plan)
    if a.workload is None:
        raise RuntimeError(f"no workload: {a.model_error or a.base_error}")
    w = replace(a.workload, reduce_bucket_size=BUCKET)  # tensors, not resident pages: whole buckets
    e = memory.estimate_variant(w, memory.Variant(2)).per_gpu
    parts = {k: getattr(e, k) for k in ("weights", "grads", "optimizer", "activations", "buffers")}
    return {"parts": parts, "total": sum(parts.values()), "activation_peak": memory.activations(w)}


# ---- the measurement (per rank) -----------------------------------------------------------


def build(p: Point, model_dir: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # SDPA attention, as the runner
    model.config.use_cache = False
    if p.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=LORA_R, lora_alpha=16, lora_dropout=LORA_DROPOUT, task_type="CAUSAL_LM", target_modules="all-linear"
        )
        model = get_peft_model(model, lora, autocast_adapter_dtype=False)
    if p.ckpt:  # what the HF Trainer does with gradient_checkpointing=True, use_reentrant=False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def live_bytes(engine, model) -> int:
    """Every tensor reachable from the module and the optimizers, by storage (fidelity.collect)."""
    import fidelity

    seen: dict[int, int] = {}
    for _, t in fidelity.collect(engine, model):
        key = fidelity._storage_key(t)
        if key is not None:
            seen[key[0]] = max(seen.get(key[0], 0), key[1])
    return sum(seen.values())


def run_point(p: Point, model_dir: str, rank: int) -> dict:
    import deepspeed
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    model = build(p, model_dir)
    trainable = [x for x in model.parameters() if x.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, fused=True)  # the Trainer's default (adamw_torch_fused)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=ds_config(p), model_parameters=trainable)
    vocab = DIMS[p.family][5]
    g = torch.Generator().manual_seed(rank)
    ids = torch.randint(3, vocab, (p.micro, p.seq), generator=g)
    kw: dict = {"input_ids": ids, "labels": ids.clone()}
    if p.pad:  # the collator's right padding: a quarter of every sequence but the first
        mask = torch.ones_like(ids)
        mask[1:, -p.seq // 4 :] = 0
        kw["attention_mask"] = mask
        kw["labels"][mask == 0] = -100

    def step():
        with record_function("zw::forward"):
            loss = engine(**kw).loss
        with record_function("zw::backward"):
            engine.backward(loss)
        with record_function("zw::step"):
            engine.step()
        return loss

    step()  # Adam's moments exist from here on
    gc.collect()
    base = live_bytes(engine, model)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = step()
    events = prof.profiler.kineto_results.events()
    mem = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    marks = {e.name(): (e.start_ns(), e.end_ns()) for e in events if e.name().startswith("zw::")}
    running, peak, peak_at = 0, 0, 0
    fwd_end = marks.get("zw::forward", (0, 0))[1]
    at_fwd_end = 0
    for t, n in mem:
        running += n
        if running > peak:
            peak, peak_at = running, t
        if t <= fwd_end:
            at_fwd_end = running
    phase = next((k[4:] for k, (a, b) in marks.items() if a <= peak_at <= b), "between")
    out = {
        "base": base,
        "net_peak": peak,
        "peak": base + peak,
        "phase": phase,
        "activations_at_forward_end": at_fwd_end,
        "loss": float(loss.detach().float()),
    }
    if hasattr(engine, "destroy"):
        engine.destroy()
    return out  # the engine, model and optimizer go with this frame (the worker collects)


def worker(rank: int, world: int, port: int, out_dir: str, points: list[dict], dirs: dict) -> None:
    cpu_ranks.init_rank(rank, world, port)
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM  # noqa: F401 - before DeepSpeed

    def run(d: dict) -> dict:
        p = Point(**d)
        r = run_point(p, dirs[p.family], rank)
        gc.collect()
        return r

    cpu_ranks.finish_rank(rank, out_dir, cpu_ranks.each(points, run))


def measure(points: list[Point], dirs: dict) -> list[list[dict]]:
    per_rank = cpu_ranks.run_ranks(worker, WORLD, [asdict(p) for p in points], dirs)
    return [[per_rank[r][i] for r in range(WORLD)] for i in range(len(points))]


def summarize(p: Point, ranks: list[dict], dirs: dict) -> dict:
    err = next((r["error"] for r in ranks if r.get("error")), None)
    row: dict = {"name": p.name, "point": asdict(p), "error": err}
    if err:
        row["traceback"] = next(r.get("traceback") for r in ranks if r.get("error"))
        return row
    worst = max(ranks, key=lambda r: r["peak"])
    pred = predict(p, dirs[p.family])
    row.update(
        measured=worst["peak"],
        measured_base=worst["base"],
        measured_phase=worst["phase"],
        measured_activations_at_forward_end=worst["activations_at_forward_end"],
        per_rank=[r["peak"] for r in ranks],
        predicted=pred["total"],
        predicted_parts=pred["parts"],
        predicted_activation_peak=pred["activation_peak"],
        rel_error=(pred["total"] - worst["peak"]) / worst["peak"],
        seconds=max(r["seconds"] for r in ranks),
    )
    return row


def print_rows(rows: list[dict]) -> None:
    mib = 2**20
    head = ("point", "peak MiB", "phase", "base", "acts@fwd", "pred MiB", "act peak", "act adds", "err")
    print(f"{head[0]:34}" + "".join(f"{x:>10}" for x in head[1:]))
    for r in rows:
        if r.get("error"):
            print(f"{r['name']:34} ERROR {r['error'][:120]}")
            continue
        cells = [r["measured"], r["measured_base"], r["measured_activations_at_forward_end"], r["predicted"]]
        cells += [r["predicted_activation_peak"], r["predicted_parts"]["activations"]]
        mibs = [f"{c / mib:10.2f}" for c in cells]
        print(
            f"{r['name']:34}{mibs[0]}{r['measured_phase']:>10}" + "".join(mibs[1:]) + f"{100 * r['rel_error']:+9.2f}%"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="fnmatch pattern on point names")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    points = [p for p in grid() if not args.only or fnmatch.fnmatch(p.name, args.only)]
    dirs = model_dirs(cpu_ranks.model_cache())
    t0 = time.time()
    rows = [summarize(p, ranks, dirs) for p, ranks in zip(points, measure(points, dirs), strict=True)]
    print_rows(rows)
    ok = [r for r in rows if not r.get("error")]
    worst = max(ok, key=lambda r: abs(r["rel_error"]), default=None)
    if worst:
        print(f"\nmax |relative error| at the peak: {100 * abs(worst['rel_error']):.2f}% ({worst['name']})")
    failed = [r["name"] for r in rows if r.get("error")]
    print(f"{len(rows)} points in {time.time() - t0:.0f} s; errors: {failed or 'none'}")
    if not args.no_write:
        report = {
            "world": WORLD,
            "bucket_elements": BUCKET,
            "lora_r": LORA_R,
            "lora_dropout": LORA_DROPOUT,
            "dims": DIMS,
            "max_abs_rel_error": abs(worst["rel_error"]) if worst else None,
            "worst_point": worst["name"] if worst else None,
            "rows": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0 if ok and len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
