"""Surrogate accuracy predictors for PNAS (Liu et al. 2018, §4.2 and §5.1).

A cell of ``b`` blocks is given to a predictor as an integer array of shape ``(b, 4)``: per
block the indices of ``(in1, in2, op1, op2)``, the two inputs in an *input* vocabulary and the two
operators in an *operator* vocabulary (the paper's "shared embedding for I1, I2" and "another
shared embedding for O1, O2"). Cells of different sizes may be mixed: the predictors handle
variable length, which is what lets PNAS train on b-block cells and rank (b+1)-block ones.

Two models, as in the paper, both regressing the validation accuracy through a sigmoid and
trained with an L1 loss and Adam:

* ``lstm`` -- an LSTM reads the ``4b`` embedded tokens; its final hidden state goes through a
  fully-connected layer and a sigmoid.
* ``mlp`` -- each token is embedded, the four embeddings of a block are concatenated (``4D``),
  averaged over blocks, and passed through two fully-connected ReLU layers and an output layer.

``-ensemble`` variants fit ``ensemble_size`` copies, each from scratch on a different 4/5 of the
data (``k``-fold complement), and average their predictions; the paper found this reduced
variance and its best searcher used ``mlp-ensemble``, our default.

Choices where the paper is silent (each one tested or documented in ``docs/pnas.md``):

* epochs and batch size of the predictor fit (``epochs``, ``batch_size``): not given; we default
  to 60 epochs of mini-batches of 64, bucketed by cell size so no padding is needed;
* the output bias: the paper sets 1.8 (sigmoid 0.86, "the mean observed accuracy of all b = 1
  models" on CIFAR-10). We generalise the stated intent: the bias starts at ``logit(mean target)``
  of the data being fitted, which equals the paper's 1.8 when the mean is 0.86 and keeps
  digits or constrained rewards (means far from 0.86) from starting in a saturated region;
* every fit is from scratch (also for the single models), so the predictor at level ``b`` is a
  pure function of the data and the seed -- a resumed search refits the same weights.

Everything is deterministic given the seed: weights come from a private ``torch`` generator
state (``torch.random.fork_rng``), folds and mini-batch orders from ``numpy`` generators seeded
with ``(seed, member)``, and the training data are sorted by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from searchers.errors import NaswError

PREDICTOR_KINDS = ("mlp-ensemble", "lstm", "mlp", "lstm-ensemble")


@dataclass(frozen=True)
class PredictorConfig:
    """Hyper-parameters of a surrogate predictor; defaults are the paper's (§5.1) where given."""

    kind: str = "mlp-ensemble"
    embedding_dim: int = 100
    hidden_dim: int = 100
    ensemble_size: int = 5
    epochs: int = 60
    batch_size: int = 64
    lr_first: float = 0.01  # Adam lr when every cell seen so far has one block (the b = 1 level)
    lr: float = 0.002  # Adam lr for all following levels
    init_range: float = 0.1  # embeddings ~ U(-0.1, 0.1)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in PREDICTOR_KINDS:
            raise NaswError("searcher.params.predictor", self.kind, PREDICTOR_KINDS)
        for name in ("embedding_dim", "hidden_dim", "ensemble_size", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NaswError(f"searcher.params.predictor_{name}", value, "a positive integer")
        for name in ("lr_first", "lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise NaswError(f"searcher.params.predictor_{name}", value, "a positive number")

    @property
    def architecture(self) -> str:
        return self.kind.split("-")[0]

    @property
    def members(self) -> int:
        return self.ensemble_size if self.kind.endswith("-ensemble") else 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["extra"] = dict(self.extra)
        return data


class _Embedder(nn.Module):
    """Two embedding tables: one shared by the inputs, one shared by the operators."""

    def __init__(self, n_inputs: int, n_ops: int, dim: int, init_range: float) -> None:
        super().__init__()
        self.inputs = nn.Embedding(n_inputs, dim)
        self.ops = nn.Embedding(n_ops, dim)
        nn.init.uniform_(self.inputs.weight, -init_range, init_range)
        nn.init.uniform_(self.ops.weight, -init_range, init_range)

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        """(batch, b, 4) indices -> (batch, b, 4, dim) embeddings, token order in1 in2 op1 op2."""
        inputs = self.inputs(cells[..., :2])
        ops = self.ops(cells[..., 2:])
        return torch.cat([inputs, ops], dim=-2)


class LSTMRegressor(nn.Module):
    """LSTM over the ``4b`` block tokens; final hidden state -> linear -> sigmoid."""

    def __init__(self, n_inputs: int, n_ops: int, config: PredictorConfig) -> None:
        super().__init__()
        self.embed = _Embedder(n_inputs, n_ops, config.embedding_dim, config.init_range)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_dim, batch_first=True)
        self.out = nn.Linear(config.hidden_dim, 1)

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(cells)  # (batch, b, 4, D)
        sequence = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])  # (batch, 4b, D)
        _, (hidden, _) = self.lstm(sequence)
        return torch.sigmoid(self.out(hidden[-1]).squeeze(-1))


