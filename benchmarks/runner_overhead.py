"""Runner overhead: `zerowizard run --headless` against a minimal hand-written DeepSpeed loop.

Both train the same tiny model on the same examples with the same DeepSpeed JSON and the same
number of ranks, in this one invocation, alternating (zerowizard, hand loop) per repeat:

    .venv/bin/python benchmarks/runner_overhead.py [--steps 60] [--repeats 2] [--nproc 2]

Reported: steady-state tokens/s of each (non-padding tokens of all ranks, from step --skip on,
so start-up and the first slow steps are out), their ratio (target >= 0.97), and the time from
launch to the end of the first optimizer step; also the median of per-interval rates, robust
to a neighbour's CPU burst. The runner's events come every `logging_steps` (the tiny recipe's 1;
--logging-steps N to change),
and the hand loop's per-step times are grouped the same way. The hand loop is this file run by torchrun with
--worker: deepspeed.initialize + forward/backward/step, nothing else (no logging, no events).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(workdir: Path, steps: int, out: Path) -> None:
    """The hand-written loop (one rank)."""
    import deepspeed
    import torch
    import torch._dynamo
    from torch.utils.data import DataLoader, DistributedSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zerowizard.core.plan import load_plan
    from zerowizard.runner import data

    spec = json.loads((workdir / "runner.json").read_text())
    cfg = json.loads((workdir / "ds_config.json").read_text())
    plan = load_plan(workdir / "plan.yaml")
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    tok = AutoTokenizer.from_pretrained(spec["model_path"])
    examples = data.build_examples(
        tok, data.load_records(spec["data"]["path"]), plan.batch.seq_len, plan.data.format, plan.data.packing
    )
    model = AutoModelForCausalLM.from_pretrained(spec["model_path"], dtype=torch.bfloat16)
    # The optimizer the HF Trainer picks by default on torch >= 2.8 (optim="adamw_torch_fused").
    opt = torch.optim.AdamW(model.parameters(), lr=plan.train.learning_rate, fused=True)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=cfg)
    collate = data.Collator(tok.pad_token_id)
    micro = cfg["train_micro_batch_size_per_gpu"]
    sampler = DistributedSampler(examples, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(examples, batch_size=micro, sampler=sampler, collate_fn=collate)
    times, tokens, step, epoch, acc = [], [], 0, 0, 0
    ga = engine.gradient_accumulation_steps()
    while step < steps:
        sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            acc += int(batch["attention_mask"].sum())
            loss = engine(**batch).loss
            engine.backward(loss)
            engine.step()
            if (i + 1) % ga == 0:
                step += 1
                times.append(time.time())
                tokens.append(acc * world)  # rank 0's tokens x world size, as the runner counts
                acc = 0
                if step >= steps:
                    break
        epoch += 1
    if rank == 0:
        out.write_text(json.dumps({"times": times, "tokens": tokens}))


def _from(series: dict, skip: int) -> tuple[list, list]:
    """(times, tokens) of the points at step >= skip; tokens[i] = tokens since point i-1."""
    keep = [i for i, st in enumerate(series["steps"]) if st >= skip]
    return [series["times"][i] for i in keep], [series["tokens"][i] for i in keep]


def steady(series: dict, skip: int) -> float:
    """Tokens per second from the first point at step >= skip to the last."""
    times, tokens = _from(series, skip)
    return sum(tokens[1:]) / (times[-1] - times[0])


def median_rate(series: dict, skip: int) -> float:
    """The median of per-interval tokens/s: robust to a neighbour's burst on a shared machine."""
    times, tokens = _from(series, skip)
    return statistics.median(
        tokens[i] / (times[i] - times[i - 1]) for i in range(1, len(times)) if times[i] > times[i - 1]
    )


def grouped(series: dict, k: int) -> dict:
    """A per-step series regrouped into the runner's logging interval k (steps k, 2k, ...)."""
    idx = list(range(k - 1, len(series["times"]), k))
    return {
        "steps": [series["steps"][i] for i in idx],
        "times": [series["times"][i] for i in idx],
        "tokens": [sum(series["tokens"][max(0, i - k + 1) : i + 1]) for i in idx],
        "t0": series["t0"],
    }


def run_zerowizard(tmp: Path, steps: int, nproc: int, tag: str, logging_steps: int) -> tuple[dict, Path]:
    import yaml

    out = tmp / f"zw_{tag}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    plan = yaml.safe_load((REPO / "presets" / "recipes" / "tiny_llama_full_alpaca_e3.yaml").read_text())
    if logging_steps:
        plan["train"]["logging_steps"] = logging_steps
    logging_steps = plan["train"].get("logging_steps", 1)
    (tmp / "plan.yaml").write_text(yaml.safe_dump(plan))
    t0 = time.time()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "zerowizard",
            "run",
            "--headless",
            "--plan",
            str(tmp / "plan.yaml"),
            "--output",
            str(out),
            "--max-steps",
            str(steps),
            "--save-steps",
            "0",
            "--gpus",
            str(nproc),
        ],
        cwd=tmp,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    from zerowizard.runner.events import read_events

    evs = [e for e in read_events(out / "events.jsonl") if e["event"] == "step"]
    seen = [e["tokens_seen"] for e in evs]
    tokens = [seen[0]] + [b - a for a, b in itertools.pairwise(seen)]
    return {
        "steps": [e["step"] for e in evs],
        "times": [e["time"] for e in evs],
        "tokens": tokens,
        "t0": t0,
        "logging_steps": logging_steps,
    }, out


def run_hand(tmp: Path, workdir: Path, steps: int, nproc: int, tag: str) -> dict:
    out = tmp / f"hand_{tag}.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc)),
    }
    t0 = time.time()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={nproc}",
            "--master-port=29613",
            __file__,
            "--worker",
            str(workdir),
            "--steps",
            str(steps),
            "--out",
            str(out),
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    res = json.loads(out.read_text())
    return {**res, "steps": list(range(1, len(res["times"]) + 1)), "t0": t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--skip", type=int, default=5, help="steps left out of the steady-state rate")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument(
        "--logging-steps", type=int, default=None, help="the runner's logging interval (default: the tiny recipe's)"
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.out)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for r in range(args.repeats):
            zw, workdir = run_zerowizard(tmp, args.steps, args.nproc, str(r), args.logging_steps)
            hand = run_hand(tmp, workdir, args.steps, args.nproc, str(r))
            hk = grouped(hand, zw["logging_steps"])
            rows.append(
                {
                    "zerowizard_tok_s": steady(zw, args.skip),
                    "hand_tok_s": steady(hk, args.skip),
                    "zerowizard_median_tok_s": median_rate(zw, args.skip),
                    "hand_median_tok_s": median_rate(hk, args.skip),
                    "zerowizard_first_step_s": zw["times"][0] - zw["t0"],
                    "hand_first_step_s": hand["times"][0] - hand["t0"],
                }
            )
            rows[-1]["ratio"] = rows[-1]["zerowizard_tok_s"] / rows[-1]["hand_tok_s"]
            rows[-1]["median_ratio"] = rows[-1]["zerowizard_median_tok_s"] / rows[-1]["hand_median_tok_s"]
            print(json.dumps({k: round(v, 3) for k, v in rows[-1].items()}), flush=True)
    summary = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    summary.update({"steps": args.steps, "nproc": args.nproc, "repeats": args.repeats, "target_ratio": 0.97})
    print(json.dumps({"median": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
