"""The GPU catalog (presets/hardware/gpus.yaml): memory, compute capability, peak rates, links.

Read once per process, on first use. A name is found case- and punctuation-blind among each entry's
name, aliases and NVML names ("a100_80gb", "NVIDIA A100-SXM4-80GB"); an NVML name not listed
(a new board revision) falls back to the entry of the same model whose memory is nearest.
A generic GPU (``24GB``) has the capacity the user gave and the stated :data:`GENERIC` figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .paths import PRESETS
from .text import GIB

GPUS_FILE = PRESETS / "hardware" / "gpus.yaml"
FIELDS = (
    "name",
    "aliases",
    "nvml",
    "memory_mib",
    "compute_capability",
    "bf16_tflops",
    "fp16_tflops",
    "fp32_tflops",
    "memory_gbs",
    "interconnect",
    "link_gbs",
    "pcie_gen",
    "source",
)
# PCIe x16, GB/s per direction, by generation (PCI-SIG: 8, 16, 32, 64 GT/s per lane)
PCIE_GBS = {3: 16.0, 4: 32.0, 5: 64.0, 6: 128.0}


@dataclass(frozen=True)
class GpuModel:
    name: str
    memory_bytes: int
    compute_capability: tuple[int, int]
    aliases: tuple[str, ...] = ()
    bf16_tflops: float | None = None
    fp16_tflops: float = 0.0
    fp32_tflops: float = 0.0
    memory_gbs: float = 0.0
    interconnect: str = "pcie"
    link_gbs: float = 32.0
    pcie_gen: int = 4
    host_link_gbs: float | None = None
    nvml: tuple[str, ...] = ()
    source: str = ""

    def peak_tflops(self, precision: str) -> float:
        """Dense peak for a training precision (bf16 on a card without it runs at the fp32 rate)."""
        if precision == "fp16":
            return self.fp16_tflops
        if precision == "bf16":
            return self.bf16_tflops or self.fp32_tflops
        return self.fp32_tflops

    @property
    def host_gbs(self) -> float:
        """Host link per direction: NVLink-C2C where the card has one, else its PCIe slot."""
        return self.host_link_gbs or PCIE_GBS.get(self.pcie_gen, 32.0)


# A generic card (--gpus 4x24GB): capacity only; compute and links are this stated default, an
# A10-class PCIe card (NVIDIA A10 datasheet: 125 TFLOPS bf16 dense, 600 GB/s, PCIe gen4).
GENERIC = GpuModel(
    name="generic",
    memory_bytes=0,
    compute_capability=(8, 0),
    bf16_tflops=125.0,
    fp16_tflops=125.0,
    fp32_tflops=31.2,
    memory_gbs=600.0,
    interconnect="pcie",
    link_gbs=32.0,
    pcie_gen=4,
    source="assumed: an A10-class PCIe gen4 card (125 TFLOPS bf16, 600 GB/s); name a catalog GPU for real figures",
)


def _cc(text: object) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    return int(major), int(minor or 0)


def _entry(d: dict) -> GpuModel:
    bf16 = d.get("bf16_tflops")
    return GpuModel(
        name=str(d["name"]),
        memory_bytes=int(d["memory_mib"]) * 1024**2,
        compute_capability=_cc(d["compute_capability"]),
        aliases=tuple(str(a) for a in d.get("aliases") or ()),
        bf16_tflops=float(bf16) if bf16 is not None else None,
        fp16_tflops=float(d["fp16_tflops"]),
        fp32_tflops=float(d["fp32_tflops"]),
        memory_gbs=float(d["memory_gbs"]),
        interconnect=str(d["interconnect"]),
        link_gbs=float(d["link_gbs"]),
        pcie_gen=int(d["pcie_gen"]),
        host_link_gbs=float(d["host_link_gbs"]) if d.get("host_link_gbs") else None,
        nvml=tuple(str(n) for n in d.get("nvml") or ()),
        source=str(d["source"]),
    )


@lru_cache(maxsize=1)
def raw_entries() -> tuple[dict, ...]:
    """The data file's entries as written (the completeness test reads these)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(GPUS_FILE.read_text(encoding="utf-8"), Loader=loader)
    return tuple(data["gpus"])


@lru_cache(maxsize=1)
def catalog() -> dict[str, GpuModel]:
    """Catalog entries by name, in the data file's order."""
    return {g.name: g for g in (_entry(d) for d in raw_entries())}


def norm(name: str) -> str:
    up = name.upper()
    for word in ("NVIDIA", "GEFORCE", "TESLA"):
        up = up.replace(word, "")
    return re.sub(r"[^A-Z0-9]", "", up)


@lru_cache(maxsize=1)
def _lookup() -> dict[str, GpuModel]:
    out: dict[str, GpuModel] = {}
    for g in catalog().values():
        for alias in (g.name, *g.aliases, *g.nvml):
            out.setdefault(norm(alias), g)
    return out


def find_gpu(name: str) -> GpuModel | None:
    """A catalog entry by name, alias or NVML name, case and punctuation ignored."""
    return _lookup().get(norm(name))


def _model_token(g: GpuModel) -> str:
    """'H100-80GB' -> 'H100'; 'RTX6000Ada-48GB' -> 'RTX6000ADA'."""
    return norm(re.sub(r"-\d+GB$", "", g.name).split("-")[0])


def match_nvml(name: str, memory_bytes: int | None = None) -> GpuModel | None:
    """The entry for a name NVML reports: exact, else the same model nearest in memory."""
    hit = find_gpu(name)
    if hit is not None:
        return hit
    key = norm(name)
    same = [g for g in catalog().values() if _model_token(g) and key.startswith(_model_token(g))]
    if not same:
        return None
    longest = max(len(_model_token(g)) for g in same)
    same = [g for g in same if len(_model_token(g)) == longest]
    if memory_bytes:
        return min(same, key=lambda g: abs(g.memory_bytes - memory_bytes))
    return same[0]


_GENERIC_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:GB|GIB|G)", re.IGNORECASE)


def generic_memory(name: str) -> int | None:
    """Bytes for a generic card named by its capacity ('24GB', '80G'), else None."""
    m = _GENERIC_RE.fullmatch(name.strip())
    if not m:
        return None
    gb = float(m.group(1))
    return int(gb * GIB) if 0 < gb <= 4096 else None
