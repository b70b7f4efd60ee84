"""The TUI's read side: the store for runs and actions, read-only SQL for the run detail.

A run may hold 100,000 candidates and a million metric points, so the run detail never loads
a run whole: each tab asks for what it shows, from a thread worker, with read-only queries on
the store's indexes (a page of the candidates table sorted and filtered in SQL, a metric
downsampled in SQL, the finished candidates written since a tab's own ``seq`` cursor, one
candidate by id). Those queries use plain :mod:`sqlite3` with ``PRAGMA query_only``, one
connection per thread; the store (and with it sqlite-utils) is imported on first use, from a
worker thread, for the runs list, a run's row and every write (commands, deletes, exports).
Values are formatted here the same way on every screen.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text

STATUS_STYLES = {
    "running": "bold green", "paused": "yellow", "finished": "blue", "created": "cyan",
    "interrupted": "magenta", "failed": "bold red", "cancelled": "dim",
    "ok": "green", "oom": "red", "diverged": "red",
}

_local = threading.local()


class _Reader:
    """Per-thread cached store connection for one database path."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from workbench.store import open_store

            self._store = open_store(self.db_path, create=False)
        return self._store

    def exists(self) -> bool:
        return self.db_path.exists()

    def runs(self) -> list[dict[str, Any]]:
        """Every run's summary; an absent database is an empty list (nothing is created)."""
        if not self.exists():
            return []
        return self.store.runs()

    def run(self, run_id: int) -> dict[str, Any] | None:
        """The run, or None when it does not exist (deleted, or another database)."""
        if not self.exists():
            return None
        from searchers.errors import NaswError

        try:
            return self.store.run(run_id)
        except NaswError:
            return None


def reader(db_path: str | Path) -> _Reader:
    """The calling thread's reader of ``db_path`` (one SQLite connection per thread)."""
    readers: dict[Path, _Reader] = getattr(_local, "readers", None) or {}
    _local.readers = readers
    path = Path(db_path)
    if path not in readers:
        readers[path] = _Reader(path)
    return readers[path]


# -- paged, downsampled reads of one run (plain sqlite3, read-only) ---------------------------
#: the candidate columns the table shows (no genotype, costs JSON or loss curve to decode)
TABLE_COLUMNS = ("id", "status", "accuracy", "reward", "feasible", "params", "madds", "tag",
                 "device", "wall_time")
#: columns a filter comparison may name directly (``acc`` is ``accuracy``); any other
#: ``[a-z_]+`` name is looked up in the candidate's costs JSON (``latency_ms``, ``flops``...)
FILTER_COLUMNS = {"acc": "accuracy", "accuracy": "accuracy", "reward": "reward", "id": "id",
                  "params": "params", "madds": "madds", "flops": "flops",
                  "intensity": "intensity"}
#: SQL sort keys of the table's columns, ties broken by id so pages never overlap. A missing
#: accuracy or reward sorts lowest (SQLite's NULL), along the store's ``(run_id, accuracy)`` /
#: ``(run_id, reward)`` indexes; a missing cost sorts highest, a missing time lowest
SORT_SQL = {
    "ID": "id", "Accuracy": "accuracy", "Reward": "reward",
    "Params": "coalesce(params, 1e308)", "MAdds": "coalesce(madds, 1e308)",
    "Status": "coalesce(status, '')", "Time": "coalesce(wall_time, 0.0)",
}
FILTER_COMPARISON = re.compile(r"^(?P<key>[a-z_]+)(?P<op><=|>=|<|>|=)(?P<num>[-+]?[\d.]+(e[-+]?\d+)?)"
                         r"(?P<suffix>[kKmMgG]?)$")
SUFFIX_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}


def connection(db_path: str | Path) -> sqlite3.Connection | None:
    """The calling thread's read-only connection to ``db_path`` (None while it does not exist).

    Plain :mod:`sqlite3` with ``query_only``: the TUI's reads of a big run need neither
    sqlite-utils nor the store's decoding, and opening one costs well under a millisecond.
    """
    connections: dict[Path, sqlite3.Connection] = getattr(_local, "connections", None) or {}
    _local.connections = connections
    path = Path(db_path)
    conn = connections.get(path)
    if conn is None:
        if not path.exists():
            return None
        conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA busy_timeout = 30000")
        connections[path] = conn
    return conn


