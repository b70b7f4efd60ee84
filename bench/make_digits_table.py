"""Produce ``bench/data/digits_trainings.csv.gz``: real proxy trainings on digits.

The ``digits-real`` objective family of :mod:`bench.search_families` serves these results by
look-up (exact match, else nearest neighbours), so searchers can be compared on real accuracy
without training anything at benchmark time. Run once (about 30 minutes of one core):

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/make_digits_table.py

What is trained (all on scikit-learn's bundled 8x8 digits, one CPU thread):

* ``mbconv/ponas-digits``: ``--mbconv`` genotypes drawn uniformly (``space.sample``);
* ``cell/pnas-digits``: the 136 unique one-block cells (PNAS's first level), then uniform
  samples (1-5 blocks) up to ``--cell`` genotypes;
* the first ``--repeats`` genotypes of each space again with training seed 1 (trained first),
  so the table also says how much two seeds of one architecture differ (the ``noisy`` family
  is sized by it).

The proxy: 1 epoch, batch 32, SGD lr 0.05 with Nesterov momentum, cosine schedule, the 20%
validation split of ``searchers.training`` -- measured at 1-2.5 s per training on one core.
One epoch keeps the spread between architectures wide (validation accuracy 0.1-0.95), which is
what a search proxy has to rank; it is not a final accuracy.

Rows are appended to an uncompressed work file as they finish, so an interrupted run continues
where it stopped (rows already present are skipped); the gzip file is written at the end (or
by ``--finalize`` from the rows so far). ``--shard I/N`` splits the missing rows over N
processes.
Columns: ``space, preset, seed, hash, genotype`` (JSON), ``status, accuracy, val_loss,
params, madds, flops, intensity, wall_time``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchers.base import Job, TrainSpec  # noqa: E402
from searchers.spaces import get_space  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "digits_trainings.csv.gz"
COLUMNS = ("space", "preset", "seed", "hash", "genotype", "status", "accuracy", "val_loss",
           "params", "madds", "flops", "intensity", "wall_time")
PROXY = TrainSpec(dataset="digits", epochs=1, batch_size=32, lr=0.05, schedule="cosine",
                  precision="fp32")
SAMPLE_SEED = 20251202


def plan(mbconv: int, cell: int, repeats: int) -> list[tuple[Any, dict[str, Any], int]]:
    """(space, genotype, training seed) of every training, interleaved across the spaces so
    a partial table covers both."""
    rng = np.random.default_rng(SAMPLE_SEED)
    spaces = {"mbconv": get_space("mbconv", "ponas-digits"),
              "cell": get_space("cell", "pnas-digits")}
    lists: dict[str, list[dict[str, Any]]] = {"mbconv": [],
                                              "cell": spaces["cell"].enumerate_one_block()}
    for name, count in (("mbconv", mbconv), ("cell", cell)):
        space = spaces[name]
        seen = {space.hash(g) for g in lists[name]}
        while len(lists[name]) < count:
            genotype = space.sample(rng)
            key = space.hash(genotype)
            if key not in seen:
                seen.add(key)
                lists[name].append(space.canonical(genotype))
    order: list[tuple[Any, dict[str, Any], int]] = []
    for i in range(repeats):  # first: the seed spread is known even from a partial table
        for name in ("mbconv", "cell"):
            order.append((spaces[name], lists[name][i], 0))
            order.append((spaces[name], lists[name][i], 1))
    for i in range(repeats, max(mbconv, cell)):
        for name in ("mbconv", "cell"):
            if i < len(lists[name]):
                order.append((spaces[name], lists[name][i], 0))
    return order


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mbconv", type=int, default=560)
    parser.add_argument("--cell", type=int, default=460)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="train only every N-th missing row starting at I (N processes "
                             "append to one work file); a final run without --shard writes "
                             "the gzip file")
    parser.add_argument("--finalize", action="store_true",
                        help="write the gzip file from the rows trained so far, train nothing")
    args = parser.parse_args(argv)
    work = args.out.with_suffix("")  # .csv while in progress
    if args.finalize:
        _write_gzip(work, args.out)
        return

    import torch

    from searchers.training import train

    torch.set_num_threads(1)
    work.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, str, str]] = set()
    if work.exists():
        with work.open(newline="") as handle:
            done = {(r["space"], r["hash"], r["seed"]) for r in csv.DictReader(handle)}
    todo = plan(args.mbconv, args.cell, args.repeats)
    if args.shard:
        index, count = (int(v) for v in args.shard.split("/"))
        missing = [t for t in todo
                   if (t[0].name, t[0].hash(t[1]), str(t[2])) not in done]
        todo = missing[index::count]
    started = time.perf_counter()
    with work.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        if not done:
            writer.writeheader()
        for index, (space, genotype, seed) in enumerate(todo):
            key = space.hash(genotype)
            if (space.name, key, str(seed)) in done:
                continue
            job = Job(id=index, genotype=genotype, train=PROXY.with_(seed=seed),
                      input_shape=space.input_shape, num_classes=space.num_classes)
            result = train(job, device="cpu")
            costs = space.costs(genotype)
            writer.writerow({
                "space": space.name, "preset": space.preset, "seed": seed, "hash": key,
                "genotype": json.dumps(genotype, sort_keys=True, separators=(",", ":")),
                "status": result.status,
                "accuracy": "" if result.accuracy is None else f"{result.accuracy:.6f}",
                "val_loss": "" if result.val_loss is None else f"{result.val_loss:.6f}",
                **{m: f"{float(costs[m]):.6g}" for m in ("params", "madds", "flops",
                                                          "intensity")},
                "wall_time": f"{result.wall_time:.3f}"})
            handle.flush()  # one short append per row: shards share the file safely
            if index % 50 == 0:
                print(f"{index + 1}/{len(todo)} trainings, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
    if not args.shard:
        _write_gzip(work, args.out)
    print(f"{time.perf_counter() - started:.0f} s")


def _write_gzip(work: Path, out: Path) -> None:
    """The shipped file: complete rows of the work file (a row cut by a kill is dropped)."""
    with work.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle)
                if all(r.get(c) is not None for c in COLUMNS) and r["wall_time"]]
    with gzip.GzipFile(out, "wb", mtime=0) as raw, \
            io.TextIOWrapper(raw, encoding="utf-8", newline="") as target:
        writer = csv.DictWriter(target, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.remove(work)
    print(f"wrote {out}: {len(rows)} trainings, {out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
