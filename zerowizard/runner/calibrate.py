"""``zerowizard calibrate``: measure what this machine's CPU accelerator achieves, for the time model.

Starts the same number of ranks a CPU run uses (each on cores / ranks threads, gloo), and in them,
all at once so they contend as they do in training:

- the matmul rate (nn.Linear forward + backward, bf16 and fp32) and fused causal attention's rate;
- a transformers Llama forward + backward (random weights, bf16, no DeepSpeed) at six shapes: what
  the matmuls and attention leave is fitted to ``elements x per_element + layers x per_layer +
  per_micro`` (FLOPs and elements counted by :mod:`zerowizard.core.flops`, so prediction and
  calibration count alike);
- gloo's all_reduce, reduce, all_gather_into_tensor and reduce_scatter_tensor at 4 KiB .. 8 MiB,
  each fitted to ``latency + factor x bytes / bandwidth``;
- the optimizer step DeepSpeed runs on a partition (bf16 -> fp32 gradient, norm, fused AdamW,
  fp32 -> bf16 copy) in parameters per second, and a host copy's bytes per second;
- real DeepSpeed steps of the embedded tiny model at ZeRO-0, 2 and 3: what they take beyond the
  time model's compute, communication and optimizer is DeepSpeed's own bookkeeping on this machine,
  per optimizer step (stage 0), per gradient hook of a parameter (2 over 0) and per module's
  ZeRO-3 hooks (3 over 2). benchmarks/speed.py checks the result on larger models.

The result goes into the calibration store (:mod:`zerowizard.core.calibration`), which every later
estimate on this machine reads. About a minute on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

# (hidden, mlp width, layers, heads, kv heads, vocab): small to mid Llamas, so the per-element,
# per-layer and per-micro-step times separate
SHAPES = (
    (128, 352, 2, 4, 4, 1024),
    (128, 352, 6, 4, 4, 1024),
    (256, 704, 4, 8, 4, 4096),
    (512, 1408, 2, 8, 8, 8192),
    (512, 1408, 4, 8, 4, 4096),
    (768, 2048, 2, 12, 12, 8192),
)
BATCH, SEQ = 4, 256
LINEARS = ((256, 704), (512, 1408), (768, 2048))  # (in, out) at BATCH x SEQ tokens
ATTENTION = ((4, 32), (8, 64))  # (heads, head dim) at BATCH x SEQ, causal
COLL_SIZES = (1 << 12, 1 << 16, 1 << 20, 1 << 23)  # bytes


def _best_time(fn, repeats: int, barrier, clock=time.process_time) -> float:
    """The fastest of ``repeats`` calls, each started together on every rank (timeit's advice:
    other work on the machine only ever adds time).

    Compute is timed in this process's CPU seconds (ranks run one thread per core, so on a quiet
    machine that is their wall time, and a machine shared with other work cannot inflate it);
    collectives in wall seconds (gloo sleeps while it waits for a peer)."""
    out = []
    for _ in range(repeats):
        barrier()
        t = clock()
        fn()
        out.append(clock() - t)
    return min(out)


def _llama(dims, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    h, f, n, a, kv, v = dims
    cfg = LlamaConfig(
        hidden_size=h,
        intermediate_size=f,
        num_hidden_layers=n,
        num_attention_heads=a,
        num_key_value_heads=kv,
        vocab_size=v,
        max_position_embeddings=SEQ,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(dtype)
    model.config.use_cache = False
    model.train()
    return model, cfg


def _spec(cfg):
    from zerowizard.core.modelcards import _spec_from_config

    return _spec_from_config(cfg.to_dict() | {"family": "llama"}, "calibration", source="local")


def measure_matmul(dtype, barrier, repeats: int) -> float:
    """FLOP/s of nn.Linear forward + backward (input and weight gradients) at model-like shapes."""
    import torch

    flops = seconds = 0.0
    tokens = BATCH * SEQ
    for i, o in LINEARS:
        lin = torch.nn.Linear(i, o, bias=False).to(dtype)
        x = torch.randn(tokens, i, dtype=dtype, requires_grad=True)
        g = torch.randn(tokens, o, dtype=dtype)

        def step(lin=lin, x=x, g=g):
            lin(x).backward(g)
            lin.weight.grad = None
            x.grad = None

        step()
        seconds += _best_time(step, repeats, barrier)
        flops += 6.0 * tokens * i * o
    return flops / seconds


def measure_attention(dtype, barrier, repeats: int) -> float:
    """FLOP/s of causal SDPA forward + backward, counted as flops.py counts it (the masked half skipped)."""
    import torch
    import torch.nn.functional as F

    flops = seconds = 0.0
    for heads, d in ATTENTION:
        q, k, v = (torch.randn(BATCH, heads, SEQ, d, dtype=dtype, requires_grad=True) for _ in range(3))
        g = torch.randn(BATCH, heads, SEQ, d, dtype=dtype)

        def step(q=q, k=k, v=v, g=g):
            F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(g)
            q.grad = k.grad = v.grad = None

        step()
        seconds += _best_time(step, repeats, barrier)
        flops += 3 * BATCH * SEQ * 2.0 * SEQ * heads * d
    return flops / seconds


def measure_models(dtype, barrier, repeats: int) -> list[tuple[Any, float]]:
    """(spec, seconds) of a transformers Llama's forward + backward per shape."""
    import torch

    rows = []
    for dims in SHAPES:
        model, cfg = _llama(dims, dtype)
        ids = torch.randint(0, dims[5], (BATCH, SEQ))

        def step(model=model, ids=ids):
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            model.zero_grad(set_to_none=True)

        step()
        rows.append((_spec(cfg), _best_time(step, repeats, barrier)))
    return rows


