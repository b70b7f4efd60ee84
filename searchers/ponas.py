"""PONAS: progressive one-shot search that builds an accuracy table (Huang & Chu, §3).

Two stages, as ask/tell:

1. **Meta training** (§3.2): one job trains the *meta network*, the largest block ``B_G``
   (kernel 7, expansion 6, squeeze-excite) in every layer, with the ``meta_train`` spec
   (paper: 50 epochs, batch 256, SGD momentum 0.9, wd 4e-5, lr 0.1 decayed 10x twice). The job
   asks for its weights back.
2. **Progressive fine-tuning** (§3.2, Fig. 1(b)): for layer ``l = 0..L-1`` the 12 candidates
   ``[B*_0 .. B*_{l-1}, B_i, B_G .. B_G]`` are asked together (one job each, so the workers run
   them in parallel). Each inherits the current supernet weights; the trainer crops the largest
   block's tensors to the candidate by name (leading channels, centre of the kernel). Each is
   fine-tuned with the ``finetune`` spec (paper: 3 epochs, lr 0.001, no decay), its validation
   accuracy is the table entry ``T[l, i]`` (Eq. 3), and a ``table_row`` event carries it to the
   store's ``accuracy_table`` as soon as it is measured.

Choices where the paper is ambiguous (tested in ``tests/test_ponas.py``):

* *What is fine-tuned.* The paper fine-tunes the supernet ``Â(l)`` (12 paths at layer ``l``)
  with FairNAS strict fairness: every step updates every candidate once on the same batch. Here
  each candidate is fine-tuned as its own network, whole (every layer, not only ``l``), from the
  same inherited weights, for the same steps on the same data order (all 12 jobs of a layer
  share one training seed). That gives every candidate the same updates budget the strict
  fairness rule guarantees, the same compute (12 forward/backward passes per batch), and runs on
  12 workers at once; the shared layers are not averaged across candidates.
* *How the supernet evolves.* After layer ``l`` the weights of its best candidate (its whole
  fine-tuned network) become the supernet for layer ``l + 1``: the paper's
  ``[B*_1 -> ... -> B*_l -> B_G ...]`` "with the parameters discovered" so far. Only the best
  candidate's weights are kept (memory: one extra network).
* *Ties* in a layer go to the lower choice index, so the result does not depend on the order
  in which workers finish.
* *A failed candidate* (OOM, diverged, failed) scores accuracy 0: the largest possible loss.
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
``state_dict`` keeps the stage, the layer, every measured row, the best blocks, the supernet
weights, the per-layer source weights and the pending jobs: a run killed mid-layer resumes at
that layer with the rows already measured kept (the coordinator reissues only the pending jobs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from searchers.base import Job, Result, Searcher, TrainSpec
from searchers.errors import NaswError
from searchers.specialize import layer_importance, loss_table_from_accuracy

STAGES = ("meta", "finetune", "done")
_SPEC_PARAMS = ("meta_train", "finetune")

#: §4.1 training details. "decay 10x at 20 and 40 epochs" is the trainer's ``step`` schedule
#: (10x at 50% and 75% of training: epochs 25 and 37.5 of 50) -- the closest it offers.
PAPER_META_TRAIN = {"epochs": 50, "batch_size": 256, "lr": 0.1, "momentum": 0.9,
                    "nesterov": False, "weight_decay": 4e-5, "schedule": "step"}
PAPER_FINETUNE = {"epochs": 3, "batch_size": 256, "lr": 0.001, "momentum": 0.9,
                  "nesterov": False, "weight_decay": 4e-5, "schedule": "constant",
                  "warmup_epochs": 0}


class PONASSearcher(Searcher):
    """PONAS over the ``mbconv`` space: meta network, then the table, one layer at a time."""

    name: ClassVar[str] = "ponas"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # the paper (ImageNet, 19 layers x 12 candidates): 1 + 19 * 12 = 229 jobs
        "ponas-paper": {"meta_train": PAPER_META_TRAIN, "finetune": PAPER_FINETUNE},
        # CIFAR-10 on one GPU: a shorter meta stage, one fine-tuning epoch per candidate
        "ponas-cifar": {
            "meta_train": {"epochs": 30, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
                           "nesterov": False, "weight_decay": 4e-5, "schedule": "step"},
            "finetune": {"epochs": 1, "batch_size": 128, "lr": 0.001, "momentum": 0.9,
                         "nesterov": False, "weight_decay": 4e-5, "schedule": "constant",
                         "warmup_epochs": 0},
        },
        # 8x8 digits on a CPU: 1 + 6 * 12 = 73 jobs of a few seconds each
        "ponas-digits": {
            "meta_train": {"epochs": 8, "batch_size": 64, "lr": 0.1, "momentum": 0.9,
                           "nesterov": False, "weight_decay": 4e-5, "schedule": "cosine"},
            "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01, "momentum": 0.9,
                         "nesterov": False, "weight_decay": 4e-5, "schedule": "constant",
                         "warmup_epochs": 0},
        },
    }

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """``meta_train`` / ``finetune``: TrainSpec fields laid over the run's ``train`` spec.

        Without a preset the meta network trains with the run's spec as written and each
        candidate is fine-tuned one epoch at the paper's lr 0.001 without decay.
        """
        return {"meta_train": {}, "finetune": {"epochs": 1, "lr": 0.001, "schedule": "constant",
                                               "warmup_epochs": 0}}

    def __init__(self, space: Any, constraints: Iterable[Any] = (), budget: int | None = None,
                 seed: int = 0, **kwargs: Any) -> None:
        for needed in ("largest_choice", "num_positions", "num_options", "cost_tables"):
            if not hasattr(space, needed):
                raise NaswError("space", getattr(space, "name", space), ["mbconv"],
                                hint="PONAS picks one of C blocks in each of L layers")
        self.num_layers = int(space.num_positions)
        self.num_choices = int(space.num_options)
        self.jobs_needed = 1 + self.num_layers * self.num_choices
        if budget is None:
            budget = self.jobs_needed
        super().__init__(space, constraints, budget=budget, seed=seed, **kwargs)
        if self.budget < self.jobs_needed:
            raise NaswError("budget", self.budget, f"at least {self.jobs_needed}",
                            hint=f"1 meta network + {self.num_layers} layers x "
                                 f"{self.num_choices} candidates fill the table")
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
        todo = [c for c in range(self.num_choices)
                if c not in self._asked_choices and c not in self.rows.get(layer, {})]
        jobs = []
        spec = self.finetune_spec.with_(seed=self.seed + 1 + layer)
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
        layer, choice = int(job.meta["layer"]), int(job.meta["choice"])
        if layer != self.layer:
            raise NaswError("job.meta.layer", layer, [self.layer], hint="a stale PONAS job")
        self._asked_choices.discard(choice)
        accuracy = float(result.accuracy) if result.ok else 0.0
        row = {"layer": layer, "choice": choice, "accuracy": accuracy,
               "val_loss": result.val_loss if result.ok else None, "status": result.status,
               "costs": self.block_costs(layer, choice), "job": job.id}
        self.rows.setdefault(layer, {})[choice] = row
        key = (accuracy, -choice)
        previous_best = self._layer_best
        if previous_best is None or key > (previous_best[0], -previous_best[1]):
            self._layer_best = (accuracy, choice)
            self._layer_best_weights = _cpu_weights(result.weights)
        best_accuracy = self._layer_best[0]
        # the new row, and every earlier row of the layer when the best moved (upserts)
        changed = (list(self.rows[layer].values())
                   if previous_best is not None and self._layer_best != previous_best
                   else [row])
        for item in sorted(changed, key=lambda r: r["choice"]):
            self.emit("table_row", self.n_told, {
                "layer": layer, "choice": item["choice"], "accuracy": item["accuracy"],
                "loss": best_accuracy - item["accuracy"], "costs": item["costs"],
                "status": item["status"]})
        if len(self.rows[layer]) == self.num_choices:
            self._finish_layer()

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
        """The supernet's architecture ``[B*_1 .. B*_L]`` once the table is complete (it is the
        last layer's best candidate), else the base rule over what was measured so far."""
        if self.stage == "done":
            last = self.rows[self.num_layers - 1][self.best_choices[-1]]
            for entry in reversed(self.history):
                if entry["id"] == last["job"]:
                    return entry
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
        state = super().state_dict()
        state.update({
            "stage": self.stage, "layer": self.layer, "meta_asked": self._meta_asked,
            "meta_accuracy": self.meta_accuracy, "best_choices": list(self.best_choices),
            "rows": {layer: dict(rows) for layer, rows in self.rows.items()},
            "supernet": self.supernet, "layer_sources": dict(self.layer_sources),
            "layer_best": self._layer_best, "layer_best_weights": self._layer_best_weights,
            "shape": [self.num_layers, self.num_choices],
        })
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if list(state.get("shape", [])) != [self.num_layers, self.num_choices]:
            raise NaswError("searcher_state.shape", state.get("shape"),
                            [[self.num_layers, self.num_choices]])
        if state["stage"] not in STAGES:
            raise NaswError("searcher_state.stage", state["stage"], STAGES)
        self.stage = state["stage"]
        self.layer = int(state["layer"])
        self._meta_asked = bool(state["meta_asked"])
        self.meta_accuracy = state["meta_accuracy"]
        self.best_choices = [int(c) for c in state["best_choices"]]
        self.rows = {int(layer): {int(c): dict(r) for c, r in rows.items()}
                     for layer, rows in state["rows"].items()}
        self.supernet = state["supernet"]
        self.layer_sources = {int(k): v for k, v in state["layer_sources"].items()}
        best = state["layer_best"]
        self._layer_best = None if best is None else (float(best[0]), int(best[1]))
        self._layer_best_weights = state["layer_best_weights"]
        # in-flight jobs of the current layer are the checkpoint's pending ones (re-issued)
        self._asked_choices = {int(job.meta["choice"]) for job in self._pending.values()
                               if job.meta.get("stage") == "finetune"
                               and int(job.meta["layer"]) == self.layer}


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


__all__ = ["PAPER_FINETUNE", "PAPER_META_TRAIN", "PONASSearcher", "STAGES"]
