"""The TUI's read side: a thin adapter between :mod:`workbench.store` and the screens.

It adds no SQL of its own. It gives each polling thread its own store connection (SQLite
connections are per thread), keeps the "last row seen" cursors of a run's live view so every
poll asks the store only for rows written since (``since_seq`` for candidates, ``since_rowid``
for metrics and events), and formats values the same way on every screen.

The store (and with it sqlite-utils) is imported on first use, from a worker thread, so the
first screen paints before it loads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


# -- the live view of one run ----------------------------------------------------------------
@dataclass
class RunDelta:
    """What changed in a run since the previous poll (first poll: everything)."""

    run: dict[str, Any] | None
    candidates: list[dict[str, Any]] = field(default_factory=list)  # new or updated rows
    metrics: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    table_rows: list[dict[str, Any]] = field(default_factory=list)
    first: bool = False


class RunFeed:
    """Cursors of a run's live view: each :meth:`poll` returns only rows newer than the last.

    Candidates come back when inserted *or updated* (the store bumps their ``seq`` on every
    write, so an in-flight candidate that finishes is seen again). The PONAS accuracy table is
    at most layers x choices rows, so it is re-read only when its row count or newest time
    changes.
    """

    def __init__(self, db_path: str | Path, run_id: int) -> None:
        self.db_path = Path(db_path)
        self.run_id = run_id
        self.candidate_seq = 0
        self.metric_rowid = 0
        self.event_rowid = 0
        self.table_stamp: tuple[int, float] = (0, 0.0)
        self.polls = 0

    def poll(self) -> RunDelta:
        read = reader(self.db_path)
        run = read.run(self.run_id)
        if run is None:
            return RunDelta(run=None)
        store = read.store
        delta = RunDelta(run=run, first=self.polls == 0)
        self.polls += 1
        delta.candidates = store.candidates(self.run_id, since_seq=self.candidate_seq,
                                            order="seq")
        if delta.candidates:
            self.candidate_seq = max(c["seq"] for c in delta.candidates)
        delta.metrics = store.metrics(self.run_id, since_rowid=self.metric_rowid)
        if delta.metrics:
            self.metric_rowid = delta.metrics[-1]["rowid"]
        delta.events = store.events(self.run_id, since_rowid=self.event_rowid)
        if delta.events:
            self.event_rowid = delta.events[-1]["rowid"]
        if run.get("searcher") == "ponas" or self.table_stamp[0]:
            table = store.accuracy_table(self.run_id)
            stamp = (len(table), max((r["time"] or 0.0 for r in table), default=0.0))
            if stamp != self.table_stamp:
                delta.table_rows = table
                self.table_stamp = stamp
        return delta


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
