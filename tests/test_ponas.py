"""PONAS searcher: meta network, progressive fine-tuning, accuracy table, resume."""

from __future__ import annotations

import numpy as np
import pytest

from searchers import get_searcher
from searchers.base import Result
from searchers.errors import NaswError
from searchers.objectives import synthetic_result
from searchers.ponas import PAPER_FINETUNE, PAPER_META_TRAIN, PONASSearcher
from searchers.spaces import get_space
from searchers.spaces.mbconv import largest_choice
from workbench.store import decode_state, encode_state


@pytest.fixture
def space():
    return get_space("mbconv", preset="ponas-digits")


def drive(searcher, evaluate=synthetic_result, batch=12, stop=None):
    """Ask/tell until done (or until ``stop(searcher)``); returns every job asked."""
    asked = []
    while not searcher.done():
        jobs = searcher.ask(batch)
        assert jobs, "PONAS must always have work while not done (nothing else is pending)"
        asked.append(jobs)
        for job in jobs:
            if stop is not None and stop(searcher):
                return asked
            searcher.tell(job, evaluate(job))
    return asked


def test_meta_network_then_12_candidates_per_layer(space) -> None:
    searcher = get_searcher("ponas", space=space, preset="ponas-digits", seed=3,
                             stage2="per-candidate")
    L = space.num_positions
    batches = drive(searcher)
    assert [len(b) for b in batches] == [1] + [12] * L  # each layer's 12 asked as one batch
    meta = batches[0][0]
    assert meta.genotype["choices"] == [largest_choice()] * L == [11] * L
    assert meta.return_weights and meta.inherit is None and meta.train.epochs == 8
    for layer, jobs in enumerate(batches[1:]):
        assert sorted(j.meta["choice"] for j in jobs) == list(range(12))
        assert {j.train.seed for j in jobs} == {3 + 1 + layer}  # same data order for all 12
        assert all(j.train.lr == 0.01 and j.train.epochs == 1 for j in jobs)
        for job in jobs:
            choices = job.genotype["choices"]
            assert choices[:layer] == searcher.best_choices[:layer]
            assert choices[layer] == job.meta["choice"]
            assert choices[layer + 1:] == [11] * (L - layer - 1)
    accuracy = searcher.accuracy_matrix()
    assert accuracy.shape == (L, 12) and np.isfinite(accuracy).all()
    assert searcher.best_choices == list(accuracy.argmax(axis=1))
    loss = searcher.loss_table()
    np.testing.assert_allclose(loss, accuracy.max(axis=1, keepdims=True) - accuracy)
    assert (loss >= 0).all() and np.allclose(loss.min(axis=1), 0)
    np.testing.assert_allclose(searcher.importance(), loss.max(axis=1))
    assert searcher.best()["genotype"]["choices"] == searcher.best_choices
    events = searcher.pop_events()
    kinds = [e.kind for e in events]
    assert kinds.count("meta") == 1 and kinds.count("layer") == L and kinds[-1] == "table"
    # the last table_row per cell carries the final loss (the store upserts)
    final = {}
    for e in events:
        if e.kind == "table_row":
            final[(e.data["layer"], e.data["choice"])] = e.data
    assert len(final) == L * 12
    for (layer, choice), row in final.items():
        assert row["accuracy"] == pytest.approx(accuracy[layer, choice])
        assert row["loss"] == pytest.approx(loss[layer, choice])
        assert row["costs"]["params"] == space.cost_tables()[1]["params"][layer, choice]


def _scripted(accuracies):
    """An evaluator returning a fixed accuracy per (layer, choice) and weights tagged by job."""

    def evaluate(job):
        if job.meta["stage"] == "meta":
            return Result(status="ok", accuracy=0.5, weights={"tag": "meta"})
        layer, choice = job.meta["layer"], job.meta["choice"]
        acc = accuracies(layer, choice)
        if acc is None:
            return Result(status="oom", error="out of memory")
        return Result(status="ok", accuracy=acc, weights={"tag": f"{layer}/{choice}"})

    return evaluate