def _rows(db_path: str | Path, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    conn = connection(db_path)
    if conn is None:
        return []
    cursor = conn.execute(sql, tuple(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _scalar(db_path: str | Path, sql: str, params: Iterable[Any] = ()) -> Any:
    conn = connection(db_path)
    if conn is None:
        return None
    row = conn.execute(sql, tuple(params)).fetchone()
    return None if row is None else row[0]


@dataclass(frozen=True)
class RunStamp:
    """What a poll compares to know whether a tab must read again: the run's newest candidate
    write (``seq``), the newest metric and event rows of the file, the accuracy table's size
    and newest write. Each is one index look-up, whatever the size of the run."""

    candidate_seq: int = 0
    metric_rowid: int = 0
    event_rowid: int = 0
    table: tuple[int, float] = (0, 0.0)


def run_stamp(db_path: str | Path, run_id: int) -> RunStamp:
    """The run's :class:`RunStamp` (the rowids are file-wide: another run's writes only cost a
    spurious re-read, and a per-run ``max(rowid)`` would scan the run's rows)."""
    conn = connection(db_path)
    if conn is None:
        return RunStamp()
    seq = conn.execute("SELECT max(seq) FROM candidates WHERE run_id = ?", (run_id,)).fetchone()
    metric = conn.execute("SELECT max(rowid) FROM metrics").fetchone()
    event = conn.execute("SELECT max(rowid) FROM events").fetchone()
    table = conn.execute("SELECT count(*), coalesce(max(time), 0) FROM accuracy_table"
                         " WHERE run_id = ?", (run_id,)).fetchone()
    return RunStamp(seq[0] or 0, metric[0] or 0, event[0] or 0, (table[0], table[1]))


#: the store's JSON run columns, its run statuses, and those whose real status needs the
#: store's liveness check (``workbench.store._JSON_RUN_COLUMNS`` / ``RUN_STATUSES`` /
#: ``LIVE_STATUSES``; a test keeps them equal and the decoded rows equal to ``Store.run``'s)
RUN_JSON_COLUMNS = ("config", "constraints", "workers")
RUN_STATUSES = ("created", "running", "paused", "finished", "cancelled", "failed", "interrupted")
LIVE_STATUSES = ("created", "running", "paused")


def _json_or_text(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def decode_run(db_path: str | Path, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``runs`` row decoded as :meth:`Store.run` decodes it.

    A finished, failed or cancelled run with a well-formed config is decoded here; a run
    stored as live (created, running, paused: is its coordinator still there?) or with a
    damaged column is handed to the store (:meth:`Store.run`), which imports sqlite-utils
    (~0.2-0.3 s, once). So the runs list and a finished run's detail open without it.
    """
    settled = _decode_settled(row)
    return settled if settled is not None else reader(db_path).run(int(row["id"]))


def _decode_settled(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fast path of :func:`decode_run`: None for a live or damaged row."""
    run = dict(row)
    for column in RUN_JSON_COLUMNS:
        run[column] = _json_or_text(run.get(column))
    if (run.get("status") in LIVE_STATUSES or run.get("status") not in RUN_STATUSES
            or not isinstance(run["config"], dict)):
        return None
    run["damaged"] = []
    run["stored_status"] = run["status"]
    budget = run.get("budget")
    run["progress"] = min(1.0, (run.get("n_done") or 0) / budget) if budget else None
    run["best_feasible"] = None if run.get("best_feasible") is None else bool(
        run["best_feasible"])
    return run


def run_summary(db_path: str | Path, run_id: int) -> dict[str, Any] | None:
    """The run (as :meth:`Store.run` decodes it), or None when it does not exist."""
    rows = _rows(db_path, "SELECT * FROM runs WHERE id = ?", (run_id,))
    return decode_run(db_path, rows[0]) if rows else None


def settled_run(db_path: str | Path, run_id: int) -> dict[str, Any] | None:
    """The run when it can be read without the store (finished, failed, cancelled and
    well-formed), else None (absent, live or damaged: read it with :func:`run_summary` in a
    worker). Index look-ups only, so the run detail draws its first frame with it."""
    rows = _rows(db_path, "SELECT * FROM runs WHERE id = ?", (run_id,))
    return _decode_settled(rows[0]) if rows else None


def runs(db_path: str | Path) -> list[dict[str, Any]]:
    """Every run's summary for the runs list; an absent database is an empty list (nothing
    is created)."""
    decoded = (decode_run(db_path, row) for row in _rows(db_path, "SELECT * FROM runs ORDER BY id"))
    return [run for run in decoded if run is not None]


def settled_runs(db_path: str | Path) -> list[dict[str, Any]] | None:
    """:func:`runs` when every run can be read without the store (none stored as live, none
    damaged), else None (read them with :func:`runs` in a worker: the store's liveness check
    imports sqlite-utils). One query, so the runs list draws its first frame with its rows."""
    rows = _rows(db_path, "SELECT * FROM runs ORDER BY id")
    decoded = [_decode_settled(row) for row in rows]
    if any(run is None for run in decoded):
        return None
    return [run for run in decoded if run is not None]


def filter_sql(query: str) -> tuple[str, list[Any]]:
    """The candidate filter language (``feasible``, ``infeasible``, ``acc>0.9``, ``params<3M``,
    a word of status / tag / device / id) as a SQL condition and its parameters.

    Every value is a bound parameter; a cost name outside :data:`FILTER_COLUMNS` is matched by
    the ``[a-z_]+`` pattern before it reaches ``json_extract``'s path, so no text of the query
    becomes SQL.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for word in query.lower().split():
        match = FILTER_COMPARISON.match(word)
        if match:
            key = match["key"]
            column = FILTER_COLUMNS.get(key)
            if column is None:
                column = "json_extract(costs, ?)"
                params.append(f"$.{key}")
            clauses.append(f"{column} {match['op']} ?")
            params.append(float(match["num"]) * SUFFIX_SCALE[match["suffix"]])
        elif word == "feasible":
            clauses.append("feasible = 1")
        elif word == "infeasible":
            clauses.append("feasible = 0")
        else:
            clauses.append("instr(lower(coalesce(status, '') || ' ' || coalesce(tag, '') || ' '"
                           " || coalesce(device, '') || ' ' || id), ?) > 0")
            params.append(word)
    return " AND ".join(clauses) or "1", params


def candidate_page(db_path: str | Path, run_id: int, *, sort: str = "ID", reverse: bool = False,
                   query: str = "", offset: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    """One page of the candidates table: :data:`TABLE_COLUMNS`, filtered and sorted in SQL."""
    where, params = filter_sql(query)
    direction = "DESC" if reverse else "ASC"
    return _rows(db_path, f"SELECT {', '.join(TABLE_COLUMNS)} FROM candidates"
                 f" WHERE run_id = ? AND ({where})"
                 f" ORDER BY {SORT_SQL[sort]} {direction}, id LIMIT ? OFFSET ?",
                 [run_id, *params, limit, offset])


def candidate_count(db_path: str | Path, run_id: int, query: str = "") -> int:
    where, params = filter_sql(query)
    return int(_scalar(db_path, f"SELECT count(*) FROM candidates WHERE run_id = ? AND ({where})",
                       [run_id, *params]) or 0)


def candidate(db_path: str | Path, run_id: int, candidate_id: int) -> dict[str, Any] | None:
    """One candidate with its genotype and costs decoded, or None."""
    rows = _rows(db_path, "SELECT id, status, genotype, costs, accuracy, reward, feasible, tag,"
                 " device, wall_time, error FROM candidates WHERE run_id = ? AND id = ?",
                 (run_id, candidate_id))
    if not rows:
        return None
    cand = rows[0]
    cand["genotype"] = json.loads(cand["genotype"] or "{}")
    cand["costs"] = json.loads(cand["costs"] or "{}") or {}
    cand["feasible"] = None if cand["feasible"] is None else bool(cand["feasible"])
    return cand


def finished_since(db_path: str | Path, run_id: int, since_seq: int) -> list[tuple[Any, ...]]:
    """Finished candidates written after ``since_seq``, in write order:
    ``(seq, id, accuracy, reward, feasible, finished, params, madds)`` tuples (the Curves and
    Pareto tabs keep their own cursors and fold these in)."""
    conn = connection(db_path)
    if conn is None:
        return []
    return conn.execute(
        "SELECT seq, id, accuracy, reward, feasible, finished, params, madds FROM candidates"
        " WHERE run_id = ? AND seq > ? AND status != 'running' ORDER BY seq",
        (run_id, since_seq)).fetchall()


#: the finished candidates with an accuracy, the rows the Curves and Pareto tabs draw; the
#: unary ``+`` keeps SQLite off the ``(run_id, accuracy)`` index, so it reads them along the
#: covering ``idx_candidates_tui_fold`` index (store migration v5)
_FOLDED = "run_id = ? AND status != 'running' AND +accuracy IS NOT NULL"


def curve_view(db_path: str | Path, run_id: int, buckets: int, by_time: bool = False,
               started_at: float | None = None) -> dict[str, Any]:
    """The Curves tab's view of the run, downsampled in SQL: what
    :meth:`workbench.widgets.plots.CurveSeries.view` computes from every finished candidate in
    write (``seq``) order, from one ``GROUP BY`` over ``min(n, buckets)`` near-equal ranges of
    that order (row ``i`` of ``n``, 0-based, is in range ``((i + 1) * buckets - 1) // n``, the
    ranges of ``bucket_starts``), read along the covering fold index: the accuracy's lowest and
    highest value per range, the reward's mean, the best feasible accuracy and the feasible
    fraction at the range's end (running values, from per-range maxima and counts), the
    range's mean step or minute.

    A candidate written again after it finished counts once, where and as it was last written
    (``CurveSeries`` keeps the first writing it saw).
    """
    conn = connection(db_path)
    if conn is None:
        return {"n": 0}
    n = conn.execute(f"SELECT count(*) FROM candidates WHERE {_FOLDED}", (run_id,)).fetchone()[0]
    if not n:
        return {"n": 0}
    count = max(1, min(n, buckets))
    start = started_at or None
    finished = "coalesce(nullif(finished, 0), ?, 0.0)"
    rows = conn.execute(
        "SELECT count(*), min(accuracy), max(accuracy), avg(reward), sum(feasible),"
        " max(CASE WHEN feasible THEN accuracy END), avg(step), avg(minutes) FROM ("
        "  SELECT (row_number() OVER w * ? - 1) / ? AS bucket, row_number() OVER w AS step,"
        "   accuracy, coalesce(reward, 0.0) AS reward, coalesce(feasible, 0) != 0 AS feasible,"
        f"  max(0.0, ({finished} - coalesce(?, {finished})) / 60.0) AS minutes"
        f"  FROM candidates WHERE {_FOLDED} WINDOW w AS (ORDER BY seq))"
        " GROUP BY bucket ORDER BY bucket",
        (count, n, start, start, start, run_id)).fetchall()
    centre, lows, highs, reward, best_x, best_y, fraction = [], [], [], [], [], [], []
    best, feasible, done = math.nan, 0, 0
    for size, low, high, mean_reward, n_feasible, best_here, step, minutes in rows:
        x = float(minutes if by_time else step)
        done += size
        feasible += n_feasible
        if best_here is not None:
            best = float(best_here) if best != best else max(best, float(best_here))
        centre.append(x)
        lows.append(float(low))
        highs.append(float(high))
        reward.append(float(mean_reward))
        fraction.append(feasible / done)
        if best == best:
            best_x.append(x)
            best_y.append(best)
    return {"n": n, "by_time": by_time, "acc_x": centre + centre, "acc_y": lows + highs,
            "best_x": best_x, "best_y": best_y, "x": centre, "reward": reward,
            "feasible_fraction": fraction}


#: the Pareto tab's cost metrics and their columns
PARETO_COSTS = {"params": "params", "madds": "madds"}
#: how many of the most accurate candidates give :func:`pareto_fronts` its staircase
FRONT_SAMPLE = 256


def pareto_fronts(db_path: str | Path, run_id: int, metric: str, upto_seq: int
                  ) -> tuple[list[tuple[float, float, int]], list[tuple[float, float, int]]]:
    """The Pareto fronts (lower ``metric``, higher accuracy) of the finished candidates
    written up to ``upto_seq``: over all of them and over the feasible ones, as
    ``(cost, accuracy, id)`` sorted by cost.

    One window over the candidates sorted by (cost, accuracy descending, seq): a point is on
    a front iff it is more accurate than every point before it (among the feasible ones for
    the feasible front), which is :func:`workbench.analysis.pareto_front` over the points in
    write order (ties in cost keep the most accurate, an exact duplicate the first written).

    The window sorts only the candidates that a staircase does not rule out: the fronts of
    the :data:`FRONT_SAMPLE` most accurate candidates (read along the ``(run_id, accuracy)``
    index) are real points, so a candidate less accurate than the best of them at its cost or
    below is dominated and cannot be on a front; the fronts of what is left are the fronts of
    the run.
    """
    conn = connection(db_path)
    if conn is None:
        return [], []
    column = PARETO_COSTS[metric]
    sample = conn.execute(
        f"SELECT {column}, accuracy, coalesce(feasible, 0) != 0 FROM candidates"
        " WHERE run_id = ? AND status != 'running' AND accuracy IS NOT NULL AND seq <= ?"
        f" AND {column} IS NOT NULL ORDER BY accuracy DESC LIMIT ?",
        (run_id, upto_seq, FRONT_SAMPLE)).fetchall()
    stairs: list[str] = []
    params: list[Any] = []
    for points in (sample, [p for p in sample if p[2]]):
        steps: list[tuple[float, float]] = []  # a front: cost and accuracy rising
        for cost, accuracy, _ in sorted(points, key=lambda p: (p[0], -p[1])):
            if not steps or accuracy > steps[-1][1]:
                steps.append((cost, accuracy))
        # the best accuracy at this cost or below; -1e308 left of the cheapest step
        stairs.append("coalesce(CASE" + "".join(f" WHEN {column} >= ? THEN ?" for _ in steps)
                      + " END, -1e308)" if steps else "-1e308")
        params += [x for step in reversed(steps) for x in step]
    rows = conn.execute(
        "SELECT cost, accuracy, id, feasible, prev_all, prev_feasible FROM ("
        f" SELECT {column} AS cost, accuracy, id, coalesce(feasible, 0) != 0 AS feasible,"
        "  max(accuracy) OVER w AS prev_all,"
        "  max(CASE WHEN feasible THEN accuracy END) OVER w AS prev_feasible, seq"
        f" FROM candidates WHERE {_FOLDED} AND seq <= ? AND {column} IS NOT NULL"
        f"  AND (accuracy >= {stairs[0]} OR (coalesce(feasible, 0) != 0"
        f"   AND accuracy >= {stairs[1]}))"
        f" WINDOW w AS (ORDER BY {column}, accuracy DESC, seq"
        "  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))"
        " WHERE prev_all IS NULL OR accuracy > prev_all OR (feasible AND"
        "  (prev_feasible IS NULL OR accuracy > prev_feasible))"
        " ORDER BY cost, accuracy DESC, seq", (run_id, upto_seq, *params)).fetchall()
    every = [(float(c), float(a), int(i)) for c, a, i, _, prev, _ in rows
             if prev is None or a > prev]
    feasible = [(float(c), float(a), int(i)) for c, a, i, f, _, prev in rows
                if f and (prev is None or a > prev)]
    return every, feasible


def pareto_cloud(db_path: str | Path, run_id: int, metric: str, columns: int,
                 rows: int) -> dict[str, Any]:
    """The Pareto tab's cloud thinned in SQL to one point per braille dot (2 x 4 per cell)
    of a ``columns`` x ``rows`` canvas, feasible and infeasible apart: per dot, the first
    written candidate, the dots in (x, y, feasible) order, as the numpy thinning
    (``np.unique`` of the dot numbers) gave. Returns ``{"n": 0}`` or ``n``, the cost range
    ``lo``/``hi`` and the ``feasible_x/_y``, ``infeasible_x/_y`` lists."""
    conn = connection(db_path)
    if conn is None:
        return {"n": 0}
    column = PARETO_COSTS[metric]
    where = f"{_FOLDED} AND {column} IS NOT NULL"
    n, lo, hi, ylo, yhi = conn.execute(
        f"SELECT count(*), min({column}), max({column}), min(accuracy), max(accuracy)"
        f" FROM candidates WHERE {where}", (run_id,)).fetchone()
    if not n:
        return {"n": 0}
    # one integer per dot, (x * (4 rows + 1) + y) * 2 + feasible: grouping on one integer
    # sorts ~25% faster than on three columns
    points = conn.execute(
        f"SELECT min(seq), {column}, accuracy, feasible FROM (SELECT seq, {column}, accuracy,"
        "  coalesce(feasible, 0) != 0 AS feasible,"
        f"  (min(CAST(({column} - ?) / ? * 2 * ? AS INTEGER), ?) * ?"
        "   + min(CAST((accuracy - ?) / ? * 4 * ? AS INTEGER), ?)) * 2"
        "   + (coalesce(feasible, 0) != 0) AS dot"
        f"  FROM candidates WHERE {where}) GROUP BY dot ORDER BY dot",
        (lo, (hi - lo) or 1.0, columns, 2 * columns, 4 * rows + 1, ylo, (yhi - ylo) or 1.0,
         rows, 4 * rows, run_id)).fetchall()
    view: dict[str, Any] = {"n": int(n), "lo": float(lo), "hi": float(hi), "feasible_x": [],
                            "feasible_y": [], "infeasible_x": [], "infeasible_y": []}
    for _, cost, accuracy, feasible in points:
        side = "feasible" if feasible else "infeasible"
        view[f"{side}_x"].append(float(cost))
        view[f"{side}_y"].append(float(accuracy))
    return view


def pareto_point(db_path: str | Path, run_id: int, metric: str,
                 candidate_id: int) -> tuple[float, float] | None:
    """A finished candidate's (cost, accuracy), or None (unfinished, no accuracy or cost)."""
    conn = connection(db_path)
    if conn is None:
        return None
    column = PARETO_COSTS[metric]
    row = conn.execute(f"SELECT {column}, accuracy FROM candidates WHERE {_FOLDED} AND id = ?",
                       (run_id, candidate_id)).fetchone()
    return None if row is None or row[0] is None else (float(row[0]), float(row[1]))


def max_seq(db_path: str | Path, run_id: int) -> int:
    """The run's newest candidate write (``seq``), 0 for none."""
    return int(_scalar(db_path, "SELECT max(seq) FROM candidates WHERE run_id = ?",
                       (run_id,)) or 0)


def metric_keys(db_path: str | Path, run_id: int) -> list[str]:
    """The run's metric names by a skip scan of the ``(run_id, key, step)`` index: one index
    look-up per name instead of a pass over a million points."""
    conn = connection(db_path)
    if conn is None:
        return []
    keys, key = [], conn.execute("SELECT min(key) FROM metrics WHERE run_id = ?",
                                 (run_id,)).fetchone()[0]
    while key is not None:
        keys.append(key)
        key = conn.execute("SELECT min(key) FROM metrics WHERE run_id = ? AND key > ?",
                           (run_id, key)).fetchone()[0]
    return keys


def metric_series(db_path: str | Path, run_id: int, key: str,
                  buckets: int = 400) -> tuple[list[float], list[float], int]:
    """One metric's points downsampled in SQL to at most ``buckets`` (mean step, mean value)
    pairs over equal step ranges; returns the pairs and the number of points they stand for."""
    conn = connection(db_path)
    if conn is None:
        return [], [], 0
    lo, hi, count = conn.execute("SELECT min(step), max(step), count(*) FROM metrics"
                                 " WHERE run_id = ? AND key = ?", (run_id, key)).fetchone()
    if not count:
        return [], [], 0
    if count <= buckets:
        rows = conn.execute("SELECT step, value FROM metrics WHERE run_id = ? AND key = ?"
                            " AND value IS NOT NULL ORDER BY step, rowid",
                            (run_id, key)).fetchall()
    else:
        width = max(1e-9, (hi - lo) / buckets)
        rows = conn.execute(
            "SELECT avg(step), avg(value) FROM metrics WHERE run_id = ? AND key = ?"
            " AND value IS NOT NULL GROUP BY min(CAST((step - ?) / ? AS INTEGER), ?)"
            " ORDER BY 1", (run_id, key, lo, width, buckets - 1)).fetchall()
    return [float(r[0]) for r in rows], [float(r[1]) for r in rows], int(count)


def train_metrics(db_path: str | Path, run_id: int) -> list[dict[str, Any]]:
    """A final-training run's ``train/*`` points (one per epoch and series)."""
    return _rows(db_path, "SELECT step, key, value FROM metrics WHERE run_id = ?"
                 " AND key >= 'train/' AND key < 'train0' ORDER BY key, step", (run_id,))


def recent_events(db_path: str | Path, run_id: int, limit: int = 8) -> list[dict[str, Any]]:
    """The run's newest events, newest first, with their data decoded."""
    rows = _rows(db_path, "SELECT rowid, step, kind, data, time FROM events WHERE run_id = ?"
                 " ORDER BY rowid DESC LIMIT ?", (run_id, limit))
    for row in rows:
        try:
            row["data"] = json.loads(row["data"] or "{}") or {}
        except ValueError:
            row["data"] = {}
    return rows


def candidate_states_since(db_path: str | Path, run_id: int,
                           since_seq: int) -> list[tuple[Any, ...]]:
    """``(seq, id, status, device)`` of the candidates written after ``since_seq``, in write
    order: the Overview folds them into its in-flight and per-device counts."""
    conn = connection(db_path)
    if conn is None:
        return []
    return conn.execute("SELECT seq, id, status, device FROM candidates WHERE run_id = ?"
                        " AND seq > ? ORDER BY seq", (run_id, since_seq)).fetchall()


def recent_finish_times(db_path: str | Path, run_id: int, window: int = 50) -> list[float]:
    """The last ``window`` finish times (the ETA's recent rate), read backwards along the
    ``(run_id, seq)`` index."""
    conn = connection(db_path)
    if conn is None:
        return []
    return [r[0] for r in conn.execute(
        "SELECT finished FROM candidates WHERE run_id = ? AND status != 'running'"
        " AND finished IS NOT NULL ORDER BY seq DESC LIMIT ?", (run_id, window))]


def accuracy_table(db_path: str | Path, run_id: int) -> list[dict[str, Any]]:
    """The PONAS accuracy-loss table (at most layers x choices rows)."""
    rows = _rows(db_path, "SELECT layer, choice, accuracy, loss, costs, time FROM accuracy_table"
                 " WHERE run_id = ? ORDER BY layer, choice", (run_id,))
    for row in rows:
        row["costs"] = json.loads(row["costs"] or "{}") or {}
    return rows


# -- actions ---------------------------------------------------------------------------------
def send_command(db_path: str | Path, run_id: int, command: str) -> None:
    """Write a pause / resume / cancel command row; the run's coordinator obeys it."""
    reader(db_path).store.send_command(run_id, command)


#: every table holding a run's rows (``runs`` itself is keyed by ``id``)
RUN_TABLES = ("candidates", "metrics", "events", "accuracy_table", "specializations",
              "commands", "searcher_state")


def delete_run(db_path: str | Path, run_id: int) -> None:
    """Remove a run that is not live and everything it wrote, in one write transaction.

    Uses the store's ``delete_run`` when it has one; otherwise sqlite-utils' table API
    (``delete_where`` with a bound parameter) inside the store's own write transaction.
    """
    store = reader(db_path).store
    if hasattr(store, "delete_run"):
        store.delete_run(run_id)
        return
    store.run(run_id)  # NaswError naming the known runs when it does not exist
    with store.write():
        for table in RUN_TABLES:
            if store.db[table].exists():
                store.db[table].delete_where("run_id = ?", [run_id])
        store.db["runs"].delete_where("id = ?", [run_id])


def resume_run(db_path: str | Path, run_id: int) -> int:
    """Relaunch the coordinator of an interrupted run, detached (as ``nasw resume RUN``)."""
    from workbench.runner import launch_detached

    return int(launch_detached(Path(db_path), run_id))


# -- formatting ------------------------------------------------------------------------------
def fmt_age(created: float | None, now: float) -> str:
    if not created:
        return "-"
    seconds = max(0.0, now - created)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def fmt_accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def fmt_cost(value: float | None) -> str:
    from searchers.constraints import format_number

    return "-" if value is None else format_number(float(value))


def status_text(status: str | None) -> Text:
    status = status or "-"
    return Text(status, style=STATUS_STYLES.get(status, ""))


def constraints_of(run: Mapping[str, Any]) -> list[Any]:
    """The run's constraints as :class:`searchers.constraints.Constraint` (bad ones skipped)."""
    from searchers.constraints import parse_constraint
    from searchers.errors import NaswError

    parsed = []
    for spec in run.get("constraints") or []:
        try:
            parsed.append(parse_constraint(spec))
        except NaswError:
            continue
    return parsed


def eta_seconds(finished_times: Iterable[float], done: int, budget: int | None,
                now: float | None = None, window: int = 50) -> float | None:
    """Time left at the recent rate: the last ``window`` finish times give candidates/s."""
    if not budget or done >= budget:
        return None if not budget else 0.0
    times = sorted(t for t in finished_times if t)[-window:]
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    rate = (len(times) - 1) / (times[-1] - times[0])
    return (budget - done) / rate


def now() -> float:
    return time.time()


def launch_run(db_path: str | Path, config: Mapping[str, Any]) -> int:
    """Validate a config (as ``nasw run``), create the run, start its coordinator detached.

    Returns the new run's id.
    """
    from workbench.config import parse_config
    from workbench.runner import launch_detached, start_run

    run_id = start_run(Path(db_path), parse_config(dict(config)))
    launch_detached(Path(db_path), run_id)
    return int(run_id)


# -- deployment: export, final training, comparison ------------------------------------------
def export_candidate(db_path: str | Path, run_id: int, candidate_id: int, fmt: str,
                     path: str | Path | None = None) -> dict[str, Any]:
    """``nasw export RUN --candidate ID --format FMT`` from the TUI: the same resolution
    (:func:`workbench.cli.export.resolve_architecture`), the same trained weights for a final
    run's ONNX/TorchScript, the same verified, atomic :func:`workbench.export.export`.

    Returns export's report (``path``, ``format``, re-measured ``costs``, ``check``). Imports
    torch for every format but DOT, so call it from a worker thread.
    """
    from workbench.cli.export import resolve_architecture
    from workbench.export import check_format, default_path, export
    from workbench.runner.final_train import load_weights, weights_path

    check_format(fmt)
    store = reader(db_path).store
    genotype, label, provenance = resolve_architecture(store, run_id, candidate_id, None)
    weights = None
    trained = weights_path(db_path, run_id)
    if (store.run(run_id)["searcher"] == "final" and trained.exists()
            and fmt in ("onnx", "pt2", "torchscript")):
        weights = load_weights(trained)
        provenance["weights"] = str(trained)
    target = Path(path) if path is not None else default_path(fmt, run_id, label)
    return export(genotype, fmt, target, provenance=provenance, weights=weights)


def train_candidate(db_path: str | Path, run_id: int, candidate_id: int) -> int:
    """``nasw train RUN --candidate ID --detach``: create the final-training run (the preset's
    full schedule, from scratch) and start its coordinator detached. Returns the new run id."""
    from workbench.runner import launch_detached
    from workbench.runner.final_train import create_final_run

    new_run = create_final_run(Path(db_path), run_id, candidate_id=candidate_id)
    launch_detached(Path(db_path), new_run)
    return int(new_run)


def compare(db_path: str | Path, run_ids: Iterable[int]) -> dict[str, list[dict[str, Any]]]:
    """:func:`workbench.analysis.compare_runs` (``nasw compare``) with the Pareto fronts on
    params and on MAdds: ``{"params": [summary per run], "madds": [...]}``."""
    from workbench.analysis import compare_runs

    store = reader(db_path).store
    ids = list(run_ids)
    return {cost: compare_runs(store, ids, cost) for cost in ("params", "madds")}


def gpu_status() -> list[dict[str, Any]]:
    """Every GPU NVML sees (``nvidia-ml-py``): index, name, memory used/total (bytes) and
    utilisation (%). An empty list on a machine without the library, the driver or a GPU."""
    from workbench.gpus import read_gpus

    return read_gpus()["gpus"]


def describe_gpu(gpu: Mapping[str, Any], bar_width: int = 12) -> Text:
    """``0 NVIDIA H100  mem ████░░ 12.3/79.6 GiB  util 45%``"""
    text = Text(f"{gpu['index']} {gpu['name']}  mem ")
    total = gpu.get("memory_total") or 0
    used = gpu.get("memory_used") or 0
    filled = round(bar_width * used / total) if total else 0
    text.append("█" * filled, style="green")
    text.append("░" * (bar_width - filled), style="dim")
    text.append(f" {used / 2**30:.1f}/{total / 2**30:.1f} GiB  util ")
    util = gpu.get("utilization")
    text.append("-" if util is None else f"{util}%",
                style="bold green" if util and util >= 50 else "")
    return text


def cwd() -> Path:
    """Where exports land (the default paths are relative to the current directory)."""
    return Path.cwd()
