"""The Overview tab: progress, ETA, best and selected candidates, limits, workers, GPUs and
the latest events of a run (or, for a final-training run, its epochs).

Reads per refresh, in a thread worker: the best and the selected candidate by id, the newest
events and finish times (``LIMIT`` on an index), and the candidates written since the last
refresh, folded into the in-flight and per-device counts; never the run's candidates whole. While the tab is shown a second worker
polls NVML every few seconds for the GPUs' memory and utilisation (nothing is shown on a
machine without GPUs, and such a machine is not asked again).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from workbench import tui_data
from workbench.components.base import RunComponent
from workbench.text import plain_text
from workbench.tui_data import (
    constraints_of,
    eta_seconds,
    fmt_accuracy,
    fmt_age,
    fmt_cost,
    fmt_duration,
)

GPU_POLL_S = 3.0
RECENT_EVENTS = 8
#: event fields that are identifiers, shown as they are (a pid is not a quantity)
_ID_KEYS = ("pid", "job", "job_id", "candidate", "id", "run", "step", "epoch", "layer", "choice")
_TRAIN_SERIES = (("train/loss", "loss", "{:.4f}"), ("train/val_accuracy", "val accuracy",
                                                    "{:.4f}"),
                 ("train/val_loss", "val loss", "{:.4f}"), ("train/lr", "lr", "{:.3g}"))


class OverviewLoaded(Message):
    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data


class ActivityCounted(Message):
    def __init__(self, counts: dict[str, Any]) -> None:
        super().__init__()
        self.counts = counts


class GpusUpdated(Message):
    def __init__(self, gpus: list[dict[str, Any]]) -> None:
        super().__init__()
        self.gpus = gpus


def describe_workers(workers: list[Any]) -> str:
    """``2 (busy 1/2): w0 cpu:0 -> #12, w1 cuda:1 idle (restarts 1)`` from the coordinator's
    worker list (index, device, job_id, restarts)."""
    parts, busy = [], 0
    for position, worker in enumerate(workers):
        if not isinstance(worker, dict):
            parts.append(plain_text(worker, max_len=40))
            continue
        job = worker.get("job_id")
        busy += job is not None
        part = f"w{worker.get('index', position)} {plain_text(worker.get('device', '?'))} "
        part += f"-> #{job}" if job is not None else "idle"
        if worker.get("restarts"):
            part += f" (restarts {worker['restarts']})"
        parts.append(part)
    return f"{len(workers)} (busy {busy}/{len(workers)}): " + ", ".join(parts)


def append_bar(text: Text, label: str, done: int, total: int | None, unit: str,
               width: int = 30) -> None:
    """``label ███░░░ done/total (pct%)``, or ``label done unit`` when there is no total."""
    text.append(label, style="bold")
    if not total:
        text.append(f"{done} {unit}")
        return
    filled = round(width * min(1.0, done / total))
    text.append("█" * filled, style="green")
    text.append("░" * (width - filled), style="dim")
    text.append(f" {done}/{total} ({100 * done / total:.0f}%)")


def short_value(value: Any, key: str = "") -> str:
    """An event field in 20 characters: floats to 4 digits, large quantities as ``12k``."""
    from searchers.constraints import format_number

    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return format_number(value) if abs(value) >= 10000 and key not in _ID_KEYS else str(value)
    return plain_text(value, max_len=20)


class Activity:
    """Candidates in flight and results per device, kept from ``(seq, id, status, device)``
    rows in write order: a candidate written again (finished, retried) replaces its earlier
    state, so each poll costs the rows written since the last one."""

    def __init__(self) -> None:
        self.cursor = 0
        self.state: dict[int, tuple[str, str]] = {}
        self.in_flight: set[int] = set()
        self.devices: Counter[str] = Counter()

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        for seq, cid, status, device in rows:
            self.cursor = max(self.cursor, seq)
            previous = self.state.get(cid)
            if previous is not None and previous[0] != "running" and previous[1]:
                self.devices[previous[1]] -= 1
                if not self.devices[previous[1]]:
                    del self.devices[previous[1]]
            self.state[cid] = (status, device or "")
            if status == "running":
                self.in_flight.add(cid)
                continue
            self.in_flight.discard(cid)
            if device:
                self.devices[device] += 1


class OverviewTab(RunComponent):
    def __init__(self, db_path: Any, run_id: int, **kwargs: Any) -> None:
        super().__init__(db_path, run_id, **kwargs)
        self.activity = Activity()
        self.counted = False
        self.counts: dict[str, Any] | None = None
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {}
        self.gpus: list[dict[str, Any]] = []
        self.gpu_polls = 0
        self.gpu_in_flight = False
        self.gpu_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="overview-scroll"):
            yield Static("", id="overview-body")

    def on_mount(self) -> None:
        self.gpu_timer = self.set_interval(GPU_POLL_S, self.maybe_poll_gpus)

    def activate(self) -> None:
        super().activate()
        if self.counts is not None:  # shown again; the first GPU poll waits for the first
            self.maybe_poll_gpus()   # paint and the first count (importing NVML: ~0.25 s)

    def focus_target(self) -> Any:
        return self.query_one("#overview-scroll")

    # -- data ------------------------------------------------------------------------------
    def load(self) -> None:
        if not self.data and self.screen.is_current:  # the first frame: read it right here
            self.show_data(self.read(self.run or {}, self.selected_id))
            return
        self.fetch(self.run or {}, self.selected_id)

    def selection_changed(self) -> None:
        if self.active and self.run is not None:
            self.fetch(self.run, self.selected_id)
        else:
            self.stale()

    @work(thread=True, group="overview")
    def fetch(self, run: dict[str, Any], selected: int | None) -> None:
        """:meth:`read`, then the run's activity folded in from the candidates written since
        the last count (one at a time: the lock). The first count waits for the first paint
        (:meth:`first_count`), so a 100,000-candidate run's Overview paints while its
        in-flight and per-device counts are still being counted."""
        self.post_message(OverviewLoaded(self.read(run, selected)))
        if self.counted:
            self.post_message(ActivityCounted(self.count_activity()))

    def read(self, run: dict[str, Any], selected: int | None) -> dict[str, Any]:
        """The best and the selected candidate (by id), the newest events and finish times
        (``LIMIT`` along indexes): a few milliseconds whatever the run's size."""
        import searchers.constraints  # noqa: F401  (formatting needs it)

        best_id = run.get("best_candidate")
        data: dict[str, Any] = {
            "best": (tui_data.candidate(self.db_path, self.run_id, best_id)
                     if best_id is not None else None),
            "selected": (tui_data.candidate(self.db_path, self.run_id, selected)
                         if selected is not None else None),
            "events": tui_data.recent_events(self.db_path, self.run_id, RECENT_EVENTS),
            "finished_times": tui_data.recent_finish_times(self.db_path, self.run_id),
        }
        if run.get("searcher") == "final":
            latest: dict[str, float] = {}
            for row in tui_data.train_metrics(self.db_path, self.run_id):
                if row["value"] is not None:
                    latest[row["key"]] = float(row["value"])
                    latest["epoch"] = max(latest.get("epoch", 0.0), float(row["step"]))
            data["train_latest"] = latest
        return data

    def count_activity(self) -> dict[str, Any]:
        """Fold in the candidate states written since the last count (one fold at a time)."""
        with self.lock:
            self.activity.add(tui_data.candidate_states_since(self.db_path, self.run_id,
                                                              self.activity.cursor))
            self.counted = True
            return {"in_flight": len(self.activity.in_flight),
                    "devices": dict(self.activity.devices)}

    @work(thread=True, group="overview-activity")
    def first_count(self) -> None:
        """After the first paint: count a run's activity (100,000 candidates: a few hundred
        ms), then show it."""
        self.post_message(ActivityCounted(self.count_activity()))

    def on_overview_loaded(self, message: OverviewLoaded) -> None:
        message.stop()
        self.show_data(message.data)

    def show_data(self, data: dict[str, Any]) -> None:
        first = not self.data
        self.data = data
        self.render_body()
        if first:
            self.call_after_refresh(self.first_count)

    def on_activity_counted(self, message: ActivityCounted) -> None:
        message.stop()
        first = self.counts is None
        self.counts = message.counts
        self.render_body()
        if first:
            self.call_after_refresh(self.maybe_poll_gpus)

    def run_updated(self) -> None:
        if self.data:
            self.render_body()

    # -- drawing ---------------------------------------------------------------------------
    def render_body(self) -> None:
        self.query_one("#overview-body", Static).update(self.describe())

    def describe(self) -> Text:
        run = self.run or {}
        data = self.data
        now = self.clock()
        done, budget = run.get("n_done") or 0, run.get("budget")
        text = Text()
        if self.is_final:  # one candidate: its epochs are the progress
            self.append_epoch_progress(text, run)
        else:
            append_bar(text, "Progress  ", done, budget, "candidates")
            text.append("\n")
        elapsed = run.get("elapsed") or 0.0
        live = run.get("status") in ("running", "created")
        if live and run.get("started"):
            elapsed = max(elapsed, now - run["started"])
        text.append(f"          elapsed {fmt_duration(elapsed)}")
        if not self.is_final:
            eta = eta_seconds(data.get("finished_times") or [], done, budget) if live else None
            text.append(f" · ETA {fmt_duration(eta) if live else '-'}")
        text.append(f" · started {fmt_age(run.get('started') or run.get('created'), now)}\n")
        best = data.get("best")
        text.append("Best      ", style="bold")
        if best is None:
            text.append("none yet\n", style="dim")
        else:
            costs = best.get("costs") or {}
            text.append(f"#{best['id']} accuracy {fmt_accuracy(best.get('accuracy'))}"
                        f" · reward {fmt_accuracy(best.get('reward'))}"
                        f" · params {fmt_cost(costs.get('params'))}"
                        f" · madds {fmt_cost(costs.get('madds'))} ")
            text.append("feasible\n" if best.get("feasible") else "infeasible\n",
                        style="green" if best.get("feasible") else "red")
        text.append("Limits    ", style="bold")
        text.append(plain_text(", ".join(str(c) for c in constraints_of(run)) or "none"))
        n_ok = run.get("n_ok") or 0
        n_feasible = run.get("n_feasible") or 0
        fraction = f"{n_feasible}/{n_ok} ({100 * n_feasible / n_ok:.0f}%)" if n_ok else "-"
        text.append(f" · feasible {fraction} · failed {run.get('n_failed') or 0}\n")
        text.append("Workers   ", style="bold")
        workers = run.get("workers")
        if isinstance(workers, list) and workers:
            text.append(describe_workers(workers))
        elif isinstance(workers, dict) and workers:
            text.append(plain_text(", ".join(f"{k} {v}" for k, v in sorted(workers.items()))))
        else:
            text.append("-", style="dim")
        counts = self.counts or {}
        in_flight = counts.get("in_flight")
        text.append(f" · in flight {'…' if in_flight is None else in_flight}")
        devices = counts.get("devices") or {}
        if devices:
            text.append(" · results by device: " + ", ".join(
                f"{plain_text(d, max_len=24)} {n}" for d, n in sorted(devices.items())))
        text.append("\n")
        for position, gpu in enumerate(self.gpus):
            text.append("GPUs      " if position == 0 else "          ", style="bold")
            text.append_text(tui_data.describe_gpu(gpu))
            text.append("\n")
        if run.get("error"):
            lines = plain_text(run["error"], keep_newlines=True).strip().splitlines() or [""]
            text.append("Error     ", style="bold red")
            text.append(plain_text(lines[-1]) + "\n", style="red")
        selected = data.get("selected")
        if selected is not None and selected["id"] == self.selected_id:
            text.append("Selected  ", style="bold")
            text.append(f"#{selected['id']} {plain_text(selected.get('status'))} accuracy "
                        f"{fmt_accuracy(selected.get('accuracy'))} tag "
                        f"{plain_text(selected.get('tag') or '-', max_len=40)}\n", style="cyan")
        text.append("\nRecent events\n", style="bold")
        events = data.get("events") or []
        if not events:
            text.append("  none yet\n", style="dim")
        for event in events:
            fields = event.get("data") or {}
            summary = ", ".join(f"{plain_text(k, max_len=20)}={short_value(v, k)}"
                                for k, v in list(fields.items())[:4])
            text.append(f"  {fmt_age(event.get('time'), now):>8}  step {event.get('step'):>4}"
                        f"  {plain_text(event.get('kind'), max_len=12):<12} {summary}\n")
        return text

    def total_epochs(self) -> int | None:
        epochs = (((self.run or {}).get("config") or {}).get("train") or {}).get("epochs")
        return int(epochs) if epochs else None

    def append_epoch_progress(self, text: Text, run: dict[str, Any]) -> None:
        """``Epoch  ███░░ 3/30 (10%) · ETA`` and the last epoch's loss, val accuracy, lr.

        ETA: the run's training time so far (``elapsed``, written after every epoch and kept
        across resumes) per epoch done, times the epochs left."""
        latest = self.data.get("train_latest") or {}
        done = int(latest.get("epoch", 0))
        total = self.total_epochs()
        append_bar(text, "Epoch     ", done, total, "epochs")
        trained = run.get("elapsed") or 0.0
        if run.get("status") in ("running", "created", "paused") and total and done and trained:
            text.append(f" · ETA {fmt_duration(trained / done * (total - done))}")
        text.append("\n          ")
        if not latest:
            text.append("no epoch finished yet\n", style="dim")
            return
        text.append(" · ".join(f"{label} {fmt.format(latest[key])}"
                               for key, label, fmt in _TRAIN_SERIES if key in latest) + "\n")

    # -- GPUs ------------------------------------------------------------------------------
    def maybe_poll_gpus(self) -> None:
        """Poll NVML only while this tab is shown on the current screen; a machine where the
        first poll finds no GPU is not asked again."""
        if self.gpu_polls and not self.gpus:
            if self.gpu_timer is not None:
                self.gpu_timer.stop()
            return
        if not self.gpu_in_flight and self.active and self.screen.is_current:
            self.gpu_in_flight = True
            self.poll_gpus()

    @work(thread=True, exclusive=True, group="gpu-poll")
    def poll_gpus(self) -> None:
        self.post_message(GpusUpdated(tui_data.gpu_status()))

    def on_gpus_updated(self, message: GpusUpdated) -> None:
        message.stop()
        self.gpu_in_flight = False
        self.gpu_polls += 1
        self.gpus = message.gpus
        if self.data:
            self.render_body()


__all__ = ["GPU_POLL_S", "OverviewTab", "append_bar", "describe_workers", "short_value"]
