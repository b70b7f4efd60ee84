"""The Pareto tab: accuracy vs params or MAdds, the Pareto front, the constraint lines and
the selected candidate.

The front is kept incrementally (:class:`IncrementalFront`): each finished candidate the
tab's ``seq`` cursor brings in costs O(log n) plus the points it removes, so a poll of a
100,000-candidate run touches only the new rows. The cloud is thinned in numpy to one point
per braille dot of the plot before it is drawn. Reading, folding and thinning run in a thread
worker that posts the view.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import Static

from workbench import tui_data
from workbench.components.base import RunComponent
from workbench.tui_data import constraints_of
from workbench.widgets.plots import ParetoPlot

METRICS = ("params", "madds")


class IncrementalFront:
    """The Pareto front (lower cost, higher accuracy) of the points added so far.

    The same front as :func:`workbench.analysis.pareto_front` over the points in the order
    they were added (ties in cost keep the most accurate, an exact duplicate keeps the first):
    the front is kept sorted by cost with accuracy strictly increasing, so a new point is
    dominated iff the front point just left of it is at least as accurate, and the points it
    dominates are the run just right of it.
    """

    def __init__(self) -> None:
        self.costs: list[float] = []
        self.accuracies: list[float] = []
        self.ids: list[int] = []

    def add(self, cost: float, accuracy: float, candidate_id: int) -> bool:
        """Add one point; True when it joined the front."""
        left = bisect.bisect_right(self.costs, cost)
        if left and self.accuracies[left - 1] >= accuracy:
            return False
        right = left
        while right < len(self.costs) and self.accuracies[right] <= accuracy:
            right += 1
        # points with the same cost sit left of ``left`` (bisect_right): drop the one there
        start = left - 1 if left and self.costs[left - 1] == cost else left
        self.costs[start:right] = [cost]
        self.accuracies[start:right] = [accuracy]
        self.ids[start:right] = [candidate_id]
        return True

    def points(self) -> list[tuple[float, float, int]]:
        return list(zip(self.costs, self.accuracies, self.ids, strict=True))

    def __len__(self) -> int:
        return len(self.ids)


class ParetoData:
    """Every finished candidate's (params, madds, accuracy, feasible), and four fronts kept
    incrementally: per metric, among feasible candidates and among all (the plot shows the
    feasible one, or the one over all candidates while none is feasible)."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.costs: dict[str, list[float]] = {m: [] for m in METRICS}
        self.accuracy: list[float] = []
        self.feasible: list[bool] = []
        self.index: dict[int, int] = {}
        self.fronts = {(m, f): IncrementalFront() for m in METRICS for f in (True, False)}

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """``(seq, id, accuracy, reward, feasible, finished, params, madds)`` rows."""
        rebuild = False
        for _, cid, accuracy, _, is_feasible, _, params, madds in rows:
            if accuracy is None:
                continue
            point = (float(params) if params is not None else np.nan,
                     float(madds) if madds is not None else np.nan, float(accuracy),
                     bool(is_feasible))
            at = self.index.get(cid)
            if at is not None:  # seen again after an update: replace, refold if it moved
                old = (self.costs["params"][at], self.costs["madds"][at], self.accuracy[at],
                       self.feasible[at])
                if old != point:
                    self.costs["params"][at], self.costs["madds"][at] = point[0], point[1]
                    self.accuracy[at], self.feasible[at] = point[2], point[3]
                    rebuild = True
                continue
            self.index[cid] = len(self.ids)
            self.ids.append(cid)
            self.costs["params"].append(point[0])
            self.costs["madds"].append(point[1])
            self.accuracy.append(point[2])
            self.feasible.append(point[3])
            if not rebuild:
                self._fold(len(self.ids) - 1)
        if rebuild:
            self.fronts = {key: IncrementalFront() for key in self.fronts}
            for at in range(len(self.ids)):
                self._fold(at)

    def _fold(self, at: int) -> None:
        for metric in METRICS:
            cost = self.costs[metric][at]
            if cost != cost:
                continue
            self.fronts[(metric, False)].add(cost, self.accuracy[at], self.ids[at])
            if self.feasible[at]:
                self.fronts[(metric, True)].add(cost, self.accuracy[at], self.ids[at])

    def front(self, metric: str) -> IncrementalFront:
        feasible = self.fronts[(metric, True)]
        return feasible if len(feasible) else self.fronts[(metric, False)]

    def view(self, metric: str, selected: int | None, columns: int, rows: int) -> dict[str, Any]:
        """The plot's data: the cloud thinned to one point per braille dot (2 x 4 per cell)
        of a ``columns`` x ``rows`` canvas, split feasible / infeasible, the front, and the
        selected candidate's point."""
        cost = np.asarray(self.costs[metric])
        accuracy = np.asarray(self.accuracy)
        known = ~np.isnan(cost)
        if not known.any():
            return {"n": 0}
        feasible = np.asarray(self.feasible)
        x, y, f = cost[known], accuracy[known], feasible[known]
        lo, hi = float(x.min()), float(x.max())
        ylo, yhi = float(y.min()), float(y.max())
        gx = np.minimum(((x - lo) / ((hi - lo) or 1.0) * 2 * columns).astype(np.int64),
                        2 * columns)
        gy = np.minimum(((y - ylo) / ((yhi - ylo) or 1.0) * 4 * rows).astype(np.int64), 4 * rows)
        cells = (gx * (4 * rows + 1) + gy) * 2 + f.astype(np.int64)
        _, keep = np.unique(cells, return_index=True)
        x, y, f = x[keep], y[keep], f[keep]
        point = None
        if selected is not None and selected in self.index:
            at = self.index[selected]
            if cost[at] == cost[at]:
                point = (float(cost[at]), float(accuracy[at]))
        return {"n": int(known.sum()), "lo": lo, "hi": hi,
                "feasible_x": x[f].tolist(), "feasible_y": y[f].tolist(),
                "infeasible_x": x[~f].tolist(), "infeasible_y": y[~f].tolist(),
                "front": self.front(metric).points(), "selected": point}


