"""PNASNet-5 at the paper's published sizes: ours next to Tables 3-5 of Liu et al. (2018).

Builds the PNASNet-5 cell (the paper's Fig. 1, the released ``PNasNetNormalCell``) in the
``cell`` space at the three published settings and prints parameters and Mult-Adds from the
analytic cost model, the parameter count of the built network (meta device: nothing is
allocated) and, with ``--trace``, the traced Mult-Adds (also on the meta device), each as a
ratio to the paper's figure. The baseline is the paper's number, not one measured here.

    python bench/bench_pnasnet_sizes.py [--trace] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from searchers.costs import measure
from searchers.spaces import get_space

PNASNET_5 = [[0, 0, "sep5x5", "max3x3"], [1, 1, "sep7x7", "max3x3"], [1, 1, "sep5x5", "sep3x3"],
             [4, 1, "sep3x3", "max3x3"], [0, 1, "sep3x3", "identity"]]
#: (label, preset, N, F, params, Mult-Adds or None) as published (Tables 3, 4, 5).
PUBLISHED = [
    ("CIFAR-10 (Table 3)", "pnas-cifar", 3, 48, 3.2e6, None),
    ("ImageNet Mobile (Table 4)", "pnas-imagenet-mobile", 3, 54, 5.1e6, 588e6),
    ("ImageNet Large (Table 5)", "pnas-imagenet-large", 4, 216, 86.1e6, 25.0e9),
]


def measure_sizes(trace: bool = False) -> list[dict]:
    rows = []
    for label, preset, n, f, params, madds in PUBLISHED:
        space = get_space("cell", preset)
        genotype = {"space": "cell", "preset": preset, "blocks": PNASNET_5, "N": n, "F": f}
        started = time.perf_counter()
        costs = space.costs(genotype)
        cost_seconds = time.perf_counter() - started
        with torch.device("meta"):
            model = space.build(genotype)
        row = {"setting": label, "preset": preset, "N": n, "F": f,
               "paper_params": params, "params": costs["params"],
               "built_params": sum(p.numel() for p in model.parameters()),
               "paper_madds": madds, "madds": costs["madds"], "costs_seconds": cost_seconds}
        if trace:
            row["traced_madds"] = measure(model, space.input_shape)["madds"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", action="store_true", help="also trace the built networks")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    rows = measure_sizes(args.trace)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'PNASNet-5':28} {'N':>2} {'F':>4}  {'params':>9} {'paper':>7} {'ratio':>6}  "
          f"{'built':>9}  {'MAdds':>8} {'paper':>7} {'ratio':>6}")
    for r in rows:
        madds = (f"{r['madds'] / 1e6:7.0f}M {r['paper_madds'] / 1e6:6.0f}M "
                 f"{r['madds'] / r['paper_madds']:6.3f}" if r["paper_madds"]
                 else f"{r['madds'] / 1e6:7.0f}M {'-':>7} {'-':>6}")
        print(f"{r['setting']:28} {r['N']:>2} {r['F']:>4}  {r['params'] / 1e6:8.2f}M "
              f"{r['paper_params'] / 1e6:6.1f}M {r['params'] / r['paper_params']:6.3f}  "
              f"{r['built_params'] / 1e6:8.2f}M  {madds}"
              + (f"  traced {r['traced_madds'] / 1e6:.0f}M" if "traced_madds" in r else ""))


if __name__ == "__main__":
    main()
