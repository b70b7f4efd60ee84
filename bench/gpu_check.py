"""The GPU figures in one command: training throughput, short EPNAS and PONAS runs, GPU tests.

On a GPU box (``CUDA_VISIBLE_DEVICES`` picks the GPUs):

    .venv/bin/python bench/gpu_check.py            # about 5-10 minutes on one H100
    .venv/bin/python bench/gpu_check.py --quick    # shorter runs, fewer timed steps

It prints, and with ``--json`` also writes as JSON:

1. ``bench/bench_train.py`` on the device: our pipeline vs the ``DataLoader`` loop, images/s,
   and on CUDA the fraction of airbench's ~140k images/s (goal >= 50%);
2. ``sample_configs/epnas-digits.yaml`` and ``ponas-digits.yaml`` run to their budgets with
   the local backend's default placement (one worker per visible GPU): wall time, candidates
   per minute, best accuracy, and the devices the candidates trained on; for PONAS also one
   specialization (``params<=40k``) solved on the finished accuracy table;
3. ``pytest tests/test_gpu.py`` (data on the device, bf16 + channels_last, a real CUDA
   out-of-memory survived, a worker per GPU): passed / failed / skipped.

The runs go to ``--db`` (a temporary file unless given), so they can be opened in the TUI
afterwards: ``nasw --db that.db``. Without a GPU everything runs on the CPU and says so;
that is how this script itself is tested.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RUNS = {"epnas": "epnas-digits.yaml", "ponas": "ponas-digits.yaml"}


def run_config(db: Path, name: str, candidates: int | None) -> dict[str, Any]:
    """Run one sample config to its budget (or ``candidates``) in this process; its figures."""
    import yaml

    from workbench.config import parse_config
    from workbench.runner import Coordinator, start_run
    from workbench.store import Store

    data = yaml.safe_load((ROOT / "sample_configs" / RUNS[name]).read_text())
    data["backend"] = {"kind": "local"}  # the default placement: one worker per visible GPU
    if candidates is not None:
        data["budget"] = {"candidates": candidates}
    run_id = start_run(db, parse_config(data))
    workers: set[str] = set()

    def watch(run: dict[str, Any]) -> None:
        workers.update(w["device"] for w in run.get("workers") or [])

    started = time.perf_counter()
    status = Coordinator(db, run_id, on_progress=watch).run()
    wall = time.perf_counter() - started
    with Store(db) as store:
        run = store.run(run_id)
        rows = store.candidates(run_id)
        figures: dict[str, Any] = {
            "run_id": run_id, "status": status, "candidates": len(rows),
            "ok": sum(r["status"] == "ok" for r in rows), "wall_s": round(wall, 1),
            "candidates_per_min": round(60 * len(rows) / wall, 1) if wall else None,
            "best_accuracy": run.get("best_accuracy"),
            "workers": sorted(workers),
            "trained_on": sorted({(r["device"] or "").split(" pid ")[0] for r in rows}),
        }
        if name == "ponas" and status == "finished":
            from searchers.errors import NaswError
            from workbench.specialize import specialize_run

            try:
                answer = specialize_run(store, run_id, ["params<=40k"], save=False)
                figures["specialize_ms"] = round(answer["solve_ms"], 2)
                figures["specialized"] = {"choices": answer["choices"],
                                          "costs": answer["costs"]}
            except NaswError as err:  # e.g. no feasible choice: say so, the run stands
                figures["specialize_error"] = str(err)
    return figures


def gpu_tests() -> dict[str, Any]:
    """``pytest tests/test_gpu.py``: its summary line and exit code."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_gpu.py")],
                          capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"exit_code": done.returncode, "summary": lines[-1] if lines else done.stderr[-500:]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="bench_train --quick and 32 EPNAS candidates (PONAS always runs "
                             "its 73: fewer cannot fill the accuracy table)")
    parser.add_argument("--db", type=Path, help="keep the runs in this database")
    parser.add_argument("--epnas-candidates", type=int, help="override the EPNAS budget")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["bench", "epnas", "ponas", "tests"], help="leave a part out")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    import torch

    gpus = torch.cuda.device_count()
    device = f"{gpus} x {torch.cuda.get_device_name(0)}" if gpus else "CPU only (no CUDA)"
    print(f"gpu_check: torch {torch.__version__}, {device}", flush=True)
    figures: dict[str, Any] = {"torch": torch.__version__, "device": device}
    if "bench" not in args.skip:
        import bench_train

        figures["bench_train"] = bench_train.main(["--quick"] if args.quick else [])
    budgets = {"epnas": args.epnas_candidates or (32 if args.quick else None), "ponas": None}
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "gpu_check.db"
        for name in RUNS:
            if name in args.skip:
                continue
            print(f"{name}-digits: running ...", flush=True)
            figures[name] = result = run_config(db, name, budgets[name])
            print(f"  {result['status']}: {result['candidates']} candidates "
                  f"({result['ok']} ok) in {result['wall_s']} s = "
                  f"{result['candidates_per_min']} / min; best {result['best_accuracy']}; "
                  f"workers {', '.join(result['workers']) or '-'}; "
                  f"trained on {', '.join(result['trained_on'])}", flush=True)
            if "specialize_ms" in result:
                print(f"  specialized to params<=40k in {result['specialize_ms']} ms "
                      f"(exact solver)", flush=True)
            elif "specialize_error" in result:
                print(f"  not specialized: {result['specialize_error']}", flush=True)
    if "tests" not in args.skip:
        figures["gpu_tests"] = tests = gpu_tests()
        print(f"tests/test_gpu.py: {tests['summary']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return figures


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
