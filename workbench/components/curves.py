"""The Curves tab: accuracy, best feasible accuracy, reward and feasible fraction per
candidate (vs step or time), and one searcher metric at a time; a final-training run's epochs.

Everything is read and reduced in a thread worker that posts a small view, downsampled in
SQL: the candidates by :func:`workbench.tui_data.curve_view` (one ``GROUP BY`` over ranges of
the finished candidates in write order, along a covering index: a few points per column of
the plot, the same view :class:`~workbench.widgets.plots.CurveSeries` computes in numpy from
every candidate), the metric by :func:`workbench.tui_data.metric_series` (a ``GROUP BY`` over
step ranges), so a run with 100,000 candidates and a million metric points draws a few
hundred and its rows never reach Python. The plots build their figures in their own workers
(:class:`~workbench.widgets.plots.LazyPlot`): the UI thread imports neither numpy nor plotext
and only shows the text.
"""

from __future__ import annotations

import threading
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import Static

from workbench import tui_data
from workbench.components.base import RunComponent
from workbench.widgets.plots import (
    CurvesPlot,
    MetricsPlot,
    TrainingPlot,
    legend_text,
)

#: downsampled points per column of the plot (plotext draws braille: two dots a column)
POINTS_PER_COLUMN = 2


class CurvesLoaded(Message):
    def __init__(self, view: dict[str, Any], metrics: dict[str, Any] | None,
                 training: list[dict[str, Any]] | None) -> None:
        super().__init__()
        self.view = view
        self.metrics = metrics
        self.training = training


class CurvesTab(RunComponent):
    def __init__(self, db_path: Any, run_id: int, **kwargs: Any) -> None:
        super().__init__(db_path, run_id, **kwargs)
        self.by_time = False
        self.metric_key: str | None = None
        self.metric_rowid = -1
        self.lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield Static(legend_text(CurvesPlot.LEGEND), id="curves-legend")
        yield CurvesPlot(id="curves-plot")
        yield TrainingPlot(id="training-plot", classes="hidden")
        yield MetricsPlot(id="metrics-plot")

    def run_known(self) -> None:
        if self.is_final:  # one candidate: its epochs, not candidates, are the curves
            for widget in ("#curves-plot", "#metrics-plot", "#curves-legend"):
                self.query_one(widget).add_class("hidden")
            plot = self.query_one("#training-plot", TrainingPlot)
            plot.remove_class("hidden")
            epochs = (((self.run or {}).get("config") or {}).get("train") or {}).get("epochs")
            plot.set_total_epochs(int(epochs) if epochs else None)

    def load(self) -> None:
        self.fetch(self.buckets(), self.by_time, self.metric_key, force_metric=False)

    def buckets(self) -> int:
        return POINTS_PER_COLUMN * max(80, self.size.width)

    @work(thread=True, group="curves")
    def fetch(self, buckets: int, by_time: bool, key: str | None, force_metric: bool) -> None:
        """Downsample the candidates; the metric only when it (or the key) changed. One fetch
        at a time (the lock), so views arrive in the order they were asked for."""
        with self.lock:
            run = self.run or {}
            if run.get("searcher") == "final":
                self.post_message(CurvesLoaded({"n": 0}, None, tui_data.train_metrics(
                    self.db_path, self.run_id)))
                return
            view = tui_data.curve_view(self.db_path, self.run_id, buckets, by_time,
                                       run.get("started") or run.get("created"))
            metrics = None
            stamp = self.stamp.metric_rowid if self.stamp else 0
            if force_metric or stamp != self.metric_rowid:
                self.metric_rowid = stamp
                keys = tui_data.metric_keys(self.db_path, self.run_id)
                key = key if key in keys else (keys[0] if keys else None)
                xs, ys, count = (tui_data.metric_series(self.db_path, self.run_id, key, buckets)
                                 if key is not None else ([], [], 0))
                metrics = {"keys": keys, "key": key, "xs": xs, "ys": ys, "count": count}
        self.post_message(CurvesLoaded(view, metrics, None))

    def on_curves_loaded(self, message: CurvesLoaded) -> None:
        message.stop()
        if message.training is not None:
            self.query_one("#training-plot", TrainingPlot).add_metrics(message.training)
            return
        plot = self.query_one("#curves-plot", CurvesPlot)
        plot.by_time = self.by_time
        plot.set_view(message.view)
        if message.metrics is not None:
            self.metric_key = message.metrics["key"]
            self.query_one("#metrics-plot", MetricsPlot).set_series(**message.metrics)

    # -- keys routed by the screen ---------------------------------------------------------
    def toggle_axis(self) -> None:
        """``x``: candidates evaluated <-> minutes since the start."""
        self.by_time = not self.by_time
        self.fetch(self.buckets(), self.by_time, self.metric_key, force_metric=False)

    def cycle_metric(self) -> None:
        """``v``: the next searcher metric."""
        key = self.query_one("#metrics-plot", MetricsPlot).next_key()
        if key is not None:
            self.metric_key = key
            self.fetch(self.buckets(), self.by_time, key, force_metric=True)


__all__ = ["CurvesTab"]