def test_rows_are_reemitted_when_the_best_moves_and_ties_go_to_the_lower_index(space) -> None:
    searcher = PONASSearcher(space, seed=0, stage2="per-candidate")
    evaluate = _scripted(lambda layer, c: {0: 0.5, 1: 0.7, 2: 0.7, 3: None}.get(c, 0.1))
    searcher.tell(meta := searcher.ask(1)[0], evaluate(meta))
    searcher.pop_events()
    jobs = searcher.ask(12)
    for job in jobs[:2]:  # choices 0 (0.5) then 1 (0.7): the best moves
        searcher.tell(job, evaluate(job))
    rows = [e.data for e in searcher.pop_events() if e.kind == "table_row"]
    assert [(r["choice"], r["loss"]) for r in rows] == [(0, 0.0), (0, pytest.approx(0.2)),
                                                        (1, 0.0)]
    for job in reversed(jobs[2:]):  # finishing order must not matter
        searcher.tell(job, evaluate(job))
    assert searcher.best_choices == [1]  # 0.7 at choices 1 and 2: the lower index wins
    assert searcher.supernet == {"tag": "0/1"}  # the best candidate's weights carry on
    row3 = searcher.rows[0][3]
    assert row3["accuracy"] == 0.0 and row3["status"] == "oom"
    assert searcher.loss_table()[0, 3] == pytest.approx(0.7)
    # layer 1's candidates inherit the new supernet; layer 0 kept the meta weights as source
    assert all(job.inherit == {"tag": "0/1"} for job in searcher.ask(12))
    assert searcher.layer_sources[0] == {} and searcher.layer_sources[1] == {}


def test_ask_waits_for_the_layer_to_finish(space) -> None:
    searcher = PONASSearcher(space, stage2="per-candidate")
    meta = searcher.ask(5)
    assert len(meta) == 1 and searcher.ask(5) == []  # nothing before the meta network is in
    searcher.tell(meta[0], synthetic_result(meta[0]))
    first = searcher.ask(5)
    rest = searcher.ask(50)
    assert len(first) == 5 and len(rest) == 7 and searcher.ask(3) == []
    for job in first + rest[:-1]:
        searcher.tell(job, synthetic_result(job))
    assert searcher.ask(12) == [] and searcher.layer == 0
    searcher.tell(rest[-1], synthetic_result(rest[-1]))
    assert searcher.layer == 1 and len(searcher.ask(12)) == 12


def test_kill_and_resume_mid_fine_tuning_keeps_the_rows(space) -> None:
    reference = PONASSearcher(space, seed=5, stage2="per-candidate")
    drive(reference)

    searcher = PONASSearcher(space, seed=5, stage2="per-candidate")
    drive(searcher, stop=lambda s: s.layer == 2 and len(s.rows.get(2, {})) == 5)
    assert searcher.layer == 2 and len(searcher.rows[2]) == 5 and len(searcher.pending) == 7
    blob, arrays, _ = encode_state(searcher.state_dict())  # as the store keeps it
    told_before = searcher.n_told

    resumed = PONASSearcher(space, seed=5, stage2="per-candidate")  # after SIGKILL
    resumed.load_state_dict(decode_state(blob, arrays.__getitem__), history=searcher.history)
    assert resumed.stage == "finetune" and resumed.layer == 2
    assert sorted(resumed.rows[2]) == sorted(searcher.rows[2])  # measured rows kept
    assert resumed.n_told == told_before
    reissued = resumed.pending  # what the coordinator submits again
    assert sorted(j.meta["choice"] for j in reissued) == sorted(
        set(range(12)) - set(searcher.rows[2]))
    assert resumed.ask(12) == []  # nothing of layer 2 is asked twice
    for job in reissued:
        resumed.tell(job, synthetic_result(job))
    drive(resumed)
    np.testing.assert_array_equal(resumed.accuracy_matrix(), reference.accuracy_matrix())
    assert resumed.best_choices == reference.best_choices
    assert resumed.n_told == reference.n_told == 1 + space.num_positions * 12


