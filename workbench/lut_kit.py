#!/usr/bin/env python3
"""Measure a NAS Workbench latency table on the device you deploy to.

This file is the measuring kit's script. ``nasw lut kit`` copies it, unchanged, next to the
block ONNX files of a search space (``manifest.json`` lists them); copy the folder to the target
device and run

    python measure_latency.py KIT_DIR --provider cpu --threads 4 --batch-size 1 -o table.json

It needs only Python 3.8+, numpy and onnxruntime (any build: CPU, CUDA, ...). It times every
block file and every whole model of the kit in onnxruntime (warm-up, then interleaved rounds of
timed runs; each entry is the median of all its runs, with the interquartile range as its
spread), records the machine's fingerprint (CPU model, cores, threads, GPU, onnxruntime
version, execution provider), and writes one JSON table that ``nasw lut import table.json``
reads back on the machine where you search. The whole models, when the kit has them, are what
``nasw lut import`` fits the calibration on (sum of blocks -> measured).

The NAS Workbench uses the same functions to measure on the host (``nasw lut build --runtime
onnxruntime`` runs a kit here), so a table from the kit and one built locally are measured the
same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

KIT_FORMAT = "nasw-lut-kit/1"
TABLE_FORMAT = "nasw-latency-table/2"
#: the fingerprint fields two machines must share for a table of one to hold on the other
FINGERPRINT_KEYS = ("cpu", "cores_logical", "cores_physical", "threads", "gpu", "runtime",
                    "runtime_version", "device", "os", "machine")
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
DEFAULT_WARMUP = 20
DEFAULT_REPEATS = 50
DEFAULT_ROUNDS = 5
#: what a timed run is measured with: the wall clock (the latency a user sees) or the CPU time
#: of this process (what the wall clock of an idle machine would show for one thread; it does
#: not count the time other processes on a shared machine took the core away)
TIMERS = {"wall": "perf_counter_ns", "cpu": "process_time_ns"}


# -- the machine -------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 7763 64-Core Processor"), or the best guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], check=True,
                                  capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> dict[str, int | None]:
    """Logical CPUs and physical cores (distinct (package, core) pairs; None when unknown)."""
    physical: int | None = None
    try:
        pairs = set()
        package = core = None
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    package = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not key and core is not None:
                    pairs.add((package, core))
                    package = core = None
        if core is not None:
            pairs.add((package, core))
        physical = len(pairs) or None
    except OSError:
        pass
    return {"cores_logical": os.cpu_count(), "cores_physical": physical}


def nvidia_gpu_name(index: int = 0) -> str | None:
    """The name of NVIDIA GPU ``index`` from nvidia-smi, or None (no GPU, no driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             check=True, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return names[index] if index < len(names) else None


def fingerprint(runtime: str, runtime_version: str, device: str, threads: int,
                gpu: str | None = None) -> dict[str, Any]:
    """What a latency table depends on besides the model: see :data:`FINGERPRINT_KEYS`.

    ``gpu`` is the GPU the table was measured on (None for a CPU table: a GPU elsewhere in the
    box does not change CPU latency)."""
    return {"cpu": cpu_model(), **cpu_cores(), "threads": int(threads), "gpu": gpu,
            "runtime": runtime, "runtime_version": runtime_version, "device": device,
            "os": platform.system(), "machine": platform.machine()}


def fingerprint_id(fp: dict[str, Any]) -> str:
    """A short stable id of a fingerprint (12 hex digits of the SHA-256 of its fields)."""
    canonical = json.dumps({k: fp.get(k) for k in FINGERPRINT_KEYS}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def fingerprint_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fingerprint fields on which ``a`` and ``b`` differ."""
    return [k for k in FINGERPRINT_KEYS if a.get(k) != b.get(k)]


def describe(fp: dict[str, Any]) -> str:
    """One line for messages: "AMD EPYC (2 cores), 1 thread, onnxruntime 1.23.2 cpu"."""
    cores = fp.get("cores_physical") or fp.get("cores_logical")
    gpu = f", GPU {fp['gpu']}" if fp.get("gpu") else ""
    threads = fp.get("threads")
    return (f"{fp.get('cpu')} ({cores} cores){gpu}, {threads} thread"
            f"{'' if threads == 1 else 's'}, {fp.get('runtime')} {fp.get('runtime_version')} "
            f"on {fp.get('device')}")


# -- timing ------------------------------------------------------------------------------------
def summarize(times_ms: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and interquartile range of a list of times (ms)."""
    import numpy as np

    values = np.asarray(times_ms, dtype=np.float64)
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    return {"median_ms": median, "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1,
            "runs": int(values.size)}


def check_timer(timer: str, threads: int, device: str = "cpu") -> str:
    """``timer`` if it can measure latency with ``threads`` on ``device`` (else ValueError):
    CPU time equals latency only for one thread on the CPU."""
    if timer not in TIMERS:
        raise ValueError(f"timer: got {timer!r}; allowed: {', '.join(TIMERS)}")
    if timer == "cpu" and (int(threads) != 1 or not device.startswith("cpu")):
        raise ValueError("timer: 'cpu' measures latency only with --threads 1 on the CPU; "
                         "use 'wall'")
    return timer


def time_interleaved(calls: Sequence[Callable[[], Any]], warmup: int = DEFAULT_WARMUP,
                     repeats: int = DEFAULT_REPEATS, rounds: int = DEFAULT_ROUNDS,
                     progress: Callable[[int, int], None] | None = None,
                     timer: str = "wall") -> list[dict[str, float]]:
    """Time each call: ``warmup`` untimed runs, then ``rounds`` rounds in which every call runs
    ``repeats`` timed times in turn; each call's statistics pool all its runs.

    Interleaving spreads a burst of load from other processes over every call instead of
    inflating the one being timed during the burst, and the median ignores the burst's runs.
    Each run is timed alone (``perf_counter_ns`` around one call, or ``process_time_ns`` with
    ``timer="cpu"``), so the statistics describe single-inference latency, not a throughput
    average."""
    if warmup < 0 or repeats < 1 or rounds < 1:
        raise ValueError("need warmup >= 0, repeats >= 1, rounds >= 1")
    for call in calls:
        for _ in range(warmup):
            call()
    samples: list[list[float]] = [[] for _ in calls]
    clock = getattr(time, TIMERS[timer])
    for round_index in range(rounds):
        for index, call in enumerate(calls):
            bucket = samples[index]
            for _ in range(repeats):
                start = clock()
                call()
                bucket.append((clock() - start) / 1e6)
        if progress is not None:
            progress(round_index + 1, rounds)
    return [summarize(times) for times in samples]


# -- onnxruntime -------------------------------------------------------------------------------
def provider_name(device: str) -> str:
    """``cpu`` / ``cuda`` (or a full provider name) -> the onnxruntime provider name."""
    if device in PROVIDERS:
        return PROVIDERS[device]
    if device.endswith("ExecutionProvider"):
        return device
    raise ValueError(f"provider: got {device!r}; allowed: {', '.join(PROVIDERS)} or an "
                     "onnxruntime provider name")


def onnxruntime_fingerprint(device: str, threads: int) -> dict[str, Any]:
    import onnxruntime

    provider = provider_name(device)
    short = next((k for k, v in PROVIDERS.items() if v == provider), provider)
    gpu = nvidia_gpu_name() if provider == PROVIDERS["cuda"] else None
    return fingerprint("onnxruntime", onnxruntime.__version__, short, threads, gpu=gpu)


def open_session(path: str, device: str, threads: int) -> Any:
    """An onnxruntime session on one provider with ``threads`` intra-op threads, all graph
    optimisations, sequential execution. Raises if the provider is not available."""
    import onnxruntime

    provider = provider_name(device)
    if provider not in onnxruntime.get_available_providers():
        raise RuntimeError(f"provider: {provider} is not available in this onnxruntime "
                           f"(available: {', '.join(onnxruntime.get_available_providers())})")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    providers = [provider] if provider == PROVIDERS["cpu"] else [provider, PROVIDERS["cpu"]]
    session = onnxruntime.InferenceSession(path, options, providers=providers)
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"provider: onnxruntime did not use {provider} for {path}")
    return session


def session_call(session: Any, input_shape: Sequence[int], batch_size: int,
                 seed: int = 0) -> Callable[[], Any]:
    """A no-argument call that runs ``session`` once on a fixed random batch."""
    import numpy as np

    name = session.get_inputs()[0].name
    x = np.random.default_rng(seed).standard_normal((batch_size, *input_shape),
                                                    dtype=np.float32)
    feed = {name: x}
    return lambda: session.run(None, feed)


# -- the kit -----------------------------------------------------------------------------------
def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(kit_dir: str) -> dict[str, Any]:
    """The kit's manifest, with every listed file present and of the recorded SHA-256."""
    with open(os.path.join(kit_dir, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    if manifest.get("format") != KIT_FORMAT:
        raise ValueError(f"manifest.format: got {manifest.get('format')!r}; allowed: "
                         f"{KIT_FORMAT!r}")
    for name, info in manifest["files"].items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+\.onnx", name):
            raise ValueError(f"manifest.files: got {name!r}; allowed: plain *.onnx file names")
        path = os.path.join(kit_dir, name)
        if not os.path.isfile(path) or sha256_file(path) != info["sha256"]:
            raise ValueError(f"manifest.files: {name} is missing or differs from the kit "
                             "(copy the whole folder again)")
    return manifest


def measure_kit(kit_dir: str, device: str = "cpu", threads: int = 1, batch_size: int = 1,
                warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
                rounds: int = DEFAULT_ROUNDS, models: bool = True,
                log: Callable[[str], None] | None = None, timer: str = "wall") -> dict[str, Any]:
    """Time every distinct file of the kit (and its whole models) and return the table."""
    check_timer(timer, threads, device)
    manifest = read_manifest(kit_dir)
    say = log or (lambda _text: None)
    files = manifest["files"]
    pieces = sorted({*manifest["base"], *(f for row in manifest["blocks"] for f in row)})
    model_entries = list(manifest.get("models") or []) if models else []
    started = time.perf_counter()
    say(f"timing {len(pieces)} distinct blocks"
        + (f" and {len(model_entries)} whole models" if model_entries else "")
        + f" on {provider_name(device)}, {threads} thread(s), batch {batch_size}")

    def timed(names: Sequence[str]) -> dict[str, dict[str, float]]:
        calls = []
        for index, name in enumerate(names):
            session = open_session(os.path.join(kit_dir, name), device, threads)
            calls.append(session_call(session, files[name]["input_shape"], batch_size,
                                      seed=index))
        stats = time_interleaved(calls, warmup, repeats, rounds,
                                 progress=lambda r, n: say(f"  round {r}/{n}"), timer=timer)
        return dict(zip(names, stats))

    piece_stats = timed(pieces)
    blocks = [[piece_stats[f]["median_ms"] for f in row] for row in manifest["blocks"]]
    blocks_iqr = [[piece_stats[f]["iqr_ms"] for f in row] for row in manifest["blocks"]]
    base = sum(piece_stats[f]["median_ms"] for f in manifest["base"])
    base_iqr = sum(piece_stats[f]["iqr_ms"] for f in manifest["base"])
    points = []
    if model_entries:
        model_stats = timed([m["file"] for m in model_entries])
        for entry in model_entries:
            stats = model_stats[entry["file"]]
            points.append({"choices": [int(c) for c in entry["choices"]],
                           "measured_ms": stats["median_ms"], "iqr_ms": stats["iqr_ms"]})
    fp = onnxruntime_fingerprint(device, threads)
    return {
        "format": TABLE_FORMAT, "space": manifest["space"], "preset": manifest["preset"],
        "runtime": "onnxruntime", "device": fp["device"], "batch_size": int(batch_size),
        "fingerprint": fp, "fingerprint_id": fingerprint_id(fp),
        "method": {"warmup": int(warmup), "repeats": int(repeats), "rounds": int(rounds),
                   "statistic": "median", "spread": "iqr", "timer": TIMERS[timer],
                   **({"exporter": manifest["exporter"][0]}
                      if len(manifest.get("exporter") or []) == 1 else {})},
        "base": base, "base_iqr": base_iqr, "blocks": blocks, "blocks_iqr": blocks_iqr,
        "input_shape": list(manifest["input_shape"]),
        "layer_shapes": [list(s) for s in manifest["layer_shapes"]],
        "calibration_points": points, "calibration": None, "origin": "kit",
        "kit": manifest.get("kit_id"), "build_s": time.perf_counter() - started,
        "created": time.time(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure a NAS Workbench latency table with onnxruntime on this device.")
    parser.add_argument("kit_dir", nargs="?", default=os.path.dirname(os.path.abspath(__file__)),
                        help="the kit folder (default: this script's folder)")
    parser.add_argument("--provider", default="cpu",
                        help="cpu, cuda, or an onnxruntime provider name (default cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads, fixed for every run and recorded (default 1)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="timed runs per block per round")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help="interleaved rounds over all blocks")
    parser.add_argument("--timer", default="wall", choices=sorted(TIMERS),
                        help="wall clock (default), or this process's CPU time (one thread, "
                             "CPU only: immune to other processes on a shared machine)")
    parser.add_argument("--no-models", action="store_true",
                        help="skip the whole models (no calibration points)")
    parser.add_argument("-o", "--output", default="latency-table.json")
    args = parser.parse_args(argv)
    for name in ("threads", "batch_size", "repeats", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    try:
        table = measure_kit(args.kit_dir, args.provider, args.threads, args.batch_size,
                            args.warmup, args.repeats, args.rounds, models=not args.no_models,
                            log=lambda text: print(text, file=sys.stderr), timer=args.timer)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(table, handle, indent=1)
    os.replace(tmp, args.output)
    low = table["base"] + sum(min(row) for row in table["blocks"])
    high = table["base"] + sum(max(row) for row in table["blocks"])
    print(f"wrote {args.output}: {describe(table['fingerprint'])}; predicted model latency "
          f"{low:.3f}..{high:.3f} ms before calibration; import it with "
          f"`nasw lut import {os.path.basename(args.output)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
