"""Random search: the baseline every algorithm is measured against.

Uniform samples from ``space.sample(rng)``, never the same architecture twice (dedup by
``space.hash``). Constraints:

* ``hard_constraints=True``: candidates known infeasible from the space's cost LUT
  (``space.costs``) are rejected before anyone trains them (rejection sampling, at most
  ``max_tries`` draws per candidate). Constraints on metrics the LUT does not give
  (``latency_ms``) cannot be checked before evaluation, so they stay soft: the reward of the
  result applies them. When ``max_tries`` draws give no feasible new genotype, the searcher
  raises :class:`NaswError` naming the constraints (they are too tight for this space).
* otherwise (soft): every sample is evaluated and ranked by the EPNAS soft reward.

When ``max_tries`` draws give no *new* genotype at all the space is taken as exhausted: the
searcher emits an ``exhausted`` event and finishes early (a tiny space smaller than the budget).

Deterministic by seed: the RNG is ``numpy.random.default_rng(seed)`` and its
``bit_generator.state`` is part of :meth:`state_dict`; the set of drawn genotypes is rebuilt
from the history on resume, so the checkpoint does not grow with the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from searchers.base import Job, Result, Searcher
from searchers.constraints import feasible
from searchers.errors import NaswError


class RandomSearcher(Searcher):
    name = "random"
    presets: dict[str, dict[str, Any]] = {"default": {}}

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        self.rng = np.random.default_rng(self.seed)
        self._seen: set[str] = set()
        self._exhausted = False
        if int(self.params["max_tries"]) < 1:
            raise NaswError("searcher.params.max_tries", self.params["max_tries"],
                            "a positive integer")

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"max_tries": 2000}

    def _checkable_constraints(self) -> list[Any]:
        """Constraints the cost LUT can decide before training (all but measured latency)."""
        return [c for c in self.constraints if c.metric != "latency_ms"]

    def _draw(self) -> dict[str, Any] | None:
        """A new genotype (feasible on the LUT when constraints are hard), None if exhausted."""
        checkable = self._checkable_constraints() if self.hard_constraints else []
        duplicates = infeasible = 0
        for _ in range(int(self.params["max_tries"])):
            genotype = self.space.sample(self.rng)
            key = self.space.hash(genotype)
            if key in self._seen:
                duplicates += 1
                continue
            if checkable:
                costs = self.space.costs(genotype, self.input_shape, self.num_classes)
                if not feasible(costs, checkable):
                    infeasible += 1
                    continue
            self._seen.add(key)
            if duplicates or infeasible:
                self.emit("rejections", self.n_told, duplicates=duplicates,
                          infeasible=infeasible)
            return genotype
        if infeasible and not duplicates:
            raise NaswError("constraints", [str(c) for c in checkable],
                            "constraints that some architecture of this space satisfies",
                            hint=f"no feasible genotype in {self.params['max_tries']} samples "
                                 f"of space {self.space.name}/{self.space.preset}")
        return None  # every draw was a repeat: the (feasible part of the) space is exhausted

    def _ask(self, n: int) -> list[Job]:
        jobs: list[Job] = []
        while len(jobs) < n and self._next_id < self.budget and not self._exhausted:
            genotype = self._draw()
            if genotype is None:
                self._exhausted = True
                self.emit("exhausted", self.n_told, {"unique": len(self._seen)})
                break
            jobs.append(self.new_job(genotype, tag="random"))
        return jobs

    def _tell(self, job: Job, result: Result) -> None:
        """Nothing to learn: the coordinator already records every result and the best."""

    def done(self) -> bool:
        if self._exhausted:
            return not self._pending
        return self.n_told >= self.budget

    def state_dict(self) -> dict[str, Any]:
        """The RNG and the exhausted flag: constant size however long the run (the seen set
        is rebuilt from the history and the pending jobs)."""
        return {**super().state_dict(), "rng": self.rng.bit_generator.state,
                "exhausted": self._exhausted}

    def load_state_dict(self, state: Mapping[str, Any],
                        history: Sequence[Mapping[str, Any]] = ()) -> None:
        super().load_state_dict(state, history)
        self.rng.bit_generator.state = state["rng"]
        self._seen = {self.space.hash(entry["genotype"]) for entry in self.history}
        self._seen.update(self.space.hash(job.genotype) for job in self.pending)
        self._exhausted = bool(state["exhausted"])


__all__ = ["RandomSearcher"]