def fit_models(rows: list[tuple[Any, float]], mm: float, attn: float) -> dict:
    """What the matmuls and attention leave of each model's time, fitted to
    ``elements x per_element + layers x per_layer + per_micro`` (least squares, non-negative)."""
    import numpy as np

    from zerowizard.core.flops import activation_elements, flops_per_token

    tokens = BATCH * SEQ
    x, y = [], []
    for spec, seconds in rows:
        f = flops_per_token(spec, "full", seq_len=SEQ, grad_checkpointing=False)
        dense = tokens * ((f.total - f.attention) / mm + f.attention / attn)
        x.append([tokens * activation_elements(spec, False), spec.num_layers, 1.0])
        y.append(seconds - dense)
    a, b = np.array(x), np.array(y)
    names = ["elem_s", "layer_s", "micro_s"]
    keep = list(range(3))
    while keep:  # drop a negative coefficient and refit the rest
        coef, *_ = np.linalg.lstsq(a[:, keep], b, rcond=None)
        if (coef >= 0).all():
            break
        keep.pop(int(np.argmin(coef)))
    out: dict[str, Any] = dict.fromkeys(names, 0.0)
    for i, c in zip(keep, coef if keep else []):
        out[names[i]] = float(c)
    out["residual_s"] = [round(float(r), 4) for r in (b - a[:, keep] @ coef if keep else b)]
    return out


