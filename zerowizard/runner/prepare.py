"""Before any rank starts: resolve the model and the data, pick the output folder, write files.

Everything that can fail fast fails here (missing model offline, bad data line, no checkpoint
to resume), as a :class:`PrepareError` with a message that says what to do.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zerowizard.runner.runspec import RunnerSpec

TRUST_REMOTE_CODE_FAMILIES = {"internlm2", "internlm3"}  # not in transformers 5: the hub repo's code


class PrepareError(RuntimeError):
    """A run that cannot start; the message names the fix."""


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_model(spec, data_file: Path | None) -> tuple[str, bool]:
    """(path or hub id for from_pretrained, trust_remote_code)."""
    from zerowizard.runner import tinymodel

    card = dict(getattr(spec, "card", None) or {})
    trust = getattr(spec, "family", "") in TRUST_REMOTE_CODE_FAMILIES
    if getattr(spec, "local_dir", None):
        return str(Path(spec.local_dir).resolve()), trust
    if tinymodel.is_tiny(card):
        return str(tinymodel.tiny_model_dir(card)), False
    hub_id = getattr(spec, "hub_id", None)
    if not hub_id:
        raise PrepareError(
            f"model {spec.name!r} has no weights to train (it is a size-only entry); "
            "point --model at a local model directory"
        )
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(hub_id, local_files_only=True), trust
    except Exception:  # noqa: BLE001 - not cached: fall through to the hub check
        pass
    if not hub_reachable():
        raise PrepareError(
            f"model {hub_id} is not on this machine and the hub cannot be reached: "
            f"download it first (huggingface-cli download {hub_id}) or point --model "
            "at a local model directory"
        )
    return hub_id, trust


def resolve_data(path: str | None, fmt: str) -> dict:
    """{'path', 'hub'}; local files are read and checked completely now."""
    from zerowizard.runner import data
    from zerowizard.runner.tinymodel import default_data_file

    if not path:
        path = str(default_data_file())
    p = Path(path)
    looks_local = p.suffix.lower() in (".json", ".jsonl") or p.exists() or path.startswith((".", "/"))
    if looks_local:
        try:
            records = data.load_records(p)
            for rec in records:
                data.to_messages(rec, fmt if fmt != "auto" else data.detect_format(records[0]))
        except data.DataError as exc:
            raise PrepareError(f"data: {exc}") from None
        return {"path": str(p.resolve()), "hub": False}
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path):
        raise PrepareError(f"data: {path!r} is neither a local JSON/JSONL file nor a hub dataset id")
    if not hub_reachable() and not _dataset_cached(path):
        raise PrepareError(
            f"data: hub dataset {path} is not cached here and the hub cannot be "
            "reached; pass --data FILE (a local alpaca, chat or oasst1 JSON/JSONL)"
        )
    return {"path": path, "hub": True}


def _dataset_cached(dataset_id: str) -> bool:
    base = Path(os.environ.get("HF_DATASETS_CACHE") or Path.home() / ".cache" / "huggingface" / "datasets")
    return any(base.glob(dataset_id.replace("/", "___") + "*"))


def new_output_dir(root: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d_%H%M%S")
    out = root / f"{name}_{stamp}"
    n = 1
    while out.exists():
        n += 1
        out = root / f"{name}_{stamp}_{n}"
    return out


def latest_checkpoint(workdir: Path) -> Path | None:
    ckpts = [
        (int(m.group(1)), p)
        for p in (workdir / "checkpoints").glob("checkpoint-*")
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()
    ]
    return max(ckpts)[1] if ckpts else None


def resume_dir(resume: str, output: str | None, root: Path) -> Path:
    """The run folder to resume: --resume DIR, else --output, else the newest under work_dirs."""
    if resume not in ("latest", "", None):
        return Path(resume)
    if output:
        return Path(output)
    runs = sorted((p for p in root.glob("*") if latest_checkpoint(p)), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise PrepareError(f"--resume: no run with a checkpoint under {root}; pass --output DIR")
    return runs[-1]


def write_run_files(workdir: Path, plan, ds_config: dict, runner_spec: RunnerSpec) -> None:
    from zerowizard.core.dsconfig import write_json_atomic, write_text_atomic
    from zerowizard.core.plan import dump_plan
    from zerowizard.runner.runspec import write_spec

    # Every launcher of a job writes here (each SLURM task, each node on shared storage), possibly
    # while another's ranks already read: atomic writes, and a stale file may already be gone.
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    write_text_atomic(workdir / "plan.yaml", dump_plan(plan))
    write_json_atomic(workdir / "ds_config.json", ds_config)
    write_spec(workdir, runner_spec)
    for stale in (workdir / ".mem").glob("rank*") if (workdir / ".mem").is_dir() else ():
        stale.unlink(missing_ok=True)


def slurm_env() -> dict:
    """RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT from SLURM_*
    variables. The master is the first host of the step's node list (else the job's), expanded as
    `scontrol show hostnames` does (zerowizard.slurm.nodelist)."""
    from zerowizard.slurm.nodelist import NodelistError, expand_tasks_per_node, first_host

    env = os.environ
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    missing = [k for k in ("SLURM_PROCID", "SLURM_NTASKS") if k not in env] + (
        [] if nodelist else ["SLURM_JOB_NODELIST"]
    )
    if missing or not nodelist:
        raise PrepareError(
            f"--launcher slurm: {', '.join(missing)} not set; run inside an "
            "allocation, e.g. srun zerowizard run --headless --launcher slurm"
        )
    try:
        master = env.get("MASTER_ADDR") or first_host(nodelist)
    except NodelistError as exc:
        raise PrepareError(f"--launcher slurm: {exc}; set MASTER_ADDR to rank 0's host") from None
    port = env.get("MASTER_PORT") or str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
    try:  # tasks on this node: SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE read "2(x3),1"
        per_node = expand_tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE") or env["SLURM_TASKS_PER_NODE"])
        local_world = per_node[min(int(env.get("SLURM_NODEID", "0")), len(per_node) - 1)]
    except (KeyError, ValueError):
        local_world = int(env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0])
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": env.get("SLURM_STEP_NUM_TASKS") or env["SLURM_NTASKS"],
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "LOCAL_WORLD_SIZE": str(local_world),
        "MASTER_ADDR": master,
        "MASTER_PORT": port,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
