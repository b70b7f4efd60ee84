"""PNAS: progressive cell search with a learned surrogate predictor (Liu et al. 2018, Alg. 1).

The search walks the ``cell`` space from simple to complex:

1. level 1: every unique one-block cell (136 of them) is trained;
2. the surrogate predictor (:mod:`searchers.predictors`) is fitted on every (cell, target) pair
   seen so far;
3. level b + 1: every trained b-block cell of the beam is expanded into all its unique canonical
   (b + 1)-block children, the predictor ranks them, the top ``K`` are trained;
4. repeat until cells have ``B`` blocks; then the final-model recipe of §5.4:

   a. the top ``final_models`` cells of the last level are stacked with each ``N`` in
      ``final_N`` at the ``F`` whose parameter count is closest to ``final_params_target``
      ("we try various N and F values such that the number of model parameters is around
      3M") and trained with ``final_train`` (300 epochs, cosine lr from 0.025, auxiliary head
      weighted 0.4, drop-path 0.4): jobs tagged ``"final"``;
   b. the best of them on validation is trained again with ``final_full_train`` (600 epochs on
      the union of the training and validation sets, same regularisers): one job tagged
      ``"final (train+val)"``. ``final_full_train: null`` skips it.

Counting: the search trains exactly ``136 + (B - 1) * K`` models (the paper's 1160 for B = 5,
K = 256) plus ``final_models * len(final_N)`` final models plus one full final model (when
``final_models > 0`` and ``final_full_train`` is set). **The final models count in the budget**
(they are trained jobs like any other, so a coordinator that stops at ``budget`` candidates still
runs them). The run's length is fixed by B, K and the final models, so the ``budget`` argument is
validated, not obeyed: it must be at least that count (a smaller one raises :class:`NaswError`
naming the number), a larger one (a wall-time-only run passes a huge cap) is never reached, and
``self.budget`` is set to the exact count; leave it out (``None``) to have it derived. Set
``final_models: 0`` for the paper's search-only count.

Each level is asked as one batch: ``ask(n)`` hands out up to ``n`` jobs of the current level
and returns ``[]`` while the level's results are outstanding, so workers train a level in
parallel. The level advances inside the ``tell`` that completes it, so the checkpoint written
after that tell already holds the next beam.

Ranking target: the EPNAS soft-constraint reward (:meth:`Searcher.reward`; equal to the accuracy
without constraints or when they hold), so runs of every searcher are compared on one scale.
With ``hard_constraints`` the costs of each candidate (``space.costs``, the LUT path) are checked
before it is trained; an infeasible one is skipped and the next in the predictor's ranking takes
its place, so fewer than 136 one-block cells may be trained. Failed candidates (``failed``,
``oom``, ``diverged``, ``cancelled``) are not used to fit the predictor and are not expanded.

Importing this module does not import torch (the TUI reads ``presets``); constructing a
searcher does (the predictor lives in :mod:`searchers.predictors`).

Determinism: every random choice (predictor weights, folds, mini-batches) derives from
``(seed, level)``; ties in the ranking keep the expansion order; the training data are sorted by
job id, so the order in which workers finish does not matter and a resumed searcher refits the
same predictor.

State (the searcher state contract of :mod:`searchers.base`): ``state_dict`` holds the stage,
the chosen candidates not yet asked (at most ``max(136, K)``), the per-level summaries (``B``)
and the predictor weights -- no per-candidate history. Every asked candidate's level, stage and
prediction travel in its job's ``meta``, so ``load_state_dict(state, history)`` rebuilds the
candidate records from the told jobs (the coordinator's candidates table) and the pending jobs.

Events: ``beam`` when a level's candidates are chosen (cells with predicted targets), ``level``
when its results are in: predicted vs true, the rank correlations of the paper's Fig. 3 /
Table 1 on the level (``rho~_b``, Spearman and Kendall, scipy) next to two baselines on the same
cells -- ranking by parameter count and a random ranking -- and of the fitted predictor on its
own training data (``rho^_b``); ``final`` when the final models are chosen, ``final_full`` when
the best of them is chosen for the train+val run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from searchers.base import Job, Result, Searcher, TrainSpec
from searchers.errors import NaswError

#: The paper's numbers (§5.1, §5.4): beam K = 256, B = 5 blocks, N = 2, F = 24 during the search
#: (the ``pnas-cifar`` cell preset), MLP-ensemble predictor with embedding and hidden size 100,
#: Adam lr 0.01 then 0.002; final models of ~3M parameters trained 300 epochs at lr 0.025 with
#: cosine decay, the best retrained 600 epochs on train + validation; an auxiliary classifier
#: weighted 0.4 and drop-path 0.4 "during training" (both stages).
PAPER_REGULARIZERS: dict[str, Any] = {"aux_weight": 0.4, "drop_path": 0.4}
PAPER_PARAMS: dict[str, Any] = {
    "B": 5, "K": 256, "predictor": "mlp-ensemble", "predictor_embedding_dim": 100,
    "predictor_hidden_dim": 100, "predictor_ensemble_size": 5, "predictor_epochs": 60,
    "predictor_batch_size": 64, "predictor_lr_first": 0.01, "predictor_lr": 0.002,
    "final_models": 1, "final_N": [2, 3, 4], "final_params_target": 3e6,
    "final_train": {"epochs": 300, "lr": 0.025, "schedule": "cosine", **PAPER_REGULARIZERS},
    "final_full_train": {"epochs": 600, "lr": 0.025, "schedule": "cosine",
                         "train_on_val": True, **PAPER_REGULARIZERS},
}
#: The proxy training of the paper's search (§5.1): 20 epochs, lr 0.01 with cosine decay.
PAPER_TRAIN: dict[str, Any] = {"epochs": 20, "lr": 0.01, "schedule": "cosine"}


def search_count(B: int, K: int, n_one_block: int = 136) -> int:
    """Models trained by the search itself: ``136 + (B - 1) * K`` (1160 in the paper)."""
    return int(n_one_block) + (int(B) - 1) * int(K)


class PNASSearcher(Searcher):
    """Progressive Neural Architecture Search over the ``cell`` space (see module docstring)."""

    name: ClassVar[str] = "pnas"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "pnas-paper": {**PAPER_PARAMS, "budget": search_count(5, 256) + 3 + 1},
        # digits on CPU: 3 blocks, beam 8, a lighter predictor; 136 + 2 * 8 + 2 + 1 = 155
        # models. The final recipe scaled down: 5 and 10 epochs, drop-path 0.1 (tiny networks,
        # few epochs), and the full run stays on the training split (train_on_val false): the
        # digits data have no test split, so its accuracy would be measured on trained images.
        "pnas-digits": {
            "B": 3, "K": 8, "predictor": "mlp-ensemble", "predictor_embedding_dim": 32,
            "predictor_hidden_dim": 32, "predictor_ensemble_size": 5, "predictor_epochs": 40,
            "predictor_batch_size": 32, "predictor_lr_first": 0.01, "predictor_lr": 0.002,
            "final_models": 1, "final_N": [1, 2], "final_params_target": 1e5,
            "final_train": {"epochs": 5, "aux_weight": 0.4, "drop_path": 0.1},
            "final_full_train": {"epochs": 10, "aux_weight": 0.4, "drop_path": 0.1,
                                 "train_on_val": False},
            "budget": search_count(3, 8) + 2 + 1,
        },
    }
    # The digits preset at the paper's depth, B = 5, with a beam of 32: 136 + 4 * 32 = 264
    # search models, 128 of them chosen by the predictor (pnas-digits: 16 of 152), for the
    # search suite's budgets (docs/search-benchmarks.md); everything else as pnas-digits.
    presets["pnas-digits-b5"] = {**presets["pnas-digits"], "B": 5, "K": 32,
                                 "budget": search_count(5, 32) + 2 + 1}

    def __init__(self, space: Any, constraints: Iterable[Any] = (), budget: int | None = None,
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(space, constraints, budget=1 if budget is None else budget, seed=seed,
                         **kwargs)
        if getattr(space, "name", None) != "cell" or not hasattr(space, "expand"):
            raise NaswError("space", getattr(space, "name", space), ["cell"],
                            hint="PNAS searches cells: it needs enumerate_one_block/expand")
        p = self.params
        self.num_blocks = _positive_int("B", p["B"])
        if self.num_blocks > space.max_blocks:
            raise NaswError("searcher.params.B", self.num_blocks,
                            f"1..{space.max_blocks} (the space's max_blocks)")
        self.beam_size = _positive_int("K", p["K"])
        self.final_models = _non_negative_int("final_models", p["final_models"])
        final_n = p["final_N"]
        if (not isinstance(final_n, Sequence) or isinstance(final_n, str) or not final_n
                or len(set(final_n)) != len(final_n)):
            raise NaswError("searcher.params.final_N", final_n, "a non-empty list of distinct "
                            "positive integers")
        self.final_N = [_positive_int("final_N[]", n) for n in final_n]
        target = p["final_params_target"]
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0:
            raise NaswError("searcher.params.final_params_target", target, "a positive number")
        self.final_params_target = float(target)
        if not isinstance(p["final_train"], Mapping):
            raise NaswError("searcher.params.final_train", p["final_train"],
                            "a mapping of training-spec fields")
        self.final_train_spec = TrainSpec.from_dict({**self.train_spec.to_dict(),
                                                     **dict(p["final_train"])})
        full = p["final_full_train"]
        if full is not None and not isinstance(full, Mapping):
            raise NaswError("searcher.params.final_full_train", full,
                            "a mapping of training-spec fields, or null to skip the train+val run")
        self.final_full_spec = None if full is None else TrainSpec.from_dict(
            {**self.train_spec.to_dict(), **dict(full)})
        from searchers.predictors import PredictorConfig, SurrogatePredictor

        self.predictor_config = PredictorConfig(
            kind=p["predictor"], embedding_dim=p["predictor_embedding_dim"],
            hidden_dim=p["predictor_hidden_dim"], ensemble_size=p["predictor_ensemble_size"],
            epochs=p["predictor_epochs"], batch_size=p["predictor_batch_size"],
            lr_first=p["predictor_lr_first"], lr=p["predictor_lr"])
        self._overrides = {k: p[k] for k in ("N", "F") if p[k] is not None}
        one_block = self._one_block_cells()  # validates N / F
        full_runs = int(self.final_models > 0 and self.final_full_spec is not None)
        expected = (search_count(self.num_blocks, self.beam_size, len(one_block))
                    + self.final_models * len(self.final_N) + full_runs)
        if budget is not None and self.budget < expected:
            raise NaswError("budget", budget, f"at least {expected} = {len(one_block)} one-block "
                            f"cells + (B - 1) * K = {self.num_blocks - 1} * {self.beam_size} + "
                            f"final_models * len(final_N) = {self.final_models} * "
                            f"{len(self.final_N)} + {full_runs} train+val run",
                            hint="or lower B, K or final_models")
        self.budget = expected
        from searchers.spaces.cell import OP_INDEX

        self._op_index = dict(OP_INDEX)
        n_inputs, n_ops = space.token_vocab()
        self.predictor = SurrogatePredictor(n_inputs, n_ops, self.predictor_config, self.seed)
        # -- search state (all JSON except the predictor) ---------------------------------
        # 0: not started; 1..B: level; B + 1: final models; B + 2: train+val run; B + 3: done
        self._stage = 0
        self._records: list[dict[str, Any]] = []  # every chosen candidate, in choice order
        self._cursor = 0  # index of the next record to ask
        self._by_job: dict[int, int] = {}  # job id -> record index
        self._levels: list[dict[str, Any]] = []  # per-level summaries

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {**PAPER_PARAMS, "N": None, "F": None}

    @property
    def _done_stage(self) -> int:
        return self.num_blocks + 3

    # -- ask / tell ----------------------------------------------------------------------
    def _ask(self, n: int) -> list[Job]:
        if self._stage == 0:
            self._start_level(1, self._one_block_cells(), children=None, predicted=None)
            self._advance()
        jobs = []
        while len(jobs) < n and self._cursor < len(self._records):
            record = self._records[self._cursor]
            stage = record["stage"]
            train = {"final": self.final_train_spec, "full": self.final_full_spec}.get(stage)
            tag = {"final": "final", "full": "final (train+val)"}.get(
                stage, f"level {record['level']}")
            job = self.new_job(record["genotype"], train=train, tag=tag,
                               meta={k: record[k] for k in _RECORD_META if k in record})
            record["job_id"] = job.id
            self._by_job[job.id] = self._cursor
            self._cursor += 1
            jobs.append(job)
        return jobs

    def _tell(self, job: Job, result: Result) -> None:
        index = self._by_job.get(job.id)
        if index is None:  # not one of ours (cannot happen through ask); nothing to learn
            return
        record = self._records[index]
        record.update(status=result.status, accuracy=result.accuracy if result.ok else None,
                      reward=self.reward(result), costs=dict(result.costs))
        self._advance()

    def done(self) -> bool:
        return self._stage == self._done_stage

    # -- the progressive loop ------------------------------------------------------------
    def _stage_complete(self) -> bool:
        return (self._cursor == len(self._records)
                and all(r["status"] is not None for r in self._records))

    def _advance(self) -> None:
        """Close every finished stage and open the next (loops over stages left empty)."""
        while 1 <= self._stage < self._done_stage and self._stage_complete():
            if self._stage <= self.num_blocks:
                self._finish_level(self._stage)
            elif self._stage == self.num_blocks + 1:
                self._start_full()
            else:
                self._stage = self._done_stage
                self.emit("done", self.n_told, {"final": self.final_results()})

    def _finish_level(self, level: int) -> None:
        from searchers.predictors import ranking_quality

        records = self.level_records(level)
        ok = [r for r in records if r["status"] == "ok"]
        quality = {key: math.nan for key in _QUALITY_KEYS}
        if level > 1 and ok:
            seed = int(np.random.SeedSequence([self.seed, level, 3]).generate_state(1)[0])
            quality = ranking_quality([r["predicted"] for r in ok], [r["reward"] for r in ok],
                                      [self._params_of(r) for r in ok], seed=seed)
        summary = self._levels[level - 1]
        summary.update({key: _json_float(value) for key, value in quality.items()})
        summary.update(evaluated=len(records), ok=len(ok),
                       best=_json_float(max((r["reward"] for r in ok), default=math.nan)))
        metrics = {"evaluated": float(self.n_told), "level": float(level)}
        metrics.update({key: value for key, value in quality.items() if not math.isnan(value)})
        trained = self._ok_records()
        top5 = sorted((r["reward"] for r in trained), reverse=True)[:5]
        if top5:
            metrics["top5_mean"] = float(np.mean(top5))
            metrics["best"] = top5[0]
        self.emit("level", self.n_told, {
            "level": level, **{key: summary[key] for key in _QUALITY_KEYS},
            "cells": [_cell_summary(r) for r in records]}, **metrics)
        if level == self.num_blocks:
            self._start_final()
            return
        self._fit_predictor(level)
        parents = [r["genotype"] for r in ok]
        children = self.space.expand(parents) if parents else []
        if children:
            predicted = self.predictor.predict(self._encode_many(children))
            order = np.argsort(-predicted, kind="stable")  # ties keep the expansion order
        else:
            predicted, order = np.zeros(0), np.zeros(0, dtype=int)
        self._start_level(level + 1, (children[i] for i in order), children=len(children),
                          predicted=(float(predicted[i]) for i in order))

    def _start_level(self, level: int, cells: Iterable[dict[str, Any]], children: int | None,
                     predicted: Iterable[float] | None) -> None:
        """Take cells in ranked order, skipping hard-infeasible ones, until K (level 1: all)."""
        self._stage = level
        limit = math.inf if level == 1 else self.beam_size
        predictions = iter(predicted) if predicted is not None else None
        chosen, skipped = [], 0
        for cell in cells:
            if len(chosen) >= limit:
                break
            guess = next(predictions) if predictions is not None else None
            if not self._known_feasible(cell):
                skipped += 1
                continue
            chosen.append(self._new_record(cell, level, "search", guess))
        self._records.extend(chosen)
        self._levels.append({"level": level, "children": children, "chosen": len(chosen),
                             "skipped_infeasible": skipped, "train_spearman": None,
                             **{key: None for key in _QUALITY_KEYS}})
        fit_rho = self._levels[-2]["train_spearman"] if len(self._levels) > 1 else None
        self.emit("beam", self.n_told, {
            "level": level, "children": children, "skipped_infeasible": skipped,
            "predictor_train_spearman": fit_rho, "cells": [_cell_summary(r) for r in chosen]},
            chosen=float(len(chosen)), **({"children": float(children)} if children else {}),
            **({"train_spearman": fit_rho} if fit_rho is not None else {}))

    def _fit_predictor(self, level: int) -> None:
        """Fit from scratch on every ok candidate so far, sorted by job id (order-free)."""
        from searchers.predictors import spearman

        data = sorted(self._ok_records(), key=lambda r: r["job_id"])
        if not data:
            return
        cells = [self._encode(r["genotype"]) for r in data]
        targets = [min(max(float(r["reward"]), 0.0), 1.0) for r in data]
        seed = int(np.random.SeedSequence([self.seed, level]).generate_state(1)[0])
        self.predictor.fit(cells, targets, first_level=level == 1, seed=seed)
        rho_train = spearman(self.predictor.predict(cells), targets)
        self._levels[level - 1]["train_spearman"] = _json_float(rho_train)

    def _start_final(self) -> None:
        """Stack the top cells of the last level with each N in final_N at the F whose
        parameter count is closest to final_params_target."""
        self._stage = self.num_blocks + 1
        last = sorted((r for r in self.level_records(self.num_blocks) if r["status"] == "ok"),
                      key=lambda r: (-r["reward"], r["job_id"]))[:self.final_models]
        chosen, skipped = [], []
        for rank, record in enumerate(last):
            for n in self.final_N:
                genotype = self._sized(record["genotype"], n)
                if genotype is None:
                    skipped.append({"cell": record["hash"], "N": n})
                    continue
                new = self._new_record(genotype, self.num_blocks, "final", record["predicted"])
                new.update(parent=record["hash"], parent_rank=rank,
                           params=self.space.costs(genotype, self.input_shape,
                                                   self.num_classes)["params"])
                chosen.append(new)
        self._records.extend(chosen)
        self.emit("final", self.n_told, {
            "params_target": self.final_params_target, "skipped": skipped,
            "candidates": [{"genotype": r["genotype"], "hash": r["hash"], "params": r["params"],
                            "parent": r["parent"]} for r in chosen]},
            candidates=float(len(chosen)))

    def _start_full(self) -> None:
        """The best final model on validation, trained again on train + validation (§5.4)."""
        self._stage = self.num_blocks + 2
        if self.final_full_spec is None:
            return
        ranked = sorted((r for r in self._records if r["stage"] == "final"
                         and r["status"] == "ok"), key=lambda r: (-r["reward"], r["job_id"]))
        if not ranked:
            return
        best = ranked[0]
        new = self._new_record(best["genotype"], self.num_blocks, "full", best["predicted"])
        new.update(parent=best["parent"], parent_rank=best["parent_rank"],
                   params=best["params"], selected_from=best["job_id"])
        self._records.append(new)
        self.emit("final_full", self.n_told, {
            "genotype": new["genotype"], "hash": new["hash"], "params": new["params"],
            "selected_from": best["job_id"], "validation_reward": best["reward"]})

    def _params_of(self, record: Mapping[str, Any]) -> float:
        """A trained candidate's parameter count (its result's costs; else the cost model)."""
        costs = record.get("costs") or {}
        if "params" in costs:
            return float(costs["params"])
        return float(self.space.costs(record["genotype"], self.input_shape,
                                      self.num_classes)["params"])

    def _sized(self, cell: Mapping[str, Any], n: int) -> dict[str, Any] | None:
        """``cell`` with N = n and the F in 1..max_F closest in params to the target (params
        grow with F); None when N is out of range or, under hard constraints, infeasible."""
        if n > int(self.space.settings.get("max_N", n)):
            return None

        def at(f: int) -> dict[str, Any]:
            return self.space.canonical({**cell, "N": n, "F": f})

        def params(f: int) -> float:
            return self.space.costs(at(f), self.input_shape, self.num_classes)["params"]

        lo, hi = 1, int(self.space.settings.get("max_F", 4096))
        while lo < hi:  # smallest F with params >= target (or max_F)
            mid = (lo + hi) // 2
            if params(mid) >= self.final_params_target:
                hi = mid
            else:
                lo = mid + 1
        best = lo
        if lo > 1 and abs(params(lo - 1) - self.final_params_target) <= abs(
                params(lo) - self.final_params_target):
            best = lo - 1
        genotype = at(best)
        return genotype if self._known_feasible(genotype) else None

    # -- helpers -------------------------------------------------------------------------
    def _known_feasible(self, genotype: Mapping[str, Any]) -> bool:
        """False only when hard constraints are on and the cost model shows a violation.

        Constraints on metrics the cost model does not give (``latency_ms``) cannot be checked
        before training; they stay soft (the reward applies them), as in random search.
        """
        if not (self.hard_constraints and self.constraints):
            return True
        costs = self.space.costs(genotype, self.input_shape, self.num_classes)
        return all(c.satisfied(costs) for c in self.constraints if c.metric in costs)

    def _one_block_cells(self) -> list[dict[str, Any]]:
        cells = self.space.enumerate_one_block()
        if self._overrides:
            try:
                cells = [self.space.canonical({**c, **self._overrides}) for c in cells]
            except NaswError as err:
                raise NaswError(f"searcher.params.{err.field.split('.')[-1]}", err.value,
                                err.allowed) from None
        return cells

    def _new_record(self, genotype: dict[str, Any], level: int, stage: str,
                    predicted: float | None) -> dict[str, Any]:
        return {"genotype": genotype, "hash": self.space.hash(genotype), "level": level,
                "stage": stage, "predicted": predicted, "job_id": None, "status": None,
                "accuracy": None, "reward": None, "costs": None}

    def _ok_records(self) -> list[dict[str, Any]]:
        return [r for r in self._records if r["stage"] == "search" and r["status"] == "ok"]

    def _encode(self, genotype: Mapping[str, Any]) -> np.ndarray:
        """Canonical blocks as (b, 4) ints ``in1, in2, op1, op2`` (the order the paper's LSTM
        reads); the same content as ``space.tokens(g)``, which orders ``in1, op1, in2, op2``."""
        ops = self._op_index
        return np.array([[b[0], b[1], ops[b[2]], ops[b[3]]] for b in genotype["blocks"]],
                        dtype=np.int64)

    def _encode_many(self, genotypes: Sequence[Mapping[str, Any]]) -> np.ndarray | list:
        arrays = [self._encode(g) for g in genotypes]
        if len({a.shape for a in arrays}) == 1:
            return np.stack(arrays)
        return arrays

    # -- results -------------------------------------------------------------------------
    def level_records(self, level: int) -> list[dict[str, Any]]:
        """The candidates of search level ``level`` (chosen order = predicted rank)."""
        return [r for r in self._records if r["stage"] == "search" and r["level"] == level]

    @property
    def levels(self) -> list[dict[str, Any]]:
        """Per level b: children expanded, chosen, skipped, best target, ``spearman`` and
        ``kendall`` (the paper's rho~_b: predictions made before training vs true targets), the
        same for a params-only ranking (``params_spearman``, ``params_kendall``) and a random
        one (``random_spearman``, ``random_kendall``) of the same cells, and
        ``train_spearman`` (rho^_b: the predictor fitted after level b on its training data)."""
        return [dict(s) for s in self._levels]

    def final_beam(self) -> list[dict[str, Any]]:
        """The last level's cells with their results, best first (the search's answer)."""
        records = [r for r in self.level_records(self.num_blocks) if r["status"] is not None]
        ranked = sorted(records, key=lambda r: (-(r["reward"] or 0.0), r["job_id"]))
        return [_cell_summary(r) | {"genotype": r["genotype"]} for r in ranked]

    def final_results(self) -> list[dict[str, Any]]:
        """The final (stacked to the params target) candidates and their results so far."""
        return [{"genotype": r["genotype"], "hash": r["hash"], "params": r.get("params"),
                 "parent": r.get("parent"), "job_id": r["job_id"], "status": r["status"],
                 "accuracy": r["accuracy"], "reward": r["reward"],
                 "train_on_val": r["stage"] == "full"}
                for r in self._records if r["stage"] in ("final", "full")]

    # -- persistence ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Stage, the chosen candidates not yet asked, level summaries, predictor weights."""
        state = super().state_dict()
        state["pnas"] = {
            "stage": self._stage, "budget": self.budget,
            "queue": [{k: r[k] for k in ("genotype", *_RECORD_META) if k in r}
                      for r in self._records[self._cursor:]],
            "levels": [dict(s) for s in self._levels],
            "predictor": self.predictor.state_dict(),
        }
        return state

    def load_state_dict(self, state: Mapping[str, Any],
                        history: Sequence[Mapping[str, Any]] = ()) -> None:
        """Restore, rebuilding the candidate records from ``history`` (told jobs) and the
        pending jobs; their level, stage and prediction come back in each job's ``meta``."""
        super().load_state_dict(state, history)
        own = state["pnas"]
        asked = []
        for entry in self.history:
            meta = entry.get("meta") or {}
            if "stage" not in meta:
                continue  # not a PNAS job (cannot happen through ask)
            record = self._record_from_meta(entry["genotype"], meta, int(entry["id"]))
            record.update(status=entry["status"], accuracy=entry["accuracy"],
                          reward=entry["reward"], costs=dict(entry.get("costs") or {}))
            asked.append(record)
        for job in self._pending.values():
            asked.append(self._record_from_meta(job.genotype, job.meta, job.id))
        asked.sort(key=lambda r: r["job_id"])
        queue = [self._record_from_meta(q["genotype"], q, None) for q in own["queue"]]
        self._records = asked + queue
        self._cursor = len(asked)
        self._stage = int(own["stage"])
        self._levels = [dict(s) for s in own["levels"]]
        self._by_job = {r["job_id"]: i for i, r in enumerate(asked)}
        self.predictor.load_state_dict(own["predictor"])
        self._events = []  # events up to the checkpoint were stored with it

    def _record_from_meta(self, genotype: Mapping[str, Any], meta: Mapping[str, Any],
                          job_id: int | None) -> dict[str, Any]:
        record = self._new_record(dict(genotype), int(meta["level"]), str(meta["stage"]),
                                  meta.get("predicted"))
        record.update({k: meta[k] for k in _RECORD_EXTRAS if k in meta}, job_id=job_id)
        return record


#: What a candidate record carries in its job's meta (and in the unasked queue of the state).
_RECORD_EXTRAS = ("parent", "parent_rank", "params", "selected_from")
_RECORD_META = ("level", "stage", "predicted", *_RECORD_EXTRAS)
#: Per-level ranking quality (:func:`searchers.predictors.ranking_quality`).
_QUALITY_KEYS = ("spearman", "kendall", "params_spearman", "params_kendall", "random_spearman",
                 "random_kendall")


def _cell_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"hash": record["hash"], "blocks": record["genotype"]["blocks"],
            "predicted": record["predicted"], "accuracy": record["accuracy"],
            "reward": record["reward"], "status": record["status"], "job_id": record["job_id"]}


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NaswError(f"searcher.params.{name}", value, "a positive integer")
    return int(value)


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NaswError(f"searcher.params.{name}", value, "a non-negative integer")
    return int(value)


__all__ = ["PAPER_PARAMS", "PAPER_REGULARIZERS", "PAPER_TRAIN", "PNASSearcher",
           "search_count"]
