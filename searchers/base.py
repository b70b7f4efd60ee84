"""The searcher contract: ask/tell, resumable, storage-free.

Modelled on optuna's samplers: a searcher only *decides*. It never opens a database, never
starts a process and never trains a model. The coordinator (``workbench.runner``) asks it for
jobs, has them evaluated by any evaluator on any backend, tells it the results, stores
everything, and checkpoints ``state_dict()`` after each tell so a killed run resumes on the
same trajectory.

Determinism contract: given the same constructor arguments and the same sequence of
``ask``/``tell`` calls (same results, same order), a searcher makes the same decisions, and
``load_state_dict(s.state_dict(), history=s.history)`` on a fresh instance reproduces its
future decisions exactly. Job ids are assigned by the searcher, start at 0 and increase by one
per job it ever asks.

State contract (the store keeps checkpoints as JSON plus typed arrays and never unpickles):

* ``state_dict()`` returns plain data only: dicts with ``str`` keys, lists, tuples, ``int``,
  ``float``, ``str``, ``bool``, ``None``, numpy arrays and CPU torch tensors. No numpy
  ``Generator`` (store ``rng.bit_generator.state``), no sets (sorted lists), no custom
  objects, no ``nn.Module`` (its ``state_dict()``).
* No per-candidate history: :attr:`Searcher.history` (one entry per told job) is *not* in the
  state. The coordinator rebuilds it from the candidates table and passes it back,
  ``load_state_dict(state, history=entries)``; the base class sets ``self.history`` first, so
  a subclass rebuilds whatever the history determines (seen-hash sets, populations, caches)
  instead of storing it. A checkpoint stays bounded as the run grows (policy weights,
  predictor, beam, RNG, bounded tables), so the cost per candidate stays flat.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

from searchers.constraints import (
    DEFAULT_REWARD_P,
    Constraint,
    feasible,
    parse_constraints,
    parse_reward_p,
    soft_reward,
)
from searchers.errors import NaswError, UnknownName

STATUSES = ("ok", "failed", "oom", "diverged", "cancelled")


@dataclass(frozen=True)
class TrainSpec:
    """How a candidate is trained and evaluated (the proxy task).

    ``epochs=0`` means evaluate the (inherited) weights without training. ``max_batches``
    caps the optimisation steps per epoch (short proxies, tests).

    Final-training regularisers (PNAS §5.4; spaces whose models support them, the ``cell``
    space): ``aux_weight`` > 0 adds the auxiliary classifier's loss with that weight,
    ``drop_path`` is the drop-path probability reached at the end of training, and
    ``train_on_val`` trains on the training and validation splits together (the reported
    accuracy is then on images the model was trained on).
    """

    dataset: str = "digits"
    data_root: str | None = None
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05
    lr_min: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine" | "cosine_restarts" | "constant" | "step"
    warmup_epochs: int = 0
    restart_t0: int = 10  # cosine_restarts (SGDR): first period in epochs (EPNAS: T0 = 10)
    restart_mult: int = 2  # each period this many times the previous (EPNAS: Tmult = 2)
    label_smoothing: float = 0.0
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "fp32" | "bf16"
    channels_last: str = "auto"
    compile: bool = False
    augment: bool = True
    val_fraction: float = 0.2
    max_batches: int | None = None
    seed: int = 0
    aux_weight: float = 0.0
    drop_path: float = 0.0
    train_on_val: bool = False

    def with_(self, **changes: Any) -> TrainSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TrainSpec:
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise NaswError(f"train.{sorted(unknown)[0]}", data[sorted(unknown)[0]],
                            sorted(known))
        return cls(**data)


@dataclass(frozen=True)
class Job:
    """One candidate to evaluate.

    ``inherit`` optionally carries a ``state_dict`` (CPU tensors) to start from; parameters
    whose shapes differ are cropped or padded by the trainer. ``return_weights`` asks the
    evaluator to send the trained weights back in :attr:`Result.weights` (parameter sharing).
    ``tag`` is the searcher's own label (``"level 2"``, ``"layer 7 / choice 3"``), shown in
    the TUI. ``meta`` is searcher-private JSON that comes back unchanged with the job.
    """

    id: int
    genotype: dict[str, Any]
    train: TrainSpec = TrainSpec()
    input_shape: tuple[int, int, int] = (1, 8, 8)
    num_classes: int = 10
    inherit: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    return_weights: bool = False
    tag: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    run_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (without inherited weights)."""
        return {
            "id": self.id, "genotype": self.genotype, "train": self.train.to_dict(),
            "input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "return_weights": self.return_weights, "tag": self.tag, "meta": dict(self.meta),
            "run_id": self.run_id, "has_inherit": self.inherit is not None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], inherit: Mapping[str, Any] | None = None) -> Job:
        return cls(
            id=int(data["id"]), genotype=dict(data["genotype"]),
            train=TrainSpec.from_dict(data.get("train")),
            input_shape=tuple(data.get("input_shape", (1, 8, 8))),
            num_classes=int(data.get("num_classes", 10)), inherit=inherit,
            return_weights=bool(data.get("return_weights", False)), tag=data.get("tag", ""),
            meta=dict(data.get("meta") or {}), run_id=data.get("run_id"),
        )


