"""A per-rank memory limit (``zerowizard run --memory-limit GiB``) and out-of-memory verdicts.

Each rank sets its own limit before the model loads:

- CUDA: ``torch.cuda.set_per_process_memory_fraction((limit - used outside the allocator) / total,
  device)``; the caching allocator then raises ``torch.OutOfMemoryError`` when a reservation would
  pass the limit, as a smaller card would (its CUDA context counted in, as on that card).
- CPU: a cgroup v1 memory controller child per rank, ``<this process's memory cgroup>/
  zerowizard-<token>-rank<N>``, which the rank joins once its libraries are imported and its
  DeepSpeed ops built. Its ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes`` where
  swap is accounted) is the limit minus the resident set the rank already has, so the rank's
  resident set (what the memory model predicts on the CPU, and what step events report) stays
  under the limit: the kernel reclaims the rank's page cache and otherwise OOM-kills it, which the
  launcher reads back from ``memory.oom_control`` (``oom_kill``).
  Why not an address-space limit (RLIMIT_AS/RLIMIT_DATA): torch, gloo and OpenMP reserve
  gigabytes of virtual memory they never touch, so such a limit fails runs whose resident memory
  is far below it and says nothing about the resident set the memory model predicts on the CPU.
  Why not from the first line of the rank: charges do not move with a process, and the shared
  libraries torch maps are mostly charged to whoever read them first, so a cgroup joined early
  sees ~100 MiB less than the resident set; and a JIT compile of a DeepSpeed op inside the limit
  would count the compiler, and, killed halfway, leave torch's build lock behind for every later run.

The launcher learns where each rank's cgroup is from ``.mem/cgroup-rank<N>.json`` (written by the
rank right after joining), reports an OOM kill as an ``error`` event with ``"kind": "oom"``, and
removes the cgroups once every rank has gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zerowizard.runner.runspec import MemoryLimit, RunnerSpec

OOM = "oom"
CRASH = "crash"
V1_ROOT = Path("/sys/fs/cgroup/memory")
# the allocator failures that mean "out of memory" (CUDA's OutOfMemoryError is matched by type)
_OOM_MESSAGES = ("CUDA out of memory", "DefaultCPUAllocator: can't allocate memory", "out of memory")


def new_token() -> str:
    """A launch-unique name part, so a relaunch into the same folder never reads a stale cgroup."""
    return uuid.uuid4().hex[:10]


def error_kind(exc: BaseException) -> str:
    """``oom`` for torch's OutOfMemoryError or an allocator's failure, else ``crash``."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:  # DeepSpeed and accelerate re-raise with a cause
        seen.add(id(e))
        if type(e).__name__ == "OutOfMemoryError" or isinstance(e, MemoryError):
            return OOM
        if isinstance(e, RuntimeError) and any(m in str(e) for m in _OOM_MESSAGES):
            return OOM
        e = e.__cause__ or e.__context__
    return CRASH


# ---- CPU: cgroup v1 ------------------------------------------------------------------------


