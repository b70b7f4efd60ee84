"""The ``final`` searcher: one chosen architecture, trained from scratch.

Not a search: it asks exactly one job -- the architecture a user picked from a finished run or
a specialization, with its preset's final-training schedule -- so that final training is a run
like any other (stored, listed, watched live in the TUI, resumable). The run engine trains
``final`` runs epoch by epoch with checkpoints (:mod:`workbench.runner.final_train`); any other
evaluator path simply trains the job once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from searchers.base import Job, Result, Searcher
from searchers.errors import NaswError


class FinalSearcher(Searcher):
    name = "final"
    presets: dict[str, dict[str, Any]] = {}

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"genotype": None, "source": {}}

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        genotype = self.params["genotype"]
        if not isinstance(genotype, Mapping):
            raise NaswError("searcher.params.genotype", genotype,
                            f"a genotype of the {space.name} space")
        self.genotype = space.validate(genotype)
        self._asked = False

    def _ask(self, n: int) -> list[Job]:
        if self._asked or n < 1:
            return []
        self._asked = True
        return [self.new_job(self.genotype, tag="final training",
                             meta={"source": dict(self.params["source"] or {})})]

    def _tell(self, job: Job, result: Result) -> None:
        """Nothing to decide: the one result is the run's result."""

    def done(self) -> bool:
        return self.n_told >= 1

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "asked": self._asked}

    def load_state_dict(self, state: Mapping[str, Any],
                        history: Sequence[Mapping[str, Any]] = ()) -> None:
        super().load_state_dict(state, history)
        self._asked = bool(state["asked"])
