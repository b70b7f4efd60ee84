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
import json
import os
import shutil
import socket
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from searchers.errors import NaswError
from workbench.state_codec import (
    BLOB_MIN_BYTES,
    LEGACY_MESSAGE,
    LegacyStateError,
    StateFormatError,
    decode_state,
    encode_state,
)

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


def _v3_safe_store(db: sqlite_utils.Database) -> None:
    """Safe-to-share store: a never-reused run uid (its files' folder), the run lease (owner
    token + the coordinator's process start time), and each candidate's tell order and job
    meta, from which a searcher's history is rebuilt (the checkpoint no longer carries it).

    Runs that exist already keep their files where they were: uid ``run-<id>``. Their pickled
    checkpoints stay in place but are never loaded (:data:`LEGACY_MESSAGE`).
    """
    runs = db["runs"]
    runs.add_column("uid", str)
    runs.add_column("lease_token", str)
    runs.add_column("pid_started", float)
    db.execute("UPDATE runs SET uid = 'run-' || id WHERE uid IS NULL")
    db["runs"].create_index(["uid"], unique=True)
    db["candidates"].add_column("told", int)
    db["candidates"].add_column("meta", str)
    db["candidates"].create_index(["run_id", "told"])


def _v4_tui_sort_indexes(db: sqlite_utils.Database) -> None:
    """The TUI's candidates table sorted by accuracy or reward reads one page along an index
    instead of sorting the run (100,000 candidates: ~1 ms instead of ~80 ms)."""
    db["candidates"].create_index(["run_id", "accuracy"], if_not_exists=True)
    db["candidates"].create_index(["run_id", "reward"], if_not_exists=True)


#: forward migrations, applied in order; ``schema_version`` = how many have been applied
def _v5_tui_fold_index(db: sqlite_utils.Database) -> None:
    """The TUI's Curves and Pareto tabs aggregate a run's finished candidates in SQL (curves
    downsampled per step range, the Pareto front, the thinned cloud): this index holds every
    column they read, in write order, so those scans read ~60 bytes per candidate instead of
    whole rows with their genotypes (100,000 candidates: ~0.05 s instead of ~0.45 s)."""
    db["candidates"].create_index(
        ["run_id", "seq", "status", "id", "accuracy", "reward", "feasible", "finished",
         "params", "madds"], index_name="idx_candidates_tui_fold", if_not_exists=True)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_initial, _v2_state_blobs, _v3_safe_store, _v4_tui_sort_indexes, _v5_tui_fold_index]
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


def _loads(text: Any) -> Any:
    """A JSON column's value; None for NULL *and* for anything that is not JSON text (a
    damaged or planted value -- bytes, a pickle -- is never interpreted, only dropped)."""
    if text is None:
        return None
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        if not isinstance(text, str):
            return None
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def this_host() -> str:
    """The host name a coordinator records with its lease (``NASW_HOST`` overrides it: hosts
    that share a database over a network file system but not a host name set it)."""
    return os.environ.get("NASW_HOST") or socket.gethostname()


def process_started(pid: int) -> float | None:
    """The start time of process ``pid`` (psutil), None when there is no such process."""
    import psutil

    try:
        return float(psutil.Process(int(pid)).create_time())
    except (psutil.Error, ValueError, OverflowError):
        return None


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """True when ``pid`` runs on this host, is not a zombie and -- when ``started`` is given --
    is the same process that started then (a pid reused by any other program is not).
    Judged by pid and start time only, never by a command line."""
    import psutil

    if not pid:
        return False
    try:
        process = psutil.Process(int(pid))
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        if started is not None and abs(process.create_time() - float(started)) > 0.05:
            return False
    except psutil.AccessDenied:
        return True
    except (psutil.Error, ValueError, OverflowError):
        return False
    return True


class LeaseLost(RuntimeError):
    """This coordinator no longer holds its run's lease (another one took the run over)."""


