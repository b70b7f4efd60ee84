"""The SQLite store: schema, migrations, batched writes, incremental reads, permissions."""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import stat
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from searchers.errors import NaswError
from workbench import store as store_module
from workbench.store import CandidateRow, Progress, Store, decode_state, encode_state

CONFIG = {"name": "t", "space": {"name": "mbconv", "preset": "ponas-digits"},
          "searcher": {"name": "random"}, "evaluator": "synthetic",
          "budget": {"candidates": 4}, "constraints": ["params<=3M"]}


@pytest.fixture()
def store(tmp_path):
    with Store(tmp_path / "nasw.db") as opened:
        yield opened


def test_new_database_has_schema_wal_and_is_not_world_writable(tmp_path) -> None:
    old = os.umask(0)
    try:
        with Store(tmp_path / "a.db") as opened:
            health = opened.health()
    finally:
        os.umask(old)
    assert health["journal_mode"] == "wal"
    assert health["schema_version"] == store_module.SCHEMA_VERSION
    assert health["integrity"] == "ok"
    assert not health["world_writable"]
    assert not os.stat(tmp_path / "a.db").st_mode & stat.S_IWOTH


def test_umask_is_respected(tmp_path) -> None:
    old = os.umask(0o077)
    try:
        Store(tmp_path / "b.db").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "b.db").st_mode) == 0o600


def test_missing_database_is_not_created_when_reading(tmp_path) -> None:
    with pytest.raises(NaswError, match="db"):
        Store(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_forward_migrations_apply_once_in_order(tmp_path, monkeypatch) -> None:
    Store(tmp_path / "m.db").close()

    def v2_add_notes(db) -> None:
        db["runs"].add_column("notes", str)

    released = len(store_module.MIGRATIONS)
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, v2_add_notes])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", released + 1)
    with Store(tmp_path / "m.db") as opened:
        assert opened.schema_version() == released + 1
        assert "notes" in opened.db["runs"].columns_dict
        assert opened.migrate() == released + 1  # idempotent
        versions = [r[0] for r in opened.conn.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, released + 2))


def test_a_version_1_database_migrates_and_its_pickle_is_refused_not_loaded(tmp_path,
                                                                           monkeypatch) -> None:
    """A file written before the safe codec (schema 1, plain pickles) migrates forward; its
    pickled checkpoint is never unpickled: a clear message, the run stays readable."""
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    with Store(tmp_path / "old.db") as old, old.write() as conn:  # what nasw wrote then
        run_id = conn.execute("INSERT INTO runs (name, config, status, created)"
                              " VALUES ('old', '{}', 'interrupted', 0)").lastrowid
        conn.execute("INSERT INTO searcher_state (run_id, blob, updated) VALUES (?,?,?)",
                     (run_id, pickle.dumps({"next_id": 7, "w": list(range(9))}), 0.0))
    monkeypatch.undo()
    with Store(tmp_path / "old.db") as new:
        assert new.schema_version() == len(store_module.MIGRATIONS)
        with pytest.raises(store_module.LegacyStateError, match="older nasw in an unsafe"):
            new.load_state(run_id)
        assert new.run(run_id)["name"] == "old"
        assert new.run_dir(run_id).name == f"run-{run_id}"  # old runs keep their folder
        assert new.checkpoint_problem(run_id) == store_module.LEGACY_MESSAGE


def test_newer_database_is_refused(tmp_path) -> None:
    with Store(tmp_path / "n.db") as opened:
        opened.conn.execute("INSERT INTO schema_version VALUES (99, 0)")
        opened.conn.commit()
    with pytest.raises(NaswError, match="schema_version"):
        Store(tmp_path / "n.db")