def test_presets_follow_the_paper() -> None:
    paper = PONASSearcher.presets["ponas-paper"]
    assert paper["meta_train"] == PAPER_META_TRAIN
    assert PAPER_META_TRAIN["epochs"] == 50 and PAPER_META_TRAIN["batch_size"] == 256
    assert PAPER_META_TRAIN["momentum"] == 0.9 and PAPER_META_TRAIN["weight_decay"] == 4e-5
    assert PAPER_META_TRAIN["lr"] == 0.1 and PAPER_META_TRAIN["schedule"] == "ponas-step"
    # "decay 10x at 20 and 40 epochs" of 50
    from searchers.training import lr_factor

    per_epoch = 10
    factors = [lr_factor(e * per_epoch, 50 * per_epoch, 0, "ponas-step", 0.0) for e in range(50)]
    assert factors[19] == 1.0 and factors[20] == pytest.approx(0.1)
    assert factors[39] == pytest.approx(0.1) and factors[40] == pytest.approx(0.01)
    assert paper["stage2"] == "supernet"
    assert all(p["stage2"] == "supernet" for p in PONASSearcher.presets.values())
    assert paper["finetune"] == PAPER_FINETUNE
    assert PAPER_FINETUNE["epochs"] == 3 and PAPER_FINETUNE["lr"] == 0.001
    assert PAPER_FINETUNE["schedule"] == "constant"
    big = get_space("mbconv", preset="ponas-imagenet")
    searcher = get_searcher("ponas", space=big, preset="ponas-paper")
    assert (searcher.num_layers, searcher.num_choices) == (19, 12)
    assert searcher.jobs_needed == 1 + 19 and searcher.budget == 20  # one supernet per layer
    variant = get_searcher("ponas", space=big, preset="ponas-paper", stage2="per-candidate")
    assert variant.jobs_needed == 1 + 19 * 12


def test_bad_arguments_name_the_field(space) -> None:
    with pytest.raises(NaswError, match="budget"):
        PONASSearcher(space, budget=10, stage2="per-candidate")
    with pytest.raises(NaswError, match="budget"):
        PONASSearcher(space, budget=6)
    with pytest.raises(NaswError, match="searcher.params.stage2"):
        PONASSearcher(space, stage2="fair")
    with pytest.raises(NaswError, match="searcher.params.finetune"):
        PONASSearcher(space, finetune=3)
    with pytest.raises(NaswError, match="searcher.params.meta_train.epoch"):
        PONASSearcher(space, meta_train={"epoch": 3})
    with pytest.raises(NaswError, match="space"):
        PONASSearcher(get_space("layerwise"))
    state = PONASSearcher(space).state_dict()
    state["shape"] = [19, 12]
    with pytest.raises(NaswError, match="searcher_state.shape"):
        PONASSearcher(space).load_state_dict(state)


def test_failed_meta_training_stops_the_run(space) -> None:
    searcher = PONASSearcher(space)
    job = searcher.ask(1)[0]
    with pytest.raises(RuntimeError, match="meta-network training diverged"):
        searcher.tell(job, Result(status="diverged", error="loss is nan"))


# -- stage 2 as published: one supernet per layer, strict fairness -------------------------------
def test_supernet_mode_asks_one_job_per_layer_and_fills_each_row_from_its_paths(space) -> None:
    from searchers.evaluators import evaluate

    searcher = get_searcher("ponas", space=space, preset="ponas-digits", seed=3)
    assert searcher.stage2 == "supernet" and searcher.jobs_needed == 1 + space.num_positions
    batches = drive(searcher, evaluate=lambda job: evaluate(job, "synthetic"))
    L = space.num_positions
    assert [len(b) for b in batches] == [1] * (1 + L)
    for layer, (job,) in enumerate(batches[1:]):
        assert job.meta["supernet_layer"] == layer and job.return_weights
        assert job.genotype["choices"][layer] == largest_choice()  # the default path
        assert job.genotype["choices"][:layer] == searcher.best_choices[:layer]
        assert job.train.seed == 3 + 1 + layer
    accuracy = searcher.accuracy_matrix()
    assert np.isfinite(accuracy).all()
    assert searcher.best_choices == list(accuracy.argmax(axis=1))
    # each row is the synthetic objective of the path [B*.., B_i, B_G ..] (one seed per layer)
    for layer, (job,) in enumerate(batches[1:]):
        for choice in range(12):
            choices = list(job.genotype["choices"])
            choices[layer] = choice
            single = job.__class__(id=0, genotype={**job.genotype, "choices": choices},
                                   train=job.train, input_shape=job.input_shape,
                                   num_classes=job.num_classes)
            assert accuracy[layer, choice] == pytest.approx(synthetic_result(single).accuracy)
    rows = [e.data for e in searcher.pop_events() if e.kind == "table_row"]
    assert len(rows) == L * 12  # the best is known at once: every row emitted once, final
    assert searcher.best()["genotype"]["choices"] == searcher.best_choices


