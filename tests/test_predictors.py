"""PNAS surrogate predictors: rank correlation, determinism, persistence, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from searchers.errors import NaswError
from searchers.predictors import (
    PREDICTOR_KINDS,
    PredictorConfig,
    SurrogatePredictor,
    kendall,
    ranking_quality,
    spearman,
)

N_INPUTS, N_OPS = 6, 8  # PNAS with B = 5: two cell inputs + four earlier blocks; 8 operators
FAST = {"embedding_dim": 16, "hidden_dim": 16, "ensemble_size": 3, "epochs": 30,
        "batch_size": 32}


def random_cell(rng: np.random.Generator, blocks: int) -> np.ndarray:
    """A (blocks, 4) cell: block b reads inputs 0..b+1 (two cell inputs, earlier blocks)."""
    return np.array([[rng.integers(0, 2 + b), rng.integers(0, 2 + b), rng.integers(0, N_OPS),
                      rng.integers(0, N_OPS)] for b in range(blocks)])


class KnownRanking:
    """A synthetic accuracy with a known ranking: per-token effects plus one interaction."""

    def __init__(self, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.inputs = rng.normal(size=N_INPUTS)
        self.ops = rng.normal(size=N_OPS)
        self.pairs = rng.normal(scale=0.5, size=(N_OPS, N_OPS))

    def __call__(self, cell: np.ndarray) -> float:
        score = np.mean([self.inputs[a] + self.inputs[b] + self.ops[c] + self.ops[d]
                         + self.pairs[c, d] for a, b, c, d in cell])
        return float(1.0 / (1.0 + np.exp(-(0.4 * score + 0.5))))


def dataset(seed: int, sizes: dict[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [random_cell(rng, blocks) for blocks, count in sizes.items() for _ in range(count)]


@pytest.mark.parametrize("kind", ["mlp-ensemble", "lstm"])
def test_predictor_learns_a_known_ranking_and_extrapolates_one_block(kind: str) -> None:
    """Fit on 1- and 2-block cells (as after PNAS level 2), rank unseen 3-block cells."""
    truth = KnownRanking()
    train = dataset(0, {1: 136, 2: 64})
    held_out = dataset(1, {3: 300})
    predictor = SurrogatePredictor(N_INPUTS, N_OPS, PredictorConfig(kind=kind, **FAST), seed=0)
    predictor.fit(train, [truth(c) for c in train])
    rho = spearman(predictor.predict(held_out), [truth(c) for c in held_out])
    assert rho > 0.5, f"{kind}: held-out Spearman {rho:.3f}"
    assert spearman(predictor.predict(train), [truth(c) for c in train]) > rho - 0.2


def test_predictor_is_deterministic_given_the_seed_and_persists() -> None:
    truth = KnownRanking()
    train = dataset(2, {1: 60, 2: 20})
    probe = dataset(3, {2: 40})
    config = PredictorConfig(kind="mlp-ensemble", **{**FAST, "epochs": 5})

    def fitted(seed: int) -> SurrogatePredictor:
        predictor = SurrogatePredictor(N_INPUTS, N_OPS, config, seed=seed)
        predictor.fit(train, [truth(c) for c in train])
        return predictor

    first, again, other = fitted(0), fitted(0), fitted(1)
    np.testing.assert_array_equal(first.predict(probe), again.predict(probe))
    assert not np.allclose(first.predict(probe), other.predict(probe))
    restored = SurrogatePredictor(1, 1)
    restored.load_state_dict(first.state_dict())
    np.testing.assert_array_equal(restored.predict(probe), first.predict(probe))
    # one (n, b, 4) array and a list of (b, 4) arrays give the same predictions
    np.testing.assert_allclose(first.predict(np.stack(probe)), first.predict(probe))


def test_ensemble_members_see_different_four_fifths_of_the_data() -> None:
    """The paper fits each of 5 members from scratch on 4/5 of the data: members differ."""
    truth = KnownRanking()
    train = dataset(4, {1: 50})
    predictor = SurrogatePredictor(N_INPUTS, N_OPS, PredictorConfig(kind="mlp-ensemble",
                                                                    **{**FAST, "epochs": 3}))
    predictor.fit(train, [truth(c) for c in train])
    assert len(predictor.members) == 3
    outputs = [m(__import__("torch").from_numpy(np.stack(train))).detach().numpy()
               for m in predictor.members]
    assert not np.allclose(outputs[0], outputs[1])


def test_output_bias_starts_at_the_mean_target() -> None:
    """The paper's bias 1.8 (sigmoid 0.86, the mean b = 1 accuracy), generalised to
    logit(mean target): on constant targets the fit starts, and stays, near that value."""
    cells = dataset(5, {1: 40})
    for mean in (0.86, 0.3):
        predictor = SurrogatePredictor(N_INPUTS, N_OPS, PredictorConfig(
            kind="mlp", **{**FAST, "epochs": 1}))
        predictor.fit(cells, [mean] * len(cells))
        assert np.all(np.abs(predictor.predict(cells) - mean) < 0.05)


def test_paper_defaults() -> None:
    config = PredictorConfig()
    assert config.kind == "mlp-ensemble" and config.members == 5
    assert (config.embedding_dim, config.hidden_dim) == (100, 100)
    assert (config.lr_first, config.lr, config.init_range) == (0.01, 0.002, 0.1)
    assert set(PREDICTOR_KINDS) == {"mlp", "lstm", "mlp-ensemble", "lstm-ensemble"}
    assert PredictorConfig(kind="lstm").members == 1


def test_rank_correlations_are_scipys() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1.0], [2.0]))
    # ties take average ranks: x ranks (0, 1.5, 1.5, 3), y ranks (0, 2, 1, 3) -> sqrt(0.9)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    # tau-b: 5 concordant, 0 discordant, one tie in x among 6 pairs -> 5 / sqrt(5 * 6)
    assert kendall([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(5 / math.sqrt(30))
    assert kendall([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall([1, 2, 3], [5, 5, 5]))


def _cell_space_ranking(rank: str = "predictor") -> dict[str, float]:
    """PNAS's Algorithm 2 on the digits cell space with the synthetic objective: fit on every
    one-block cell and 64 two-block cells (the data after level 2 of the search), rank 300
    unseen three-block cells. ``rank="random"`` is the ablation: the predictor's ranking is
    replaced by random numbers."""
    from searchers.objectives import synthetic_accuracy
    from searchers.spaces import get_space
    from searchers.spaces.cell import OP_INDEX

    space = get_space("cell", "pnas-digits")
    rng = np.random.default_rng(0)

    def encode(g: dict) -> np.ndarray:
        return np.array([[b[0], b[1], OP_INDEX[b[2]], OP_INDEX[b[3]]] for b in g["blocks"]])

    def cells(blocks: int, count: int) -> list[dict]:
        out: list[dict] = []
        while len(out) < count:
            g = space.sample(rng)
            if len(g["blocks"]) == blocks:
                out.append(g)
        return out

    train = space.enumerate_one_block() + cells(2, 64)
    held_out = cells(3, 300)
    predictor = SurrogatePredictor(N_INPUTS, N_OPS, PredictorConfig(**FAST), seed=0)
    predictor.fit([encode(g) for g in train], [synthetic_accuracy(g) for g in train])
    predicted = predictor.predict([encode(g) for g in held_out])
    if rank == "random":
        predicted = np.random.default_rng(1).random(len(held_out))
    return ranking_quality(predicted, [synthetic_accuracy(g) for g in held_out],
                           [space.costs(g)["params"] for g in held_out])


def test_predictor_ranks_unseen_larger_cells_far_better_than_random() -> None:
    """rho~_3 of the paper's Table 1, measured with both baselines on the same cells.

    Measured (seed 0): predictor Spearman 0.61 / Kendall 0.42, params-only 0.76 / 0.55,
    random 0.05 / 0.03. The synthetic objective makes capacity its largest single factor, so
    ranking by parameter count is a strong free baseline here that the token-only predictor
    does not reach (docs/pnas.md). Replacing the predictor by random numbers fails this test.
    """
    quality = _cell_space_ranking()
    print({k: round(v, 3) for k, v in quality.items()})
    assert quality["spearman"] > 0.45 and quality["kendall"] > 0.3
    assert quality["spearman"] > quality["random_spearman"] + 0.35
    assert quality["kendall"] > quality["random_kendall"] + 0.25
    assert abs(quality["random_spearman"]) < 0.15  # the baseline is what it claims to be
    assert quality["params_spearman"] > 0.5  # the capacity baseline sees capacity


def test_bad_input_names_the_field() -> None:
    with pytest.raises(NaswError, match="searcher.params.predictor.*mlp-ensemble"):
        PredictorConfig(kind="gp")
    with pytest.raises(NaswError, match="predictor_epochs"):
        PredictorConfig(epochs=0)
    predictor = SurrogatePredictor(N_INPUTS, N_OPS, PredictorConfig(kind="mlp", **FAST))
    with pytest.raises(NaswError, match="fit"):
        predictor.predict([np.zeros((1, 4), dtype=int)])
    with pytest.raises(NaswError, match="predictor.cell.ops"):
        predictor.fit([np.array([[0, 1, 2, 9]])], [0.5])
    with pytest.raises(NaswError, match="shape"):
        predictor.fit([np.zeros((2, 3), dtype=int)], [0.5])