class ParetoLoaded(Message):
    def __init__(self, view: dict[str, Any]) -> None:
        super().__init__()
        self.view = view


class ParetoTab(RunComponent):
    def __init__(self, db_path: Any, run_id: int, **kwargs: Any) -> None:
        super().__init__(db_path, run_id, **kwargs)
        self.data = ParetoData()
        self.cursor = 0
        self.lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield Static("", id="pareto-legend")
        yield ParetoPlot(id="pareto-plot")

    @property
    def plot(self) -> ParetoPlot:
        return self.query_one("#pareto-plot", ParetoPlot)

    @property
    def metric(self) -> str:
        return self.plot.metric

    def run_known(self) -> None:
        self.plot.set_constraints(constraints_of(self.run or {}))

    def load(self) -> None:
        self.fetch(self.metric, self.selected_id)

    def canvas(self) -> tuple[int, int]:
        return max(40, self.plot.size.width), max(10, self.plot.size.height)

    @work(thread=True, group="pareto")
    def fetch(self, metric: str, selected: int | None) -> None:
        """Fold in the candidates finished since the cursor, then thin (one at a time)."""
        with self.lock:
            rows = tui_data.finished_since(self.db_path, self.run_id, self.cursor)
            if rows:
                self.cursor = rows[-1][0]
                self.data.add(rows)
            view = self.data.view(metric, selected, *self.canvas())
        self.post_message(ParetoLoaded(view))

    def on_pareto_loaded(self, message: ParetoLoaded) -> None:
        message.stop()
        self.plot.set_view(message.view)
        self.query_one("#pareto-legend", Static).update(self.plot.legend())

    def front(self) -> list[int]:
        """Candidate ids on the front shown (feasible candidates, or all when none is)."""
        return list(self.data.front(self.metric).ids)

    def selection_changed(self) -> None:
        self.plot.selected = self.selected_id
        if self.active:
            self.fetch(self.metric, self.selected_id)
        else:
            self.stale()

    def toggle_metric(self) -> None:
        """``m``: params <-> MAdds."""
        plot = self.plot
        plot.metric = METRICS[(METRICS.index(plot.metric) + 1) % len(METRICS)]
        self.fetch(plot.metric, self.selected_id)


__all__ = ["IncrementalFront", "ParetoData", "ParetoTab"]
