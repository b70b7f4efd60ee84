"""Regularized (aging) evolution: Real, Aggarwal, Huang & Le, AAAI 2019, Algorithm 1.

The strong baseline of the NAS benchmarking literature (NAS-Bench-101/201, NASLib), and a good
searcher in its own right::

    population <- P random architectures, evaluated
    repeat until the budget is spent:
        sample  <- S members of the population, uniformly with replacement
        parent  <- the member of the sample with the best reward
        child   <- mutate(parent): one gene resampled
        evaluate child; append it to the population; remove the *oldest* member

Removing the oldest rather than the worst is the "regularization": an architecture survives
only by having good descendants, so a lucky noisy score cannot hold the population forever.

Because the population is exactly the P most recently *told* candidates, it is never stored:
:meth:`load_state_dict` rebuilds it (and the set of seen architectures) from the history the
coordinator passes, and the checkpoint holds only the RNG state. Rewards are the EPNAS soft
reward (:meth:`Searcher.reward`), as for every searcher; a failed candidate has reward 0 and
ages out like any other.

**Mutations** (one gene of the parent, resampled to a *different* value), per space:

* ``mbconv``/``rcas`` (chain spaces): one position takes another of its C options;
* ``cell``: one input or one op of one block changes, or a random block is appended (below
  ``max_blocks``) or the last block removed (the paper's hidden-state and op mutations, plus the
  block count, which the PNAS cell space varies and the paper's NASNet space does not);
* ``layerwise``: one field of one layer (op, kernel, filters, stride, skip source, merge) is
  resampled from the preset's lists, or a random layer is inserted / one removed (through the
  space's own morph actions, which keep skip indices valid);
* any other space (``module``, a user's own): one leaf of the genotype JSON, or one whole item
  of a list in it (a branch, a layer), takes its value from a fresh ``space.sample`` (kept only
  if the space validates the result and it is a different architecture).

**Constraints.** ``hard_constraints=True``: children (and initial samples) the cost LUT shows
infeasible are rejected before evaluation and the parent is mutated again (a new tournament
every ``retries_per_parent`` rejections; a random feasible sample after ``max_tries``). Metrics
the LUT does not give (``latency_ms``) stay soft. Otherwise every child is evaluated and ranked
by the soft reward.

Deviations from the paper, and why:

* **No re-evaluation of an architecture seen in this run** (``dedup``): on the digits presets
  the spaces are small enough that aging evolution re-proposes known children often; the paper's
  NASNet space made this vanishingly rare. ``dedup: false`` restores the paper's behaviour
  (useful with noisy evaluators, where a second evaluation is information).
* **No identity mutation**: with ``dedup`` on it could only be rejected.
* **Asynchrony**: with several workers, children are bred as soon as one initial result is in
  (the tournament draws from the members told so far), as in the paper's asynchronous
  implementation; with one worker this is exactly Algorithm 1.

Presets: ``paper`` (P = 100, S = 25, the paper's main CIFAR-10 setting for 20,000 models),
``default`` (P = 20, S = 5: the paper's S/P ratio, a population that turns over several times
within a few hundred evaluations), ``digits`` (P = 10, S = 3, for digits runs of 40-150
candidates).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from searchers.base import Job, Result, Searcher
from searchers.constraints import feasible
from searchers.errors import NaswError


class EvolutionSearcher(Searcher):
    name = "evolution"
    presets: dict[str, dict[str, Any]] = {
        "default": {"population": 20, "sample": 5},
        "paper": {"population": 100, "sample": 25},
        "digits": {"population": 10, "sample": 3},
    }

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        for key in ("population", "sample", "max_tries", "retries_per_parent"):
            value = self.params[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NaswError(f"searcher.params.{key}", value, "a positive integer")
        if self.params["sample"] > self.params["population"]:
            raise NaswError("searcher.params.sample", self.params["sample"],
                            f"an integer 1..population ({self.params['population']})")
        self.rng = np.random.default_rng(self.seed)
        self._seen: set[str] = set()
        self._exhausted = False

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"population": 20, "sample": 5, "dedup": True, "max_tries": 2000,
                "retries_per_parent": 20}

    # -- the population is the history's tail --------------------------------------------
    def population(self) -> list[dict[str, Any]]:
        """The P most recently told candidates, oldest first (aging evolution)."""
        return self.history[-int(self.params["population"]):]

    def _tournament(self) -> dict[str, Any] | None:
        population = self.population()
        if not population:
            return None
        picks = self.rng.integers(len(population), size=int(self.params["sample"]))
        rewards = [float(population[i]["reward"]) for i in picks]
        return population[int(picks[int(np.argmax(rewards))])]

    # -- candidates ----------------------------------------------------------------------
    def _checkable(self) -> list[Any]:
        if not self.hard_constraints:
            return []
        return [c for c in self.constraints if c.metric != "latency_ms"]

    def _acceptable(self, genotype: Mapping[str, Any]) -> tuple[bool, str]:
        """(accept?, why not): new (when deduplicating) and LUT-feasible (when hard)."""
        key = self.space.hash(genotype)
        if self.params["dedup"] and key in self._seen:
            return False, "duplicate"
        checkable = self._checkable()
        if checkable and not feasible(self.space.costs(genotype, self.input_shape,
                                                       self.num_classes), checkable):
            return False, "infeasible"
        return True, ""

    def _random(self) -> dict[str, Any] | None:
        """A random acceptable genotype; None when ``max_tries`` draws were all repeats."""
        infeasible = 0
        for _ in range(int(self.params["max_tries"])):
            genotype = self.space.sample(self.rng)
            ok, why = self._acceptable(genotype)
            if ok:
                return genotype
            infeasible += why == "infeasible"
        if infeasible == int(self.params["max_tries"]):
            raise NaswError("constraints", [str(c) for c in self._checkable()],
                            "constraints that some architecture of this space satisfies",
                            hint=f"no feasible genotype in {self.params['max_tries']} samples "
                                 f"of space {self.space.name}/{self.space.preset}")
        return None

    def _child(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(child genotype, meta) bred by tournament + one mutation; None: wait for results."""
        parent = None
        rejected = {"duplicate": 0, "infeasible": 0}
        for attempt in range(int(self.params["max_tries"])):
            if attempt % int(self.params["retries_per_parent"]) == 0:
                parent = self._tournament()
                if parent is None:
                    return None
            assert parent is not None
            child, gene = mutate(self.space, parent["genotype"], self.rng)
            ok, why = self._acceptable(child)
            if ok:
                if any(rejected.values()):
                    self.emit("rejections", self.n_told, **rejected)
                return child, {"parent": int(parent["id"]), "mutation": gene}
            rejected[why] += 1
        genotype = self._random()  # the population's neighbourhood is used up
        if genotype is None:
            self._exhausted = True
            self.emit("exhausted", self.n_told, {"unique": len(self._seen)})
            return None
        return genotype, {"parent": None, "mutation": "random (neighbourhood exhausted)"}

    def _ask(self, n: int) -> list[Job]:
        jobs: list[Job] = []
        population_size = int(self.params["population"])
        while len(jobs) < n and self._next_id < self.budget and not self._exhausted:
            if self._next_id < population_size:
                genotype = self._random()
                if genotype is None:
                    self._exhausted = True
                    self.emit("exhausted", self.n_told, {"unique": len(self._seen)})
                    break
                meta: dict[str, Any] = {"parent": None, "mutation": "initial"}
                tag = "initial population"
            else:
                bred = self._child()
                if bred is None:
                    break
                genotype, meta = bred
                tag = f"child of #{meta['parent']}" if meta["parent"] is not None else "random"
            self._seen.add(self.space.hash(genotype))
            jobs.append(self.new_job(genotype, tag=tag, meta=meta))
        return jobs

    def _tell(self, job: Job, result: Result) -> None:
        population = self.population()
        if self.n_told >= int(self.params["population"]):
            rewards = [float(h["reward"]) for h in population]
            self.emit("population", self.n_told, best_reward=max(rewards),
                      mean_reward=float(np.mean(rewards)))

    def done(self) -> bool:
        if self._exhausted:
            return not self._pending
        return self.n_told >= self.budget

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self.rng.bit_generator.state,
                "exhausted": self._exhausted}

    def load_state_dict(self, state: Mapping[str, Any],
                        history: Sequence[Mapping[str, Any]] = ()) -> None:
        super().load_state_dict(state, history=history)
        self.rng.bit_generator.state = copy.deepcopy(dict(state["rng"]))
        self._exhausted = bool(state["exhausted"])
        genotypes = [h["genotype"] for h in self.history] + [j.genotype for j in self.pending]
        self._seen = {self.space.hash(g) for g in genotypes}


