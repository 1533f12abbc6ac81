"""What committing and checking a checkpoint costs, against writing it.

Writes a checkpoint laid out as HF Trainer + DeepSpeed ZeRO write one for 2 ranks (torch.save
archives: model states, one optimizer shard per rank, RNG states; a safetensors model;
trainer_state.json; DeepSpeed's `latest`), of --mb megabytes in all, into the staging folder, then
times zerowizard's commit (fsync of every file, the marker, the rename) and the checks `--resume`
runs before any rank starts (checkpoints.check / resumable). Prints the figures and the ratios to
the write time measured in the same run.

    python benchmarks/checkpoints.py [--mb 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zerowizard.runner import checkpoints


def write_checkpoint(folder: Path, step: int, total_bytes: int) -> None:
    import torch
    from safetensors.torch import save_file

    def tensor(nbytes: int) -> torch.Tensor:
        return torch.randn(max(1, nbytes // 4))

    tag = folder / f"global_step{step}"
    tag.mkdir(parents=True)
    torch.save({"module": {"w": tensor(total_bytes // 8)}}, tag / "mp_rank_00_model_states.pt")
    for r in range(2):  # fp32 master + Adam moments, partitioned over 2 ranks: the bulk
        torch.save(
            {"optimizer_state_dict": {"s": tensor(total_bytes * 3 // 8)}},
            tag / f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt",
        )
        torch.save({"cpu": torch.zeros(8)}, folder / f"rng_state_{r}.pth")
    save_file({"w": tensor(total_bytes // 8)}, str(folder / "model.safetensors"))
    (folder / "latest").write_text(f"global_step{step}")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))


def one_round(root: Path, step: int, total: int) -> dict:
    staging = root / "checkpoints" / checkpoints.STAGING / f"checkpoint-{step}"
    t0 = time.perf_counter()
    write_checkpoint(staging, step, total)
    t1 = time.perf_counter()
    checkpoints.commit(staging, root / "checkpoints" / f"checkpoint-{step}", {"step": step, "world_size": 2})
    t2 = time.perf_counter()
    assert checkpoints.check(root / "checkpoints" / f"checkpoint-{step}") is None
    t3 = time.perf_counter()
    found, _ = checkpoints.resumable(root)
    t4 = time.perf_counter()
    assert found is not None and found.name == f"checkpoint-{step}"
    return {"write": t1 - t0, "commit": t2 - t1, "check": t3 - t2, "resumable": t4 - t3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=512, help="checkpoint size in MiB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    total = args.mb * 1024**2
    rounds = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for i in range(args.repeat):
            rounds.append(one_round(Path(tmp), i + 1, total))
            shutil.rmtree(Path(tmp) / "checkpoints" / f"checkpoint-{i + 1}")
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"checkpoint of {args.mb} MiB (2-rank ZeRO layout, 8 files), median of {args.repeat}:")
    print(f"  write (torch.save, no fsync)   {med['write']:.3f} s")
    print(f"  commit (fsync, marker, rename) {med['commit']:.3f} s  = {med['commit'] / med['write']:.2f} x write")
    print(f"  check before --resume          {med['check'] * 1000:.1f} ms = {med['check'] / med['write']:.4f} x write")
    print(f"  resumable (list + check)       {med['resumable'] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
