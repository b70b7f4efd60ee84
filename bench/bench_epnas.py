"""EPNAS: does the policy learn, do soft constraints reach feasibility, what does a result cost
the coordinator. Every figure is measured in the same run against its own baseline.

    .venv/bin/python bench/bench_epnas.py policy        # learned vs frozen vs sign-flipped
    .venv/bin/python bench/bench_epnas.py feasibility   # fixed p 0.9 / 0.5 / 0.1 vs adaptive p
    .venv/bin/python bench/bench_epnas.py coordinator   # per-result cost, paper-scale sharing
    .venv/bin/python bench/bench_epnas.py all

``policy`` runs EPNAS (digits preset) on every family of ``bench/search_families.py`` over the
``layerwise`` (layer by layer) and ``cell`` (module search) spaces three ways: as is, with the
policy frozen (``lr = 0``) and with the advantage's sign flipped. Progressive search improves
even with a frozen policy (each episode restarts from the top-N networks), so only these
ablations show what the policy itself adds. Printed per family: the mean reward of the
candidates sampled in the second half of the budget (what the policy optimises), the best
feasible true score at the budget (what the user gets) and the feasible fraction.

``coordinator`` fills the sharing dictionary to paper scale (24 layers x 5 op types x 4
shape variants of a CIFAR-sized model, about 255 MB unbounded) and times, per result, what the
coordinator runs: ``tell`` with the model's weights, ``state_dict()`` and the store's
``encode_state`` (only arrays that changed are new blobs), against the same with sharing off.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_families import BENCH_PRESETS, FAMILIES, eval_seed  # noqa: E402

from searchers.constraints import feasible, parse_constraints  # noqa: E402
from searchers.epnas import EPNASSearcher  # noqa: E402
from searchers.spaces import get_space  # noqa: E402

SPACES = ("layerwise", "module", "cell")
#: the families are defined over any space through its generic API; ``module`` (Table 3) is
#: not in the suite's list, so it runs on every family but the digits table
PRESETS = {**BENCH_PRESETS, "module": "epnas-digits"}


def _spaces(family: Any, names: list[str]) -> list[Any]:
    return [get_space(n, PRESETS[n]) for n in names
            if n in family.spaces or (n == "module" and family.name != "digits-real")]


class SignFlipped(EPNASSearcher):
    """Ablation: the policy is pushed away from the actions that did better."""

    def _advantages(self, *args: Any, **kwargs: Any) -> list[float]:
        return [-a for a in super()._advantages(*args, **kwargs)]


def run(family: Any, space: Any, mode: str, seed: int, budget: int, **params: Any
        ) -> dict[str, float]:
    """One EPNAS run on a family; ``mode`` is ``learned``, ``frozen`` or ``flipped``."""
    cls = SignFlipped if mode == "flipped" else EPNASSearcher
    settings = {**EPNASSearcher.presets["epnas-digits"], "share_weights": False, **params}
    if mode == "frozen":
        settings["lr"] = 0.0
    constraints = family.constraints(space)
    parsed = parse_constraints(constraints)
    s = cls(space, constraints=constraints, budget=budget, seed=seed, **settings)
    best_observed, best_true, n_feasible, first = -math.inf, 0.0, 0, budget + 1
    while not s.done():
        for job in s.ask(1000):
            result, ev = family.result(space, job.genotype, eval_seed(seed, job.id))
            s.tell(job, result)
            if ev is not None and feasible(ev.costs, parsed):
                n_feasible += 1
                first = min(first, s.n_told)
                if ev.observed > best_observed:
                    best_observed, best_true = ev.observed, ev.true
    rewards = [h["reward"] for h in s.history]
    return {"reward": float(np.mean(rewards[len(rewards) // 2:])), "best": best_true,
            "feasible": n_feasible / max(1, s.n_told), "first": first}


def bench_policy(args: argparse.Namespace) -> None:
    print(f"EPNAS learned vs frozen (lr 0) vs sign-flipped, digits preset lr "
          f"{args.lr if args.lr is not None else EPNASSearcher.presets['epnas-digits']['lr']}, "
          f"{args.budget} evaluations, seeds 0-{args.seeds - 1}; reward = mean of the "
          f"second half, best = best feasible true score at the budget")
    params = {} if args.lr is None else {"lr": args.lr}
    print(f"{'family':12} {'space':10} | {'reward L / F / X':24} {'L-F wins':>9} | "
          f"{'best feasible L / F / X':26} | feasible fraction L / F / X")
    chosen = args.policy_families or list(FAMILIES)
    for family in (FAMILIES[name] for name in chosen):
        for space in _spaces(family, args.spaces):
            space_name = space.name
            try:
                out = {m: [run(family, space, m, seed, args.budget, **params)
                           for seed in range(args.seeds)]
                       for m in ("learned", "frozen", "flipped")}
            except FileNotFoundError as missing:  # digits-real before its table is made
                print(f"{family.name:12} {space_name:10} | skipped: {missing}", flush=True)
                continue
            mean = {m: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
                    for m, rs in out.items()}
            wins = sum(a["reward"] > b["reward"] for a, b in zip(out["learned"], out["frozen"]))
            print(f"{family.name:12} {space_name:10} | "
                  f"{mean['learned']['reward']:.4f} {mean['frozen']['reward']:.4f} "
                  f"{mean['flipped']['reward']:.4f} {wins:>5}/{args.seeds} | "
                  f"{mean['learned']['best']:.4f} {mean['frozen']['best']:.4f} "
                  f"{mean['flipped']['best']:.4f}   | {mean['learned']['feasible']:.3f} "
                  f"{mean['frozen']['feasible']:.3f} {mean['flipped']['feasible']:.3f}",
                  flush=True)


FEASIBILITY_SETTINGS: dict[str, dict[str, Any]] = {
    "p = 0.9 (paper)": {"reward_p": 0.9},
    "p = 0.5": {"reward_p": 0.5},
    "p = 0.1": {"reward_p": 0.1},
    "adaptive, target 0.5": {"adaptive_p": True},
    "adaptive, target 0.25": {"adaptive_p": True, "feasible_target": 0.25},
}


def bench_feasibility(args: argparse.Namespace) -> None:
    """Soft constraints: fixed p against dual ascent on p, on the constrained families."""
    print(f"EPNAS soft constraints, digits preset, {args.budget} evaluations, seeds "
          f"0-{args.seeds - 1}: feasible fraction, first feasible evaluation, best feasible "
          f"true score")
    for name in args.families:
        family = FAMILIES[name]
        for space in _spaces(family, args.spaces):
            print(f"  {name} / {space.name}: {family.constraints(space)}")
            for label, params in FEASIBILITY_SETTINGS.items():
                rs = [run(family, space, "learned", seed, args.budget, **params)
                      for seed in range(args.seeds)]
                print(f"    {label:24} feasible {np.mean([r['feasible'] for r in rs]):.3f}  "
                      f"first {np.mean([r['first'] for r in rs]):6.1f}  "
                      f"best {np.mean([r['best'] for r in rs]):.4f}", flush=True)


def bench_coordinator(args: argparse.Namespace) -> None:
    """Per-result coordinator time with a paper-scale sharing dictionary."""
    import torch

    from workbench.state_codec import encode_state

    space = get_space("layerwise", "epnas-cifar")
    layers = [{"op": op, "kernel": k, "filters": f, "stride": 1, "src2": -1, "merge": "add"}
              for op, k, f in [("conv", 3, 128), ("sepconv", 5, 128), ("conv", 3, 96),
                               ("sepconv", 3, 96)] * 6]
    genotype = space.validate({"space": "layerwise", "preset": "epnas-cifar", "layers": layers})
    model_weights = {k: v.clone() for k, v in space.build(genotype).state_dict().items()}
    model_mb = sum(t.numel() * t.element_size() for t in model_weights.values()) / 2**20
    for sharing_mb in args.sharing_mb:
        s = EPNASSearcher(space, budget=10_000, seed=0, sharing_mb=max(sharing_mb, 1e-9),
                          branches=8, steps=10, share_weights=sharing_mb > 0)
        s.ask(1)  # one job out: the run is going
        # paper scale: every (layer, op) key holds `shared_variants` shape variants
        for variant in range(s.params["shared_variants"]):
            for op in ("conv", "sepconv", "maxpool", "avgpool", "add") * (sharing_mb > 0):
                for layer in range(24):
                    key = f"{layer}:{op}"
                    shape = (128 + variant, 116, 3, 3)  # 480 entries x 0.53 MB = 255 MB
                    tensors = {f"w{variant}": torch.randn(*shape)}
                    s.sharing.setdefault(key, []).append(
                        {"signature": (("w", shape),),
                         "accuracy": 0.5, "tensors": tensors})
                    s._sharing_bytes += tensors[f"w{variant}"].numel() * 4
        s._bound_sharing()
        held = s._sharing_bytes / 2**20
        _, _, known = encode_state(s.state_dict())
        jobs = s.ask(args.results)
        timings = {"tell": [], "state_dict": [], "encode": []}
        written = 0
        for k, job in enumerate(jobs):
            from searchers.base import Result

            weights = {name: t + k for name, t in model_weights.items()}
            result = Result(accuracy=0.6 + k / 1000, costs={"params": 1.0},
                            weights=weights if s.sharing_active else None)
            job = type(job)(**{**job.__dict__, "genotype": genotype})
            t0 = time.perf_counter()
            s._pending[job.id] = job
            s.tell(job, result)
            t1 = time.perf_counter()
            state = s.state_dict()
            t2 = time.perf_counter()
            _, new, known = encode_state(state, known)
            t3 = time.perf_counter()
            written += sum(len(b) for b in new.values())
            timings["tell"].append(t1 - t0)
            timings["state_dict"].append(t2 - t1)
            timings["encode"].append(t3 - t2)
        ms = {k: 1000 * float(np.median(v)) for k, v in timings.items()}
        print(f"sharing_mb {sharing_mb:7.0f}: dictionary {held:6.1f} MB (model {model_mb:.1f} "
              f"MB/result) | per result, median: tell {ms['tell']:.1f} ms, state_dict "
              f"{ms['state_dict']:.2f} ms, encode {ms['encode']:.1f} ms, total "
              f"{sum(ms.values()):.1f} ms | new blobs {written / len(jobs) / 2**20:.1f} "
              f"MB/result", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("policy", "feasibility", "coordinator", "all"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=SPACES)
    parser.add_argument("--families", nargs="+", default=["synthetic", "capacity", "two-sided"],
                        help="feasibility: the constrained families compared")
    parser.add_argument("--policy-families", nargs="+", default=None, choices=list(FAMILIES),
                        help="policy: the families (default: every family)")
    parser.add_argument("--sharing-mb", type=float, nargs="+", default=[0, 1024, 64, 16],
                        help="0: sharing off, the baseline")
    parser.add_argument("--results", type=int, default=20)
    args = parser.parse_args()
    if args.what in ("policy", "all"):
        bench_policy(args)
    if args.what in ("feasibility", "all"):
        bench_feasibility(args)
    if args.what in ("coordinator", "all"):
        bench_coordinator(args)


if __name__ == "__main__":
    main()
