"""The machine a plan runs on: NVML detection, the GPU catalog, host RAM.

`--gpus 8xA100-80GB` plans for a machine you are not on; `--gpus 4` or nothing takes what NVML
sees (honouring CUDA_VISIBLE_DEVICES); with no NVML, no driver or no GPU, the plan falls back to
the CPU accelerator (DeepSpeed's `DS_ACCELERATOR=cpu`) with a note saying why. Nothing here raises
for a missing driver.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .gpus import GENERIC, GpuModel, catalog, find_gpu, generic_memory, match_nvml
from .text import GIB, did_you_mean


def __getattr__(name: str) -> dict[str, GpuModel]:
    """``CATALOG`` is read from presets/hardware/gpus.yaml on first use (see :mod:`.gpus`)."""
    if name == "CATALOG":
        return catalog()
    raise AttributeError(name)


# Stated defaults for what a plan may leave out (docs/speed-model.md)
DEFAULT_NETWORK_GBPS = 100.0  # per node: one 100 Gb/s NIC (InfiniBand EDR / 100 GbE)
DEFAULT_CPU_CORES = 64  # per node of a machine you are not on (a dual-socket 32-core GPU server)
DEFAULT_NVME_GBS = 6.0  # per node: one PCIe gen4 NVMe drive's sequential read


def parse_network(text: str | float) -> float:
    """'400Gb', '400Gbps', '400', '3.2Tb' -> Gbit/s per node."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([GT]?)(?:b|bit)?(?:ps|/s)?\s*", str(text), re.IGNORECASE)
        if not m:
            raise ValueError(f"{text!r} is not a bandwidth; use e.g. 400Gb, 100Gbps or 3.2Tb")
        value = float(m.group(1)) * (1000.0 if m.group(2).upper() == "T" else 1.0)
    if not 0 < value <= 1e6:
        raise ValueError(f"{text!r} is out of range; use e.g. 100Gb to 3200Gb per node")
    return value


def parse_gpus_flag(text: str) -> tuple[int | None, str | None]:
    """'8xA100-80GB' -> (8, 'A100-80GB'); '4' -> (4, None); 'A100-80GB' -> (None, 'A100-80GB');
    '4x24GB' -> (4, '24GB'): a generic card of that capacity."""
    s = text.strip()
    m = re.fullmatch(r"(\d+)\s*[xX*]\s*(.+)", s)
    if m:
        count, name = int(m.group(1)), m.group(2)
    elif s.isdigit():
        count, name = int(s), None
    else:
        count, name = None, s
    if count is not None and count < 1:
        raise ValueError(f"--gpus: {text!r} asks for {count} GPUs; use 1 or more, e.g. 8xA100-80GB")
    if (
        name is not None
        and name.lower() not in ("cpu", "auto")
        and find_gpu(name) is None
        and generic_memory(name) is None
    ):
        names = catalog()
        fix = did_you_mean(name, names, "known: " + ", ".join(names) + "; or a capacity such as 24GB")
        raise ValueError(f"--gpus: unknown GPU {name!r}; {fix}")
    return count, name


@dataclass(frozen=True)
class DetectedGpu:
    index: int
    name: str
    memory_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class Detection:
    gpus: tuple[DetectedGpu, ...] = ()
    driver: str | None = None
    note: str = ""