class DatabaseBusy(NaswError):
    """The database's write lock stayed taken longer than the busy timeout."""


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


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
    #: the searcher's tell count after this result (1, 2, ...); None while not told
    told: int | None = None
    #: the job's searcher-private meta (rebuilt into the history on resume)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Progress:
    """Everything one coordinator loop iteration writes, in one transaction."""

    candidates: list[CandidateRow] = field(default_factory=list)
    metrics: list[tuple[int, str, float]] = field(default_factory=list)  # (step, key, value)
    events: list[tuple[int, str, Mapping[str, Any]]] = field(default_factory=list)
    table_rows: list[Mapping[str, Any]] = field(default_factory=list)  # PONAS accuracy table
    #: the searcher's ``state_dict()`` (encoded with :func:`encode_state`)
    state: Mapping[str, Any] | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)  # runs columns (n_done, best_...)


_CANDIDATE_COLUMNS = (
    "run_id", "id", "seq", "genotype", "hash", "costs", "params", "madds", "flops",
    "intensity", "accuracy", "val_loss", "reward", "feasible", "status", "tag", "wall_time",
    "device", "error", "epochs", "loss_curve", "started", "finished", "attempts", "told", "meta",
)
_UPSERT_CANDIDATE = (
    f"INSERT INTO candidates ({', '.join(_CANDIDATE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _CANDIDATE_COLUMNS)}) "
    "ON CONFLICT(run_id, id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _CANDIDATE_COLUMNS[2:] if c != "started")
    + ", started = coalesce(candidates.started, excluded.started)"
)
_SUMMARY_COLUMNS = ("status", "pid", "pid_started", "host", "heartbeat", "started", "finished", "elapsed",
                    "error", "log_path", "workers", "n_asked", "n_done", "n_ok", "n_failed",
                    "n_feasible", "best_accuracy", "best_candidate", "best_feasible", "resumes")
_JSON_RUN_COLUMNS = ("config", "constraints", "workers")
#: tables holding a run's rows (keyed by ``run_id``), all removed with the run
_RUN_TABLES = ("candidates", "metrics", "events", "accuracy_table", "specializations",
               "commands", "searcher_state", "state_blobs")


def runs_root(db_path: str | os.PathLike[str]) -> Path:
    """``<db dir>/<db name>.runs``: the folder of every run's files."""
    db = Path(db_path).resolve()
    return db.parent / f"{db.name}.runs"


#: nasw's own tables: a file with tables but none of these is someone else's database
_NASW_TABLES = frozenset({"schema_version", "runs", "candidates"})


