"""PNASNet-5 at the sizes the PNAS paper publishes (Liu et al. 2018, Tables 3-5).

The cell is PNASNet-5 from the paper's Fig. 1 and the released code (TF-slim
``nets/nasnet/pnasnet.py``, ``PNasNetNormalCell``: ``hiddenstate_indices`` [1, 1, 0, 0, 0, 0, 4,
0, 1, 0] with index 0 = H^{c-1}, 1 = H^{c-2}, translated to our grammar where 0 = H^{c-2}). Each
published figure must be met within 3%, by the analytic cost model and by the built network
(its parameters counted; the large one is built on the meta device, which allocates nothing).
"""

from __future__ import annotations

import pytest
import torch

from searchers.costs import measure
from searchers.spaces import get_space

PNASNET_5 = [
    [0, 0, "sep5x5", "max3x3"],
    [1, 1, "sep7x7", "max3x3"],
    [1, 1, "sep5x5", "sep3x3"],
    [4, 1, "sep3x3", "max3x3"],  # block 2 (input 4) through sep3x3
    [0, 1, "sep3x3", "identity"],
]

#: (preset, N, F, published params, published Mult-Adds or None): the paper's figures.
PUBLISHED = [
    ("pnas-cifar", 3, 48, 3.2e6, None),                   # Table 3
    ("pnas-imagenet-mobile", 3, 54, 5.1e6, 588e6),        # Table 4
    ("pnas-imagenet-large", 4, 216, 86.1e6, 25.0e9),      # Table 5
]
TOLERANCE = 0.03


def pnasnet_5(preset: str, n: int, f: int) -> dict:
    return {"space": "cell", "preset": preset, "blocks": PNASNET_5, "N": n, "F": f}


@pytest.mark.parametrize(("preset", "n", "f", "params", "madds"), PUBLISHED,
                         ids=[p[0] for p in PUBLISHED])
def test_published_sizes_by_the_cost_model(preset: str, n: int, f: int, params: float,
                                           madds: float | None) -> None:
    space = get_space("cell", preset)
    costs = space.costs(pnasnet_5(preset, n, f))
    print(f"\n{preset} N={n} F={f}: params {costs['params'] / 1e6:.2f}M (paper "
          f"{params / 1e6:.1f}M), madds {costs['madds'] / 1e6:.0f}M"
          + (f" (paper {madds / 1e6:.0f}M)" if madds else ""))
    assert costs["params"] == pytest.approx(params, rel=TOLERANCE)
    if madds is not None:
        assert costs["madds"] == pytest.approx(madds, rel=TOLERANCE)


@pytest.mark.parametrize(("preset", "n", "f", "params", "madds"), PUBLISHED,
                         ids=[p[0] for p in PUBLISHED])
def test_published_sizes_by_counting_the_built_network(preset: str, n: int, f: int,
                                                       params: float,
                                                       madds: float | None) -> None:
    space = get_space("cell", preset)
    genotype = pnasnet_5(preset, n, f)
    with torch.device("meta"):
        model = space.build(genotype)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == pytest.approx(params, rel=TOLERANCE)
    assert counted == space.costs(genotype)["params"]


def test_large_network_traced_on_meta_matches_the_cost_model_exactly() -> None:
    """The tracer runs the 331x331 forward on the meta device (shapes only)."""
    preset, n, f, _, madds = PUBLISHED[2]
    space = get_space("cell", preset)
    genotype = pnasnet_5(preset, n, f)
    with torch.device("meta"):
        model = space.build(genotype)
    traced = measure(model, space.input_shape)
    assert traced == space.costs(genotype)
    assert traced["madds"] == pytest.approx(madds, rel=TOLERANCE)


def test_the_search_network_has_six_cells() -> None:
    """PNAS §5.1 searches with N = 2: 3N = 6 cells (not NASNet's 3N + 2 = 8)."""
    space = get_space("cell", "pnas-cifar")
    assert len(space.network(pnasnet_5("pnas-cifar", 2, 24))["cells"]) == 6


def test_the_aux_head_is_not_counted() -> None:
    """The published counts are of the inference network: the auxiliary head is extra."""
    space = get_space("cell", "pnas-cifar")
    genotype = pnasnet_5("pnas-cifar", 3, 48)
    with torch.device("meta"):
        plain, with_aux = space.build(genotype), space.build(genotype, aux_head=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(plain) == space.costs(genotype)["params"] < count(with_aux)