@dataclass(frozen=True)
class Result:
    """The outcome of one job. OOM and NaN are results, not crashes."""

    status: str = "ok"
    accuracy: float | None = None
    val_loss: float | None = None
    loss_curve: tuple[float, ...] = ()
    costs: Mapping[str, float] = field(default_factory=dict)
    wall_time: float = 0.0
    device: str = ""
    error: str = ""
    epochs: int = 0
    weights: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    #: per-path results of a one-shot supernet job (PONAS: the layer's 12 paths under shared
    #: weights, each ``{"choice", "accuracy", "val_loss"}``); empty for an ordinary candidate
    paths: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise NaswError("result.status", self.status, STATUSES)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.accuracy is not None and math.isfinite(self.accuracy)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (without weights)."""
        data = asdict(replace(self, weights=None))
        data.pop("weights")
        data["loss_curve"] = list(self.loss_curve)
        data["costs"] = dict(self.costs)
        data["paths"] = [dict(p) for p in self.paths]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["loss_curve"] = tuple(data.get("loss_curve") or ())
        data["paths"] = tuple(dict(p) for p in data.get("paths") or ())
        return cls(**data)


@dataclass(frozen=True)
class Event:
    """Something the TUI plots or lists: ``episode``, ``beam``, ``table_row``, ``greedy_step``.

    ``metrics`` are numeric series written to the ``metrics`` table as ``kind/name`` at
    ``step``; ``data`` is free JSON stored with the event. A ``table_row`` event's data
    (``layer``, ``choice``, ``accuracy``, ``loss``, ``costs``) is also written to the PONAS
    ``accuracy_table``.
    """

    kind: str
    step: int
    data: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


class Searcher(abc.ABC):
    """Base class: bookkeeping shared by every algorithm (ids, history, best, events).

    Subclasses implement :meth:`_ask`, :meth:`_tell`, :meth:`done` and extend
    :meth:`state_dict` / :meth:`load_state_dict` with their own state (call ``super()``).
    ``ask(n)`` may return fewer than ``n`` jobs, or none, when the algorithm must wait for
    outstanding results (a PNAS level, an EPNAS episode): the coordinator then waits for
    results before asking again. A searcher that is :meth:`done` returns no jobs.
    """

    name: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, space: Any, constraints: Iterable[Any] = (), budget: int = 100,
                 seed: int = 0, train: TrainSpec | Mapping[str, Any] | None = None,
                 input_shape: Sequence[int] | None = None, num_classes: int | None = None,
                 hard_constraints: bool = False,
                 reward_p: float | Mapping[str, float] = DEFAULT_REWARD_P,
                 **params: Any) -> None:
        if budget is None or int(budget) < 1:
            raise NaswError("budget", budget, "a positive integer")
        self.space = space
        self.constraints: list[Constraint] = parse_constraints(constraints)
        self.budget = int(budget)
        self.seed = int(seed)
        self.train_spec = train if isinstance(train, TrainSpec) else TrainSpec.from_dict(train)
        self.input_shape = tuple(input_shape or space.input_shape)
        self.num_classes = int(num_classes or space.num_classes)
        self.hard_constraints = bool(hard_constraints)
        self.reward_p: float | dict[str, float] = parse_reward_p(reward_p)
        unknown = set(params) - set(self.default_params())
        if unknown:
            raise NaswError(f"searcher.params.{sorted(unknown)[0]}", params[sorted(unknown)[0]],
                            sorted(self.default_params()) or "no parameters")
        self.params: dict[str, Any] = {**self.default_params(), **params}
        self._next_id = 0
        self._pending: dict[int, Job] = {}
        self.history: list[dict[str, Any]] = []  # one entry per told job, in tell order
        self._events: list[Event] = []

    # -- the contract -------------------------------------------------------------------
    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """The algorithm's own parameters and their defaults (validated by the constructor)."""
        return {}

    def ask(self, n: int = 1) -> list[Job]:
        if self.done():
            return []
        jobs = self._ask(max(0, int(n)))
        for job in jobs:
            self._pending[job.id] = job
        return jobs

    def tell(self, job: Job, result: Result) -> None:
        if job.id not in self._pending:
            raise NaswError("job.id", job.id, sorted(self._pending) or "no job is pending")
        del self._pending[job.id]
        self.history.append(history_entry(job, result, self.reward(result),
                                          bool(result.ok and feasible(result.costs,
                                                                      self.constraints))))
        self._tell(job, result)

    @abc.abstractmethod
    def _ask(self, n: int) -> list[Job]: ...

    @abc.abstractmethod
    def _tell(self, job: Job, result: Result) -> None: ...

    @abc.abstractmethod
    def done(self) -> bool: ...

    # -- shared helpers ------------------------------------------------------------------
    def new_job(self, genotype: dict[str, Any], *, train: TrainSpec | None = None, tag: str = "",
                inherit: Mapping[str, Any] | None = None, return_weights: bool = False,
                meta: Mapping[str, Any] | None = None) -> Job:
        """A job with the next id and the searcher's training spec, shapes and seed."""
        job = Job(id=self._next_id, genotype=genotype, train=train or self.train_spec,
                  input_shape=self.input_shape, num_classes=self.num_classes, inherit=inherit,
                  return_weights=return_weights, tag=tag, meta=dict(meta or {}))
        self._next_id += 1
        return job

    @property
    def pending(self) -> list[Job]:
        return list(self._pending.values())

    @property
    def n_told(self) -> int:
        return len(self.history)

    def reward(self, result: Result) -> float:
        """EPNAS soft-constraint reward; 0 for a failed candidate. Every searcher ranks by it."""
        if not result.ok:
            return 0.0
        return soft_reward(result.accuracy, result.costs, self.constraints, self.reward_p)

    def is_feasible(self, costs: Mapping[str, float]) -> bool:
        return feasible(costs, self.constraints)

    def best(self) -> dict[str, Any] | None:
        """The best feasible candidate by accuracy, else the best by reward; None before any."""
        done = [h for h in self.history if h["status"] == "ok" and h["accuracy"] is not None]
        if not done:
            return None
        feasible_ones = [h for h in done if h["feasible"]]
        if feasible_ones:
            return max(feasible_ones, key=lambda h: (h["accuracy"], -h["id"]))
        return max(done, key=lambda h: (h["reward"], -h["id"]))

    def emit(self, kind: str, step: int, data: Mapping[str, Any] | None = None,
             **metrics: float) -> None:
        self._events.append(Event(kind, int(step), dict(data or {}),
                                  {k: float(v) for k, v in metrics.items()}))

    def pop_events(self) -> list[Event]:
        """Events since the last call; the coordinator stores them."""
        events, self._events = self._events, []
        return events

    def state_dict(self) -> dict[str, Any]:
        """What the history cannot rebuild, as plain data (see the state contract above)."""
        return {
            "name": self.name, "next_id": self._next_id,
            "pending": [[job.to_dict(), job.inherit] for job in self._pending.values()],
        }

    def load_state_dict(self, state: Mapping[str, Any],
                        history: Sequence[Mapping[str, Any]] = ()) -> None:
        """Restore a checkpoint; ``history``: the told jobs in tell order, as
        :func:`history_entry` made them (the store rebuilds them from its candidates table).
        Sets ``self.history`` first, so subclasses can rebuild from it after ``super()``."""
        if state.get("name") != self.name:
            raise NaswError("searcher_state.name", state.get("name"), [self.name])
        self.history = [dict(entry) for entry in history]
        self._next_id = int(state["next_id"])
        self._pending = {}
        for data, inherit in state.get("pending", []):
            job = Job.from_dict(data, inherit)
            self._pending[job.id] = job


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists, numpy scalars numbers), so a
    history entry rebuilt from the store equals the one recorded live."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def history_entry(job: Job, result: Result, reward: float, is_feasible: bool) -> dict[str, Any]:
    """One told job as :attr:`Searcher.history` keeps it -- and as the store rebuilds it from
    the candidates table (accuracy only for an ``ok`` result, like the ``accuracy`` column)."""
    accuracy = float(result.accuracy) if result.ok else None
    return {
        "id": job.id, "genotype": _plain(job.genotype), "status": result.status,
        "accuracy": accuracy, "costs": _plain(dict(result.costs)),
        "reward": float(reward), "feasible": bool(is_feasible), "tag": job.tag,
        "meta": _plain(dict(job.meta or {})),
    }