def _busy_timeout_default() -> int:
    try:
        return max(0, int(os.environ.get("NASW_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS)))
    except ValueError:
        return BUSY_TIMEOUT_MS


def _refuse(path: Path, why: str, hint: str) -> NaswError:
    return NaswError("db", str(path), "a nasw database", hint=f"{why}; {hint}")


class Store:
    """A connection to one ``nasw.db``; cheap to open, one per process/thread.

    Opening never writes to a file that is not nasw's: a file without SQLite's header, a
    damaged or truncated one, an SQLite file with other applications' tables and no nasw
    schema, and one written by a newer nasw are all refused with a :class:`NaswError` before
    anything is changed. A file or directory this process cannot write is opened read-only
    (``readonly``): reads work, writes raise :class:`NaswError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 migrate: bool = True, busy_timeout_ms: int | None = None,
                 retry_busy_s: float = 0.0) -> None:
        """``create=False``: refuse a missing file; ``migrate=False``: never change the schema
        (``nasw doctor`` inspects a file without writing to it). ``retry_busy_s``: how long a
        write keeps retrying (with backoff) when the lock stays taken past the busy timeout;
        the coordinator's stores set it, the CLI's fail at once with :class:`DatabaseBusy`."""
        self.path = Path(path)
        self.retry_busy_s = float(retry_busy_s)
        #: seconds each write had to wait beyond one busy timeout (the coordinator logs them)
        self.busy_waits: list[float] = []
        #: run id -> lease token held by this connection; its writes check it (fencing)
        self.leases: dict[int, str] = {}
        busy_timeout_ms = _busy_timeout_default() if busy_timeout_ms is None else busy_timeout_ms
        self.busy_timeout_ms = int(busy_timeout_ms)
        if self.path.is_dir():
            raise NaswError("db", str(self.path), "a database file", hint="it is a directory")
        if not self.path.exists():
            if not create:
                raise NaswError("db", str(self.path), "an existing nasw database",
                                hint="start a run with `nasw run CONFIG` first")
            try:
                create_private_file(self.path)
            except OSError as err:
                raise NaswError("db", str(self.path), "a path where a database can be created",
                                hint=err.strerror or str(err)) from None
        self._check_header()
        self.readonly = not self._writable(self.path)
        conn = self._connect()
        self.db = sqlite_utils.Database(conn)
        self.conn = conn
        try:
            self._check_schema()
            if not migrate or self.readonly:
                return
            if self.db.journal_mode != "wal":
                self.db.enable_wal()
            conn.execute("PRAGMA synchronous = NORMAL")
            self.migrate()
        except sqlite3.DatabaseError as err:
            conn.close()
            if isinstance(err, sqlite3.OperationalError) and _is_busy(err):
                raise DatabaseBusy("db", str(self.path), "a database no other process is "
                                   "writing to", hint="it is locked; try again") from None
            raise _refuse(self.path, f"it is not an SQLite database or it is damaged "
                          f"(SQLite says: {err})", "point --db at a nasw.db file") from None
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _writable(path: Path) -> bool:
        """Whether this user can write the file and its directory (WAL needs both)."""
        return os.access(path, os.W_OK) and os.access(path.resolve().parent, os.W_OK)

    def _check_header(self) -> None:
        """What can be told without opening the file: readable, not truncated below one page.

        The file is never opened outside SQLite: closing any descriptor of a database file
        drops every POSIX lock this process holds on it -- including those of this process's
        other connections (a coordinator's heartbeat thread) -- and lets another process
        checkpoint under them, losing committed writes. SQLite itself refuses a file that is
        not a database on the first read (:meth:`_check_schema`).
        """
        try:
            size = self.path.stat().st_size
        except OSError as err:
            raise _refuse(self.path, f"it cannot be read ({err.strerror or err})",
                          "check its permissions") from None
        if not os.access(self.path, os.R_OK):
            raise _refuse(self.path, "it cannot be read (permission denied)",
                          "check its permissions")
        if 0 < size < 512:
            raise _refuse(self.path, f"it is truncated ({size} bytes)",
                          "it is damaged or not a database")

    def _connect(self) -> sqlite3.Connection:
        timeout = self.busy_timeout_ms / 1000
        if not self.readonly:
            conn = sqlite3.connect(str(self.path), timeout=timeout, check_same_thread=False)
        else:  # no lock files can be created: read what is there, change nothing
            uri = self.path.resolve().as_uri()
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout,
                                   check_same_thread=False)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                conn.close()
                conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True,
                                       timeout=timeout, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        return conn

    def _check_schema(self) -> None:
        """Refuse a foreign or future database before anything is written to it."""
        tables = {r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        user_tables = {t for t in tables if not t.startswith("sqlite_")}
        if user_tables and "schema_version" not in user_tables:
            shown = ", ".join(sorted(user_tables)[:5])
            raise _refuse(self.path, f"it is another application's SQLite database "
                          f"(tables: {shown})", "nasw will not add its tables to it")
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise NaswError("db.schema_version", version, f"<= {SCHEMA_VERSION}",
                            hint=f"{self.path} was written by a newer nasw; upgrade nasw")

    # -- plumbing --------------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, retried with backoff for up to ``retry_busy_s`` when busy."""
        if self.readonly:
            raise NaswError("db", str(self.path), "a writable database",
                            hint="the file or its directory is read-only")
        started = time.monotonic()
        delay = 0.05
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as err:
                if not _is_busy(err):
                    raise
                if time.monotonic() - started >= self.retry_busy_s:
                    raise DatabaseBusy(
                        "db", str(self.path), "a database no other process holds locked",
                        hint=f"the database is busy: another process held its write lock "
                             f"for more than {self.busy_timeout_ms / 1000:g} s; try again"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        waited = time.monotonic() - started
        if waited * 1000 > self.busy_timeout_ms:
            self.busy_waits.append(waited)

    @contextlib.contextmanager
    def write(self, run_id: int | None = None) -> Iterator[sqlite3.Connection]:
        """A short write transaction that takes the write lock up front (``BEGIN IMMEDIATE``).

        With ``run_id`` whose lease this store holds, the transaction first checks, under the
        write lock, that the lease is still ours, and raises :class:`LeaseLost` (writing
        nothing) when another coordinator has taken the run over.
        """
        self._begin()
        try:
            token = self.leases.get(run_id) if run_id is not None else None
            if token is not None:
                row = self.conn.execute("SELECT lease_token FROM runs WHERE id = ?",
                                        (run_id,)).fetchone()
                if row is None or row[0] != token:
                    raise LeaseLost(f"run {run_id}: another coordinator holds its lease now")
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
        try:
            return int(row[0] or 0)
        except (TypeError, ValueError):
            raise _refuse(self.path, f"its schema_version is {row[0]!r}", "it is damaged") from None

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
                " budget, wall_time_s, constraints, created, uid)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (name or config.get("name") or "run", _json(config), space.get("name"),
                 space.get("preset"), search.get("name"), config.get("evaluator"), "created",
                 budget.get("candidates"), budget.get("wall_time_s"),
                 _json(config.get("constraints") or []), time.time(), uuid.uuid4().hex))
            return int(cursor.lastrowid)

    def update_run(self, run_id: int, **columns: Any) -> None:
        """Set summary/lifecycle columns of a run (coordinator and CLI; fenced by the lease
        when this store holds it)."""
        with self.write(run_id) as conn:
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
        #: columns whose stored value is not what nasw writes (shown, never resumed)
        run["damaged"] = [] if isinstance(run["config"], dict) else ["config"]
        if not isinstance(run["config"], dict):
            run["config"] = {}
        if not isinstance(run.get("status"), str) or run["status"] not in RUN_STATUSES:
            run["damaged"].append("status")
            run["status"] = "failed"
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

        Gone = on this host, its pid is dead or belongs to a process that started at another
        time than the coordinator did (a reused pid); on another host (or for a row without a
        start time), its heartbeat is older than :data:`STALE_AFTER_S`. Never judged by a
        command line. A ``created`` run with no pid yet is interrupted once it is stale.
        """
        status = run["status"]
        if status not in LIVE_STATUSES:
            return status
        now = time.time() if now is None else now
        beat = run.get("heartbeat") or run.get("created") or 0.0
        stale = now - beat > STALE_AFTER_S
        if run.get("pid") and run.get("host") == this_host():
            started = run.get("pid_started")
            if not pid_alive(run["pid"], started):
                return "interrupted"
            return "interrupted" if started is None and stale else status
        return "interrupted" if stale else status

    def run(self, run_id: int) -> dict[str, Any]:
        """One run with decoded config and computed status; NaswError if there is none."""
        if isinstance(run_id, bool) or not isinstance(run_id, int) or not 0 < run_id < 2**63:
            raise NaswError("run", run_id, self.run_ids() or "no runs yet")
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

    def run_dir(self, run_id: int) -> Path:
        """Where a run keeps its files (final-training checkpoints, weights): beside the
        database, named by the run's uid, which is never reused (a deleted run's files can
        never be mistaken for a new run's)."""
        row = self.conn.execute("SELECT uid FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            raise NaswError("run", run_id, self.run_ids() or "no runs yet")
        uid = str(row[0] or f"run-{int(run_id)}")
        if not uid.replace("-", "").isalnum():  # a uid is a folder name: no "/" or ".."
            raise _refuse(self.path, f"run {run_id} has the uid {uid!r}", "it is damaged")
        return runs_root(self.path) / uid

    def delete_run(self, run_id: int) -> None:
        """Remove a run, every row it wrote and its files; refused while its coordinator is
        alive."""
        with self.write() as conn:
            run = self.run(run_id)
            if run["status"] in LIVE_STATUSES:
                raise NaswError("run", run_id, "a run with no live coordinator",
                                hint=f"it is {run['status']}; cancel it first")
            folder = self.run_dir(run_id)
            for table in _RUN_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(folder, ignore_errors=True)

    def cancel_stopped(self, run_id: int) -> None:
        """Mark a run with no live coordinator ``cancelled`` and revoke its lease, so a
        coordinator that was only suspended (SIGSTOP, a frozen VM) writes nothing when it
        wakes."""
        with self.write() as conn:
            self._update_run(conn, run_id, {"status": "cancelled", "finished": time.time()})
            conn.execute("UPDATE runs SET lease_token = NULL WHERE id = ?", (run_id,))

    # -- the coordinator's writes ----------------------------------------------------------
    def claim_run(self, run_id: int, pid: int, host: str | None = None) -> dict[str, Any]:
        """Take the run's lease for process ``pid``: refuses a finished run or one whose
        coordinator is alive (a lease is taken over only when stale).

        Check and claim happen in one write transaction, so two ``nasw resume`` at once
        cannot both win. The new lease token is kept in :attr:`leases` -- every later write
        of this store to the run checks it -- and returned as ``lease_token`` with the run as
        it was before the claim.
        """
        token = uuid.uuid4().hex
        host = host or this_host()
        with self.write() as conn:
            run = self.check_resumable(run_id, pid)
            self._update_run(conn, run_id, {"pid": pid, "host": host, "heartbeat": time.time(),
                                            "status": "running",
                                            "pid_started": process_started(pid)})
            conn.execute("UPDATE runs SET lease_token = ? WHERE id = ?", (token, run_id))
        self.leases[int(run_id)] = token
        return {**run, "lease_token": token}

    def hold_lease(self, run_id: int, token: str) -> None:
        """Make this store's writes to ``run_id`` fenced by ``token`` (a coordinator's other
        connections, e.g. its heartbeat thread's)."""
        self.leases[int(run_id)] = token

    def check_resumable(self, run_id: int, pid: int | None = None) -> dict[str, Any]:
        """The run, if a (new) coordinator may take it; NaswError saying why not otherwise."""
        run = self.run(run_id)
        if run["damaged"]:
            raise NaswError("run", run_id, "a run whose stored rows are intact",
                            hint=f"its {', '.join(run['damaged'])} is damaged; the run stays "
                                 "viewable but cannot be resumed")
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
        """Write one loop iteration's output in a single transaction (see module docstring);
        fenced by the run's lease when this store holds it."""
        now = time.time()
        state, blobs, stale = None, {}, set()
        if progress.state is not None:  # encoded before the write lock: one writer per run
            known = self._blob_digests(run_id)
            state, blobs, referenced = encode_state(progress.state, known)
            stale = known - referenced
        with self.write(run_id) as conn:
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
                        cand.finished, cand.attempts, cand.told, _json(dict(cand.meta or {})),
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

        Decoded by :func:`~workbench.state_codec.decode_state`: JSON and typed arrays, nothing
        executed. A checkpoint pickled by an older nasw raises :class:`LegacyStateError`, a
        damaged one :class:`StateFormatError` (both a :class:`NaswError`: exit 2).
        """
        row = self.conn.execute("SELECT blob FROM searcher_state WHERE run_id = ?",
                                (run_id,)).fetchone()
        if row is None:
            return None

        def load_blob(digest: str) -> bytes:
            found = self.conn.execute("SELECT data FROM state_blobs WHERE run_id = ? AND"
                                      " digest = ?", (run_id, digest)).fetchone()
            if found is None:
                raise StateFormatError("searcher_state", digest, "a stored array",
                                       hint="the checkpoint refers to an array that is missing;"
                                            " the run stays viewable but cannot be resumed")
            return found[0]

        return decode_state(row[0], load_blob)

    def checkpoint_problem(self, run_id: int) -> str | None:
        """Why the run's checkpoint cannot be resumed (old pickle, damaged), or None. The TUI
        and ``nasw show`` ask this before offering to resume."""
        try:
            self.check_restorable(run_id)
        except LegacyStateError:
            return LEGACY_MESSAGE
        except StateFormatError as err:
            return str(err)
        return None

    def history(self, run_id: int) -> list[dict[str, Any]]:
        """The searcher's history rebuilt from the candidates table, in tell order: one entry
        per told job (``id, genotype, status, accuracy, costs, reward, feasible, tag, meta``),
        as :meth:`searchers.base.Searcher.tell` recorded it."""
        rows = self.conn.execute(
            "SELECT id, genotype, status, accuracy, costs, reward, feasible, tag, meta"
            " FROM candidates WHERE run_id = ? AND told IS NOT NULL ORDER BY told", (run_id,))
        history = []
        for cid, genotype, status, accuracy, costs, reward, is_feasible, tag, meta in rows:
            history.append({
                "id": cid, "genotype": _loads(genotype), "status": status,
                "accuracy": accuracy, "costs": _loads(costs) or {},
                "reward": 0.0 if reward is None else reward, "feasible": bool(is_feasible),
                "tag": tag or "", "meta": _loads(meta) or {}})
        return history

    def restore_searcher(self, run_id: int, searcher: Any) -> bool:
        """Load the run's checkpoint and history into ``searcher``; False before the first
        checkpoint. Raises :class:`LegacyStateError` / :class:`StateFormatError` (exit 2) for a
        checkpoint that cannot be decoded safely -- the one entry point for every resume
        path (coordinator, final training, specialization, the TUI)."""
        state = self.load_state(run_id)
        if state is None:
            return False
        searcher.load_state_dict(state, history=self._checked_history(run_id))
        return True

    def _checked_history(self, run_id: int) -> list[dict[str, Any]]:
        history = self.history(run_id)
        for entry in history:
            if not isinstance(entry["genotype"], dict) or not isinstance(entry["costs"], dict):
                raise StateFormatError("candidates", entry["id"], "a candidate row nasw wrote",
                                       hint="the run's candidates table is damaged; the run "
                                            "stays viewable but cannot be resumed")
        return history

    def check_restorable(self, run_id: int) -> None:
        """Raise :class:`StateFormatError` (a :class:`NaswError`) if the run's checkpoint or
        history cannot be restored safely -- before anything claims or writes the run."""
        if self.load_state(run_id) is not None:
            self._checked_history(run_id)

    def _blob_digests(self, run_id: int) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT digest FROM state_blobs WHERE run_id = ?", (run_id,))}

    def state_size(self, run_id: int) -> dict[str, int]:
        """Bytes of a run's checkpoint: the JSON document and its stored arrays (``nasw show``)."""
        main = self.conn.execute("SELECT coalesce(length(blob), 0) FROM searcher_state"
                                 " WHERE run_id = ?", (run_id,)).fetchone()
        arrays = self.conn.execute("SELECT count(*), coalesce(sum(length(data)), 0)"
                                   " FROM state_blobs WHERE run_id = ?", (run_id,)).fetchone()
        return {"state_bytes": int(main[0]) if main else 0, "arrays": int(arrays[0]),
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
        costs = _loads(cand["costs"])
        cand["costs"] = costs if isinstance(costs, dict) else {}
        curve = _loads(cand["loss_curve"])
        cand["loss_curve"] = curve if isinstance(curve, list) else []
        meta = _loads(cand.get("meta"))
        cand["meta"] = meta if isinstance(meta, dict) else {}
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
            data = _loads(row["data"])
            row["data"] = data if isinstance(data, dict) else {}
        return rows

    def accuracy_table(self, run_id: int) -> list[dict[str, Any]]:
        rows = list(self.db.query(
            "SELECT layer, choice, accuracy, loss, costs, time FROM accuracy_table"
            " WHERE run_id = ? ORDER BY layer, choice", (run_id,)))
        for row in rows:
            costs = _loads(row["costs"])
            row["costs"] = costs if isinstance(costs, dict) else {}
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
        with self.write(run_id) as conn:
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

    # -- events written after a run (PONAS table validation) ---------------------------------
    def add_event(self, run_id: int, kind: str, data: Mapping[str, Any], step: int = 0) -> int:
        """Append one event to a run from outside its coordinator (e.g. ``nasw ponas
        validate``); ``data`` must be JSON. Read back with :meth:`events`."""
        self.run(run_id)  # NaswError for an unknown run
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO events (run_id, step, kind, data, time) VALUES (?,?,?,?,?)",
                (int(run_id), int(step), str(kind), _json(dict(data)), time.time()))
            return int(cursor.lastrowid)


def open_store(path: str | os.PathLike[str], *, create: bool = True) -> Store:
    """``Store(path)``: the spelling the TUI and CLI use."""
    return Store(path, create=create)


__all__ = [
    "BLOB_MIN_BYTES", "CANDIDATE_STATUSES", "COMMANDS", "HEARTBEAT_S", "LEGACY_MESSAGE",
    "MIGRATIONS", "RUN_STATUSES", "SCHEMA_VERSION", "STALE_AFTER_S", "CandidateRow",
    "DatabaseBusy", "LeaseLost", "LegacyStateError", "Progress", "StateFormatError", "Store",
    "create_private_file", "decode_state", "encode_state", "open_store", "pid_alive",
    "process_started", "runs_root", "this_host", "world_writable",
]
