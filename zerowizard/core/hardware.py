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

from .text import GIB, did_you_mean


@dataclass(frozen=True)
class GpuModel:
    name: str
    memory_bytes: int
    compute_capability: tuple[int, int]
    aliases: tuple[str, ...] = ()


def _gb(n: float) -> int:
    """Marketing GB of a card as the bytes NVML reports (cards report slightly under n GiB)."""
    return int(n * GIB)


# Total memory as NVML reports it (e.g. an A100-80GB shows 81920 MiB), compute capability.
CATALOG: dict[str, GpuModel] = {
    g.name: g
    for g in (
        GpuModel("A100-40GB", 40960 * 1024**2, (8, 0), ("A100", "A100-SXM4-40GB", "A100-PCIE-40GB")),
        GpuModel("A100-80GB", 81920 * 1024**2, (8, 0), ("A100-SXM4-80GB", "A100-PCIE-80GB", "A800-80GB")),
        GpuModel("H100-80GB", 81559 * 1024**2, (9, 0), ("H100", "H100-SXM5-80GB", "H100-PCIE-80GB", "H800-80GB")),
        GpuModel("H200-141GB", 143771 * 1024**2, (9, 0), ("H200",)),
        GpuModel("L40S-48GB", 46068 * 1024**2, (8, 9), ("L40S",)),
        GpuModel("A10-24GB", 23028 * 1024**2, (8, 6), ("A10", "A10G")),
        GpuModel("A6000-48GB", 49140 * 1024**2, (8, 6), ("A6000", "RTXA6000", "RTX-A6000")),
        GpuModel("RTX4090-24GB", 24564 * 1024**2, (8, 9), ("RTX4090", "4090")),
        GpuModel("RTX3090-24GB", 24576 * 1024**2, (8, 6), ("RTX3090", "3090")),
        GpuModel("V100-16GB", 16384 * 1024**2, (7, 0), ("V100", "V100-SXM2-16GB")),
        GpuModel("V100-32GB", 32768 * 1024**2, (7, 0), ("V100-SXM2-32GB", "V100S")),
        GpuModel("T4-16GB", 15360 * 1024**2, (7, 5), ("T4",)),
    )
}


def _norm(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper().replace("NVIDIA", "").replace("GEFORCE", ""))


_LOOKUP = {}
for _g in CATALOG.values():
    for _alias in (_g.name, *_g.aliases):
        _LOOKUP.setdefault(_norm(_alias), _g)


def find_gpu(name: str) -> GpuModel | None:
    """A catalog entry by name or alias, case and punctuation ignored ('a100_80gb' works)."""
    return _LOOKUP.get(_norm(name))


def parse_gpus_flag(text: str) -> tuple[int | None, str | None]:
    """'8xA100-80GB' -> (8, 'A100-80GB'); '4' -> (4, None); 'A100-80GB' -> (None, 'A100-80GB')."""
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
    if name is not None and name.lower() not in ("cpu", "auto") and find_gpu(name) is None:
        fix = did_you_mean(name, CATALOG, "known: " + ", ".join(CATALOG))
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
    source: str  # "nvml" | "catalog" | "cpu"
    notes: tuple[str, ...] = field(default=())

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def is_cpu(self) -> bool:
        return self.accelerator == "cpu"


_DETECTION_CACHE: list[Detection] = []


def cached_detection() -> Detection:
    """NVML is asked once per process (the TUI recomputes on every keystroke)."""
    if not _DETECTION_CACHE:
        _DETECTION_CACHE.append(detect_gpus())
    return _DETECTION_CACHE[0]


def resolve_hardware(hw, detection: Detection | None = None) -> Hardware:
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
            model = find_gpu(first.name)
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
        )
    # Planning for a machine you are not on: this machine's RAM says nothing about its host.
    host = int(hw.host_ram_gb * GIB) if hw.host_ram_gb else None
    model = find_gpu(gpu)
    if model is None:  # validated by the rules; size it as the user said, if they said
        mem = int(hw.gpu_memory_gb * GIB) if hw.gpu_memory_gb else 0
        return Hardware(
            name=gpu,
            memory_bytes=mem,
            compute_capability=cc,
            gpus_per_node=hw.gpus_per_node or 1,
            nodes=hw.nodes,
            host_ram_bytes=host,
            accelerator="cuda",
            source="catalog",
            notes=tuple(notes),
        )
    return Hardware(
        name=model.name,
        memory_bytes=int(hw.gpu_memory_gb * GIB) if hw.gpu_memory_gb else model.memory_bytes,
        compute_capability=cc or model.compute_capability,
        gpus_per_node=hw.gpus_per_node or 1,
        nodes=hw.nodes,
        host_ram_bytes=host,
        accelerator="cuda",
        source="catalog",
        notes=tuple(notes),
    )