def test_record_writes_candidates_metrics_events_state_in_one_go(store) -> None:
    run_id = store.create_run(CONFIG)
    store.record(run_id, Progress(
        candidates=[CandidateRow(id=0, genotype={"space": "mbconv"}, costs={"params": 10.0}),
                    CandidateRow(id=1, genotype={"space": "mbconv"}, costs={"params": 20.0})],
        state={"step": 1}, summary={"n_asked": 2, "status": "running"}))
    first = store.candidates(run_id)
    assert [c["status"] for c in first] == ["running", "running"]
    last_seq = max(c["seq"] for c in first)
    store.record(run_id, Progress(
        candidates=[CandidateRow(id=1, genotype={"space": "mbconv"}, status="ok", accuracy=0.8,
                                 reward=0.8, feasible=True, costs={"params": 20.0})],
        metrics=[(1, "candidate/accuracy", 0.8)],
        events=[(1, "episode", {"reward": 0.8})],
        table_rows=[{"layer": 0, "choice": 2, "accuracy": 0.7, "loss": 0.1, "costs": {}}],
        summary={"n_done": 1, "best_accuracy": 0.8, "best_candidate": 1, "best_feasible": 1}))
    changed = store.candidates(run_id, since_seq=last_seq)
    assert [(c["id"], c["status"], c["accuracy"]) for c in changed] == [(1, "ok", 0.8)]
    assert changed[0]["started"] == first[1]["started"]  # start time survives the update
    assert store.candidates(run_id, since_id=0)[0]["id"] == 1
    assert store.metrics(run_id)[0]["key"] == "candidate/accuracy"
    assert store.metrics(run_id, since_rowid=store.metrics(run_id)[0]["rowid"]) == []
    assert store.events(run_id, kind="episode")[0]["data"] == {"reward": 0.8}
    assert store.accuracy_table(run_id)[0]["choice"] == 2
    assert store.best_candidate(run_id)["id"] == 1
    summary = store.run(run_id)
    assert summary["n_done"] == 1 and summary["progress"] == 0.25
    assert summary["best_feasible"] is True


def test_failed_write_leaves_nothing_behind(store) -> None:
    run_id = store.create_run(CONFIG)
    with pytest.raises(KeyError):
        store.record(run_id, Progress(
            candidates=[CandidateRow(id=0, genotype={"space": "mbconv"})],
            summary={"not_a_column": 1}))
    assert store.candidates(run_id) == []


def test_state_round_trip(store) -> None:
    run_id = store.create_run(CONFIG)
    assert store.load_state(run_id) is None
    store.save_state(run_id, {"name": "random", "next_id": 3})
    assert store.load_state(run_id) == {"name": "random", "next_id": 3}


def test_interrupted_is_computed_from_dead_pid_or_stale_heartbeat(store) -> None:
    run_id = store.create_run(CONFIG)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.update_run(run_id, status="running", pid=dead.pid, host=socket.gethostname(),
                     heartbeat=time.time())
    assert store.run(run_id)["status"] == "interrupted"
    assert store.run(run_id)["stored_status"] == "running"
    store.update_run(run_id, pid=os.getpid())
    assert store.run(run_id)["status"] == "running"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # a live pid that is not a nasw process, with a stale heartbeat: a reused pid
        store.update_run(run_id, pid=sleeper.pid, heartbeat=time.time() - 3600)
        assert store.run(run_id)["status"] == "interrupted"
        store.update_run(run_id, heartbeat=time.time())
        assert store.run(run_id)["status"] == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
    store.update_run(run_id, host="elsewhere", heartbeat=time.time() - 3600)
    assert store.run(run_id)["status"] == "interrupted"
    store.update_run(run_id, status="finished")
    assert store.run(run_id)["status"] == "finished"


def test_commands_are_consumed_once(store) -> None:
    run_id = store.create_run(CONFIG)
    store.send_command(run_id, "pause")
    store.send_command(run_id, "cancel")
    assert store.take_commands(run_id) == ["pause", "cancel"]
    assert store.take_commands(run_id) == []
    with pytest.raises(NaswError, match="command"):
        store.send_command(run_id, "explode")
    with pytest.raises(NaswError, match="run"):
        store.send_command(run_id + 5, "pause")


