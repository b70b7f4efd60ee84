"""PONAS: progressive one-shot search that builds an accuracy table (Huang & Chu, §3).

Two stages, as ask/tell:

1. **Meta training** (§3.2): one job trains the *meta network*, the largest block ``B_G``
   (kernel 7, expansion 6, squeeze-excite) in every layer, with the ``meta_train`` spec
   (paper §4.1: 50 epochs, batch 256, SGD momentum 0.9, wd 4e-5, lr 0.1 decayed 10x at epochs
   20 and 40: the ``ponas-step`` schedule). The job asks for its weights back.
2. **Progressive fine-tuning** (§3.2, Fig. 1(b)), for layer ``l = 0..L-1``, in one of two
   modes (``stage2``):

   * ``"supernet"`` (the paper, the default of every preset): **one job per layer** trains the
     supernet ``Â(l)`` -- the 12 candidate blocks at layer ``l``, each cropped from ``B_G``,
     every other layer shared -- with FairNAS strict fairness (each step every path does a
     forward and a backward pass on the same batch, the gradients accumulate, one update; see
     :mod:`searchers.ponas_supernet`). Its result carries the 12 path accuracies under the
     shared weights: row ``T[l, :]`` (Eq. 3), the table of a *one-shot* model. Same compute
     as the variant below (12 forward/backward passes per batch); memory: one network plus
     the layer's 11 extra blocks, on one worker.
   * ``"per-candidate"`` (a variant, not the paper): the 12 networks
     ``[B*_0 .. B*_{l-1}, B_i, B_G .. B_G]`` are asked as 12 jobs (they run on 12 workers at
     once), each fine-tuned whole from the same inherited weights with the same seed (same
     data order). No weight is shared between the 12, so the table measures 12 separately
     fine-tuned networks rather than one supernet; the best one's weights carry on.

   Either way a ``table_row`` event carries each entry to the store's ``accuracy_table`` as
   soon as it is measured, and the weights of the best path become the next layer's supernet.

Choices where the paper is ambiguous (tested in ``tests/test_ponas.py``):

* *How the supernet evolves.* After layer ``l`` the best path's weights (shared layers as
  fine-tuned, layer ``l`` = its block) seed layer ``l + 1``: the paper's
  ``[B*_1 -> ... -> B*_l -> B_G ...]`` "with the parameters discovered" so far.
* *Ties* in a layer go to the lower choice index, so the result does not depend on the order
  in which workers finish.
* *A failed candidate* (per-candidate mode: OOM, diverged, failed) scores accuracy 0: the
  largest possible loss. A failed supernet job (a whole row) stops the run, as a failed meta
  network does: a table row without measurements would be meaningless.
* *Loss table.* ``T_d[l, i] = max_j T[l, j] - T[l, i]`` (>= 0; the paper writes the negative
  and minimises its magnitude); importance of a layer = ``max_i T_d[l, i]`` (Fig. 2). While a
  layer is being measured its rows carry the loss against the best so far and are re-emitted
  when the best changes, so the stored table is always consistent.
* *Weights for specialization.* For layer ``l`` the supernet's ``B_G`` tensors as they were
  when layer ``l`` was fine-tuned (what its candidates were cropped from) are kept;
  :meth:`PONASSearcher.specialization_weights` combines them with the final supernet so any
  specialized subnet can inherit cropped weights and be evaluated at once.

No randomness is drawn: every seed derives from ``seed`` (meta job: ``seed``; layer ``l``:
``seed + 1 + l``), so the state holds no RNG and a resumed search makes the same decisions.
``state_dict`` (plain data, no history) keeps the stage, the layer, the table as fixed-size
``(L, C)`` arrays (accuracy, validation loss, status, job id: the checkpoint does not grow as
the table fills), the best blocks, the supernet weights, the per-layer source weights and the
pending jobs: a run killed mid-layer resumes at that layer with the rows already measured kept
(the coordinator reissues only the pending jobs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from searchers.base import Job, Result, Searcher, TrainSpec
from searchers.errors import NaswError
from searchers.specialize import layer_importance, loss_table_from_accuracy

STAGES = ("meta", "finetune", "done")
STAGE2_MODES = ("supernet", "per-candidate")
#: row status codes in the checkpoint's ``table_status`` array (0: not measured)
_STATUS_CODES = {"ok": 1, "failed": 2, "oom": 3, "diverged": 4, "cancelled": 5}
_STATUS_NAMES = {code: name for name, code in _STATUS_CODES.items()}

#: §4.1 training details: meta network 50 epochs, batch 256, SGD momentum 0.9, wd 4e-5, lr 0.1
#: "decay 10x at 20 and 40 epochs" (the trainer's ``ponas-step`` schedule: 40% and 80%).
PAPER_META_TRAIN = {"epochs": 50, "batch_size": 256, "lr": 0.1, "momentum": 0.9,
                    "nesterov": False, "weight_decay": 4e-5, "schedule": "ponas-step"}
#: §4.1: "the same strategy as that for meta training", 3 epochs per layer, lr 0.001, no decay
PAPER_FINETUNE = {"epochs": 3, "batch_size": 256, "lr": 0.001, "momentum": 0.9,
                  "nesterov": False, "weight_decay": 4e-5, "schedule": "constant",
                  "warmup_epochs": 0}


class PONASSearcher(Searcher):
    """PONAS over the ``mbconv`` space: meta network, then the table, one layer at a time."""

    name: ClassVar[str] = "ponas"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # the paper (ImageNet, 19 layers x 12 candidates): 1 meta job + 19 supernet jobs
        "ponas-paper": {"meta_train": PAPER_META_TRAIN, "finetune": PAPER_FINETUNE,
                        "stage2": "supernet"},
        # CIFAR-10 on one GPU: a shorter meta stage (same step points), one epoch per layer
        "ponas-cifar": {
            "meta_train": {"epochs": 30, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
                           "nesterov": False, "weight_decay": 4e-5, "schedule": "ponas-step"},
            "finetune": {"epochs": 1, "batch_size": 128, "lr": 0.001, "momentum": 0.9,
                         "nesterov": False, "weight_decay": 4e-5, "schedule": "constant",
                         "warmup_epochs": 0},
            "stage2": "supernet",
        },
        # 8x8 digits on a CPU: 1 meta job + 6 supernet jobs of a few seconds each
        "ponas-digits": {
            "meta_train": {"epochs": 8, "batch_size": 64, "lr": 0.1, "momentum": 0.9,
                           "nesterov": False, "weight_decay": 4e-5, "schedule": "cosine"},
            "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01, "momentum": 0.9,
                         "nesterov": False, "weight_decay": 4e-5, "schedule": "constant",
                         "warmup_epochs": 0},
            "stage2": "supernet",
        },
    }

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """``meta_train`` / ``finetune``: TrainSpec fields laid over the run's ``train`` spec;
        ``stage2``: ``"supernet"`` (the paper) or ``"per-candidate"`` (a variant).

        Without a preset the meta network trains with the run's spec as written and each layer
        is fine-tuned one epoch at the paper's lr 0.001 without decay.
        """
        return {"meta_train": {}, "finetune": {"epochs": 1, "lr": 0.001, "schedule": "constant",
                                               "warmup_epochs": 0},
                "stage2": "supernet"}

    def __init__(self, space: Any, constraints: Iterable[Any] = (), budget: int | None = None,
                 seed: int = 0, **kwargs: Any) -> None:
        for needed in ("largest_choice", "num_positions", "num_options", "cost_tables"):
            if not hasattr(space, needed):
                raise NaswError("space", getattr(space, "name", space), ["mbconv"],
                                hint="PONAS picks one of C blocks in each of L layers")
        self.num_layers = int(space.num_positions)
        self.num_choices = int(space.num_options)
        mode = kwargs.get("stage2", self.default_params()["stage2"])
        if mode not in STAGE2_MODES:
            raise NaswError("searcher.params.stage2", mode, STAGE2_MODES)
        self.stage2 = str(mode)
        per_layer = 1 if self.stage2 == "supernet" else self.num_choices
        self.jobs_needed = 1 + self.num_layers * per_layer
        if budget is None:
            budget = self.jobs_needed
        super().__init__(space, constraints, budget=budget, seed=seed, **kwargs)
        if self.budget < self.jobs_needed:
            raise NaswError("budget", self.budget, f"at least {self.jobs_needed}",
                            hint=f"1 meta network + {self.num_layers} layers x {per_layer} "
                                 f"job(s) ({self.stage2}) fill the table")
        self.meta_spec = self._spec("meta_train")
        self.finetune_spec = self._spec("finetune")
        self.largest = int(space.largest_choice())
        base, tables = space.cost_tables(self.input_shape, self.num_classes)
        self._base_costs = {k: float(v) for k, v in base.items()}
        self._block_costs = {k: np.asarray(v, dtype=np.float64) for k, v in tables.items()}
        # -- state ---------------------------------------------------------------------------
        self.stage = "meta"
        self.layer = 0
        self.meta_accuracy: float | None = None
        self.best_choices: list[int] = []
        self.rows: dict[int, dict[int, dict[str, Any]]] = {}  # layer -> choice -> row
        self.supernet: dict[str, Any] | None = None
        self.layer_sources: dict[int, dict[str, Any]] = {}
        self._layer_best: tuple[float, int] | None = None  # (accuracy, choice) of this layer
        self._layer_best_weights: dict[str, Any] | None = None
        self._asked_choices: set[int] = set()
        self._meta_asked = False

    def _spec(self, key: str) -> TrainSpec:
        overrides = self.params[key]
        if not isinstance(overrides, Mapping):
            raise NaswError(f"searcher.params.{key}", overrides, "a mapping of train fields")
        try:
            return TrainSpec.from_dict({**self.train_spec.to_dict(), **dict(overrides)})
        except NaswError as err:
            raise NaswError(f"searcher.params.{key}.{err.field.split('.', 1)[-1]}", err.value,
                            err.allowed) from None

    # -- genotypes ----------------------------------------------------------------------------
    def genotype(self, choices: list[int]) -> dict[str, Any]:
        return {"space": self.space.name, "preset": self.space.preset,
                "choices": [int(c) for c in choices]}

    def candidate_choices(self, layer: int, choice: int) -> list[int]:
        """``[B*_0 .. B*_{l-1}, B_choice, B_G .. B_G]``: the network that measures T[l, choice]."""
        return (self.best_choices[:layer] + [int(choice)]
                + [self.largest] * (self.num_layers - layer - 1))

    def block_costs(self, layer: int, choice: int) -> dict[str, float]:
        return {m: float(t[layer, choice]) for m, t in self._block_costs.items()}

    # -- ask / tell ---------------------------------------------------------------------------
    def done(self) -> bool:
        return self.stage == "done"

    def _ask(self, n: int) -> list[Job]:
        if self.stage == "meta":
            if self._meta_asked or n < 1:
                return []
            self._meta_asked = True
            return [self.new_job(self.genotype([self.largest] * self.num_layers),
                                 train=self.meta_spec.with_(seed=self.seed), tag="meta network",
                                 return_weights=True, meta={"stage": "meta"})]
        layer = self.layer
        spec = self.finetune_spec.with_(seed=self.seed + 1 + layer)
        if self.stage2 == "supernet":
            if self._asked_choices or layer in self.rows or n < 1:
                return []
            self._asked_choices = set(range(self.num_choices))
            return [self.new_job(
                self.genotype(self.candidate_choices(layer, self.largest)), train=spec,
                tag=f"layer {layer} / {self.num_choices}-path supernet", inherit=self.supernet,
                return_weights=True,
                meta={"stage": "supernet", "layer": layer, "supernet_layer": layer})]
        todo = [c for c in range(self.num_choices)
                if c not in self._asked_choices and c not in self.rows.get(layer, {})]
        jobs = []
        for choice in todo[:n]:
            self._asked_choices.add(choice)
            label = _choice_label(self.space, choice)
            jobs.append(self.new_job(
                self.genotype(self.candidate_choices(layer, choice)), train=spec,
                tag=f"layer {layer} / {label}", inherit=self.supernet, return_weights=True,
                meta={"stage": "finetune", "layer": layer, "choice": choice}))
        return jobs

    def _tell(self, job: Job, result: Result) -> None:
        stage = job.meta.get("stage")
        if stage == "meta":
            if not result.ok:
                raise RuntimeError(f"PONAS meta-network training {result.status}: "
                                   f"{result.error or 'no accuracy'}")
            self.meta_accuracy = float(result.accuracy)
            self.supernet = _cpu_weights(result.weights)
            self.stage = "finetune"
            self.emit("meta", self.n_told, {"accuracy": self.meta_accuracy,
                                            "weights": self.supernet is not None},
                      accuracy=self.meta_accuracy)
            self._start_layer()
            return
        layer = int(job.meta["layer"])
        if layer != self.layer:
            raise NaswError("job.meta.layer", layer, [self.layer], hint="a stale PONAS job")
        if stage == "supernet":
            self._tell_supernet(job, result)
            return
        choice = int(job.meta["choice"])
        self._asked_choices.discard(choice)
        accuracy = float(result.accuracy) if result.ok else 0.0
        self._record(layer, choice, accuracy, result.val_loss if result.ok else None,
                     result.status, job.id, result.weights)
        if len(self.rows[layer]) == self.num_choices:
            self._finish_layer()

    def _tell_supernet(self, job: Job, result: Result) -> None:
        layer = self.layer
        self._asked_choices = set()
        paths = {int(p["choice"]): p for p in result.paths}
        if not result.ok or sorted(paths) != list(range(self.num_choices)):
            raise RuntimeError(
                f"PONAS supernet training of layer {layer} {result.status}: "
                f"{result.error or f'{len(paths)} of {self.num_choices} paths measured'}")
        best = max(paths.values(), key=lambda p: (float(p["accuracy"]), -int(p["choice"])))
        # the best first, so every row is emitted once, with its final loss
        self._layer_best = (float(best["accuracy"]), int(best["choice"]))
        self._layer_best_weights = _cpu_weights(result.weights)
        for choice in range(self.num_choices):
            path = paths[choice]
            self._record(layer, choice, float(path["accuracy"]), path.get("val_loss"), "ok",
                         job.id, None)
        self._finish_layer()

    def _record(self, layer: int, choice: int, accuracy: float, val_loss: float | None,
                status: str, job_id: int, weights: Mapping[str, Any] | None) -> None:
        """Store ``T[layer, choice]`` and emit it (and the layer's rows again if the best moved)."""
        row = {"layer": layer, "choice": choice, "accuracy": accuracy, "val_loss": val_loss,
               "status": status, "costs": self.block_costs(layer, choice), "job": job_id}
        self.rows.setdefault(layer, {})[choice] = row
        key = (accuracy, -choice)
        previous_best = self._layer_best
        if previous_best is None or key > (previous_best[0], -previous_best[1]):
            self._layer_best = (accuracy, choice)
            self._layer_best_weights = _cpu_weights(weights)
        best_accuracy = self._layer_best[0]
        changed = (list(self.rows[layer].values())
                   if previous_best is not None and self._layer_best != previous_best
                   else [row])
        for item in sorted(changed, key=lambda r: r["choice"]):
            self.emit("table_row", self.n_told, {
                "layer": layer, "choice": item["choice"], "accuracy": item["accuracy"],
                "loss": best_accuracy - item["accuracy"], "costs": item["costs"],
                "status": item["status"]})

    def _start_layer(self) -> None:
        """Remember what layer ``self.layer``'s candidates are cropped from (its ``B_G``)."""
        self._layer_best, self._layer_best_weights = None, None
        self._asked_choices = set()
        if self.supernet is not None:
            prefix = f"layers.{self.layer}."
            self.layer_sources[self.layer] = {k: v for k, v in self.supernet.items()
                                              if k.startswith(prefix)}

    def _finish_layer(self) -> None:
        layer = self.layer
        assert self._layer_best is not None
        accuracy, choice = self._layer_best
        self.best_choices.append(choice)
        if self._layer_best_weights is not None:
            self.supernet = self._layer_best_weights
        losses = [accuracy - r["accuracy"] for r in self.rows[layer].values()]
        importance = max(losses)
        self.emit("layer", self.n_told, {"layer": layer, "best_choice": choice,
                                         "best_accuracy": accuracy, "importance": importance,
                                         "best_label": _choice_label(self.space, choice)},
                  best_accuracy=accuracy, importance=importance)
        self.layer += 1
        if self.layer == self.num_layers:
            self.stage = "done"
            self._layer_best, self._layer_best_weights = None, None
            self.emit("table", self.n_told, {
                "best_choices": list(self.best_choices),
                "loss_table": self.loss_table().tolist(),
                "importance": self.importance().tolist()})
        else:
            self._start_layer()

    # -- the table ----------------------------------------------------------------------------
    def accuracy_matrix(self) -> np.ndarray:
        """``T`` (Eq. 3) as an (L, C) array; NaN where not measured yet."""
        table = np.full((self.num_layers, self.num_choices), np.nan)
        for layer, rows in self.rows.items():
            for choice, row in rows.items():
                table[layer, choice] = row["accuracy"]
        return table

    def loss_table(self) -> np.ndarray:
        """``T_d`` (§3.3) of the layers measured so far (NaN rows for the others)."""
        accuracy = self.accuracy_matrix()
        out = np.full_like(accuracy, np.nan)
        complete = ~np.isnan(accuracy).any(axis=1)
        if complete.any():
            out[complete] = loss_table_from_accuracy(accuracy[complete])
        return out

    def importance(self) -> np.ndarray:
        """Per-layer importance: the largest accuracy loss of each measured layer (Fig. 2)."""
        loss = self.loss_table()
        out = np.full(self.num_layers, np.nan)
        complete = ~np.isnan(loss).any(axis=1)
        if complete.any():
            out[complete] = layer_importance(loss[complete])
        return out

    def best(self) -> dict[str, Any] | None:
        """The supernet's architecture ``[B*_1 .. B*_L]`` once the table is complete, else the
        base rule over what was measured so far.

        Per-candidate mode: that network is the last layer's best candidate, a told job.
        Supernet mode: it is the last supernet's best path; the entry is the last supernet
        job's, with that path's genotype, accuracy and costs.
        """
        if self.stage == "done":
            last = self.rows[self.num_layers - 1][self.best_choices[-1]]
            for entry in reversed(self.history):
                if entry["id"] == last["job"]:
                    if self.stage2 == "per-candidate":
                        return entry
                    costs = self.space.costs(self.genotype(self.best_choices),
                                             self.input_shape, self.num_classes)
                    return {**entry, "genotype": self.genotype(self.best_choices),
                            "accuracy": float(last["accuracy"]), "costs": costs,
                            "feasible": self.is_feasible(costs)}
        return super().best()

    def specialization_weights(self) -> dict[str, Any] | None:
        """A state dict with the largest block's tensors in every layer, for cropping.

        Layer ``l`` takes the ``B_G`` weights its candidates were cropped from; stem, head
        and anything else come from the final supernet. None when no weights came back (e.g.
        the synthetic evaluator).
        """
        if self.supernet is None:
            return None
        merged = {k: v for k, v in self.supernet.items() if not k.startswith("layers.")}
        for layer in range(self.num_layers):
            source = self.layer_sources.get(layer)
            if source is None:
                prefix = f"layers.{layer}."
                source = {k: v for k, v in self.supernet.items() if k.startswith(prefix)}
            merged.update(source)
        return merged

    # -- checkpoint ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data of a fixed size: the table as (L, C) arrays, the weights, the stage."""
        shape = (self.num_layers, self.num_choices)
        accuracy = np.full(shape, np.nan)
        val_loss = np.full(shape, np.nan)
        status = np.zeros(shape, dtype=np.int8)
        job_ids = np.full(shape, -1, dtype=np.int64)
        for layer, rows in self.rows.items():
            for choice, row in rows.items():
                accuracy[layer, choice] = row["accuracy"]
                if row["val_loss"] is not None:
                    val_loss[layer, choice] = row["val_loss"]
                status[layer, choice] = _STATUS_CODES[row["status"]]
                job_ids[layer, choice] = row["job"]
        state = super().state_dict()
        state.update({
            "stage": self.stage, "layer": self.layer, "meta_asked": self._meta_asked,
            "meta_accuracy": self.meta_accuracy, "best_choices": list(self.best_choices),
            "table_accuracy": accuracy, "table_val_loss": val_loss, "table_status": status,
            "table_job": job_ids, "supernet": self.supernet,
            "layer_sources": {str(k): v for k, v in self.layer_sources.items()},
            "layer_best": None if self._layer_best is None else list(self._layer_best),
            "layer_best_weights": self._layer_best_weights,
            "shape": [self.num_layers, self.num_choices], "stage2": self.stage2,
        })
        return state

    def load_state_dict(self, state: Mapping[str, Any],
                        history: Sequence[Mapping[str, Any]] = ()) -> None:
        super().load_state_dict(state, history)
        if list(state.get("shape", [])) != [self.num_layers, self.num_choices]:
            raise NaswError("searcher_state.shape", state.get("shape"),
                            [[self.num_layers, self.num_choices]])
        if state["stage"] not in STAGES:
            raise NaswError("searcher_state.stage", state["stage"], STAGES)
        if state.get("stage2", self.stage2) != self.stage2:
            raise NaswError("searcher_state.stage2", state.get("stage2"), [self.stage2],
                            hint="the run was started in the other stage-2 mode")
        self.stage = state["stage"]
        self.layer = int(state["layer"])
        self._meta_asked = bool(state["meta_asked"])
        self.meta_accuracy = state["meta_accuracy"]
        self.best_choices = [int(c) for c in state["best_choices"]]
        accuracy = np.asarray(state["table_accuracy"], dtype=np.float64)
        val_loss = np.asarray(state["table_val_loss"], dtype=np.float64)
        status = np.asarray(state["table_status"])
        job_ids = np.asarray(state["table_job"])
        self.rows = {}
        for layer, choice in zip(*np.nonzero(status)):
            layer, choice = int(layer), int(choice)
            loss = float(val_loss[layer, choice])
            self.rows.setdefault(layer, {})[choice] = {
                "layer": layer, "choice": choice, "accuracy": float(accuracy[layer, choice]),
                "val_loss": loss if np.isfinite(loss) else None,
                "status": _STATUS_NAMES[int(status[layer, choice])],
                "costs": self.block_costs(layer, choice), "job": int(job_ids[layer, choice])}
        self.supernet = state["supernet"]
        self.layer_sources = {int(k): v for k, v in state["layer_sources"].items()}
        best = state["layer_best"]
        self._layer_best = None if best is None else (float(best[0]), int(best[1]))
        self._layer_best_weights = state["layer_best_weights"]
        # in-flight jobs of the current layer are the checkpoint's pending ones (re-issued)
        self._asked_choices = set()
        for job in self._pending.values():
            if int(job.meta.get("layer", -1)) != self.layer:
                continue
            if job.meta.get("stage") == "finetune":
                self._asked_choices.add(int(job.meta["choice"]))
            elif job.meta.get("stage") == "supernet":
                self._asked_choices = set(range(self.num_choices))


def _cpu_weights(weights: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not weights:
        return None
    out = {}
    for name, value in weights.items():
        to = getattr(value, "to", None)
        out[name] = value.detach().to("cpu") if to is not None and hasattr(value, "detach") \
            else value
    return out


def _choice_label(space: Any, choice: int) -> str:
    label = getattr(space, "option_label", None)
    return label(choice) if callable(label) else str(choice)


__all__ = ["PAPER_FINETUNE", "PAPER_META_TRAIN", "PONASSearcher", "STAGE2_MODES", "STAGES"]