# -- registry -------------------------------------------------------------------------------
_SEARCHERS: dict[str, str] = {
    "random": "searchers.random:RandomSearcher",
    "evolution": "searchers.evolution:EvolutionSearcher",
    "epnas": "searchers.epnas:EPNASSearcher",
    "pnas": "searchers.pnas:PNASSearcher",
    "ponas": "searchers.ponas:PONASSearcher",
    "rcas": "searchers.rcas:RCASSearcher",
    "final": "searchers.final:FinalSearcher",
}


def searcher_names() -> list[str]:
    return sorted(_SEARCHERS)


def searcher_class(name: str) -> type[Searcher]:
    """Import a searcher class lazily by registry name (torch-heavy ones load only when used)."""
    import importlib

    if name not in _SEARCHERS:
        raise UnknownName("searcher", name, searcher_names())
    module_name, attr = _SEARCHERS[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def get_searcher(name: str, space: Any, **kwargs: Any) -> Searcher:
    """``get_searcher("epnas", space=space, constraints=[...], budget=400, seed=0, **params)``.

    ``preset`` selects the algorithm's preset parameters (``searcher_class(name).presets``);
    explicit keyword arguments override it.
    """
    cls = searcher_class(name)
    preset = kwargs.pop("preset", None)
    if preset is not None:
        if preset not in cls.presets:
            raise UnknownName("searcher.preset", preset, sorted(cls.presets))
        kwargs = {**cls.presets[preset], **kwargs}
    return cls(space, **kwargs)