class MLPRegressor(nn.Module):
    """Block vectors (4 concatenated embeddings), mean over blocks -> 2 ReLU layers -> sigmoid."""

    def __init__(self, n_inputs: int, n_ops: int, config: PredictorConfig) -> None:
        super().__init__()
        self.embed = _Embedder(n_inputs, n_ops, config.embedding_dim, config.init_range)
        hidden = config.hidden_dim
        self.body = nn.Sequential(
            nn.Linear(4 * config.embedding_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )
        self.out = nn.Linear(hidden, 1)

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(cells)  # (batch, b, 4, D)
        blocks = tokens.reshape(tokens.shape[0], tokens.shape[1], -1)  # (batch, b, 4D)
        return torch.sigmoid(self.out(self.body(blocks.mean(dim=1))).squeeze(-1))


_ARCHITECTURES: dict[str, type[nn.Module]] = {"lstm": LSTMRegressor, "mlp": MLPRegressor}


def _rank_statistic(name: str, predicted: Sequence[float], actual: Sequence[float]) -> float:
    """scipy's rank correlation ``name`` (ties get average ranks); NaN when undefined (fewer
    than 2 points, a constant side, or non-finite values)."""
    import warnings

    from scipy import stats

    x = np.asarray(predicted, dtype=float)
    y = np.asarray(actual, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        return math.nan
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.ptp(x) == 0 \
            or np.ptp(y) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = (stats.spearmanr(x, y) if name == "spearman" else stats.kendalltau(x, y))[0]
    return float(value)


def spearman(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Spearman rank correlation (``scipy.stats.spearmanr``); NaN when undefined. The paper's
    Table 1 / Fig. 3 measure."""
    return _rank_statistic("spearman", predicted, actual)


def kendall(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``); NaN when undefined."""
    return _rank_statistic("kendall", predicted, actual)


def ranking_quality(predicted: Sequence[float], actual: Sequence[float],
                    params: Sequence[float], seed: int = 0) -> dict[str, float]:
    """How well ``predicted`` ranks ``actual``, next to two baselines on the same cells:
    ranking by parameter count alone (bigger is better, the obvious free predictor) and a
    random ranking (a seeded permutation; expected 0).

    Returns ``spearman``, ``kendall``, ``params_spearman``, ``params_kendall``,
    ``random_spearman``, ``random_kendall`` (NaN where undefined).
    """
    noise = np.random.default_rng(seed).permutation(len(actual)).astype(float)
    out: dict[str, float] = {}
    for prefix, ranking in (("", predicted), ("params_", params), ("random_", noise)):
        out[f"{prefix}spearman"] = spearman(ranking, actual)
        out[f"{prefix}kendall"] = kendall(ranking, actual)
    return out


def _logit(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


class SurrogatePredictor:
    """An ensemble (possibly of one) of LSTM or MLP regressors over encoded cells.

    ``fit`` always starts from fresh weights; ``predict`` averages the members. Targets must lie
    in [0, 1] (accuracies, or EPNAS rewards, which are accuracies scaled down).
    """

    def __init__(self, n_inputs: int, n_ops: int, config: PredictorConfig | None = None,
                 seed: int = 0) -> None:
        self.n_inputs = int(n_inputs)
        self.n_ops = int(n_ops)
        self.config = config or PredictorConfig()
        self.seed = int(seed)
        self.members: list[nn.Module] = []
        self.fit_count = 0

    # -- training -------------------------------------------------------------------------
    def fit(self, cells: Sequence[np.ndarray], targets: Sequence[float],
            first_level: bool | None = None, seed: int | None = None) -> None:
        """Fit from scratch on ``cells`` (each ``(b, 4)`` ints) and ``targets`` in [0, 1].

        ``first_level`` selects the paper's lr (0.01 for b = 1, 0.002 after); by default it is
        true when every cell has one block. ``seed`` varies the fit (the searcher passes
        ``(seed, level)``-derived values); default: the predictor's seed and fit count.
        """
        if len(cells) != len(targets) or not len(cells):
            raise NaswError("predictor.fit", f"{len(cells)} cells / {len(targets)} targets",
                            "as many targets as cells, at least one")
        encoded = [self._check(c) for c in cells]
        y = np.asarray(targets, dtype=np.float32)
        if not np.all(np.isfinite(y)):
            raise NaswError("predictor.targets", "non-finite", "finite accuracies in [0, 1]")
        if first_level is None:
            first_level = all(c.shape[0] == 1 for c in encoded)
        lr = self.config.lr_first if first_level else self.config.lr
        fit_seed = self.seed * 1_000_003 + self.fit_count if seed is None else int(seed)
        self.fit_count += 1
        n = len(encoded)
        members = self.config.members
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny models: one thread is faster and avoids contention
        try:
            self._fit_members(encoded, y, lr, fit_seed, n, members)
        finally:
            torch.set_num_threads(threads)

    def _fit_members(self, encoded: list[np.ndarray], y: np.ndarray, lr: float, fit_seed: int,
                     n: int, members: int) -> None:
        folds = np.random.default_rng([fit_seed, 7]).permutation(n) % members
        self.members = []
        for member in range(members):
            train_idx = np.flatnonzero(folds != member) if members > 1 and n >= members else \
                np.arange(n)
            self.members.append(self._fit_member([encoded[i] for i in train_idx], y[train_idx],
                                                 lr, fit_seed, member))

    def _fit_member(self, cells: list[np.ndarray], y: np.ndarray, lr: float, fit_seed: int,
                    member: int) -> nn.Module:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(np.random.SeedSequence([fit_seed, member]).generate_state(1)[0])
            model = _ARCHITECTURES[cfg.architecture](self.n_inputs, self.n_ops, cfg)
        with torch.no_grad():
            model.out.bias.fill_(_logit(float(y.mean())))
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        buckets = _bucket(cells, y)
        rng = np.random.default_rng([fit_seed, member, 11])
        model.train()
        for _ in range(cfg.epochs):
            batches = []
            for x_bucket, y_bucket in buckets:
                order = rng.permutation(len(y_bucket))
                for start in range(0, len(order), cfg.batch_size):
                    idx = torch.from_numpy(order[start:start + cfg.batch_size])
                    batches.append((x_bucket[idx], y_bucket[idx]))
            for batch in rng.permutation(len(batches)):
                x_batch, y_batch = batches[batch]
                optimizer.zero_grad(set_to_none=True)
                loss = (model(x_batch) - y_batch).abs().mean()
                loss.backward()
                optimizer.step()
        model.eval()
        return model

    # -- inference ------------------------------------------------------------------------
    def predict(self, cells: Sequence[np.ndarray] | np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Mean prediction of the members for each cell (order kept); needs a prior ``fit``.

        ``cells`` is a list of ``(b, 4)`` arrays (sizes may differ) or one ``(n, b, 4)`` array.
        """
        if not self.members:
            raise NaswError("predictor", "unfitted", hint="call fit() before predict()")
        groups: list[tuple[np.ndarray, torch.Tensor]] = []
        if isinstance(cells, np.ndarray) and cells.ndim == 3:  # one size: check once, no copy
            self._check(cells.reshape(-1, 4))
            groups.append((np.arange(len(cells)), torch.from_numpy(
                np.ascontiguousarray(cells, dtype=np.int64))))
        else:
            encoded = [self._check(c) for c in cells]
            by_length: dict[int, list[int]] = {}
            for i, c in enumerate(encoded):
                by_length.setdefault(c.shape[0], []).append(i)
            for indices in by_length.values():
                groups.append((np.asarray(indices), torch.from_numpy(
                    np.stack([encoded[i] for i in indices]))))
        result = np.zeros(sum(len(g[0]) for g in groups), dtype=np.float64)
        threads = torch.get_num_threads()
        # below ~10^5 cells thread start-up and contention cost more than they save
        torch.set_num_threads(threads if len(result) >= 100_000 else 1)
        try:
            with torch.no_grad():
                for indices, stacked in groups:
                    for start in range(0, len(indices), chunk):
                        x = stacked[start:start + chunk]
                        mean = sum(m(x).double() for m in self.members) / len(self.members)
                        result[indices[start:start + chunk]] = mean.numpy()
        finally:
            torch.set_num_threads(threads)
        return result

    def _check(self, cell: np.ndarray) -> np.ndarray:
        array = np.asarray(cell, dtype=np.int64)
        if array.ndim != 2 or array.shape[1] != 4 or array.shape[0] < 1:
            raise NaswError("predictor.cell", array.shape, "an array of shape (blocks, 4)")
        if array[:, :2].min() < 0 or array[:, :2].max() >= self.n_inputs:
            raise NaswError("predictor.cell.inputs", array[:, :2].tolist(),
                            f"indices 0..{self.n_inputs - 1}")
        if array[:, 2:].min() < 0 or array[:, 2:].max() >= self.n_ops:
            raise NaswError("predictor.cell.ops", array[:, 2:].tolist(),
                            f"indices 0..{self.n_ops - 1}")
        return array

    # -- persistence ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "n_inputs": self.n_inputs, "n_ops": self.n_ops, "config": self.config.to_dict(),
            "seed": self.seed, "fit_count": self.fit_count,
            "members": [{k: v.detach().clone() for k, v in m.state_dict().items()}
                        for m in self.members],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.n_inputs = int(state["n_inputs"])
        self.n_ops = int(state["n_ops"])
        self.config = PredictorConfig(**state["config"])
        self.seed = int(state["seed"])
        self.fit_count = int(state["fit_count"])
        self.members = []
        for weights in state["members"]:
            model = _ARCHITECTURES[self.config.architecture](self.n_inputs, self.n_ops,
                                                             self.config)
            model.load_state_dict(weights)
            model.eval()
            self.members.append(model)


def _bucket(cells: list[np.ndarray], y: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Group cells by block count so mini-batches need no padding (deterministic order)."""
    by_length: dict[int, list[int]] = {}
    for i, c in enumerate(cells):
        by_length.setdefault(c.shape[0], []).append(i)
    buckets = []
    for length in sorted(by_length):
        indices = by_length[length]
        buckets.append((torch.from_numpy(np.stack([cells[i] for i in indices])),
                        torch.from_numpy(y[indices])))
    return buckets


__all__ = ["PREDICTOR_KINDS", "LSTMRegressor", "MLPRegressor", "PredictorConfig",
           "SurrogatePredictor", "kendall", "ranking_quality", "spearman"]