def measure_collectives(world: int, barrier, repeats: int) -> dict:
    import torch
    import torch.distributed as dist

    out = {}
    for op in ("all_reduce", "reduce", "all_gather", "reduce_scatter"):
        pts = []
        for size in COLL_SIZES:
            numel = size // 2
            x = torch.ones(numel, dtype=torch.bfloat16)
            fn: Callable[[], object]
            if op == "all_reduce":
                fn = partial(dist.all_reduce, x)
            elif op == "reduce":
                fn = partial(dist.reduce, x, 0)
            elif op == "all_gather":
                full = torch.empty(numel * world, dtype=x.dtype)
                fn = partial(dist.all_gather_into_tensor, full, x)
                size = numel * world * 2  # the gathered (unpartitioned) tensor, as the model counts it
            else:
                part = torch.empty(max(1, numel // world), dtype=x.dtype)
                fn = partial(dist.reduce_scatter_tensor, part, x)
            try:
                fn()
            except (RuntimeError, ValueError):
                break
            pts.append((size, _best_time(fn, 3 * repeats, barrier, time.perf_counter)))
        if len(pts) >= 2:
            out[op] = _fit_line(pts, _factor(op, world))
    return out


def _factor(op: str, n: int) -> float:
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op == "reduce":
        return 1.0
    return (n - 1) / n


def _fit_line(pts: list[tuple[int, float]], factor: float) -> dict:
    """seconds = latency + factor * bytes / bandwidth."""
    import numpy as np

    x = np.array([[1.0, factor * b] for b, _ in pts])
    y = np.array([t for _, t in pts])
    (lat, inv_bw), *_ = np.linalg.lstsq(x, y, rcond=None)
    if inv_bw <= 0:
        inv_bw = max(1e-12, float(y[-1] / (factor * pts[-1][0])))
    return {"latency_s": max(float(lat), 1e-6), "bytes_per_s": 1.0 / float(inv_bw)}


def measure_optimizer(barrier, repeats: int) -> dict:
    """DeepSpeed's step on a partition: bf16 grads -> fp32, the norm, fused AdamW, the bf16 copy back."""
    import torch

    n = 2_000_000
    master = torch.zeros(n, dtype=torch.float32, requires_grad=True)
    bf16 = torch.zeros(n, dtype=torch.bfloat16)
    grad16 = torch.randn(n).to(torch.bfloat16)
    opt = torch.optim.AdamW([master], lr=1e-4, fused=True)

    def step():
        master.grad = grad16.to(torch.float32)
        torch.linalg.vector_norm(master.grad)
        opt.step()
        bf16.copy_(master.detach())

    step()
    adam = n / _best_time(step, repeats, barrier)
    src = torch.randn(8_000_000).to(torch.bfloat16)
    dst = torch.empty(8_000_000, dtype=torch.float32)
    copy = 8_000_000 * 6 / _best_time(lambda: dst.copy_(src), repeats, barrier)
    return {"adam_params_per_s": adam, "copy_bytes_per_s": copy}


ENGINE_MODEL = (128, 352, 4, 4, 4, 1024)  # the embedded tiny default's shape
ENGINE_STAGES = (0, 2, 3)


def engine_plan(model_dir: Path, stage: int, ranks: int):
    """The plan whose exported DeepSpeed JSON the engine measurement runs (and the model predicts)."""
    from zerowizard.core.plan import plan_from_dict

    return plan_from_dict(
        {
            "model": {"name": str(model_dir)},
            "method": {"type": "full"},
            "hardware": {"gpu": "cpu", "gpus_per_node": ranks},
            "batch": {"micro_batch": BATCH, "grad_accum": 1, "seq_len": SEQ, "grad_checkpointing": False},
            "precision": "bf16",
            "deepspeed": "deepspeed_zero3" if stage == 3 else "deepspeed_zero2",
            "zero": {"stage": stage, "offload_optimizer": "none", "offload_param": "none"},
        }
    )


def measure_engines(model_dir: Path, world: int, barrier, repeats: int) -> dict:
    """CPU seconds of a real DeepSpeed step (forward, backward, step) on the tiny model, per stage."""
    import deepspeed
    import torch
    import torch._dynamo  # imported before any zero.Init (DESIGN.md)

    from zerowizard.core.analysis import analyze

    out = {}
    for stage in ENGINE_STAGES:
        model, _ = _llama(ENGINE_MODEL, torch.bfloat16)
        build = analyze(engine_plan(model_dir, stage, world)).ds
        assert build is not None, "the engine plan names a preset"
        config = build.config
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=config)
        ids = torch.randint(0, ENGINE_MODEL[5], (BATCH, SEQ))

        def step(engine=engine, ids=ids):
            engine.backward(engine(input_ids=ids, labels=ids).loss)
            engine.step()

        step()
        step()
        out[str(stage)] = _best_time(step, repeats + 1, barrier)
        engine.destroy()
    return out


def fit_engines(bench: dict, engines: dict, model_dir: Path, world: int) -> dict:
    """What DeepSpeed costs beyond the model's compute, comm and optimizer on this machine: per
    optimizer step (stage 0), per parameter hook (stage 2 over 0), per module (stage 3 over 2)."""
    from zerowizard.core import speed
    from zerowizard.core.analysis import analyze, job_for
    from zerowizard.core.calibration import Calibration
    from zerowizard.core.memory import Variant
    from zerowizard.core.rates import cpu_rates

    bare = {**bench, "step_s": 0.0, "hook_s": 0.0, "module_s": 0.0}
    pred, jobs = {}, {}
    for stage in ENGINE_STAGES:
        a = analyze(engine_plan(model_dir, stage, world))
        assert a.model is not None and a.ds is not None, a.model_error or a.base_error
        rates = cpu_rates(a.hardware, "bf16", Calibration("here", "cpu", bare))
        jobs[stage] = job_for(a.plan, a.model, a.hardware, "bf16", a.zero, a.ds.config)
        pred[stage] = speed.step_time(jobs[stage], Variant(stage), rates).step_s
    step_s = max(0.0, engines["0"] - pred[0])
    hook_s = max(0.0, (engines["2"] - pred[2] - step_s) / max(1, jobs[2].trainable_tensors))
    module_s = max(
        0.0,
        (engines["3"] - pred[3] - step_s - hook_s * jobs[3].trainable_tensors) / max(1, jobs[3].modules),
    )
    return {"step_s": step_s, "hook_s": hook_s, "module_s": module_s, "engine_step_s": engines}


def write_model_dir(root: Path) -> Path:
    """A config.json of the engine model (the core reads shapes from it; no weights needed)."""
    h, f, n, a, kv, v = ENGINE_MODEL
    path = root / "engine-model"
    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model_type": "llama",
        "hidden_size": h,
        "intermediate_size": f,
        "num_hidden_layers": n,
        "num_attention_heads": a,
        "num_key_value_heads": kv,
        "vocab_size": v,
        "tie_word_embeddings": False,
    }
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def worker(out: Path, quick: bool) -> None:
    import torch
    import torch.distributed as dist

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    repeats = 3 if quick else 5
    mm = measure_matmul(torch.bfloat16, dist.barrier, repeats)
    mm32 = measure_matmul(torch.float32, dist.barrier, repeats)
    attn = measure_attention(torch.bfloat16, dist.barrier, repeats)
    fit = fit_models(measure_models(torch.bfloat16, dist.barrier, repeats), mm, attn)
    result = {
        "flops_per_rank": mm,
        "fp32_flops_per_rank": mm32,
        "attn_flops_per_rank": attn,
        **fit,
        "collectives": measure_collectives(world, dist.barrier, repeats),
        **measure_optimizer(dist.barrier, repeats),
        "ranks": world,
        "threads_per_rank": threads,
        "torch": torch.__version__,
    }
    if os.environ.get("ZEROWIZARD_CALIBRATE_ENGINES", "1") == "1":
        model_dir = write_model_dir(out.parent)
        result.update(fit_engines(result, measure_engines(model_dir, world, dist.barrier, repeats), model_dir, world))
    if rank == 0:
        out.write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def run_calibration(ranks: int | None = None, quick: bool = False) -> tuple[dict, Path]:
    """Measure with ``ranks`` processes (default: a CPU run's, min(2, cores)); store and return it."""
    from zerowizard.core.calibration import save_bench
    from zerowizard.runner.prepare import free_port

    cores = os.cpu_count() or 1
    ranks = ranks or min(2, cores)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "calibration.json"
        procs = []
        port = str(free_port())
        for rank in range(ranks):
            env = {
                **os.environ,
                "RANK": str(rank),
                "WORLD_SIZE": str(ranks),
                "LOCAL_RANK": str(rank),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "OMP_NUM_THREADS": str(max(1, cores // ranks)),
                "DS_ACCELERATOR": "cpu",
            }
            cmd = [sys.executable, "-m", "zerowizard.runner.calibrate", "--worker", "--out", str(out)]
            if quick:
                cmd.append("--quick")
            log = open(Path(tmp) / f"rank{rank}.log", "w")  # noqa: SIM115 - closed below
            procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        codes = [p.wait() for p, _ in procs]
        for _, log in procs:
            log.close()
        if any(codes) or not out.is_file():
            tail = (Path(tmp) / "rank0.log").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"calibration ranks exited with {codes}; rank 0's log ends:\n{tail}")
        bench = json.loads(out.read_text())
    return bench, save_bench("cpu", bench)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zerowizard.runner.calibrate")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ranks", type=int)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.out, args.quick)
        return 0
    bench, path = run_calibration(args.ranks, args.quick)
    print(json.dumps(bench, indent=1))
    print(f"stored in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