def test_specializations_and_latency_luts(store) -> None:
    run_id = store.create_run(CONFIG)
    sid = store.add_specialization(run_id, ["params<=3M"], {"feasible": True}, "dp", 1.5)
    assert store.specializations(run_id)[0]["id"] == sid
    store.save_latency_lut("mbconv", "p", "cpu", 1, {"0": [1.0]})
    store.save_latency_lut("mbconv", "p", "cpu", 1, {"0": [2.0]})
    assert store.latency_lut("mbconv", "p", "cpu", 1) == {"0": [2.0]}
    assert store.latency_lut("mbconv", "p", "gpu", 1) is None


def test_two_writers_and_a_polling_reader_never_see_locked(tmp_path) -> None:
    """Two coordinators writing different runs plus a 5 ms reader: no 'database is locked'."""
    path = tmp_path / "c.db"
    with Store(path) as setup:
        runs = [setup.create_run(CONFIG), setup.create_run(CONFIG)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(run_id: int) -> None:
        try:
            with Store(path) as own:
                for i in range(150):
                    own.record(run_id, Progress(
                        candidates=[CandidateRow(id=i, genotype={"space": "x"}, status="ok",
                                                 accuracy=0.5)],
                        metrics=[(i, "candidate/accuracy", 0.5)], state={"s": "s" * 2000},
                        summary={"n_done": i + 1}))
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    def reader() -> None:
        try:
            with Store(path) as own:
                while not stop.is_set():
                    own.runs()
                    own.candidates(runs[0])
                    time.sleep(0.005)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(r,)) for r in runs]
    poller = threading.Thread(target=reader)
    poller.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    poller.join()
    assert not errors, errors
    with Store(path) as check:
        assert [check.run(r)["n_done"] for r in runs] == [150, 150]
        assert len(check.candidates(runs[1])) == 150


def test_sql_injection_is_inert(store) -> None:
    run_id = store.create_run({**CONFIG, "name": "x'); DROP TABLE runs; --"})
    assert store.run(run_id)["name"].startswith("x');")
    assert store.candidates(run_id, status="ok' OR '1'='1") == []
    assert store.db["runs"].exists()


def test_delete_run_removes_every_row_but_refuses_a_live_run(store) -> None:
    keep, gone = store.create_run(CONFIG), store.create_run(CONFIG)
    for run_id in (keep, gone):
        store.record(run_id, Progress(
            candidates=[CandidateRow(id=0, genotype={"space": "x"})], state={"s": "s"},
            metrics=[(0, "k", 1.0)], events=[(0, "run", {})]))
    store.update_run(gone, status="running", pid=os.getpid(), host=socket.gethostname())
    with pytest.raises(NaswError, match="cancel it first"):
        store.delete_run(gone)
    store.update_run(gone, status="cancelled")
    store.delete_run(gone)
    assert store.run_ids() == [keep]
    assert store.candidates(gone) == [] and store.metrics(gone) == []
    assert store.conn.execute("SELECT count(*) FROM searcher_state").fetchone()[0] == 1
    assert len(store.candidates(keep)) == 1