def _visible(count: int) -> list[int] | None:
    """NVML indices that CUDA_VISIBLE_DEVICES leaves visible (None: the variable is unset)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return None
    out = []
    for part in env.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.lstrip("-").isdigit():
            return None  # UUIDs / MIG ids: resolved by UUID below
        i = int(part)
        if i < 0 or i >= count:
            break  # CUDA stops at the first invalid index
        out.append(i)
    return out


def detect_gpus() -> Detection:
    """What NVML sees. Never raises: a missing library or driver yields a note instead."""
    try:
        import pynvml
    except ImportError:
        return Detection(note="nvidia-ml-py is not installed; no GPU detection")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return Detection(note=f"no NVIDIA driver found ({exc.__class__.__name__}: {exc})")
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        count = pynvml.nvmlDeviceGetCount()
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        indices = _visible(count)
        handles = []
        if indices is None and env is not None:
            wanted = [p.strip() for p in env.split(",") if p.strip()]
            for i in range(count):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                uuid = pynvml.nvmlDeviceGetUUID(h)
                uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
                if any(uuid.startswith(w) or w.startswith(uuid) for w in wanted):
                    handles.append((i, h))
        else:
            for i in range(count) if indices is None else indices:
                handles.append((i, pynvml.nvmlDeviceGetHandleByIndex(i)))
        gpus = []
        for i, h in handles:
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            cc = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            gpus.append(DetectedGpu(i, name, int(mem.total), int(mem.free), (int(cc[0]), int(cc[1]))))
        note = "" if gpus else "NVML found no visible GPU"
        return Detection(tuple(gpus), driver, note)
    except Exception as exc:  # noqa: BLE001 - any NVML failure means "no GPU detected", with why
        return Detection(note=f"NVML error ({exc.__class__.__name__}: {exc})")
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def host_ram_bytes() -> int:
    """Total RAM of this machine."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 64 * GIB


@dataclass(frozen=True)
class Hardware:
    """The resolved machine a plan is sized for."""

    name: str
    memory_bytes: int  # per device (per rank on the CPU: an equal share of host RAM)
    compute_capability: tuple[int, int] | None  # None on the CPU accelerator
    gpus_per_node: int
    nodes: int
    host_ram_bytes: int | None  # per node; None: unknown (a catalog machine, no --host-ram-gb)
    accelerator: str  # "cuda" | "cpu"
    source: str  # "nvml" | "catalog" | "generic" | "cpu"
    notes: tuple[str, ...] = field(default=())
    # what the time model reads (zerowizard.core.speed)
    gpu: GpuModel | None = None  # the catalog entry (GENERIC's figures for a generic card; None on the CPU)
    network_gbps: float = DEFAULT_NETWORK_GBPS  # per node, Gbit/s
    cpu_cores: int = DEFAULT_CPU_CORES  # per node
    nvme_gbs: float = DEFAULT_NVME_GBS  # per node, GB/s
    assumed: tuple[str, ...] = field(default=())  # which figures are stated defaults, not facts

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def is_cpu(self) -> bool:
        return self.accelerator == "cpu"


def _host_facts(hw: object, here: bool) -> dict:
    """Network, host cores and NVMe for the plan: given, this machine's (cores), or stated defaults."""
    assumed = []
    network = getattr(hw, "network_gbps", None)
    if network is None:
        network = DEFAULT_NETWORK_GBPS
        if getattr(hw, "nodes", 1) > 1:
            assumed.append(f"node network {network:g} Gb/s")
    cores = getattr(hw, "cpu_cores", None)
    if cores is None:
        cores = (os.cpu_count() or 1) if here else DEFAULT_CPU_CORES
        if not here:
            assumed.append(f"{cores} host CPU cores per node")
    nvme = getattr(hw, "nvme_gbs", None) or DEFAULT_NVME_GBS
    return {"network_gbps": float(network), "cpu_cores": int(cores), "nvme_gbs": float(nvme), "assumed": assumed}


_DETECTION_CACHE: list[Detection] = []


def cached_detection() -> Detection:
    """NVML is asked once per process (the TUI recomputes on every keystroke)."""
    if not _DETECTION_CACHE:
        _DETECTION_CACHE.append(detect_gpus())
    return _DETECTION_CACHE[0]


