"""Run configs: the schema, the field-naming errors, and `nasw run` refusing bad input.

The table below has one malformed config per row; each must exit 2 with a message naming
the field, and leave the database byte-identical.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from searchers.base import TrainSpec
from searchers.errors import NaswError
from workbench.cli import main
from workbench.config import TrainConfig, load_config, make_searcher, parse_config
from workbench.runner import start_run

SAMPLES = Path(__file__).parent.parent / "sample_configs"
GOOD = """
name: ok
space: {name: mbconv, preset: ponas-digits}
evaluator: synthetic
searcher: {name: random}
budget: {candidates: 3}
"""
HEAD = "space: {name: mbconv, preset: ponas-digits}\n"
BUDGET = "budget: {candidates: 3}\n"

MALFORMED = [
    # (id, YAML text, text the error must contain)
    ("not-a-mapping", "- a\n- b\n", "config"),
    ("empty-file", "", "config"),
    ("bad-yaml", "space: {name: mbconv\n", "config"),
    ("python-object-tag", "!!python/object/apply:os.system ['echo pwned']\n", "config"),
    ("python-object-in-value", HEAD + BUDGET + "name: !!python/object:builtins.dict {}\n",
     "config"),
    ("unknown-top-key", GOOD + "colour: blue\n", "colour"),
    ("missing-space", "budget: {candidates: 3}\n", "space"),
    ("missing-budget", HEAD, "budget"),
    ("space-not-mapping", "space: mbconv\n" + BUDGET, "space"),
    ("unknown-space", "space: {name: resnet}\n" + BUDGET, "space.name"),
    ("unknown-preset", "space: {name: mbconv, preset: huge}\n" + BUDGET, "space.preset"),
    ("unknown-space-key", "space: {name: mbconv, presett: x}\n" + BUDGET, "space.presett"),
    ("unknown-override", "space: {name: mbconv, overrides: {depth: 3}}\n" + BUDGET,
     "space.overrides.depth"),
    ("unknown-searcher", HEAD + BUDGET + "searcher: {name: genetic}\n", "searcher.name"),
    ("unknown-searcher-preset", HEAD + BUDGET + "searcher: {name: random, preset: paper}\n",
     "searcher.preset"),
    ("unknown-searcher-param", HEAD + BUDGET + "searcher: {name: random, params: {lr: 1}}\n",
     "searcher.params.lr"),
    ("searcher-params-list", HEAD + BUDGET + "searcher: {name: random, params: [1]}\n",
     "searcher.params"),
    ("unknown-dataset", HEAD + BUDGET + "dataset: {name: imagenet22k}\n", "dataset.name"),
    ("val-fraction-too-big", HEAD + BUDGET + "dataset: {val_fraction: 1.5}\n",
     "dataset.val_fraction"),
    ("dataset-root-number", HEAD + BUDGET + "dataset: {root: 5}\n", "dataset.root"),
    ("unknown-evaluator", HEAD + BUDGET + "evaluator: guess\n", "evaluator"),
    ("constraints-not-list", HEAD + BUDGET + "constraints: params<=3M\n", "constraints"),
    ("constraint-unparsable", HEAD + BUDGET + "constraints: ['params<<3M']\n", "constraints[0]"),
    ("constraint-unknown-metric", HEAD + BUDGET + "constraints: ['weight<=3M']\n",
     "constraints[0].metric"),
    ("constraint-negative", HEAD + BUDGET + "constraints: ['params<=-5']\n", "constraints[0]"),
    ("constraints-contradict", HEAD + BUDGET + "constraints: ['params<=1M', 'params>=2M']\n",
     "constraints"),
    ("constraint-impossible", HEAD + BUDGET + "constraints: ['params<=10']\n", "constraints[0]"),
    ("constraint-unreachable-floor", HEAD + BUDGET + "constraints: ['madds>=1T']\n",
     "constraints[0]"),
    ("constraint-dict-typo", HEAD + BUDGET
     + "constraints: [{metric: params, op: '<=', valu: 3}]\n", "constraints[0].valu"),
    ("constraint-bad-op", HEAD + BUDGET
     + "constraints: [{metric: params, op: '==', value: 3}]\n", "constraints[0].op"),
    ("budget-negative", HEAD + "budget: {candidates: -5}\n", "budget.candidates"),
    ("budget-zero-time", HEAD + "budget: {wall_time_s: 0}\n", "budget.wall_time_s"),
    ("budget-empty", HEAD + "budget: {}\n", "budget"),
    ("budget-not-a-number", HEAD + "budget: {candidates: many}\n", "budget.candidates"),
    ("epochs-negative", HEAD + BUDGET + "train: {epochs: -1}\n", "train.epochs"),
    ("train-typo", HEAD + BUDGET + "train: {epoch: 3}\n", "train.epoch"),
    ("train-bad-schedule", HEAD + BUDGET + "train: {schedule: linear}\n", "train.schedule"),
    ("batch-size-zero", HEAD + BUDGET + "train: {batch_size: 0}\n", "train.batch_size"),
    ("backend-unknown", HEAD + BUDGET + "backend: {kind: k8s}\n", "backend.kind"),
    ("workers-negative", HEAD + BUDGET + "backend: {workers: -1}\n", "backend.workers"),
    ("seed-negative", HEAD + BUDGET + "seed: -3\n", "seed"),
    ("seed-text", HEAD + BUDGET + "seed: abc\n", "seed"),
    ("hard-constraints-text", HEAD + BUDGET + "hard_constraints: maybe\n", "hard_constraints"),
    ("name-empty", HEAD + BUDGET + "name: ''\n", "name"),
    ("name-list", HEAD + BUDGET + "name: [1, 2]\n", "name"),
    # only the searcher can tell these: start_run builds it before writing the run
    ("ponas-budget-too-small", HEAD + BUDGET + "searcher: {name: ponas}\n", "budget"),
    ("pnas-wrong-space", HEAD + BUDGET + "searcher: {name: pnas}\n", "space"),
]


def _digest(db: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(db.parent.glob(db.name + "*"))}


@pytest.fixture(scope="module")
def populated_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("db") / "nasw.db"
    start_run(db, parse_config({"space": {"name": "mbconv"}, "evaluator": "synthetic",
                                "budget": {"candidates": 2}}))
    return db


def test_the_table_has_at_least_30_rows() -> None:
    assert len(MALFORMED) >= 30 and len({row[0] for row in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize(("case", "text", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_exits_2_names_the_field_and_writes_nothing(
        case, text, field, populated_db, tmp_path) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    before = _digest(populated_db)
    result = CliRunner().invoke(main, ["run", str(path), "--db", str(populated_db)])
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: ") and field in message, message
    assert "got" in message
    assert _digest(populated_db) == before
    assert not list(tmp_path.glob("*.db"))


def test_python_tags_are_never_constructed(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(NaswError, match="config"):
        load_config(path)
    assert not marker.exists()


def test_errors_list_what_is_allowed(tmp_path) -> None:
    with pytest.raises(NaswError) as err:
        parse_config({"space": {"name": "mbconv"}, "budget": {"candidates": 1},
                      "searcher": {"name": "genetic"}})
    assert "random" in str(err.value) and "epnas" in str(err.value)
    with pytest.raises(NaswError) as err:
        parse_config({"space": {"name": "mbconv", "preset": "x"}, "budget": {"candidates": 1}})
    assert "ponas-digits" in str(err.value)


def test_every_sample_config_validates_and_ours_build_their_searcher() -> None:
    for path in sorted(SAMPLES.glob("*.yaml")):
        config = load_config(path)
        assert config.space.name and config.budget
    for path in [SAMPLES / "quickstart.yaml", *sorted(SAMPLES.glob("random-*.yaml"))]:
        config = load_config(path)
        space, searcher = make_searcher(config)  # other searchers build torch models: slow
        assert searcher.name == config.searcher.name and space.name == config.space.name


def test_defaults_and_derived_training_spec() -> None:
    config = parse_config({"space": {"name": "mbconv"}, "budget": {"wall_time_s": 60},
                           "dataset": {"name": "digits", "val_fraction": 0.25}, "seed": 7,
                           "constraints": ["params<=3M", {"metric": "madds", "op": "<=",
                                                          "value": "300M"}]})
    spec = config.train_spec()
    assert spec.dataset == "digits" and spec.val_fraction == 0.25 and spec.seed == 7
    assert [str(c) for c in config.parsed_constraints()] == ["params<=3M", "madds<=300M"]
    assert config.evaluator == "train" and config.searcher.name == "random"
    _, searcher = make_searcher(config)
    assert searcher.budget > 1000  # wall-time-only runs get an open candidate budget
    assert parse_config(config.to_dict()) == config  # stored form round-trips


def test_train_section_covers_every_train_spec_field() -> None:
    dataset_fields = {"dataset", "data_root", "val_fraction"}
    spec_fields = {f.name for f in dataclasses.fields(TrainSpec)}
    assert set(TrainConfig.model_fields) | dataset_fields == spec_fields