def test_supernet_mode_resumes_with_the_layer_job_in_flight(space) -> None:
    from searchers.evaluators import evaluate

    def synthetic(job):
        return evaluate(job, "synthetic")

    reference = get_searcher("ponas", space=space, preset="ponas-digits", seed=2)
    drive(reference, evaluate=synthetic)
    searcher = get_searcher("ponas", space=space, preset="ponas-digits", seed=2)
    drive(searcher, evaluate=synthetic, stop=lambda s: s.layer == 3 and s.pending)
    assert len(searcher.pending) == 1
    blob, arrays, _ = encode_state(searcher.state_dict())
    resumed = get_searcher("ponas", space=space, preset="ponas-digits", seed=2)
    resumed.load_state_dict(decode_state(blob, arrays.__getitem__), history=searcher.history)
    assert resumed.ask(5) == []  # the layer's job is in flight: reissued, not asked again
    (job,) = resumed.pending
    resumed.tell(job, synthetic(job))
    drive(resumed, evaluate=synthetic)
    np.testing.assert_array_equal(resumed.accuracy_matrix(), reference.accuracy_matrix())
    assert resumed.best_choices == reference.best_choices


def test_checkpoint_is_fixed_size_plain_data(space) -> None:
    from searchers.evaluators import evaluate

    searcher = PONASSearcher(space, stage2="per-candidate")
    sizes = []
    while not searcher.done():
        for job in searcher.ask(12):
            searcher.tell(job, evaluate(job, "synthetic"))
        state = searcher.state_dict()
        assert "history" not in state and "rows" not in state
        blob, arrays, _ = encode_state(state)
        sizes.append(len(blob) + sum(len(a) for a in arrays.values()))
    assert max(sizes) - min(sizes) < 200  # the table is (L, C) arrays from the start


def test_a_supernet_step_updates_every_path_by_the_sum_of_their_gradients(space) -> None:
    """Strict fairness: one step = the summed gradients of all 12 paths on one batch.
    (Training one sampled path per step, as single-path one-shot NAS does, fails here.)"""
    import copy

    import torch
    import torch.nn.functional as F

    from searchers.base import Job, TrainSpec
    from searchers.ponas_supernet import build_supernet, fair_epoch
    from searchers.training import make_optimizer

    torch.manual_seed(0)
    L = space.num_positions
    meta = space.build({"space": "mbconv", "preset": space.preset, "choices": [11] * L})
    spec = TrainSpec(epochs=1, batch_size=16, lr=0.1, momentum=0.0, weight_decay=0.0,
                     schedule="constant", precision="fp32", channels_last="off")
    job = Job(id=0, genotype={"space": "mbconv", "preset": space.preset, "choices": [11] * L},
              train=spec, inherit=meta.state_dict(), meta={"supernet_layer": 2})
    model, switch = build_supernet(space, job)
    assert len(switch.paths) == 12
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    reference = copy.deepcopy(model)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    fair_epoch(model, switch, [(x, y)], make_optimizer(model, spec), spec,
               torch.device("cpu"), 0)
    ref_switch = reference.layers["2"]
    grads = {k: torch.zeros_like(v) for k, v in reference.named_parameters()}
    reference.train()
    for path in range(12):
        ref_switch.active = path
        reference.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        for k, p in reference.named_parameters():
            if p.grad is not None:
                grads[k] += p.grad
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), before[name] - 0.1 * grads[name],
                                   rtol=1e-4, atol=1e-6)
    for path in range(12):  # every path's own block moved
        moved = any(not torch.equal(p.detach(), before[f"layers.2.paths.{path}.{n}"])
                    for n, p in switch.paths[path].named_parameters())
        assert moved, f"path {path} was not trained"
