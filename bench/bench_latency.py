"""How well does a latency table predict whole models? Raw block sum vs calibrated prediction.

On this machine, with onnxruntime (CPU provider, fixed threads): build the ponas-cifar block
table (``nasw lut build --runtime onnxruntime``), calibrate it on K sampled architectures
(``nasw lut calibrate``), then measure N *other* random architectures end to end and print the
MAPE of the raw sum of block latencies and of the calibrated prediction against those
measurements, both from this run. The calibration models are measured a second time together
with the held-out ones: their two measurements show how far the machine drifted between
calibrating and testing (a shared box does), and a fit on the second measurement gives the
calibrated MAPE without that drift ("same-run"). Target (issue 20): calibrated MAPE <= 10% over 20
architectures.

    nice -n 10 python bench/bench_latency.py                  # ponas-cifar, 12 + 20 models
    python bench/bench_latency.py --preset ponas-digits --test 8 --calibration 6   # quick

The box may be shared and noisy: every figure is a median over interleaved rounds (see
``workbench.lut_kit.time_interleaved``); the spread column shows how noisy each measurement was.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ponas-cifar")
    parser.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "torch"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calibration", type=int, default=12,
                        help="architectures the calibration is fitted on")
    parser.add_argument("--test", type=int, default=20,
                        help="other architectures the prediction is scored on")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--onnx-exporter", default="auto", choices=["auto", "dynamo", "legacy"],
                        help="exporter of blocks and models (auto: dynamo, legacy fallback)")
    parser.add_argument("--timer", default="wall", choices=["wall", "cpu"],
                        help="cpu: this process's CPU time (one thread), immune to other "
                             "processes on a shared machine")
    parser.add_argument("--json", dest="json_out", default=None, help="also write figures here")
    args = parser.parse_args()

    import torch

    from searchers.spaces import get_space
    from workbench import latency, lut_kit

    torch.set_num_threads(args.threads)
    space = get_space("mbconv", args.preset)
    log = print
    started = time.perf_counter()
    table = latency.build_table(space, args.runtime, "cpu", 1, threads=args.threads,
                                warmup=args.warmup, repeats=args.repeats, rounds=args.rounds,
                                exporter=args.onnx_exporter, timer=args.timer)
    build_s = time.perf_counter() - started
    log(f"table: {space.name}/{space.preset}, {args.runtime} on "
        f"{lut_kit.describe(table['fingerprint'])}; ONNX exporter "
        f"{table['method'].get('exporter', '-')}; timer {args.timer}; built in {build_s:.0f} s")
    started = time.perf_counter()
    table = latency.calibrate(space, table, samples=args.calibration, seed=args.seed + 1)
    fit = table["calibration"]
    log(f"calibration on {fit['samples']} architectures ({time.perf_counter() - started:.0f} s):"
        f" measured ~= {fit['slope']:.3f} x sum {fit['intercept']:+.3f} ms; in-sample MAPE "
        f"raw {fit['mape_raw']:.1f}% -> calibrated {fit['mape_calibrated']:.1f}% "
        f"(leave-one-out {fit['mape_loo']:.1f}%)")

    rng = np.random.default_rng(args.seed + 2)
    test = [space.sample(rng) for _ in range(args.test)]
    calibration_genotypes = [{"space": space.name, "preset": space.preset,
                              "choices": p["choices"]} for p in fit["points"]]
    started = time.perf_counter()
    # the held-out models and, again, the calibration models in one interleaved run: the
    # calibration models' two measurements show how much this machine drifted in between
    stats = latency.measure_models(space, test + calibration_genotypes, table)
    measure_s = time.perf_counter() - started
    measured = np.array([s["median_ms"] for s in stats[:args.test]])
    spread = np.array([s["iqr_ms"] for s in stats[:args.test]]) / measured * 100
    again = np.array([s["median_ms"] for s in stats[args.test:]])
    before = np.array([p["measured_ms"] for p in fit["points"]])
    drift = float(np.median(again / before) - 1) * 100
    raw = np.array([latency.predict(table, g["choices"], calibrated=False) for g in test])
    calibrated = np.array([latency.predict(table, g["choices"]) for g in test])
    mape_raw, mape_cal = latency.mape(raw, measured), latency.mape(calibrated, measured)
    same_run_fit = latency.fit_calibration(table, [{"choices": p["choices"], "measured_ms": m}
                                                   for p, m in zip(fit["points"], again)])
    same_run = same_run_fit["slope"] * raw + same_run_fit["intercept"]
    mape_same = latency.mape(same_run, measured)
    log(f"\n{args.test} held-out random architectures, measured end to end "
        f"({measure_s:.0f} s):")
    log(f"{'#':>3} {'measured ms':>12} {'IQR %':>6} {'raw sum ms':>11} {'err %':>6} "
        f"{'calibrated':>11} {'err %':>6} {'same-run':>9} {'err %':>6}")
    for i in range(args.test):
        log(f"{i:>3} {measured[i]:>12.3f} {spread[i]:>6.1f} {raw[i]:>11.3f} "
            f"{(raw[i] / measured[i] - 1) * 100:>+6.1f} {calibrated[i]:>11.3f} "
            f"{(calibrated[i] / measured[i] - 1) * 100:>+6.1f} {same_run[i]:>9.3f} "
            f"{(same_run[i] / measured[i] - 1) * 100:>+6.1f}")
    log(f"\nMAPE raw block sum                         {mape_raw:6.2f}%")
    log(f"MAPE calibrated (fit from `lut calibrate`)   {mape_cal:6.2f}%   (target <= 10%; "
        f"{mape_raw / max(mape_cal, 1e-9):.1f}x smaller than raw)")
    log(f"MAPE calibrated, fit measured in this run    {mape_same:6.2f}%   "
        f"({mape_raw / max(mape_same, 1e-9):.1f}x smaller than raw)")
    log(f"drift of this machine between the two measurements of the calibration models: "
        f"{drift:+.1f}% (median)")
    log(f"median measurement spread (IQR / median) {np.median(spread):.1f}%")
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump({"preset": args.preset, "runtime": args.runtime, "threads": args.threads,
                       "timer": args.timer, "exporter": table["method"].get("exporter"),
                       "fingerprint": table["fingerprint"], "calibration": {
                           k: fit[k] for k in ("slope", "intercept", "samples", "mape_raw",
                                               "mape_calibrated", "mape_loo")},
                       "test": args.test, "mape_raw": mape_raw, "mape_calibrated": mape_cal,
                       "mape_calibrated_same_run": mape_same, "drift_percent": drift,
                       "measured_ms": measured.tolist(), "raw_ms": raw.tolist(),
                       "calibrated_ms": calibrated.tolist(), "build_s": build_s,
                       "measure_s": measure_s}, handle, indent=1)


if __name__ == "__main__":
    main()
