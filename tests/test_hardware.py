"""GPU detection through NVML (a stand-in pynvml module: this machine has no GPU), catalog, --gpus."""

import sys
import types

import pytest

from zerowizard.core.hardware import CATALOG, detect_gpus, find_gpu, parse_gpus_flag, resolve_hardware
from zerowizard.core.plan import HardwareSection


def fake_nvml(count=4, fail=None):
    m = types.ModuleType("pynvml")

    class Mem:
        total, free = 81920 * 1024**2, 80000 * 1024**2

    def init():
        if fail:
            raise fail

    m.nvmlInit = init
    m.nvmlShutdown = lambda: None
    m.nvmlSystemGetDriverVersion = lambda: "560.35"
    m.nvmlDeviceGetCount = lambda: count
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: b"NVIDIA A100-SXM4-80GB"
    m.nvmlDeviceGetMemoryInfo = lambda h: Mem
    m.nvmlDeviceGetCudaComputeCapability = lambda h: (8, 0)
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h:04d}"
    return m


def test_detect_all(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    det = detect_gpus()
    assert len(det.gpus) == 4 and det.driver == "560.35" and det.gpus[0].compute_capability == (8, 0)
    hw = resolve_hardware(HardwareSection(), det)
    assert hw.name == "A100-80GB" and hw.gpus_per_node == 4 and hw.source == "nvml"


@pytest.mark.parametrize("env, expect", [("1,3", [1, 3]), ("2,9,0", [2]), ("", []), ("GPU-0002", [2])])
def test_cuda_visible_devices(monkeypatch, env, expect):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    assert [g.index for g in detect_gpus().gpus] == expect


def test_no_driver_falls_back_to_cpu(monkeypatch):
    class NVMLError_LibraryNotFound(Exception):
        pass

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(fail=NVMLError_LibraryNotFound("not found")))
    det = detect_gpus()
    assert det.gpus == () and "no NVIDIA driver" in det.note
    hw = resolve_hardware(HardwareSection(), det)
    assert hw.is_cpu and hw.gpus_per_node >= 1 and any("CPU accelerator" in n for n in hw.notes)


def test_missing_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert "not installed" in detect_gpus().note


def test_catalog_and_aliases():
    assert len(CATALOG) >= 12
    assert find_gpu("NVIDIA A100-SXM4-80GB").name == "A100-80GB"
    assert find_gpu("a10g").name == "A10-24GB"
    assert find_gpu("Tesla V100-SXM2-32GB") is None or find_gpu("V100-SXM2-32GB").name == "V100-32GB"


@pytest.mark.parametrize(
    "text, expect",
    [
        ("8xA100-80GB", (8, "A100-80GB")),
        ("4", (4, None)),
        ("H100-80GB", (None, "H100-80GB")),
        ("2 x T4-16GB", (2, "T4-16GB")),
    ],
)
def test_parse_gpus_flag(text, expect):
    assert parse_gpus_flag(text) == expect


def test_catalog_machine_has_unknown_host_ram():
    hw = resolve_hardware(HardwareSection(gpu="H100-80GB", gpus_per_node=8))
    assert hw.host_ram_bytes is None and hw.world_size == 8 and hw.compute_capability == (9, 0)
