"""`nasw doctor` lists GPUs with memory and utilisation through NVML (faked here: no GPU)."""

from __future__ import annotations

import sys
import types

from click.testing import CliRunner

from workbench.cli import main
from workbench.cli.doctor import _gpus


def fake_pynvml() -> types.ModuleType:
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    memory = types.SimpleNamespace(total=80 * 2**30, used=20 * 2**30)
    nvml.NVMLError = NVMLError
    nvml.nvmlInit = lambda: None
    nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetCount = lambda: 2
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: memory
    nvml.nvmlSystemGetDriverVersion = lambda: "580.00"

    def utilization(handle):
        if handle == 1:
            raise NVMLError("not supported")
        return types.SimpleNamespace(gpu=87)

    nvml.nvmlDeviceGetUtilizationRates = utilization
    return nvml


def test_gpus_with_memory_and_utilisation(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    report = _gpus()
    assert report["nvml"] and report["driver"] == "580.00"
    first, second = report["gpus"]
    assert first == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81920,
                     "memory_used_mib": 20480, "utilization_pct": 87}
    assert second["utilization_pct"] is None
    text = CliRunner().invoke(main, ["doctor", "--db", str(tmp_path / "x.db")]).output
    assert "0: NVIDIA H100 80GB HBM3  memory 20,480/81,920 MiB  utilisation 87%" in text
    assert "1: NVIDIA H100 80GB HBM3" in text and "utilisation -" in text
