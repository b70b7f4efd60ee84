"""The SQLite store: the only module that speaks SQL.

One file (``nasw.db``) holds every run. The coordinator of a run is the only writer of that
run's rows; the TUI and the CLI read, and write only run creation and small command rows.

Why these choices:

* **WAL + busy timeout + ``BEGIN IMMEDIATE``**: readers never block the writer and the writer
  never blocks readers; a write transaction takes the write lock up front, so two writers
  (two runs in one file, or a CLI command row) wait for each other within the busy timeout
  instead of failing with "database is locked" on a lock upgrade.
* **Short, batched transactions**: the coordinator writes everything one loop iteration
  produced (finished candidates, new in-flight candidates, metrics, events, the searcher's
  checkpoint, the run summary and the heartbeat) in one transaction, so the searcher state in
  the database always matches the candidates in the database.
* **Forward migrations**: :data:`MIGRATIONS` is an ordered list of functions; the
  ``schema_version`` table records the last one applied. sqlite-utils' ``Migrations`` lives in
  the separate ``sqlite-migrate`` package, which is not a dependency; this list does the same
  job in a few lines. A migration is never edited once released: append a new one.
* **Only parameters** reach SQL text; table and column names are constants of this module.
* **Permissions**: a new database file is created with the user's umask but never
  world-writable (``0o664`` before the umask, minus ``o+w`` always).

Times are Unix seconds (float). JSON columns hold ``json.dumps`` text.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import socket
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from searchers.errors import NaswError

BUSY_TIMEOUT_MS = 30_000
#: a coordinator writes its heartbeat at least this often (seconds)
HEARTBEAT_S = 2.0
#: a running run whose heartbeat is older than this is shown ``interrupted``
STALE_AFTER_S = 30.0

#: stored run statuses; ``interrupted`` is also *computed* for a run marked running or paused
#: whose coordinator is gone (dead pid on this host, or a stale heartbeat)
RUN_STATUSES = ("created", "running", "paused", "finished", "cancelled", "failed", "interrupted")
#: runs in these statuses have a live coordinator (unless it died: then ``interrupted``)
LIVE_STATUSES = ("created", "running", "paused")
CANDIDATE_STATUSES = ("running", "ok", "failed", "oom", "diverged", "cancelled")
COMMANDS = ("pause", "resume", "cancel")


# -- migrations ------------------------------------------------------------------------------
def _v1_initial(db: sqlite_utils.Database) -> None:
    db["runs"].create({
        "id": int, "name": str, "config": str, "space": str, "preset": str, "searcher": str,
        "evaluator": str, "status": str, "budget": int, "wall_time_s": float,
        "constraints": str, "pid": int, "host": str, "heartbeat": float, "created": float,
        "started": float, "finished": float, "elapsed": float, "error": str, "log_path": str,
        "workers": str, "n_asked": int, "n_done": int, "n_ok": int, "n_failed": int,
        "n_feasible": int, "best_accuracy": float, "best_candidate": int,
        "best_feasible": int, "resumes": int,
    }, pk="id", not_null={"name", "config", "status", "created"},
        defaults={"status": "created", "n_asked": 0, "n_done": 0, "n_ok": 0, "n_failed": 0,
                  "n_feasible": 0, "resumes": 0, "elapsed": 0.0})
    db["candidates"].create({
        "run_id": int, "id": int, "seq": int, "genotype": str, "hash": str, "costs": str,
        "params": float, "madds": float, "flops": float, "intensity": float,
        "accuracy": float, "val_loss": float, "reward": float, "feasible": int, "status": str,
        "tag": str, "wall_time": float, "device": str, "error": str, "epochs": int,
        "loss_curve": str, "started": float, "finished": float, "attempts": int,
    }, pk=("run_id", "id"), not_null={"genotype", "status"},
        defaults={"attempts": 1})
    db["candidates"].create_index(["run_id", "seq"])
    db["candidates"].create_index(["run_id", "hash"])
    db["metrics"].create({"run_id": int, "step": int, "key": str, "value": float,
                          "time": float})
    db["metrics"].create_index(["run_id", "key", "step"])
    db["events"].create({"run_id": int, "step": int, "kind": str, "data": str, "time": float})
    db["events"].create_index(["run_id", "kind"])
    db["accuracy_table"].create({
        "run_id": int, "layer": int, "choice": int, "accuracy": float, "loss": float,
        "costs": str, "time": float,
    }, pk=("run_id", "layer", "choice"))
    db["specializations"].create({
        "id": int, "run_id": int, "constraints": str, "result": str, "solver": str,
        "solve_ms": float, "created": float,
    }, pk="id")
    db["specializations"].create_index(["run_id"])
    db["commands"].create({"id": int, "run_id": int, "command": str, "created": float,
                           "consumed": float}, pk="id")
    db["commands"].create_index(["run_id", "consumed"])
    db["searcher_state"].create({"run_id": int, "blob": bytes, "updated": float},
                                pk="run_id")
    db["latency_luts"].create({
        "space": str, "preset": str, "device": str, "batch_size": int, "table": str,
        "created": float,
    }, pk=("space", "preset", "device", "batch_size"))


def _v2_state_blobs(db: sqlite_utils.Database) -> None:
    """Large arrays of a checkpoint, stored once by content (see :func:`encode_state`)."""
    db["state_blobs"].create({"run_id": int, "digest": str, "data": bytes},
                             pk=("run_id", "digest"))


#: forward migrations, applied in order; ``schema_version`` = how many have been applied
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1_initial, _v2_state_blobs]
SCHEMA_VERSION = len(MIGRATIONS)


# -- helpers ---------------------------------------------------------------------------------
def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value and value not in (float("inf"), float("-inf")) else None


#: arrays at least this large (bytes) are stored as content-addressed blobs, not inline
BLOB_MIN_BYTES = 1024


def _big_array(obj: Any) -> str | None:
    """``"torch"`` / ``"numpy"`` for a plain tensor or ndarray of BLOB_MIN_BYTES or more."""
    torch = sys.modules.get("torch")  # no tensor can exist unless torch is imported
    if torch is not None and type(obj) is torch.Tensor:
        plain = (obj.layout is torch.strided and not obj.is_quantized and not obj.is_meta
                 and not obj.is_nested)  # anything else stays in the pickle as it was
        return "torch" if plain and obj.numel() * obj.element_size() >= BLOB_MIN_BYTES else None
    numpy = sys.modules.get("numpy")
    if numpy is not None and type(obj) is numpy.ndarray and obj.dtype.kind in "biufc":
        return "numpy" if obj.nbytes >= BLOB_MIN_BYTES else None
    return None


def _array_blob(kind: str, obj: Any) -> tuple[tuple[str, str, str, tuple[int, ...]], bytes]:
    """``((digest, kind, dtype, shape), raw bytes)`` of a tensor or ndarray (C order, CPU).
    The digest covers kind, dtype, shape and bytes, so equal digests mean equal arrays."""
    if kind == "torch":
        torch = sys.modules["torch"]
        obj = obj.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
        raw = obj.reshape(-1).view(torch.uint8).numpy().tobytes()
        dtype = str(obj.dtype).removeprefix("torch.")
    else:
        obj = sys.modules["numpy"].ascontiguousarray(obj)
        raw = obj.tobytes()
        dtype = obj.dtype.str
    shape = tuple(int(n) for n in obj.shape)
    digest = hashlib.blake2b(f"{kind}:{dtype}:{shape}:".encode(), digest_size=20)
    digest.update(raw)
    return (f"{kind}:{digest.hexdigest()}", kind, dtype, shape), raw


def _array_from_blob(kind: str, dtype: str, shape: tuple[int, ...], raw: bytes) -> Any:
    if kind == "torch":
        import torch

        flat = torch.frombuffer(bytearray(raw), dtype=getattr(torch, dtype)) if raw else \
            torch.empty(0, dtype=getattr(torch, dtype))
        return flat.reshape(shape)
    import numpy

    return numpy.frombuffer(raw, dtype=numpy.dtype(dtype)).reshape(shape).copy()


def encode_state(state: Mapping[str, Any], known: Collection[str] = frozenset()
                 ) -> tuple[bytes, dict[str, bytes], set[str]]:
    """Pickle a searcher checkpoint with its arrays taken out, by content.

    Returns ``(pickle, new_blobs, referenced)``: the pickle refers to each tensor or ndarray of
    :data:`BLOB_MIN_BYTES` or more by a digest of its contents (plus dtype and shape);
    ``new_blobs`` maps the digests not in ``known`` (already stored) to the arrays' raw bytes;
    ``referenced`` is every digest the pickle uses. Why: EPNAS and PONAS checkpoint network
    weights after every result, and most of them have not changed since the last write -- a
    plain pickle rewrote every weight every time; this writes only the arrays that changed.
    """
    new: dict[str, bytes] = {}
    referenced: set[str] = set()
    objects: dict[int, int] = {}  # id(array) -> its number: aliases stay aliases

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            kind = _big_array(obj)
            if kind is None:
                return None
            pid, raw = _array_blob(kind, obj)
            if pid[0] not in known:
                new.setdefault(pid[0], raw)
            referenced.add(pid[0])
            return (*pid, objects.setdefault(id(obj), len(objects)))

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=5).dump(dict(state))
    return buffer.getvalue(), new, referenced


def decode_state(data: bytes, load_blob: Callable[[str], bytes]) -> dict[str, Any]:
    """Inverse of :func:`encode_state`; ``load_blob(digest)`` returns a stored array's bytes.
    Arrays come back on the CPU; one array referenced twice comes back as one object, two
    equal arrays as two (an optimizer updates its zero-initialised buffers in place). A plain
    pickle (written before blobs existed) loads unchanged."""
    raw: dict[str, bytes] = {}
    loaded: dict[int, Any] = {}

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            digest, kind, dtype, shape, number = pid
            if number not in loaded:
                if digest not in raw:
                    raw[digest] = load_blob(digest)
                loaded[number] = _array_from_blob(kind, dtype, tuple(shape), raw[digest])
            return loaded[number]

    return _Unpickler(io.BytesIO(data)).load()


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` runs on this host and is not a zombie (a killed, unreaped child)."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{int(pid)}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _runs_nasw(pid: int) -> bool:
    """Whether ``pid``'s command line is a nasw coordinator (True when it cannot be read)."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return True
    return b"workbench" in cmdline or b"nasw" in cmdline


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with the user's umask, never world-writable (no-op if present)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o664)
    except FileExistsError:
        return
    os.close(fd)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & stat.S_IWOTH:
        os.chmod(path, mode & ~stat.S_IWOTH)