# -- mutations ---------------------------------------------------------------------------
def mutate(space: Any, genotype: Mapping[str, Any], rng: np.random.Generator
           ) -> tuple[dict[str, Any], str]:
    """One gene of ``genotype`` resampled to a different value: ``(child, description)``."""
    if hasattr(space, "num_options") and hasattr(space, "picks"):
        return _mutate_chain(space, genotype, rng)
    if space.name == "cell":
        return _mutate_cell(space, genotype, rng)
    if space.name == "layerwise":
        return _mutate_layerwise(space, genotype, rng)
    return _mutate_generic(space, genotype, rng)


def _other(rng: np.random.Generator, options: Sequence[Any], current: Any) -> Any:
    """A uniformly chosen option different from ``current`` (``current`` if it is the only one)."""
    others = [o for o in options if o != current]
    return others[int(rng.integers(len(others)))] if others else current


def _mutate_chain(space: Any, genotype: Mapping[str, Any], rng: np.random.Generator
                  ) -> tuple[dict[str, Any], str]:
    picks = list(space.picks(genotype))
    position = int(rng.integers(len(picks)))
    picks[position] = int(_other(rng, range(space.num_options), picks[position]))
    child = space.validate({**space.validate(genotype), space.field: picks})
    return child, f"position {position} -> {space.option_label(picks[position])}"


