"""The command lines that run a plan, for display (the TUI's launch panel, the README).

    launch_commands(plan) -> {"single": ..., "torchrun": ..., "sbatch": ...}

Pure and fast (no torch, no subprocess; the hardware comes from the plan, NVML at most once per
process), so the TUI can call it on every change.
"""
from __future__ import annotations

import shlex

DEFAULT_PLAN_FILE = "zerowizard.yaml"
DEFAULT_SCRIPT = "job.sh"
DEFAULT_PORT = 29500


def launch_commands(plan, plan_path: str = DEFAULT_PLAN_FILE, script: str = DEFAULT_SCRIPT, *,
                    partition: str | None = None, time: str | None = None,
                    account: str | None = None, hardware=None) -> dict[str, str]:
    """Shell command lines that run ``plan`` once it is saved to ``plan_path``.

    - ``single``: one process (world size 1), still a DeepSpeed engine;
    - ``torchrun``: one node (``NPROC_PER_NODE=K``, XTuner's variable) or, for a plan with several
      nodes, the line to run on every node (``NODE_RANK`` 0..nodes-1, ``MASTER_ADDR`` = node 0);
    - ``sbatch``: write the sbatch script beside the plan, then submit it.
    """
    if hardware is None:
        from zerowizard.hardware import resolve_hardware

        hardware = resolve_hardware(plan.hardware)
    k, nodes = hardware.gpus_per_node, hardware.nodes
    q = shlex.quote
    base = f"zerowizard run --headless --plan {q(str(plan_path))}"
    single = f"{base} --launcher single"
    if k * nodes != 1:
        single += " --gpus 1 --nodes 1"
    if nodes == 1:
        torchrun = f"NPROC_PER_NODE={k} {base}"
    else:
        torchrun = (f"{base} --launcher torchrun --nproc-per-node {k} --nnodes {nodes} "
                    f"--node-rank $NODE_RANK --master-addr $MASTER_ADDR --master-port {DEFAULT_PORT}")
    sbatch = f"zerowizard --export-sbatch {q(str(script))} --plan {q(str(plan_path))}"
    for flag, value in (("partition", partition), ("time", time), ("account", account)):
        if value:
            sbatch += f" --{flag} {q(str(value))}"
    sbatch += f" && sbatch {q(str(script))}"
    return {"single": single, "torchrun": torchrun, "sbatch": sbatch}