def world_writable(path: str | os.PathLike[str]) -> bool:
    try:
        return bool(os.stat(path).st_mode & stat.S_IWOTH)
    except FileNotFoundError:
        return False


@dataclass
class CandidateRow:
    """One candidate as the coordinator writes it (in flight or finished)."""

    id: int
    genotype: Mapping[str, Any]
    status: str = "running"
    hash: str | None = None
    costs: Mapping[str, float] = field(default_factory=dict)
    accuracy: float | None = None
    val_loss: float | None = None
    reward: float | None = None
    feasible: bool | None = None
    tag: str = ""
    wall_time: float | None = None
    device: str = ""
    error: str = ""
    epochs: int | None = None
    loss_curve: Sequence[float] = ()
    started: float | None = None
    finished: float | None = None
    attempts: int = 1


@dataclass
class Progress:
    """Everything one coordinator loop iteration writes, in one transaction."""

    candidates: list[CandidateRow] = field(default_factory=list)
    metrics: list[tuple[int, str, float]] = field(default_factory=list)  # (step, key, value)
    events: list[tuple[int, str, Mapping[str, Any]]] = field(default_factory=list)
    table_rows: list[Mapping[str, Any]] = field(default_factory=list)  # PONAS accuracy table
    #: the searcher's ``state_dict()`` (encoded with :func:`encode_state`), or a ready pickle
    state: Mapping[str, Any] | bytes | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)  # runs columns (n_done, best_...)


