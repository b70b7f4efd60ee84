"""Hostile input: malformed configs, CLI arguments and database files.

Every case must end the way bad input ends in nasw: exit code 2, a one-line ``error:``
message, no traceback, and the database file byte-identical afterwards (nothing written). The
cases are the ones a new user (or someone handing over a file) produces: encodings, YAML
tricks, numbers out of range, booleans as counts, names that do not exist, damaged and foreign
database files, numbers too large for SQLite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from workbench.cli import main

GOOD = {"name": "good", "space": {"name": "mbconv", "preset": "ponas-digits"},
        "evaluator": "synthetic", "searcher": {"name": "random"},
        "constraints": ["params<=60k"], "budget": {"candidates": 6}, "seed": 0}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(main, args, catch_exceptions=True)


def _assert_refused(result: Any, case: str) -> None:
    assert result.exit_code == 2, (case, result.exit_code, result.output)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit), (case, repr(result.exception))
    assert "Traceback" not in result.output, (case, result.output)
    assert "error" in result.output.lower(), (case, result.output)
    assert len(result.output) < 4000, (case, len(result.output))


@pytest.fixture(scope="module")
def good_db(tmp_path_factory) -> Path:
    """A real database with one finished synthetic run (run 1)."""
    folder = tmp_path_factory.mktemp("hostile")
    config = folder / "good.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    db = folder / "nasw.db"
    result = _invoke(["run", str(config), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    return db


@pytest.fixture()
def db_copy(good_db, tmp_path) -> Path:
    copy = tmp_path / "nasw.db"
    shutil.copyfile(good_db, copy)
    return copy


# -- malformed configs ------------------------------------------------------------------------
def _with(**changes: Any) -> str:
    data = {**GOOD}
    for dotted, value in changes.items():
        node = data
        keys = dotted.split("__")
        for key in keys[:-1]:
            node[key] = dict(node.get(key) or {})
            node = node[key]
        node[keys[-1]] = value
    return yaml.safe_dump(data)


def _deep(levels: int) -> str:
    return yaml.safe_dump(GOOD) + "space_extra: " + "[" * levels + "]" * levels + "\n"


BOMB = (yaml.safe_dump({k: v for k, v in GOOD.items() if k != "searcher"})
        + "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
                  for i in range(8))
        + "searcher: {name: random, params: {max_tries: *i}}\n")

CONFIG_CASES: dict[str, bytes | str] = {
    "utf16-bom": _with().encode("utf-16"),
    "utf16-be-bom": b"\xfe\xff" + _with().encode("utf-16-be"),
    "latin1": _with().replace("name: good", "name: caf\u00e9").encode("latin-1"),
    "binary": bytes(range(256)) * 8,
    "nul-bytes": _with().encode() + b"\x00\x00",
    "too-large": _with() + "#" * 1_100_000,
    "anchor-bomb": BOMB,
    "alias-flood": _with() + "x: &x 1\nys: [" + ", ".join(["*x"] * 200) + "]\n",
    "deep-nesting": _deep(5000),
    "deep-nesting-40": _deep(40),
    "duplicate-top-key": _with() + "seed: 1\n",
    "duplicate-nested-key": _with().replace("name: random", "name: random\n  name: evolution"),
    "python-tag": "!!python/object/apply:os.system ['true']\n",
    "python-tag-nested": _with() + "x: !!python/name:os.system ''\n",
    "tab-indent": "space:\n\tname: mbconv\n",
    "unclosed-bracket": "space: {name: mbconv\n",
    "empty-file": "",
    "top-level-list": "- 1\n- 2\n",
    "top-level-scalar": "hello\n",
    "non-str-key": _with() + "1: one\n",
    "candidates-1e30": _with(budget__candidates=1e30),
    "candidates-2**63": _with(budget__candidates=2**63),
    "candidates-2**64": _with(budget__candidates=2**64),
    "candidates-negative": _with(budget__candidates=-1),
    "candidates-zero": _with(budget__candidates=0),
    "candidates-true": _with(budget__candidates=True),
    "candidates-text": _with(budget__candidates="ten"),
    "candidates-fraction": _with(budget__candidates=1.5),
    "candidates-nan": _with(budget__candidates=float("nan")),
    "wall-time-inf": _with(budget__wall_time_s=float("inf")),
    "wall-time-negative": _with(budget__wall_time_s=-5),
    "wall-time-true": _with(budget__wall_time_s=True),
    "no-budget": _with(budget={}),
    "lr-inf": _with(train__lr=float("inf")),
    "lr-nan": _with(train__lr=float("nan")),
    "lr-negative": _with(train__lr=-0.1),
    "lr-true": _with(train__lr=True),
    "lr-text": _with(train__lr="fast"),
    "epochs-zero": _with(train__epochs=0),
    "epochs-negative": _with(train__epochs=-1),
    "epochs-true": _with(train__epochs=True),
    "epochs-fraction": _with(train__epochs=2.5),
    "batch-size-zero": _with(train__batch_size=0),
    "batch-size-true": _with(train__batch_size=True),
    "momentum-one": _with(train__momentum=1.0),
    "warmup-true": _with(train__warmup_epochs=True),
    "label-smoothing-one": _with(train__label_smoothing=1.0),
    "train-seed-negative": _with(train__seed=-1),
    "seed-negative": _with(seed=-1),
    "seed-true": _with(seed=True),
    "seed-2**64": _with(seed=2**64),
    "val-fraction-zero": _with(dataset={"name": "digits", "val_fraction": 0}),
    "val-fraction-nan": _with(dataset={"name": "digits", "val_fraction": float("nan")}),
    "reward-p-text": _with(searcher__params={"reward_p": "high"}),
    "reward-p-list": _with(searcher__params={"reward_p": [0.5]}),
    "reward-p-nan": _with(searcher__params={"reward_p": float("nan")}),
    "reward-p-two": _with(searcher__params={"reward_p": 2}),
    "reward-p-true": _with(searcher__params={"reward_p": True}),
    "reward-p-negative": _with(searcher__params={"reward_p": -0.5}),
    "params-inf": _with(searcher__params={"max_tries": float("inf")}),
    "workers-negative": _with(backend={"workers": -1}),
    "workers-true": _with(backend={"workers": True}),
    "workers-huge": _with(backend={"workers": 10**9}),
    "unknown-space": _with(space={"name": "nope"}),
    "unknown-space-preset": _with(space={"name": "mbconv", "preset": "nope"}),
    "unknown-searcher": _with(searcher={"name": "nope"}),
    "unknown-searcher-param": _with(searcher={"name": "random", "params": {"nope": 1}}),
    "unknown-dataset": _with(dataset={"name": "nope"}),
    "unknown-evaluator": _with(evaluator="nope"),
    "misspelt-key": _with(budgte={"candidates": 5}),
    "space-missing": yaml.safe_dump({k: v for k, v in GOOD.items() if k != "space"}),
    "budget-missing": yaml.safe_dump({k: v for k, v in GOOD.items() if k != "budget"}),
    "empty-name": _with(name=""),
    "long-name": _with(name="x" * 300),
    "constraint-bad-op": _with(constraints=["params<<3M"]),
    "constraint-unknown-metric": _with(constraints=["foo<=3"]),
    "constraint-number": _with(constraints=[5]),
    "constraint-incomplete": _with(constraints=[{"metric": "params"}]),
    "constraint-unreachable": _with(constraints=["params<=10"]),
    "constraint-nan": _with(constraints=[{"metric": "params", "op": "<=", "value": float("nan")}]),
    "latency-without-table": _with(constraints=["latency_ms<=5"]),
    "imagefolder-without-root": _with(evaluator="train", dataset={"name": "imagefolder"}),
    "imagefolder-missing-root": _with(evaluator="train",
                                      dataset={"name": "imagefolder", "root": "/nonexistent/x"}),
    "npz-missing-root": _with(evaluator="train",
                              dataset={"name": "npz", "root": "/nonexistent/data.npz"}),
    "space-overrides-bogus": _with(space={"name": "mbconv", "preset": "ponas-digits",
                                          "overrides": {"nope": 1}}),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_malformed_config_exits_2_and_writes_nothing(case, db_copy, tmp_path) -> None:
    config = tmp_path / "bad.yaml"
    content = CONFIG_CASES[case]
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = _digest(db_copy)
    result = _invoke(["run", str(config), "--db", str(db_copy)])
    _assert_refused(result, case)
    assert _digest(db_copy) == before, case


def test_a_config_for_a_new_database_creates_no_file(tmp_path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(_with(train__epochs=0))
    result = _invoke(["run", str(config), "--db", str(tmp_path / "new.db")])
    _assert_refused(result, "new db")
    assert not (tmp_path / "new.db").exists()


def test_error_messages_name_the_field(tmp_path) -> None:
    expected = {"epochs-zero": "train.epochs", "candidates-true": "budget.candidates",
                "lr-inf": "train.lr", "duplicate-top-key": "seed",
                "reward-p-text": "reward_p", "latency-without-table": "nasw lut build",
                "imagefolder-without-root": "dataset.root", "too-large": "1,000,000 bytes",
                "utf16-bom": "UTF-8", "anchor-bomb": "aliases", "deep-nesting": "levels",
                "candidates-2**63": "budget.candidates"}
    for case, needle in expected.items():
        config = tmp_path / f"{case}.yaml"
        content = CONFIG_CASES[case]
        config.write_bytes(content if isinstance(content, bytes) else content.encode())
        result = _invoke(["run", str(config), "--db", str(tmp_path / "x.db")])
        assert needle in result.output, (case, result.output)


# -- malformed CLI arguments --------------------------------------------------------------------
BIG = "99999999999999999999"
ARG_CASES: dict[str, list[str]] = {
    "show-big": ["show", BIG], "show-negative": ["show", "-1"], "show-text": ["show", "abc"],
    "show-unknown": ["show", "999"], "show-2**63": ["show", str(2**63)],
    "show-limit-negative": ["show", "1", "--limit", "-1"],
    "resume-big": ["resume", BIG], "resume-unknown": ["resume", "999"],
    "resume-finished": ["resume", "1"], "cancel-unknown": ["cancel", "999"],
    "cancel-finished": ["cancel", "1"], "pause-finished": ["pause", "1"],
    "pause-big": ["pause", BIG],
    "export-proc": ["export", "1", "-o", "/proc/version"],
    "export-missing-dir": ["export", "1", "-o", "/nonexistent/dir/x.json"],
    "export-big": ["export", BIG], "export-unknown": ["export", "999"],
    "export-format": ["export", "1", "--format", "bogus"],
    "export-candidate-big": ["export", "1", "--candidate", BIG],
    "export-candidate-unknown": ["export", "1", "--candidate", "999"],
    "compare-unknown": ["compare", "999"], "compare-big": ["compare", BIG],
    "compare-cost": ["compare", "1", "--cost", "bogus"],
    "train-candidate-unknown": ["train", "1", "--candidate", "999"],
    "train-candidate-big": ["train", "1", "--candidate", BIG],
    "train-epochs-zero": ["train", "1", "--candidate", "0", "--epochs", "0"],
    "train-neither": ["train", "1"],
    "specialize-not-ponas": ["specialize", "1", "-c", "params<=3M"],
    "specialize-big": ["specialize", BIG, "-c", "params<=3M"],
    "run-missing-file": ["run", "/nonexistent/config.yaml"],
    "run-directory": ["run", "/"],
    "run-dev-null": ["run", "/dev/null"],
    "unknown-command": ["bogus"], "unknown-option": ["ls", "--bogus"],
}


@pytest.mark.parametrize("case", sorted(ARG_CASES))
def test_malformed_arguments_exit_2_and_write_nothing(case, db_copy) -> None:
    before = _digest(db_copy)
    result = _invoke([*ARG_CASES[case], "--db", str(db_copy)])
    _assert_refused(result, case)
    assert _digest(db_copy) == before, case


# -- damaged, foreign and unusable database files -----------------------------------------------
def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('someone else''s data')")
    conn.close()


def _future(path: Path, good: Path) -> None:
    shutil.copyfile(good, path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied) VALUES (999, 0)")
    conn.close()


def _header_garbage(path: Path, good: Path) -> None:
    path.write_bytes(good.read_bytes()[:100] + os.urandom(4096 * 3))


DB_KINDS = {
    "foreign": lambda p, g: _foreign(p),
    "random-bytes": lambda p, g: p.write_bytes(os.urandom(8192)),
    "text-file": lambda p, g: p.write_text("name,score\nann,3\n" * 50),
    "truncated": lambda p, g: p.write_bytes(g.read_bytes()[:300]),
    "header-only": lambda p, g: p.write_bytes(g.read_bytes()[:100]),
    "header-garbage": _header_garbage,
    "future-schema": _future,
}
DB_COMMANDS = {"ls": ["ls"], "show": ["show", "1"], "resume": ["resume", "1"],
               "run": ["run", "CONFIG"], "cancel": ["cancel", "1"], "tui": []}


@pytest.mark.parametrize("command", sorted(DB_COMMANDS))
@pytest.mark.parametrize("kind", sorted(DB_KINDS))
def test_damaged_or_foreign_database_exits_2_untouched(kind, command, good_db, tmp_path) -> None:
    db = tmp_path / "bad.db"
    DB_KINDS[kind](db, good_db)
    config = tmp_path / "good.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    args = [str(config) if a == "CONFIG" else a for a in DB_COMMANDS[command]]
    before = _digest(db)
    result = _invoke([*args, "--db", str(db)])
    _assert_refused(result, f"{kind}/{command}")
    assert _digest(db) == before, (kind, command)
    assert not (tmp_path / "bad.db-wal").exists() or kind == "future-schema"


def test_a_directory_as_database_exits_2(tmp_path) -> None:
    for args in (["ls"], ["show", "1"]):
        _assert_refused(_invoke([*args, "--db", str(tmp_path)]), "directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_database_exits_2(db_copy) -> None:
    before = _digest(db_copy)
    db_copy.chmod(0)
    try:
        for args in (["ls"], ["show", "1"], ["resume", "1"]):
            _assert_refused(_invoke([*args, "--db", str(db_copy)]), f"unreadable {args}")
    finally:
        db_copy.chmod(0o644)
    assert _digest(db_copy) == before


def _read_only(path: Path) -> None:
    path.chmod(0o444)
    path.parent.chmod(0o555)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_database_reads_work_and_writes_exit_2(db_copy, tmp_path) -> None:
    config = tmp_path / "good.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "nasw.db"
    shutil.copyfile(db_copy, db)
    before = _digest(db)
    _read_only(db)
    try:
        for args in (["ls"], ["ls", "--json"], ["show", "1"], ["show", "1", "--json"],
                     ["compare", "1"], ["export", "1", "-o", str(tmp_path / "g.json")]):
            result = _invoke([*args, "--db", str(db)])
            assert result.exit_code == 0, (args, result.output)
        for args in (["run", str(config)], ["cancel", "1"], ["resume", "1"]):
            _assert_refused(_invoke([*args, "--db", str(db)]), f"read-only {args}")
    finally:
        folder.chmod(0o755)
        db.chmod(0o644)
    assert _digest(db) == before


def test_read_only_mode_reads_and_refuses_writes_even_as_root(db_copy, tmp_path,
                                                             monkeypatch) -> None:
    """The read-only path (a file or directory this user cannot write), forced even where the
    tests run as root: reads work, writes exit 2, the file is byte-identical."""
    from workbench.store import Store

    monkeypatch.setattr(Store, "_writable", staticmethod(lambda path: False))
    config = tmp_path / "good.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    before = _digest(db_copy)
    for args in (["ls"], ["ls", "--json"], ["show", "1"], ["show", "1", "--json"],
                 ["compare", "1"], ["export", "1", "-o", str(tmp_path / "g.json")]):
        result = _invoke([*args, "--db", str(db_copy)])
        assert result.exit_code == 0, (args, result.output)
    for args in (["run", str(config)], ["cancel", "1"], ["pause", "1"]):
        result = _invoke([*args, "--db", str(db_copy)])
        _assert_refused(result, f"read-only {args}")
    assert "read-only" in _invoke(["run", str(config), "--db", str(db_copy)]).output
    assert _digest(db_copy) == before