def _mutate_cell(space: Any, genotype: Mapping[str, Any], rng: np.random.Generator
                 ) -> tuple[dict[str, Any], str]:
    from searchers.spaces.cell import NUM_CELL_INPUTS, OPS

    g = space.validate(genotype)
    blocks = [list(b) for b in g["blocks"]]
    genes: list[tuple[str, int, int]] = [(kind, b, k) for b in range(len(blocks))
                                         for kind, k in (("input", 0), ("input", 1),
                                                         ("op", 2), ("op", 3))]
    if len(blocks) < space.max_blocks:
        genes.append(("add", len(blocks), 0))
    if len(blocks) > 1:
        genes.append(("remove", len(blocks) - 1, 0))
    kind, b, k = genes[int(rng.integers(len(genes)))]
    if kind == "input":
        blocks[b][k] = int(_other(rng, range(NUM_CELL_INPUTS + b), blocks[b][k]))
        what = f"block {b} input {k} -> {blocks[b][k]}"
    elif kind == "op":
        blocks[b][k] = str(_other(rng, OPS, blocks[b][k]))
        what = f"block {b} op {k - 2} -> {blocks[b][k]}"
    elif kind == "add":
        inputs = NUM_CELL_INPUTS + b
        blocks.append([int(rng.integers(inputs)), int(rng.integers(inputs)),
                       OPS[int(rng.integers(len(OPS)))], OPS[int(rng.integers(len(OPS)))]])
        what = f"add block {b}"
    else:
        blocks.pop()
        what = f"remove block {b}"
    return space.validate({**g, "blocks": blocks}), what