# -- checkpoints: large arrays stored once, by content ----------------------------------
def _weights(seed: int, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def test_state_codec_round_trips_tensors_arrays_and_plain_data() -> None:
    import numpy as np
    import torch

    big = torch.randn(64, 128)  # 32 KiB: a blob
    state = {
        "weights": {"w": big, "half": big.to(torch.bfloat16), "ids": torch.arange(5000),
                    "small": torch.ones(3)},
        "alias": big,  # the same tensor twice
        "table": np.linspace(0, 1, 5000).reshape(50, 100), "ints": np.arange(10),
        "history": [{"id": 1, "reward": 0.5}], "name": "ponas",
        "view": big[:, :64],  # a view: stored as its own contents, not its base
        "tuple": (1, (2.5, "x")), "keys": {3: "int key", (1, 2): "tuple key", "$x": 1},
        "floats": [float("nan"), float("inf"), -float("inf"), 1e308, -0.0],
        "scalars": [np.float32(1.5), np.int64(2**62), np.bool_(True)], "big_int": 2**70,
        "rng": np.random.default_rng(3).bit_generator.state,
        "empty": torch.zeros(0, 3), "big_endian": np.arange(300, dtype=">f8"),
    }
    data, blobs, referenced = encode_state(state)
    assert data.startswith(b'{"format":"nasw-state/1"')
    # big once (alias: same digest), half, ids, table, view, big_endian
    assert set(blobs) == referenced and len(referenced) == 6
    assert len(data) < 16_384  # the document holds no large array
    back = decode_state(data, blobs.__getitem__)
    assert back["weights"]["half"].dtype == torch.bfloat16
    for name, value in state["weights"].items():
        assert torch.equal(back["weights"][name], value), name
    assert torch.equal(back["alias"], big) and back["alias"] is not back["weights"]["w"]
    twins, blobs2, _ = encode_state({"a": torch.zeros(1000), "b": torch.zeros(1000)})
    assert len(blobs2) == 1  # two equal arrays are stored once but come back as two
    twins_back = decode_state(twins, blobs2.__getitem__)
    twins_back["a"].add_(1)  # (an optimizer's zero buffers are updated in place)
    assert float(twins_back["b"].sum()) == 0.0
    assert torch.equal(back["view"], state["view"]) and back["view"].shape == (64, 64)
    np.testing.assert_array_equal(back["table"], state["table"])
    assert back["ints"].tolist() == list(range(10))
    assert back["tuple"] == (1, (2.5, "x")) and isinstance(back["tuple"][1], tuple)
    assert back["keys"] == {3: "int key", (1, 2): "tuple key", "$x": 1}
    assert np.isnan(back["floats"][0]) and back["floats"][1:] == state["floats"][1:]
    assert back["scalars"] == [1.5, 2**62, True]
    assert type(back["scalars"][0]) is np.float32 and type(back["scalars"][1]) is np.int64
    assert back["big_int"] == 2**70 and back["rng"] == state["rng"]
    assert back["empty"].shape == (0, 3)
    np.testing.assert_array_equal(back["big_endian"], state["big_endian"])
    assert back["history"] == state["history"] and back["name"] == "ponas"
    again, new, _ = encode_state(state, known=referenced)
    assert new == {} and again == data  # everything already stored: nothing to write


@pytest.mark.parametrize("value, why", [
    ({1, 2}, "set"), (object(), "object"), (lambda: 0, "function"),
    (pickle, "module"), (b"raw", "bytes"),
])
def test_state_codec_refuses_what_the_contract_does_not_allow(value, why) -> None:
    with pytest.raises(TypeError, match=r"state\['bad'\]\[0\]"):
        encode_state({"bad": [value]})


def test_state_codec_refuses_sparse_and_unlisted_dtypes() -> None:
    import numpy as np
    import torch

    with pytest.raises(TypeError, match="strided"):
        encode_state({"s": torch.eye(3).to_sparse()})
    with pytest.raises(TypeError, match="dtype"):
        encode_state({"o": np.array([object()])})
    with pytest.raises(TypeError, match="dtype"):
        encode_state({"u": np.array(["text"])})


def test_checkpoints_write_only_changed_arrays_and_drop_unreferenced_ones(tmp_path) -> None:
    import torch

    shapes = {f"layer{i}.weight": (64, 64, 3) for i in range(6)}  # 48 KiB each
    with Store(tmp_path / "s.db") as store:
        run_id = store.create_run({"name": "blobs", "space": {"name": "mbconv"}})
        supernet = _weights(0, shapes)
        store.save_state(run_id, {"supernet": supernet, "step": 1})
        first = store.state_size(run_id)
        assert first["arrays"] == 6 and first["state_bytes"] < 4096
        written = dict(store.conn.execute("SELECT digest, rowid FROM state_blobs"))

        supernet = {**supernet, "layer2.weight": supernet["layer2.weight"] + 1}  # one changed
        store.save_state(run_id, {"supernet": supernet, "step": 2})
        assert store.state_size(run_id)["arrays"] == 6  # the old layer2 array is gone
        now = dict(store.conn.execute("SELECT digest, rowid FROM state_blobs"))
        assert len(set(now.items()) & set(written.items())) == 5  # five rows untouched

        loaded = store.load_state(run_id)
        assert loaded["step"] == 2
        for name, value in supernet.items():
            assert torch.equal(loaded["supernet"][name], value)

        store.save_state(run_id, {"supernet": None, "step": 3})
        assert store.state_size(run_id)["arrays"] == 0
        store.save_state(run_id, {"supernet": supernet, "step": 4})
        store.update_run(run_id, status="finished")
        store.delete_run(run_id)
        assert store.conn.execute("SELECT count(*) FROM state_blobs").fetchone()[0] == 0


def _plain_values():
    from hypothesis import strategies as st

    leaves = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
                       st.floats(allow_nan=False), st.text(max_size=20))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.dictionaries(st.integers(-5, 5), inner, max_size=3)), max_leaves=20)


