"""The time model against real DeepSpeed steps on the CPU: predicted vs measured step time.

For a few random-weight Llama sizes, two ranks (DS_ACCELERATOR=cpu, gloo, bf16) train real DeepSpeed
engines with the JSON zerowizard exports for each variant (ZeRO-0/1/2/3, ZeRO-2 with the optimizer
offloaded, ZeRO-3 with optimizer and parameters offloaded), a torch fused AdamW as the HF Trainer
picks, micro batch 4 x 256 tokens. Each engine runs --warmup steps, then --steps measured ones;
every variant runs twice (the list forward, then backward), so a drift in the machine's load or
the first engine's warm-up cannot favour one variant.
Beside each, zerowizard's prediction for the same plan (`zerowizard.core.analysis.analyze`, with this
machine's calibration: run `zerowizard calibrate` first, or pass --calibrate).

Measured step time: per step, the CPU seconds of each rank's process (both ranks' mean), the median
over the measured steps. CPU time, because this machine is shared: other work stretches the wall
clock but not a rank's own CPU time, and a rank runs one thread per core, so on a quiet machine its
CPU time is its wall time (gloo sleeps while it waits). The wall-clock median is printed beside it.

Printed per config: predicted and measured seconds per step, their ratio, and per model size whether
the predicted order of the variants (fastest first) matches the measured one. Target: every ratio in
0.75-1.25, the order right (variants measured within 10% of each other, the spread of repeated
measurements of one config here, count as tied).

    .venv/bin/python benchmarks/speed.py [--sizes 3M,20M,60M] [--steps 4] [--calibrate]
    .venv/bin/python benchmarks/speed.py --cost     # what the time model costs per keystroke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_shapes  # noqa: E402

# (hidden, mlp width, layers, heads, kv heads, vocab)
SIZES = {
    "3M": (256, 704, 4, 4, 4, 2048),
    "20M": (512, 1408, 4, 8, 4, 8192),
    "60M": (768, 2048, 8, 12, 4, 8192),
}
VARIANTS = (  # (stage, offload_optimizer, offload_param)
    (0, "none", "none"),
    (1, "none", "none"),
    (2, "none", "none"),
    (3, "none", "none"),
    (2, "cpu", "none"),
    (3, "cpu", "cpu"),
)
MICRO, SEQ, RANKS = 4, 256, 2


def label(v) -> str:
    s, o, p = v
    out = f"ZeRO-{s}"
    if o != "none":
        out += f" opt→{o}"
    if p != "none":
        out += f" param→{p}"
    return out


def model_dir(size: str, root: Path) -> Path:
    """A pretrained directory (random weights, a local tokenizer) for one size."""
    from zerowizard.runner.tinymodel import tiny_model_dir

    card = {"name": f"speed-{size}", **llama_shapes.llama_config_dict(SIZES[size], SEQ)}
    card.pop("architectures", None)
    card.pop("model_type", None)
    return tiny_model_dir(card, root=root)


def plan_for(path: Path, v, grad_accum: int):
    from zerowizard.core.plan import plan_from_dict

    s, o, p = v
    return plan_from_dict(
        {
            "model": {"name": str(path)},
            "method": {"type": "full"},
            "hardware": {"gpu": "cpu", "gpus_per_node": RANKS},
            "batch": {"micro_batch": MICRO, "grad_accum": grad_accum, "seq_len": SEQ, "grad_checkpointing": False},
            "precision": "bf16",
            "deepspeed": "deepspeed_zero3" if s == 3 else "deepspeed_zero2",
            "zero": {"stage": s, "offload_optimizer": o, "offload_param": p},
        }
    )


def predict(path: Path, v, grad_accum: int) -> dict:
    from zerowizard.core import calibration
    from zerowizard.core.analysis import analyze
    from zerowizard.core.memory import Variant

    calibration.invalidate()
    a = analyze(plan_for(path, v, grad_accum))
    t = a.times[Variant(*v)]
    return {"config": a.ds.config, **t.as_dict()}


# -- the ranks ------------------------------------------------------------------------------------


def worker(spec_file: Path, out_file: Path) -> None:
    import deepspeed
    import torch
    import torch._dynamo  # before any zero.Init (see DESIGN.md)
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    spec = json.loads(spec_file.read_text())
    deepspeed.init_distributed(dist_backend="gloo")
    rank = dist.get_rank()
    torch.manual_seed(rank)
    results: dict[str, dict] = {}
    # every variant twice, forward then backward through the list: a drift in the machine's load and
    # the first engine's warm-up land on both ends alike
    for item in spec["runs"] + spec["runs"][::-1]:
        model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.bfloat16)
        model.config.use_cache = False
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=item["config"])
        vocab = model.config.vocab_size
        ga = engine.gradient_accumulation_steps()
        wall, cpu = [], []
        for step in range(spec["warmup"] + spec["steps"]):
            dist.barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(ga):
                ids = torch.randint(0, vocab, (MICRO, SEQ))
                loss = engine(input_ids=ids, labels=ids).loss
                engine.backward(loss)
                engine.step()
            if step >= spec["warmup"]:
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        both = [None] * dist.get_world_size()
        dist.all_gather_object(both, cpu)
        got = results.setdefault(item["key"], {"key": item["key"], "wall": [], "cpu": []})
        got["wall"] += wall
        got["cpu"] += [statistics.mean(c) for c in zip(*both)]
        engine.destroy()
        del engine, model, opt
    results = list(results.values())
    if rank == 0:
        out_file.write_text(json.dumps(results))
    dist.barrier()


def measure(path: Path, runs: list[dict], warmup: int, steps: int, tmp: Path) -> dict:
    spec_file, out_file = tmp / "spec.json", tmp / "out.json"
    spec_file.write_text(json.dumps({"model": str(path), "runs": runs, "warmup": warmup, "steps": steps}))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // RANKS)),
    }
    from zerowizard.runner.prepare import free_port

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={RANKS}",
        f"--master-port={free_port()}",
        __file__,
        "--worker",
        str(spec_file),
        str(out_file),
    ]
    log = tmp / "ranks.log"
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"ranks failed ({rc}); see the tail of {log}:\n" + log.read_text()[-3000:])
    return {r["key"]: r for r in json.loads(out_file.read_text())}


def ranking_ok(pred: dict, meas: dict, tie: float = 0.10) -> bool:
    """Every pair the measurement separates by more than ``tie`` (the spread of repeated measurements
    of one config on this shared machine) is ordered the same way by the prediction."""
    keys = list(pred)
    for i in keys:
        for j in keys:
            if meas[i] < meas[j] * (1 - tie) and not pred[i] < pred[j]:
                return False
    return True


def model_cost() -> None:
    """Wall time of the time model alone (per variant) and of a whole analyze() (9 variants)."""
    import timeit

    from zerowizard.core import speed
    from zerowizard.core.analysis import analyze, job_for
    from zerowizard.core.memory import Variant
    from zerowizard.core.plan import plan_from_dict

    plan = plan_from_dict(
        {"model": "llama-3-8b", "method": "lora", "hardware": {"gpu": "A100-80GB", "gpus_per_node": 8}}
    )
    a = analyze(plan)
    job = job_for(plan, a.model, a.hardware, a.precision, a.zero, a.ds.config)
    n = 2000
    per_variant = timeit.timeit(lambda: speed.step_time(job, Variant(3, "cpu", "cpu"), a.rates), number=n) / n
    whole = min(timeit.repeat(lambda: analyze(plan), number=50, repeat=5)) / 50
    print(f"time model: {per_variant * 1e6:.1f} us per variant; analyze() with 9 variants: {whole * 1e3:.2f} ms")


def markdown(path: Path) -> None:
    """The docs' table from a --json file of an earlier run."""
    data = json.loads(path.read_text())
    print("| size | variant | predicted s | measured s (CPU) | ratio | wall s | compute / comm / offload / other |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in data["rows"]:
        parts = f"{r['compute_s']:.3f} / {r['comm_s']:.3f} / {r['offload_s']:.3f} / {r['other_s']:.3f}"
        ratio = r["predicted_s"] / r["measured_cpu_s"]
        print(
            f"| {r['size']} | {r['variant']} | {r['predicted_s']:.3f} | {r['measured_cpu_s']:.3f} | {ratio:.2f} "
            f"| {r['measured_wall_s']:.2f} | {parts} |"
        )
    for v in data["rankings"]:
        verdict = "right" if v["right"] else "WRONG"
        print(f"\nranking {v['size']}: {verdict}; measured fastest first: {', '.join(v['measured'])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--steps", type=int, default=4, help="measured steps per engine (each variant runs twice)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--calibrate", action="store_true", help="run `zerowizard calibrate` first")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--cost", action="store_true", help="only measure the time model's own cost")
    ap.add_argument("--markdown", type=Path, metavar="JSON", help="print the docs' table from a --json file")
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    if args.cost:
        model_cost()
        return 0
    if args.markdown:
        markdown(args.markdown)
        return 0
    if args.calibrate:
        from zerowizard.runner.calibrate import run_calibration

        run_calibration()
    from zerowizard.core import calibration

    cal = calibration.load("cpu")
    print(f"calibration: {'this machine' if cal and cal.bench else 'NONE (run `zerowizard calibrate`)'}")
    rows, verdicts, per_step = [], [], {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for size in args.sizes.split(","):
            path = model_dir(size, tmp / "models")
            preds = {label(v): predict(path, v, args.grad_accum) for v in VARIANTS}
            runs = [{"key": label(v), "config": preds[label(v)].pop("config")} for v in VARIANTS]
            meas = measure(path, runs, args.warmup, args.steps, tmp)
            p_s = {k: preds[k]["step_s"] for k in preds}
            m_s = {k: statistics.median(meas[k]["cpu"]) for k in preds}
            per_step[size] = {k: {"cpu": meas[k]["cpu"], "wall": meas[k]["wall"]} for k in preds}
            for k in preds:
                wall = statistics.median(meas[k]["wall"])
                rows.append((size, k, p_s[k], m_s[k], wall, preds[k]))
            ok = ranking_ok(p_s, m_s)
            verdicts.append((size, ok, sorted(p_s, key=p_s.get), sorted(m_s, key=m_s.get)))
    head = f"{'size':5s} {'variant':24s} {'pred s':>8s} {'meas s':>8s} {'ratio':>6s} {'wall s':>8s}"
    print(f"\n{head}  parts (compute/comm/offload/other)")
    for size, k, p, m, wall, pr in rows:
        parts = f"{pr['compute_s']:.3f}/{pr['comm_s']:.3f}/{pr['offload_s']:.3f}/{pr['other_s']:.3f}"
        print(f"{size:5s} {k:24s} {p:8.3f} {m:8.3f} {p / m:6.2f} {wall:8.3f}  {parts}")
    ratios = [p / m for _, _, p, m, _, _ in rows]
    within = sum(0.75 <= r <= 1.25 for r in ratios)
    print(
        f"\nwithin 25%: {within}/{len(ratios)}; ratio range {min(ratios):.2f}-{max(ratios):.2f}, "
        f"median |error| {statistics.median(abs(r - 1) for r in ratios):.1%}"
    )
    for size, ok, po, mo in verdicts:
        print(f"ranking {size}: {'right' if ok else 'WRONG'}\n  predicted {po}\n  measured  {mo}")
    if args.json:
        out = {
            "rows": [
                {"size": s, "variant": k, "predicted_s": p, "measured_cpu_s": m, "measured_wall_s": w, **pr}
                for s, k, p, m, w, pr in rows
            ],
            "steps": per_step,
            "rankings": [{"size": s, "right": ok, "predicted": po, "measured": mo} for s, ok, po, mo in verdicts],
        }
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
