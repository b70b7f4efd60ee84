"""The Pareto tab: accuracy vs params or MAdds, the Pareto front, the constraint lines and
the selected candidate.

The front is kept incrementally (:class:`ParetoFronts`): the first showing of a metric reads
the fronts of the run so far from one SQL window over a covering index
(:func:`workbench.tui_data.pareto_fronts`: only the front's points reach Python), and every
poll after that folds in only the candidates written since the tab's ``seq`` cursor, each in
O(log n) plus the points it removes (:class:`IncrementalFront`). The cloud is thinned in SQL
to one point per braille dot of the plot (:func:`workbench.tui_data.pareto_cloud`). Reading
and folding run in a thread worker that posts the view; the plot builds its figure in its own
worker, so the UI thread imports neither numpy nor plotext.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

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

    def point(self, candidate_id: int) -> tuple[float, float]:
        at = self.ids.index(candidate_id)
        return self.costs[at], self.accuracies[at]

    def points(self) -> list[tuple[float, float, int]]:
        return list(zip(self.costs, self.accuracies, self.ids, strict=True))

    def __len__(self) -> int:
        return len(self.ids)


class ParetoFronts:
    """A run's Pareto fronts on one cost metric, over all finished candidates and over the
    feasible ones, kept up to date with the candidates written since :attr:`cursor`.

    :meth:`update` reads the fronts from SQL the first time, then folds in only the newer
    rows (``(seq, id, accuracy, reward, feasible, finished, params, madds)`` from
    :func:`workbench.tui_data.finished_since`). A point that does not change a front stays
    out of it whatever it becomes later, so a candidate written again is simply added again,
    unless it is on a front with different values: then the fronts are read from SQL again
    (its old point may have hidden others).
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.cursor = -1  # nothing read yet
        self.every = IncrementalFront()
        self.feasible = IncrementalFront()

    def reset(self, db_path: Any, run_id: int, upto_seq: int) -> None:
        every, feasible = tui_data.pareto_fronts(db_path, run_id, self.metric, upto_seq)
        self.every, self.feasible = IncrementalFront(), IncrementalFront()
        for front, points in ((self.every, every), (self.feasible, feasible)):
            for cost, accuracy, cid in points:
                front.add(cost, accuracy, cid)
        self.cursor = upto_seq

    def update(self, db_path: Any, run_id: int,
               rows: list[tuple[Any, ...]] | None = None) -> None:
        """Bring the fronts up to the run's newest write; ``rows``: the finished rows since
        :attr:`cursor` when the caller read them already."""
        if self.cursor < 0:
            self.reset(db_path, run_id, tui_data.max_seq(db_path, run_id))
            return
        if rows is None:
            rows = tui_data.finished_since(db_path, run_id, self.cursor)
        column = 6 if self.metric == "params" else 7
        for row in rows:
            self.fold(row[1], row[column], row[2], row[4])
            if self.cursor < 0:  # a front point moved: read them again, up to this batch
                self.reset(db_path, run_id, rows[-1][0])
                return
        if rows:
            self.cursor = rows[-1][0]

    def fold(self, cid: int, cost: float | None, accuracy: float | None,
             feasible: Any) -> None:
        if accuracy is None or cost is None:
            if cid in self.every.ids or cid in self.feasible.ids:
                self.cursor = -1
            return
        point = (float(cost), float(accuracy))
        for front in (self.every, self.feasible):
            if cid in front.ids and front.point(cid) != point:
                self.cursor = -1
                return
        self.every.add(point[0], point[1], cid)
        if feasible:
            self.feasible.add(point[0], point[1], cid)

    def shown(self) -> IncrementalFront:
        """The feasible front, or the front of all candidates while none is feasible."""
        return self.feasible if len(self.feasible) else self.every


class ParetoLoaded(Message):
    def __init__(self, view: dict[str, Any]) -> None:
        super().__init__()
        self.view = view


class ParetoTab(RunComponent):
    def __init__(self, db_path: Any, run_id: int, **kwargs: Any) -> None:
        super().__init__(db_path, run_id, **kwargs)
        self.fronts = {metric: ParetoFronts(metric) for metric in METRICS}
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
        """Fold the candidates written since the metric's cursor into its fronts, thin the
        cloud (one fetch at a time)."""
        with self.lock:
            fronts = self.fronts[metric]
            fronts.update(self.db_path, self.run_id)
            view = tui_data.pareto_cloud(self.db_path, self.run_id, metric, *self.canvas())
            if view["n"]:
                view["front"] = fronts.shown().points()
                view["selected"] = None if selected is None else tui_data.pareto_point(
                    self.db_path, self.run_id, metric, selected)
        self.post_message(ParetoLoaded(view))

    def on_pareto_loaded(self, message: ParetoLoaded) -> None:
        message.stop()
        self.plot.set_view(message.view)
        self.query_one("#pareto-legend", Static).update(self.plot.legend())

    def front(self) -> list[int]:
        """Candidate ids on the front shown (feasible candidates, or all when none is)."""
        return list(self.fronts[self.metric].shown().ids)

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


__all__ = ["IncrementalFront", "ParetoFronts", "ParetoTab"]