def own_cgroup_v1() -> Path | None:
    """This process's cgroup v1 memory controller directory (None without one)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            path = V1_ROOT / parts[2].lstrip("/")
            return path if path.is_dir() else None
    return None


def cpu_support() -> str | None:
    """Why a CPU memory limit cannot be set here, or None when it can."""
    base = own_cgroup_v1()
    if base is None:
        return (
            "no cgroup v1 memory controller at /sys/fs/cgroup/memory; a CPU memory limit needs one "
            "(an address-space limit would count the gigabytes torch reserves and never touches)"
        )
    if not os.access(base, os.W_OK):
        return f"the memory cgroup {base} is not writable (run as root, or delegate it to this user)"
    return None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def enter_cpu_limit(limit_bytes: int, token: str, rank: int, workdir: Path) -> dict:
    """Create this rank's cgroup, move this process into it and limit it so that the rank's resident
    set stays under ``limit_bytes``; record where (for the launcher).

    Charges do not move with a process (cgroup v1 on recent kernels), so the cgroup sees only what
    the rank allocates from now on: its limit is ``limit_bytes`` minus the resident set it already
    has (the libraries, the tokenizer, the data). A rank already over the limit raises MemoryError."""
    base = own_cgroup_v1()
    if base is None:
        raise RuntimeError(cpu_support() or "no memory cgroup")
    rss = _proc_status_kib("VmRSS").get("VmRSS", 0)
    room = int(limit_bytes) - rss
    if room <= 0:
        raise MemoryError(
            f"rank {rank} holds {rss / 2**30:.2f} GiB before the model loads, over its memory limit of "
            f"{limit_bytes / 2**30:.2f} GiB (--memory-limit)"
        )
    group = base / f"zerowizard-{token}-rank{rank}"
    group.mkdir(exist_ok=True)
    _write(group / "memory.limit_in_bytes", str(room))
    with contextlib.suppress(OSError):  # swap accounting (memsw) exists only with swapaccount=1
        _write(group / "memory.memsw.limit_in_bytes", str(room))
    with contextlib.suppress(OSError):
        _write(group / "memory.swappiness", "0")
    _write(group / "cgroup.procs", str(os.getpid()))
    mem = workdir / ".mem"
    mem.mkdir(parents=True, exist_ok=True)
    record = {
        "rank": rank,
        "host": socket.gethostname(),
        "path": str(group),
        "token": token,
        "limit": int(limit_bytes),
        "rss_at_entry": rss,
        "cgroup_limit": room,
    }
    tmp = mem / f".cgroup-rank{rank}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.replace(mem / f"cgroup-rank{rank}.json")
    return record


def _records(workdir: Path) -> list[dict]:
    """This launch's cgroups on this host (the token comes from the run's runner.json)."""
    try:
        token = (json.loads((workdir / "runner.json").read_text()).get("memory_limit") or {}).get("token")
    except (OSError, ValueError, AttributeError):
        return []
    if not token:
        return []
    host = socket.gethostname()
    out = []
    for f in sorted((workdir / ".mem").glob("cgroup-rank*.json")):
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("token") == token and rec.get("host") == host:
            out.append(rec)
    return out


def _oom_kills(group: Path) -> int:
    try:
        for line in (group / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def oom_killed(workdir: Path) -> list[dict]:
    """The ranks of this launch (on this host) that the kernel OOM-killed in their cgroup."""
    out = []
    for rec in _records(workdir):
        group = Path(rec["path"])
        if _oom_kills(group) > 0:
            peak = _read_int(group / "memory.max_usage_in_bytes")
            out.append({**rec, "peak": peak})
    return out


def oom_error_fields(workdir: Path) -> dict | None:
    """The fields of an ``error`` event for the first OOM-killed rank, or None."""
    killed = oom_killed(workdir)
    if not killed:
        return None
    rec = killed[0]
    gib = rec["limit"] / 2**30
    return {
        "kind": OOM,
        "rank": rec["rank"],
        "error": (
            f"out of memory: rank {rec['rank']} reached its memory limit of {gib:.2f} GiB and the kernel's "
            "OOM killer ended it (--memory-limit; cgroup memory.oom_control)"
        ),
        "limit_bytes": rec["limit"],
        "peak_bytes": rec.get("peak"),
    }


def report_oom(workdir: Path) -> dict | None:
    """Write the ``error`` event (``kind: oom``) for a rank the kernel killed; return it."""
    fields = oom_error_fields(workdir)
    if fields is None:
        return None
    from zerowizard.runner.events import EventWriter

    return EventWriter(workdir / "events.jsonl", source="launcher").emit("error", **fields)


def cleanup(workdir: Path, wait_s: float = 3.0) -> None:
    """Remove this launch's cgroups. Whatever is still inside one belongs to that rank (a compiler
    it started, orphaned when the kernel killed the rank): it is killed first, by pid."""
    import signal

    pending = [Path(r["path"]) for r in _records(workdir)]
    deadline = time.time() + wait_s
    while pending:
        left = []
        for group in pending:
            try:
                group.rmdir()
                continue
            except FileNotFoundError:
                continue
            except OSError:
                left.append(group)
            try:
                pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pids = []
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        pending = left
        if not pending or time.time() > deadline:
            break
        time.sleep(0.1)


# ---- the rank's side ----------------------------------------------------------------------


def prebuild_ops(ds_config: dict) -> None:
    """Load (JIT-build on a first run) the DeepSpeed ops the engine will load, before a limit
    applies: a compiler's memory is not the training's, and a compile killed halfway leaves torch's
    build lock behind, on which every later run on the machine waits for ever. The engine loads
    the CPU's shared-memory comm op when it starts (deepspeed.initialize) and CPU Adam with an
    offloaded optimizer; loading them again there is a cache hit."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    names = ["ShareMemCommBuilder"] if get_accelerator().device_name() == "cpu" else []
    zero = ds_config.get("zero_optimization") or {}
    if ((zero.get("offload_optimizer") or {}).get("device") or "none") != "none":
        names.append("CPUAdamBuilder")
    for name in names:
        builder = get_accelerator().create_op_builder(name)
        if builder is not None and deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
            builder.load()


