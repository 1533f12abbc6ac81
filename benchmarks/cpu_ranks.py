"""Real DeepSpeed ranks on the CPU for the memory harnesses (fidelity.py, fidelity_peak.py).

``run_ranks(worker, world, *args)`` spawns ``worker(rank, world, port, out_dir, *args)`` on a free
port; each rank calls :func:`init_rank` first, runs its items through :func:`each`, and ends with
:func:`finish_rank`, which writes ``out_dir/rank{N}.json``. ``run_ranks`` returns those lists, rank
by rank. Where the random-weight models are cached: :func:`model_cache`.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def model_cache() -> Path:
    """The harnesses' model folders: ``$ZEROWIZARD_CACHE/fidelity`` (default ~/.cache/zerowizard)."""
    from zerowizard.runner.tinymodel import cache_dir

    return cache_dir() / "fidelity"


def run_ranks(worker: Callable[..., None], world: int, *args: Any) -> list[list[dict]]:
    """Spawn ``world`` ranks of ``worker`` and return what each wrote with :func:`finish_rank`."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(world, port, tmp, *args), nprocs=world, join=True)
        return [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]


def init_rank(rank: int, world: int, port: int) -> None:
    """The rank's environment, one thread, quiet libraries, torch._dynamo imported before DeepSpeed
    touches a model class, and the gloo process group. Import the model classes right after."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    import deepspeed
    import torch._dynamo
    import transformers

    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    transformers.utils.logging.set_verbosity_error()
    deepspeed.init_distributed(dist_backend="gloo", verbose=False)


def each(items: Iterable[Any], run: Callable[[Any], dict]) -> list[dict]:
    """``run(item)`` for every item, the ranks meeting after each; an exception is that item's
    ``error`` (and ``traceback``) and the rest go on; every result gets its ``seconds``."""
    import torch

    results = []
    for item in items:
        t0 = time.time()
        try:
            r = run(item)
            r["error"] = None
        except Exception as exc:  # noqa: BLE001 - reported per item, the sweep goes on
            r = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        r["seconds"] = round(time.time() - t0, 2)
        results.append(r)
        torch.distributed.barrier()
    return results


def finish_rank(rank: int, out_dir: str, results: list[dict]) -> None:
    import torch

    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    torch.distributed.destroy_process_group()