def _mutate_layerwise(space: Any, genotype: Mapping[str, Any], rng: np.random.Generator
                      ) -> tuple[dict[str, Any], str]:
    from searchers.spaces.layerwise import OPS_WITH_FILTERS, Action

    s = space.settings
    g = space.validate(genotype)
    layers = copy.deepcopy(g["layers"])
    genes: list[tuple[str, int]] = []
    for i, layer in enumerate(layers):
        genes += [("op", i), ("kernel", i), ("stride", i)]
        if layer["filters"] is not None:
            genes.append(("filters", i))
        if i > 0:
            genes.append(("src2", i))
        if layer["src2"] >= 0 and len(s["merges"]) > 1:
            genes.append(("merge", i))
    if len(layers) < space.max_layers:
        genes.append(("insert", -1))
    if len(layers) > 1:
        genes.append(("remove", -1))
    field, i = genes[int(rng.integers(len(genes)))]

    def pick(options: Sequence[Any]) -> Any:
        return options[int(rng.integers(len(options)))]

    if field == "insert":
        place = int(rng.integers(len(layers) + 1))
        op = str(pick(s["ops"]))
        action = Action.insert(
            place, op=op, kernel=int(pick(s["kernels"])),
            filters=int(pick(s["filters"])) if op in OPS_WITH_FILTERS else None,
            stride=int(pick(s["strides"])),
            src2=int(rng.integers(-1, place)) if place > 0 else -1, merge=str(pick(s["merges"])))
        return space.apply_action(g, action), f"insert {op} at {place}"
    if field == "remove":
        place = int(rng.integers(len(layers)))
        return space.apply_action(g, Action.remove(place)), f"remove layer {place}"
    layer = layers[i]
    if field == "op":
        layer["op"] = str(_other(rng, s["ops"], layer["op"]))
        if layer["op"] in OPS_WITH_FILTERS and layer["filters"] is None:
            layer["filters"] = int(pick(s["filters"]))
        elif layer["op"] not in OPS_WITH_FILTERS:
            layer["filters"] = None
    elif field == "src2":
        layer["src2"] = int(_other(rng, range(-1, i), layer["src2"]))
    else:
        options = {"kernel": s["kernels"], "filters": s["filters"], "stride": s["strides"],
                   "merge": s["merges"]}[field]
        layer[field] = _other(rng, options, layer[field])
    return space.validate({**g, "layers": layers}), f"layer {i} {field} -> {layer[field]}"


_MISSING = object()


def _genes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every leaf and to every dict inside a list (a layer, a branch, a block)."""
    if isinstance(value, Mapping):
        inner = [p for k, v in value.items() if k not in ("space", "preset")
                 for p in _genes(v, (*path, k))]
        return ([path] if path and isinstance(path[-1], int) else []) + inner
    if isinstance(value, list):
        return [p for k, v in enumerate(value) for p in _genes(v, (*path, k))]
    return [path]


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


def _mutate_generic(space: Any, genotype: Mapping[str, Any], rng: np.random.Generator,
                    tries: int = 50) -> tuple[dict[str, Any], str]:
    """One gene -- a leaf, or a whole item of a list -- copied from a fresh sample; kept if the
    space validates the result and it is a different architecture."""
    parent = space.validate(genotype)
    parent_hash = space.hash(parent)
    paths = _genes(parent)
    for _ in range(tries):
        if not paths:
            break
        path = paths[int(rng.integers(len(paths)))]
        donor = _at(space.sample(rng), path)
        if donor is _MISSING or donor == _at(parent, path):
            continue
        child = copy.deepcopy(parent)
        target: Any = child
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = copy.deepcopy(donor)
        try:
            child = space.validate(child)
        except Exception:  # the donor value does not fit here: try another gene
            continue
        if space.hash(child) != parent_hash:
            return child, f"{'/'.join(map(str, path))} resampled"
    return space.sample(rng), "resampled"


__all__ = ["EvolutionSearcher", "mutate"]
