"""PNAS §5.4's training regularisers on the cell space take effect (tiny digits nets, CPU).

Each test fails when its regulariser is disabled: an auxiliary loss that is not added leaves
the auxiliary head's weights at their initialisation; a drop-path the trainer never raises
leaves every forward pass deterministic; ``train_on_val`` that is ignored trains on the
training split alone.
"""

from __future__ import annotations

import pytest
import torch

from searchers.base import Job, TrainSpec
from searchers.data import load_dataset
from searchers.errors import NaswError
from searchers.spaces import get_space
from searchers.spaces._cell_modules import drop_path
from searchers.training import (
    SPLIT_SEED,
    build_model,
    make_optimizer,
    train_one_epoch,
    training_split,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CELL = {"space": "cell", "preset": "pnas-digits", "N": 1, "F": 4,
        "blocks": [[0, 1, "sep3x3", "max3x3"], [2, 1, "identity", "avg3x3"]]}


def job(**train: object) -> Job:
    spec = TrainSpec(epochs=1, batch_size=32, max_batches=4, augment=False, **train)
    return Job(id=0, genotype=CELL, train=spec)


def trained(spec_job: Job) -> torch.nn.Module:
    """One short epoch of ``spec_job`` from a fixed initialisation."""
    space = get_space("cell", "pnas-digits")
    torch.manual_seed(0)
    model = build_model(space, spec_job)
    bundle = load_dataset("digits", seed=SPLIT_SEED)
    from searchers.data import DeviceLoader

    loader = DeviceLoader.for_training(training_split(bundle, spec_job.train), 32, seed=0,
                                       augment=False, max_batches=4)
    train_one_epoch(model, loader, make_optimizer(model, spec_job.train), spec_job.train,
                    torch.device("cpu"), 0)
    return model


def test_aux_head_is_trained_by_its_weighted_loss() -> None:
    space = get_space("cell", "pnas-digits")
    torch.manual_seed(0)
    initial = build_model(space, job(aux_weight=0.4))
    assert initial.aux_head is not None and initial.aux_cell == 1  # before the 2nd reduction
    initial.train()
    logits, aux = initial(torch.randn(3, 1, 8, 8))
    assert logits.shape == aux.shape == (3, 10)
    assert initial.eval()(torch.randn(3, 1, 8, 8)).shape == (3, 10)  # eval: logits only
    model = trained(job(aux_weight=0.4))
    moved = (model.aux_head.classifier.weight - initial.aux_head.classifier.weight).abs().max()
    assert moved > 1e-4
    # the auxiliary loss also reaches the trunk: same seed and data, different weights
    plain = trained(job())
    assert plain.aux_head is None
    assert not torch.allclose(model.cells[0].ops[0][0][1].weight,
                              plain.cells[0].ops[0][0][1].weight)


def test_drop_path_zeroes_whole_samples_at_the_rate_asked() -> None:
    torch.manual_seed(0)
    out = drop_path(torch.ones(20000, 2, 1, 1), torch.tensor(0.3))
    dropped = (out[:, 0] == 0).float().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.02)
    assert torch.equal(out[:, 0] == 0, out[:, 1] == 0)  # a whole sample, every channel
    assert out.mean().item() == pytest.approx(1.0, abs=0.03)  # rescaled by 1 / keep


def test_drop_path_makes_training_forward_passes_stochastic_and_ramps_up() -> None:
    space = get_space("cell", "pnas-digits")
    torch.manual_seed(0)
    model = build_model(space, job(drop_path=0.4)).train()
    x = torch.randn(8, 1, 8, 8)
    assert torch.equal(model(x), model(x))  # drop-path off until the trainer sets it
    model.set_drop_path(0.4)
    assert not torch.equal(model(x), model(x))
    assert torch.equal(model.eval()(x), model(x))  # never at evaluation
    # the trainer raises it linearly over the steps: after one of one epochs, near the end
    after = trained(job(drop_path=0.4))
    assert after.drop_path_prob.item() == pytest.approx(0.4 * 3 / 4)
    assert trained(job()).drop_path_prob.item() == 0.0
    assert "drop_path_prob" not in after.state_dict()  # not a weight: checkpoints unchanged


def test_train_on_val_trains_on_both_splits() -> None:
    bundle = load_dataset("digits", seed=SPLIT_SEED)
    merged = training_split(bundle, TrainSpec(train_on_val=True))
    assert len(merged.x_train) == len(bundle.x_train) + len(bundle.x_val)
    assert torch.equal(merged.y_train[len(bundle.y_train):], bundle.y_val)
    assert training_split(bundle, TrainSpec()) is bundle


@pytest.mark.parametrize(("train", "field"), [
    ({"aux_weight": -1.0}, "train.aux_weight"),
    ({"drop_path": 1.0}, "train.drop_path"),
])
def test_bad_regularizers_name_the_field(train: dict, field: str) -> None:
    with pytest.raises(NaswError) as info:
        build_model(get_space("cell", "pnas-digits"), job(**train))
    assert info.value.field == field


def test_spaces_without_the_regularizers_refuse_them() -> None:
    space = get_space("mbconv", "ponas-digits")
    genotype = space.sample(__import__("numpy").random.default_rng(0))
    for train, field in (({"aux_weight": 0.4}, "train.aux_weight"),
                         ({"drop_path": 0.2}, "train.drop_path")):
        spec_job = Job(id=0, genotype=genotype, train=TrainSpec(**train))
        with pytest.raises(NaswError) as info:
            build_model(space, spec_job)
        assert info.value.field == field