def apply_before_model(spec: RunnerSpec, ds_config: dict, rank: int, workdir: Path) -> dict | None:
    """``--memory-limit``, set inside the rank as the model is about to load.

    CUDA: cap the caching allocator at ``(limit - context) / total`` of the device
    (``torch.cuda.set_per_process_memory_fraction``; the context and anything else already on the
    device count against the limit, as on a card of that size). CPU: the ops are built first
    (:func:`prebuild_ops`), then the rank enters its limited cgroup (:func:`enter_cpu_limit`)."""
    lim = spec.get("memory_limit")
    if not lim or not lim.get("bytes"):
        return None
    limit = int(lim["bytes"])
    if spec.get("accelerator") == "cuda":
        import torch

        device = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(device)
        free, total = torch.cuda.mem_get_info(device)  # creates the context
        # a card of that size holds the CUDA context too: what the allocator may reserve is the limit
        # less what is already used outside it (this context, cuBLAS, anything else on the device)
        outside = max(0, (total - free) - torch.cuda.memory_reserved(device))
        if limit <= outside:
            raise MemoryError(
                f"the CUDA context and other users of the device hold {outside / 2**30:.2f} GiB, "
                f"over the memory limit of {limit / 2**30:.2f} GiB (--memory-limit)"
            )
        fraction = min(1.0, (limit - outside) / total)
        torch.cuda.set_per_process_memory_fraction(fraction, device)
        return {"fraction": fraction, "total": total, "outside": outside}
    prebuild_ops(ds_config)
    return enter_cpu_limit(limit, str(lim.get("token") or new_token()), rank, workdir)


# ---- what a rank measures -----------------------------------------------------------------

# what ``peak_bytes_per_rank`` means, per accelerator (the ``peak_kind`` of step and end events)
PEAK_KIND = {"cpu": "rss_peak", "cuda": "cuda_max_reserved"}


def _proc_status_kib(*keys: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in keys:
                    out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def measure(accelerator: str) -> dict:
    """This rank's memory now and at its peak.

    CPU: ``rss`` (VmRSS) and ``rss_peak`` (VmHWM, the high-water mark of the resident set since the
    process started; ``ru_maxrss`` where /proc is missing). CUDA: the caching allocator's
    ``allocated``/``reserved`` and their peaks ``max_allocated``/``max_reserved``, and what NVML
    sees: ``nvml_used`` (the whole device) and ``nvml_process`` (this process, context included)."""
    if accelerator != "cuda":
        st = _proc_status_kib("VmRSS", "VmHWM")
        if "VmHWM" not in st:
            import resource

            st["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"rss": st.get("VmRSS"), "rss_peak": st["VmHWM"]}
    import torch

    dev = torch.cuda.current_device()
    out = {
        "allocated": int(torch.cuda.memory_allocated(dev)),
        "reserved": int(torch.cuda.memory_reserved(dev)),
        "max_allocated": int(torch.cuda.max_memory_allocated(dev)),
        "max_reserved": int(torch.cuda.max_memory_reserved(dev)),
        "nvml_used": None,
        "nvml_process": None,
    }
    out.update(_nvml(dev))
    return out


def _nvml(dev: int) -> dict:
    """NVML's view of this rank's device: found by UUID (CUDA and NVML number devices differently
    under CUDA_VISIBLE_DEVICES), by index as a last resort."""
    try:
        import pynvml
        import torch

        pynvml.nvmlInit()
        handle = None
        uuid_ = getattr(torch.cuda.get_device_properties(dev), "uuid", None)
        if uuid_ is not None:
            with contextlib.suppress(Exception):
                handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid_}")
        if handle is None:
            handle = pynvml.nvmlDeviceGetHandleByIndex(dev)
        used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        mine = None
        with contextlib.suppress(Exception):
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if p.pid == os.getpid() and p.usedGpuMemory is not None:
                    mine = int(p.usedGpuMemory)
        return {"nvml_used": used, "nvml_process": mine}
    except Exception:  # noqa: BLE001 - no NVML bindings or driver: the allocator's figures stand
        return {}


def peak_bytes(detail: dict | None, accelerator: str) -> int | None:
    """The one peak figure per rank the probe compares with the limit (see PEAK_KIND)."""
    if not detail:
        return None
    return detail.get("max_reserved") if accelerator == "cuda" else detail.get("rss_peak")


def current_bytes(detail: dict | None, accelerator: str) -> int | None:
    """``memory_bytes`` of the step event: CUDA ``max_allocated`` (memory_kind cuda_max_allocated),
    the CPU's resident set now (memory_kind rss)."""
    if not detail:
        return None
    return detail.get("max_allocated") if accelerator == "cuda" else detail.get("rss")


def limit_spec(text: str | float | None, accelerator: str) -> MemoryLimit | None:
    """``runner.json``'s ``memory_limit`` from ``--memory-limit GiB`` (None: no limit), or
    InputError naming the flag and the fix (checked before any rank starts)."""
    if text is None:
        return None
    from zerowizard.core.validation import InputError, parse_number

    try:
        gib = float(parse_number(str(text), minimum=0.001, maximum=1e6))
    except InputError as exc:
        raise InputError(f"--memory-limit: {exc}; give GiB per rank, e.g. --memory-limit 24") from None
    if accelerator == "cpu":
        why = cpu_support()
        if why:
            raise InputError(f"--memory-limit: {why}")
    return {"bytes": int(gib * 2**30), "gib": gib, "token": new_token()}