def resolve_hardware(hw: Any, detection: Detection | None = None) -> Hardware:
    """Turn a plan's hardware section into concrete figures.

    ``hw`` is a :class:`zerowizard.core.plan.HardwareSection`.
    """
    notes: list[str] = []
    host = int(hw.host_ram_gb * GIB) if hw.host_ram_gb else host_ram_bytes()
    gpu = (hw.gpu or "auto").strip()
    cc = None
    if hw.compute_capability:
        try:
            major, _, minor = hw.compute_capability.partition(".")
            cc = (int(major), int(minor or 0))
        except ValueError:
            cc = None
    if gpu.lower() == "auto":
        det = detection if detection is not None else cached_detection()
        if det.gpus:
            first = det.gpus[0]
            model = match_nvml(first.name, first.memory_bytes)
            per_node = hw.gpus_per_node or len(det.gpus)
            if hw.gpus_per_node and hw.gpus_per_node > len(det.gpus):
                notes.append(f"planning for {hw.gpus_per_node} GPUs per node; NVML sees {len(det.gpus)}")
            return Hardware(
                name=model.name if model else first.name,
                memory_bytes=int(hw.gpu_memory_gb * GIB) if hw.gpu_memory_gb else first.memory_bytes,
                compute_capability=cc or first.compute_capability,
                gpus_per_node=per_node,
                nodes=hw.nodes,
                host_ram_bytes=host,
                accelerator="cuda",
                source="nvml",
                notes=tuple(notes),
                **_with_gpu(model, here=True, hw=hw),
            )
        notes.append(f"{det.note or 'no GPU'}: using the CPU accelerator (DS_ACCELERATOR=cpu)")
        gpu = "cpu"
    if gpu.lower() == "cpu":
        per_node = hw.gpus_per_node or min(2, os.cpu_count() or 1)
        mem = int(hw.gpu_memory_gb * GIB) if hw.gpu_memory_gb else host // per_node
        return Hardware(
            name="cpu",
            memory_bytes=mem,
            compute_capability=cc,
            gpus_per_node=per_node,
            nodes=hw.nodes,
            host_ram_bytes=host,
            accelerator="cpu",
            source="cpu",
            notes=tuple(notes),
            **_without_gpu(_host_facts(hw, here=True)),
        )
    # Planning for a machine you are not on: this machine's RAM says nothing about its host.
    remote_host = int(hw.host_ram_gb * GIB) if hw.host_ram_gb else None
    model = find_gpu(gpu)
    generic = generic_memory(gpu) if model is None else None
    if generic is not None:  # --gpus 4x24GB: capacity only, compute and links assumed
        return Hardware(
            name=gpu.upper().replace("GIB", "GB"),
            memory_bytes=int(hw.gpu_memory_gb * GIB) if hw.gpu_memory_gb else generic,
            compute_capability=cc or GENERIC.compute_capability,
            gpus_per_node=hw.gpus_per_node or 1,
            nodes=hw.nodes,
            host_ram_bytes=remote_host,
            accelerator="cuda",
            source="generic",
            notes=(
                *notes,
                f"generic {gpu} GPU: compute and links {GENERIC.source.removeprefix('assumed: ')}",
            ),
            **_with_gpu(GENERIC, here=False, hw=hw, generic=True),
        )
    if model is None:  # validated by the rules; size it as the user said, if they said
        mem = int(hw.gpu_memory_gb * GIB) if hw.gpu_memory_gb else 0
        return Hardware(
            name=gpu,
            memory_bytes=mem,
            compute_capability=cc,
            gpus_per_node=hw.gpus_per_node or 1,
            nodes=hw.nodes,
            host_ram_bytes=remote_host,
            accelerator="cuda",
            source="catalog",
            notes=tuple(notes),
            **_with_gpu(None, here=False, hw=hw),
        )
    return Hardware(
        name=model.name,
        memory_bytes=int(hw.gpu_memory_gb * GIB) if hw.gpu_memory_gb else model.memory_bytes,
        compute_capability=cc or model.compute_capability,
        gpus_per_node=hw.gpus_per_node or 1,
        nodes=hw.nodes,
        host_ram_bytes=remote_host,
        accelerator="cuda",
        source="catalog",
        notes=tuple(notes),
        **_with_gpu(model, here=False, hw=hw),
    )


def _without_gpu(facts: dict) -> dict:
    return {**facts, "gpu": None, "assumed": tuple(facts["assumed"])}


def _with_gpu(model: GpuModel | None, *, here: bool, hw: object, generic: bool = False) -> dict:
    facts = _host_facts(hw, here)
    assumed = list(facts["assumed"])
    if generic:
        assumed.insert(0, "GPU compute and links (generic card)")
    return {**facts, "gpu": model, "assumed": tuple(assumed)}