_CANDIDATE_COLUMNS = (
    "run_id", "id", "seq", "genotype", "hash", "costs", "params", "madds", "flops",
    "intensity", "accuracy", "val_loss", "reward", "feasible", "status", "tag", "wall_time",
    "device", "error", "epochs", "loss_curve", "started", "finished", "attempts",
)
_UPSERT_CANDIDATE = (
    f"INSERT INTO candidates ({', '.join(_CANDIDATE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _CANDIDATE_COLUMNS)}) "
    "ON CONFLICT(run_id, id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _CANDIDATE_COLUMNS[2:] if c != "started")
    + ", started = coalesce(candidates.started, excluded.started)"
)
_SUMMARY_COLUMNS = ("status", "pid", "host", "heartbeat", "started", "finished", "elapsed",
                    "error", "log_path", "workers", "n_asked", "n_done", "n_ok", "n_failed",
                    "n_feasible", "best_accuracy", "best_candidate", "best_feasible", "resumes")
_JSON_RUN_COLUMNS = ("config", "constraints", "workers")
#: tables holding a run's rows (keyed by ``run_id``), all removed with the run
_RUN_TABLES = ("candidates", "metrics", "events", "accuracy_table", "specializations",
               "commands", "searcher_state", "state_blobs")


class Store:
    """A connection to one ``nasw.db``; cheap to open, one per process/thread."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 migrate: bool = True, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        """``create=False``: refuse a missing file; ``migrate=False``: never change the schema
        (``nasw doctor`` inspects a file without writing to it)."""
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise NaswError("db", str(self.path), "an existing nasw database",
                                hint="start a run with `nasw run CONFIG` first")
            create_private_file(self.path)
        conn = sqlite3.connect(str(self.path), timeout=busy_timeout_ms / 1000,
                               check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.conn = conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if not migrate:
            return
        if self.db.journal_mode != "wal":
            self.db.enable_wal()
        conn.execute("PRAGMA synchronous = NORMAL")
        self.migrate()

    # -- plumbing --------------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction that takes the write lock up front (``BEGIN IMMEDIATE``)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def schema_version(self) -> int:
        if not self.db["schema_version"].exists():
            return 0
        row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> int:
        """Apply the migrations this file lacks; returns the resulting version."""
        if self.schema_version() == SCHEMA_VERSION:
            return SCHEMA_VERSION
        with self.write():
            if not self.db["schema_version"].exists():
                self.db["schema_version"].create({"version": int, "applied": float},
                                                 pk="version")
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise NaswError("db.schema_version", current, f"<= {SCHEMA_VERSION}",
                                hint="this database was written by a newer nasw")
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](self.db)
                self.conn.execute("INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                                  (version + 1, time.time()))
        return SCHEMA_VERSION

    def health(self) -> dict[str, Any]:
        """Facts ``nasw doctor`` reports: journal mode, integrity, version, permissions."""
        integrity = self.conn.execute("PRAGMA quick_check").fetchone()[0]
        mode = stat.S_IMODE(os.stat(self.path).st_mode)
        return {
            "path": str(self.path.resolve()), "journal_mode": self.db.journal_mode,
            "schema_version": self.schema_version(), "expected_schema_version": SCHEMA_VERSION,
            "integrity": integrity, "mode": oct(mode),
            "world_writable": bool(mode & stat.S_IWOTH),
            "runs": (self.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
                     if self.db["runs"].exists() else None),
            "size_bytes": os.stat(self.path).st_size,
        }

    # -- runs ------------------------------------------------------------------------------
    def create_run(self, config: Mapping[str, Any], *, name: str | None = None) -> int:
        """Insert a run in status ``created`` from a validated config dict; returns its id."""
        budget = config.get("budget") or {}
        search = config.get("searcher") or {}
        space = config.get("space") or {}
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (name, config, space, preset, searcher, evaluator, status,"
                " budget, wall_time_s, constraints, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (name or config.get("name") or "run", _json(config), space.get("name"),
                 space.get("preset"), search.get("name"), config.get("evaluator"), "created",
                 budget.get("candidates"), budget.get("wall_time_s"),
                 _json(config.get("constraints") or []), time.time()))
            return int(cursor.lastrowid)

    def update_run(self, run_id: int, **columns: Any) -> None:
        """Set summary/lifecycle columns of a run (coordinator and CLI)."""
        with self.write() as conn:
            self._update_run(conn, run_id, columns)

    def _update_run(self, conn: sqlite3.Connection, run_id: int,
                    columns: Mapping[str, Any]) -> None:
        unknown = set(columns) - set(_SUMMARY_COLUMNS)
        if unknown:
            raise KeyError(f"not a run summary column: {sorted(unknown)}")
        if not columns:
            return
        names = sorted(columns)
        values = [_json(columns[n]) if n in _JSON_RUN_COLUMNS else columns[n] for n in names]
        conn.execute(f"UPDATE runs SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                     (*values, run_id))

    def heartbeat(self, run_id: int, **columns: Any) -> None:
        self.update_run(run_id, heartbeat=time.time(), **columns)

    def _decode_run(self, row: Mapping[str, Any]) -> dict[str, Any]:
        run = dict(row)
        for column in _JSON_RUN_COLUMNS:
            run[column] = _loads(run.get(column))
        run["stored_status"] = run["status"]
        run["status"] = self.effective_status(run)
        budget = run.get("budget")
        run["progress"] = (min(1.0, (run.get("n_done") or 0) / budget) if budget else None)
        run["best_feasible"] = None if run.get("best_feasible") is None else bool(
            run["best_feasible"])
        return run

    @staticmethod
    def effective_status(run: Mapping[str, Any], now: float | None = None) -> str:
        """``interrupted`` for a live-status run whose coordinator is gone, else the stored one.

        Gone = its pid is dead on this host, or (another host, or a pid we cannot check) its
        heartbeat is older than :data:`STALE_AFTER_S`. A ``created`` run with no pid yet is
        interrupted only once it is stale too (its coordinator may be starting).
        """
        status = run["status"]
        if status not in LIVE_STATUSES:
            return status
        now = time.time() if now is None else now
        beat = run.get("heartbeat") or run.get("created") or 0.0
        stale = now - beat > STALE_AFTER_S
        if run.get("pid") and run.get("host") == socket.gethostname():
            if not pid_alive(run["pid"]):
                return "interrupted"
            # a stale heartbeat from a live pid: the pid may have been reused by another program
            return "interrupted" if stale and not _runs_nasw(run["pid"]) else status
        return "interrupted" if stale else status

    def run(self, run_id: int) -> dict[str, Any]:
        """One run with decoded config and computed status; NaswError if there is none."""
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        columns = [d[0] for d in row.description]
        data = row.fetchone()
        if data is None:
            raise NaswError("run", run_id, self.run_ids() or "no runs yet")
        return self._decode_run(dict(zip(columns, data)))

    def run_ids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM runs ORDER BY id")]

    def runs(self) -> list[dict[str, Any]]:
        """Run summaries for the runs list: status (computed), progress, best, feasible."""
        return [self._decode_run(r) for r in self.db.query("SELECT * FROM runs ORDER BY id")]

    def delete_run(self, run_id: int) -> None:
        """Remove a run and every row it wrote; refused while its coordinator is alive."""
        with self.write() as conn:
            run = self.run(run_id)
            if run["status"] in LIVE_STATUSES:
                raise NaswError("run", run_id, "a run with no live coordinator",
                                hint=f"it is {run['status']}; cancel it first")
            for table in _RUN_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- the coordinator's writes ----------------------------------------------------------
    def claim_run(self, run_id: int, pid: int, host: str) -> dict[str, Any]:
        """Make ``pid`` the run's coordinator; refuses a finished run or one with a live one.

        Check and claim happen in one write transaction, so two ``nasw resume`` at once
        cannot both win. Returns the run as it was before the claim.
        """
        with self.write() as conn:
            run = self.check_resumable(run_id, pid)
            self._update_run(conn, run_id, {"pid": pid, "host": host, "heartbeat": time.time(),
                                            "status": "running"})
        return run

    def check_resumable(self, run_id: int, pid: int | None = None) -> dict[str, Any]:
        """The run, if a (new) coordinator may take it; NaswError saying why not otherwise."""
        run = self.run(run_id)
        if run["status"] == "finished":
            raise NaswError("run", run_id, "a run that is not finished",
                            hint="it finished; start a new run to search more")
        if run["status"] in LIVE_STATUSES and run.get("pid") and run["pid"] != pid:
            raise NaswError("run", run_id, "a run with no live coordinator",
                            hint=f"its coordinator (pid {run['pid']} on {run['host']}) "
                                 "is still running")
        return run

    def candidate_stats(self, run_id: int) -> dict[str, Any]:
        """Counts and best of a run's evaluated candidates (the coordinator's summary on resume)."""
        counts = self.conn.execute(
            "SELECT count(*), coalesce(sum(status = 'ok'), 0), coalesce(sum(status != 'ok'), 0),"
            " coalesce(sum(feasible = 1), 0) FROM candidates"
            " WHERE run_id = ? AND status NOT IN ('running', 'cancelled')", (run_id,)).fetchone()
        stats: dict[str, Any] = dict(zip(("n_done", "n_ok", "n_failed", "n_feasible"), counts))
        best = self.best_candidate(run_id)
        stats.update(best_key=None, best_accuracy=None, best_candidate=None, best_feasible=None)
        if best is not None:
            is_feasible = bool(best["feasible"])
            stats.update(best_key=(is_feasible, best["accuracy"] if is_feasible else best["reward"]),
                         best_accuracy=best["accuracy"], best_candidate=best["id"],
                         best_feasible=int(is_feasible))
        return stats

    def candidate_attempts(self, run_id: int) -> dict[int, int]:
        return dict(self.conn.execute(
            "SELECT id, attempts FROM candidates WHERE run_id = ?", (run_id,)).fetchall())

    def record(self, run_id: int, progress: Progress) -> None:
        """Write one loop iteration's output in a single transaction (see module docstring)."""
        now = time.time()
        state, blobs, stale = None, {}, set()
        if progress.state is not None:  # encoded before the write lock: one writer per run
            known = self._blob_digests(run_id)
            if isinstance(progress.state, bytes):
                state, referenced = progress.state, set()
            else:
                state, blobs, referenced = encode_state(progress.state, known)
            stale = known - referenced
        with self.write() as conn:
            if progress.candidates:
                seq = conn.execute("SELECT coalesce(max(seq), 0) FROM candidates WHERE run_id = ?",
                                   (run_id,)).fetchone()[0]
                rows = []
                for offset, cand in enumerate(progress.candidates, start=1):
                    costs = dict(cand.costs or {})
                    rows.append((
                        run_id, cand.id, seq + offset, _json(cand.genotype), cand.hash,
                        _json(costs), _finite(costs.get("params")), _finite(costs.get("madds")),
                        _finite(costs.get("flops")), _finite(costs.get("intensity")),
                        _finite(cand.accuracy), _finite(cand.val_loss), _finite(cand.reward),
                        None if cand.feasible is None else int(bool(cand.feasible)),
                        cand.status, cand.tag, cand.wall_time, cand.device, cand.error,
                        cand.epochs, _json(list(cand.loss_curve)), cand.started or now,
                        cand.finished, cand.attempts,
                    ))
                conn.executemany(_UPSERT_CANDIDATE, rows)
            if progress.metrics:
                conn.executemany(
                    "INSERT INTO metrics (run_id, step, key, value, time) VALUES (?,?,?,?,?)",
                    [(run_id, step, key, _finite(value), now)
                     for step, key, value in progress.metrics])
            if progress.events:
                conn.executemany(
                    "INSERT INTO events (run_id, step, kind, data, time) VALUES (?,?,?,?,?)",
                    [(run_id, step, kind, _json(dict(data)), now)
                     for step, kind, data in progress.events])
            if progress.table_rows:
                conn.executemany(
                    "INSERT INTO accuracy_table (run_id, layer, choice, accuracy, loss, costs,"
                    " time) VALUES (?,?,?,?,?,?,?) ON CONFLICT(run_id, layer, choice) DO UPDATE"
                    " SET accuracy = excluded.accuracy, loss = excluded.loss,"
                    " costs = excluded.costs, time = excluded.time",
                    [(run_id, int(r["layer"]), int(r["choice"]), _finite(r.get("accuracy")),
                      _finite(r.get("loss")), _json(r.get("costs") or {}), now)
                     for r in progress.table_rows])
            if state is not None:
                conn.executemany("INSERT OR IGNORE INTO state_blobs (run_id, digest, data)"
                                 " VALUES (?,?,?)",
                                 [(run_id, digest, data) for digest, data in blobs.items()])
                conn.execute(
                    "INSERT INTO searcher_state (run_id, blob, updated) VALUES (?,?,?)"
                    " ON CONFLICT(run_id) DO UPDATE SET blob = excluded.blob,"
                    " updated = excluded.updated", (run_id, state, now))
                conn.executemany("DELETE FROM state_blobs WHERE run_id = ? AND digest = ?",
                                 [(run_id, digest) for digest in stale])
            self._update_run(conn, run_id, {"heartbeat": now, **progress.summary})

    def save_state(self, run_id: int, state: Mapping[str, Any]) -> None:
        self.record(run_id, Progress(state=dict(state)))

    def load_state(self, run_id: int) -> dict[str, Any] | None:
        """The searcher's last checkpoint (``state_dict()``), or None before the first one.

        The blob is a pickle the coordinator wrote into this user's own database file; it is
        never read from any other source.
        """
        row = self.conn.execute("SELECT blob FROM searcher_state WHERE run_id = ?",
                                (run_id,)).fetchone()
        if row is None:
            return None

        def load_blob(digest: str) -> bytes:
            found = self.conn.execute("SELECT data FROM state_blobs WHERE run_id = ? AND"
                                      " digest = ?", (run_id, digest)).fetchone()
            if found is None:
                raise NaswError("searcher_state", digest, "a stored array",
                                hint="the checkpoint refers to an array that is missing")
            return found[0]

        return decode_state(row[0], load_blob)

    def _blob_digests(self, run_id: int) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT digest FROM state_blobs WHERE run_id = ?", (run_id,))}

    def state_size(self, run_id: int) -> dict[str, int]:
        """Bytes of a run's checkpoint: the pickle and its stored arrays (``nasw show``)."""
        main = self.conn.execute("SELECT coalesce(length(blob), 0) FROM searcher_state"
                                 " WHERE run_id = ?", (run_id,)).fetchone()
        arrays = self.conn.execute("SELECT count(*), coalesce(sum(length(data)), 0)"
                                   " FROM state_blobs WHERE run_id = ?", (run_id,)).fetchone()
        return {"pickle_bytes": int(main[0]) if main else 0, "arrays": int(arrays[0]),
                "array_bytes": int(arrays[1])}

    # -- reads for the TUI and CLI ---------------------------------------------------------
    def candidates(self, run_id: int, *, since_seq: int = 0, since_id: int | None = None,
                   status: str | None = None, order: str = "id") -> list[dict[str, Any]]:
        """Candidates of a run, decoded. Incremental: ``since_seq`` returns only rows written
        (inserted *or* updated) after that ``seq``; remember the largest ``seq`` you saw.
        ``since_id`` returns only ids greater than it."""
        where, params = ["run_id = ?", "seq > ?"], [run_id, since_seq]
        if since_id is not None:
            where.append("id > ?")
            params.append(since_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        order_by = {"id": "id", "seq": "seq", "accuracy": "accuracy DESC, id"}[order]
        rows = self.db.query(
            f"SELECT * FROM candidates WHERE {' AND '.join(where)} ORDER BY {order_by}", params)
        return [self._decode_candidate(r) for r in rows]

    def candidate(self, run_id: int, candidate_id: int) -> dict[str, Any]:
        rows = list(self.db.query("SELECT * FROM candidates WHERE run_id = ? AND id = ?",
                                  (run_id, candidate_id)))
        if not rows:
            ids = [r[0] for r in self.conn.execute(
                "SELECT id FROM candidates WHERE run_id = ? ORDER BY id LIMIT 20", (run_id,))]
            raise NaswError("candidate", candidate_id, ids or "no candidates yet")
        return self._decode_candidate(rows[0])

    @staticmethod
    def _decode_candidate(row: Mapping[str, Any]) -> dict[str, Any]:
        cand = dict(row)
        cand["genotype"] = _loads(cand["genotype"])
        cand["costs"] = _loads(cand["costs"]) or {}
        cand["loss_curve"] = _loads(cand["loss_curve"]) or []
        if cand["feasible"] is not None:
            cand["feasible"] = bool(cand["feasible"])
        return cand

    def best_candidate(self, run_id: int) -> dict[str, Any] | None:
        """Best feasible finished candidate by accuracy, else best by reward (as searchers)."""
        for sql in ("SELECT * FROM candidates WHERE run_id = ? AND status = 'ok' AND feasible = 1"
                    " ORDER BY accuracy DESC, id LIMIT 1",
                    "SELECT * FROM candidates WHERE run_id = ? AND status = 'ok'"
                    " ORDER BY reward DESC, id LIMIT 1"):
            rows = list(self.db.query(sql, (run_id,)))
            if rows:
                return self._decode_candidate(rows[0])
        return None

    def metrics(self, run_id: int, *, since_rowid: int = 0,
                keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Metric points (``rowid, step, key, value, time``) written after ``since_rowid``."""
        sql = "SELECT rowid, step, key, value, time FROM metrics WHERE run_id = ? AND rowid > ?"
        params: list[Any] = [run_id, since_rowid]
        keys = list(keys or [])
        if keys:
            sql += f" AND key IN ({', '.join('?' for _ in keys)})"
            params += keys
        return list(self.db.query(sql + " ORDER BY rowid", params))

    def metric_keys(self, run_id: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT key FROM metrics WHERE run_id = ? ORDER BY key", (run_id,))]

    def events(self, run_id: int, *, since_rowid: int = 0,
               kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT rowid, step, kind, data, time FROM events WHERE run_id = ? AND rowid > ?"
        params: list[Any] = [run_id, since_rowid]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        rows = list(self.db.query(sql + " ORDER BY rowid", params))
        for row in rows:
            row["data"] = _loads(row["data"]) or {}
        return rows

    def accuracy_table(self, run_id: int) -> list[dict[str, Any]]:
        rows = list(self.db.query(
            "SELECT layer, choice, accuracy, loss, costs, time FROM accuracy_table"
            " WHERE run_id = ? ORDER BY layer, choice", (run_id,)))
        for row in rows:
            row["costs"] = _loads(row["costs"]) or {}
        return rows

    # -- commands (pause / resume / cancel) ------------------------------------------------
    def send_command(self, run_id: int, command: str) -> int:
        if command not in COMMANDS:
            raise NaswError("command", command, COMMANDS)
        self.run(run_id)  # NaswError for an unknown run
        with self.write() as conn:
            cursor = conn.execute("INSERT INTO commands (run_id, command, created) VALUES (?,?,?)",
                                  (run_id, command, time.time()))
            return int(cursor.lastrowid)

    def take_commands(self, run_id: int) -> list[str]:
        """Unconsumed commands of a run, oldest first, marked consumed (coordinator)."""
        pending = self.conn.execute(
            "SELECT id, command FROM commands WHERE run_id = ? AND consumed IS NULL ORDER BY id",
            (run_id,)).fetchall()
        if not pending:
            return []
        with self.write() as conn:
            conn.executemany("UPDATE commands SET consumed = ? WHERE id = ?",
                             [(time.time(), cid) for cid, _ in pending])
        return [command for _, command in pending]

    # -- specializations (PONAS) -----------------------------------------------------------
    def add_specialization(self, run_id: int, constraints: Any, result: Mapping[str, Any],
                           solver: str, solve_ms: float) -> int:
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO specializations (run_id, constraints, result, solver, solve_ms,"
                " created) VALUES (?,?,?,?,?,?)",
                (run_id, _json(constraints), _json(dict(result)), solver, float(solve_ms),
                 time.time()))
            return int(cursor.lastrowid)

    def specializations(self, run_id: int) -> list[dict[str, Any]]:
        rows = list(self.db.query(
            "SELECT * FROM specializations WHERE run_id = ? ORDER BY id", (run_id,)))
        for row in rows:
            row["constraints"] = _loads(row["constraints"])
            row["result"] = _loads(row["result"])
        return rows

    # -- latency look-up tables ------------------------------------------------------------
    def save_latency_lut(self, space: str, preset: str, device: str, batch_size: int,
                         table: Any) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO latency_luts (space, preset, device, batch_size, \"table\", created)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(space, preset, device, batch_size) DO UPDATE"
                " SET \"table\" = excluded.\"table\", created = excluded.created",
                (space, preset, device, int(batch_size), _json(table), time.time()))

    def latency_lut(self, space: str, preset: str, device: str, batch_size: int) -> Any:
        row = self.conn.execute(
            "SELECT \"table\" FROM latency_luts WHERE space = ? AND preset = ? AND device = ?"
            " AND batch_size = ?", (space, preset, device, int(batch_size))).fetchone()
        return None if row is None else _loads(row[0])


def open_store(path: str | os.PathLike[str], *, create: bool = True) -> Store:
    """``Store(path)``: the spelling the TUI and CLI use."""
    return Store(path, create=create)


__all__ = [
    "BLOB_MIN_BYTES", "CANDIDATE_STATUSES", "COMMANDS", "HEARTBEAT_S", "MIGRATIONS",
    "RUN_STATUSES", "SCHEMA_VERSION", "decode_state", "encode_state", "STALE_AFTER_S", "CandidateRow", "Progress", "Store", "create_private_file",
    "open_store", "pid_alive", "world_writable",
]
