"""The GPUs this machine has, read through NVML (``nvidia-ml-py``), for ``nasw doctor`` and the
TUI's Overview. Light to import; asks NVML only when called, and never raises."""

from __future__ import annotations

from typing import Any


def read_gpus() -> dict[str, Any]:
    """``{"nvml", "driver", "note", "gpus": [{index, name, memory_used, memory_total,
    utilization}]}`` (bytes, percent; utilization None where the device does not report it).
    ``gpus`` is empty on a machine without the library, the driver or a GPU."""
    try:
        import pynvml
    except ImportError:
        return {"nvml": False, "driver": None, "gpus": [],
                "note": "nvidia-ml-py is missing: pip install nvidia-ml-py"}
    try:
        pynvml.nvmlInit()
    except Exception as err:  # no driver: a CPU machine
        return {"nvml": False, "driver": None, "gpus": [], "note": f"NVML unavailable: {err}"}
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                utilization: int | None = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:  # not reported by some devices (MIG slices, some vGPUs)
                utilization = None
            gpus.append({"index": index,
                         "name": name.decode() if isinstance(name, bytes) else str(name),
                         "memory_used": int(memory.used), "memory_total": int(memory.total),
                         "utilization": utilization})
        try:
            driver: str | None = str(pynvml.nvmlSystemGetDriverVersion())
        except Exception:
            driver = None
        return {"nvml": True, "driver": driver, "gpus": gpus, "note": ""}
    except Exception as err:
        return {"nvml": False, "driver": None, "gpus": [], "note": f"NVML error: {err}"}
    finally:
        pynvml.nvmlShutdown()