def test_state_codec_round_trips_any_plain_structure() -> None:
    """Property: every structure the contract allows comes back equal, types included."""
    from hypothesis import given, settings

    @settings(max_examples=300, deadline=None)
    @given(_plain_values())
    def round_trip(value: Any) -> None:
        data, blobs, _ = encode_state({"v": value})
        back = decode_state(data, blobs.__getitem__)["v"]
        assert back == value and type(back) is type(value)

    round_trip()


def test_state_codec_decoding_hostile_bytes_only_ever_refuses() -> None:
    """Fuzz: mutated, truncated or crafted documents raise StateFormatError (a NaswError),
    never anything else and never run code."""
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from workbench.state_codec import StateFormatError

    data, blobs, _ = encode_state({"a": np.arange(400.0), "b": (1, {2: "x"}), "c": [1.5]})
    crafted = [b'{"format":"nasw-state/1","state":{"a":{"$array":{"lib":"numpy","dtype":"|O",'
               b'"shape":[1],"b64":"AA=="}}}}',
               b'{"format":"nasw-state/1","state":{"a":{"$array":{"lib":"torch","dtype":'
               b'"float32","shape":[99999999999],"b64":""}}}}',
               b'{"format":"nasw-state/1","state":{"a":{"$dict":[[[1],2]]}}}',
               b'{"format":"nasw-state/1","state":{"a":{"$f":"1e999"}}}',
               b'{"format":"nasw-state/1","state":' + b"[" * 5000 + b"]" * 5000 + b"}",
               b'{"format":"nasw-state/1","state":{"$evil":1}}', b"\x80\x05K\x01.", b""]
    for document in crafted:
        with pytest.raises(StateFormatError):
            decode_state(document, blobs.__getitem__)

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def mutated(draw) -> None:
        raw = bytearray(data)
        for _ in range(draw.draw(st.integers(1, 4))):
            raw[draw.draw(st.integers(0, len(raw) - 1))] = draw.draw(st.integers(0, 255))
        cut = draw.draw(st.integers(0, len(raw)))
        with contextlib.suppress(StateFormatError):
            decode_state(bytes(raw[:cut]), lambda d: blobs.get(d, b"\x80"))

    mutated()


def test_unchanged_tensors_are_not_copied_again_but_in_place_changes_are_seen() -> None:
    """The codec remembers a tensor's digest against its version counter: an unchanged stored
    tensor costs nothing on the next checkpoint, and any in-place change (an optimizer step,
    ``copy_`` under ``no_grad``) is stored again, so a resume never sees stale weights."""
    import torch

    shared = {"a": torch.randn(64, 64), "b": torch.randn(64, 64)}
    state = {"shared": shared, "policy": torch.randn(32, 32)}
    _, first, _ = encode_state(state)
    known = set(first)
    document, again, referenced = encode_state(state, known)
    assert again == {} and referenced == known
    state["policy"].add_(1.0)
    with torch.no_grad():
        shared["a"].copy_(torch.zeros(64, 64))
    document, changed, _ = encode_state(state, known)
    assert len(changed) == 2
    back = decode_state(document, {**first, **changed}.__getitem__)
    assert torch.equal(back["policy"], state["policy"]) and torch.equal(back["shared"]["a"],
                                                                        shared["a"])
    _, fresh, _ = encode_state(state, set())  # a new store still receives every array
    assert len(fresh) == 3
