"""Terminal plots of a run (textual-plotext): curves over steps or time, the Pareto front, a
final training's epochs, and several runs' Pareto fronts overlaid.

The widgets keep the points they were given and redraw on demand, so the screen only hands
them the rows that are new since the last poll.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from textual_plotext import PlotextPlot

from searchers.constraints import Constraint, format_number
from workbench.analysis import pareto_front


def cost_axis(plt: Any, lo: float, hi: float) -> None:
    """A padded cost x axis with five ticks written as ``45k`` / ``3.2M``."""
    pad = 0.05 * (hi - lo or hi or 1.0)
    plt.xlim(lo - pad, hi + pad)
    ticks = [lo + (hi - lo) * i / 4 for i in range(5)]
    plt.xticks(ticks, [format_number(round(t, 3 - len(str(int(abs(t) or 1)))) if t else 0)
                       for t in ticks])


class CurveSeries:
    """The per-candidate curves of a run, in the order results arrived.

    ``step`` is the number of candidates evaluated; ``minutes`` the time since the run started.
    Accuracy, best accuracy so far, reward and the running feasible fraction all live in [0, 1],
    so one axis carries them all.
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.minutes: list[float] = []
        self.accuracy: list[float] = []
        self.best: list[float] = []
        self.reward: list[float] = []
        self.feasible_fraction: list[float] = []
        self._feasible = 0
        self._best = -math.inf
        self._seen: set[int] = set()

    def add(self, rows: Iterable[Mapping[str, Any]], started_at: float | None) -> None:
        """Append finished candidates (a row seen again after an update is counted once)."""
        for row in rows:
            accuracy = row.get("accuracy")
            if accuracy is None or row.get("id") in self._seen:
                continue
            self._seen.add(row.get("id"))
            self.steps.append(len(self.steps) + 1)
            finished = row.get("finished") or started_at or 0.0
            self.minutes.append(max(0.0, (finished - (started_at or finished)) / 60.0))
            self.accuracy.append(float(accuracy))
            if row.get("feasible"):
                self._feasible += 1
                self._best = max(self._best, float(accuracy))
            self.best.append(self._best if self._best > -math.inf else math.nan)
            self.reward.append(float(row.get("reward") or 0.0))
            self.feasible_fraction.append(self._feasible / len(self.steps))

    def __len__(self) -> int:
        return len(self.steps)


class LazyPlot(PlotextPlot):
    """Redraws its figure at render time, and only when its data changed since the last one.

    A hidden tab is not rendered, so rows arriving for it cost only the list appends; the
    plotext figure (which walks every point) is rebuilt once, when the tab is shown.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stale = True

    def replot(self) -> None:
        self._stale = True
        self.refresh()

    def draw(self) -> None:
        """Build the plotext figure from the widget's data; each plot overrides it (the base
        draws an empty figure)."""
        self.plt.clear_figure()

    def render(self) -> Any:
        if self._stale:
            self._stale = False
            self.draw()
        return super().render()


class CurvesPlot(LazyPlot):
    """Accuracy, best feasible accuracy, reward and feasible fraction vs step or time."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.series = CurveSeries()
        self.by_time = False

    def add_candidates(self, rows: Iterable[Mapping[str, Any]], started_at: float | None) -> None:
        self.series.add(rows, started_at)
        self.replot()

    def toggle_axis(self) -> None:
        self.by_time = not self.by_time
        self.replot()

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        s = self.series
        x = s.minutes if self.by_time else s.steps
        plt.title("candidates: accuracy, best feasible, reward, feasible fraction")
        plt.xlabel("minutes since start" if self.by_time else "candidates evaluated")
        if s.steps:
            plt.scatter(x, s.accuracy, marker="dot", color="blue", label="accuracy")
            best_x = [xi for xi, b in zip(x, s.best, strict=True) if b == b]
            best_y = [b for b in s.best if b == b]
            if best_y:
                plt.plot(best_x, best_y, marker="hd", color="green", label="best feasible")
            plt.plot(x, s.reward, marker="hd", color="magenta", label="reward")
            plt.plot(x, s.feasible_fraction, marker="hd", color="orange",
                     label="feasible fraction")
            plt.ylim(0, 1)


class MetricsPlot(LazyPlot):
    """One searcher metric series (``metrics`` table: key, step, value) at a time."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.points: dict[str, tuple[list[float], list[float]]] = {}
        self.key: str | None = None

    def add_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            xs, ys = self.points.setdefault(str(row["key"]), ([], []))
            xs.append(float(row["step"]))
            ys.append(float(row["value"]))
        if self.key is None and self.points:
            self.key = sorted(self.points)[0]
        self.replot()

    def cycle(self) -> None:
        keys = sorted(self.points)
        if keys:
            self.key = keys[(keys.index(self.key) + 1) % len(keys)] if self.key in keys else keys[0]
            self.replot()

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if self.key is None:
            plt.title("searcher metrics: none recorded yet")
        else:
            xs, ys = self.points[self.key]
            plt.title(f"searcher metric {self.key}  ({len(self.points)} series, 'v' cycles)")
            plt.xlabel("step")
            plt.plot(xs, ys, marker="hd", color="cyan")


class ParetoPlot(LazyPlot):
    """Accuracy vs a cost metric; constraint lines; the Pareto front of feasible candidates."""

    METRICS = ("params", "madds")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metric = "params"
        self.by_id: dict[int, tuple[int, dict[str, float], float, bool]] = {}
        self.constraints: list[Constraint] = []
        self.selected: int | None = None

    def add_candidates(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            if row.get("accuracy") is None:
                continue
            self.by_id[int(row["id"])] = (int(row["id"]), dict(row.get("costs") or {}),
                                          float(row["accuracy"]), bool(row.get("feasible")))
        self.replot()

    def set_constraints(self, constraints: Sequence[Constraint]) -> None:
        self.constraints = list(constraints)
        self.replot()

    def select(self, candidate_id: int | None) -> None:
        self.selected = candidate_id
        self.replot()

    def toggle_metric(self) -> None:
        self.metric = self.METRICS[(self.METRICS.index(self.metric) + 1) % len(self.METRICS)]
        self.replot()

    @property
    def rows(self) -> list[tuple[int, dict[str, float], float, bool]]:
        return list(self.by_id.values())

    def front(self) -> list[int]:
        """Candidate ids on the front (among feasible candidates, or all when none is)."""
        pool = [r for r in self.rows if r[3] and self.metric in r[1]] or [
            r for r in self.rows if self.metric in r[1]]
        indices = pareto_front([(r[1][self.metric], r[2]) for r in pool])
        return [pool[i][0] for i in indices]

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        m = self.metric
        rows = [r for r in self.rows if m in r[1]]
        plt.title(f"accuracy vs {m}  ('m' switches metric)")
        plt.xlabel(m)
        if rows:
            infeasible = [r for r in rows if not r[3]]
            feasible_rows = [r for r in rows if r[3]]
            if infeasible:
                plt.scatter([r[1][m] for r in infeasible], [r[2] for r in infeasible],
                            marker="dot", color="gray", label="infeasible")
            if feasible_rows:
                plt.scatter([r[1][m] for r in feasible_rows], [r[2] for r in feasible_rows],
                            marker="dot", color="blue", label="feasible")
            front_ids = set(self.front())
            front = sorted((r for r in rows if r[0] in front_ids), key=lambda r: r[1][m])
            plt.plot([r[1][m] for r in front], [r[2] for r in front], marker="hd",
                     color="red", label="Pareto front")
            plt.scatter([r[1][m] for r in front], [r[2] for r in front], marker="●",
                        color="red")
            for c in self.constraints:
                if c.metric == m:
                    plt.vertical_line(c.value, color="yellow")
                    plt.text(f" {c}", x=c.value, y=max(r[2] for r in rows), color="yellow")
            chosen = [r for r in rows if r[0] == self.selected]
            if chosen:
                plt.scatter([chosen[0][1][m]], [chosen[0][2]], marker="◆", color="green",
                            label=f"candidate {self.selected}")
            bounds = [c.value for c in self.constraints if c.metric == m]
            lo = min([r[1][m] for r in rows] + bounds)
            hi = max([r[1][m] for r in rows] + bounds)
            cost_axis(plt, lo, hi)


class TrainingPlot(LazyPlot):
    """A final training run (searcher ``final``): training loss and validation loss (left axis)
    and validation accuracy (right axis) per epoch, from its ``train/*`` metrics."""

    SERIES = (("train/loss", "loss", "red", "left"), ("train/val_loss", "val loss", "orange",
                                                      "left"),
              ("train/val_accuracy", "val accuracy", "green", "right"))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.points: dict[str, dict[int, float]] = {key: {} for key, *_ in self.SERIES}
        self.total_epochs: int | None = None

    def add_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Keep the ``train/*`` points (an epoch written again after a resume replaces the
        earlier value)."""
        changed = False
        for row in rows:
            series = self.points.get(str(row["key"]))
            if series is not None:
                series[int(row["step"])] = float(row["value"])
                changed = True
        if changed:
            self.replot()

    def set_total_epochs(self, epochs: int | None) -> None:
        self.total_epochs = epochs
        self.replot()

    @property
    def epochs_done(self) -> int:
        return max((max(p) for p in self.points.values() if p), default=0)

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        total = f"/{self.total_epochs}" if self.total_epochs else ""
        plt.title(f"final training: epoch {self.epochs_done}{total} — loss (left), "
                  "val accuracy (right)")
        plt.xlabel("epoch")
        for key, label, color, side in self.SERIES:
            series = self.points[key]
            if series:
                epochs = sorted(series)
                plt.plot(epochs, [series[e] for e in epochs], marker="hd", color=color,
                         label=label, yside=side)
        if self.total_epochs:
            plt.xlim(0, self.total_epochs)
            ticks = sorted({round(self.total_epochs * i / 4) for i in range(5)})
            plt.xticks(ticks, [str(t) for t in ticks])


class ParetoFrontsPlot(LazyPlot):
    """Several runs' Pareto fronts (accuracy vs params or MAdds) overlaid, one colour each."""

    COLORS = ("blue", "red", "green", "orange", "magenta", "cyan", "yellow", "white")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metric = "params"
        self.fronts: dict[str, list[tuple[float, float]]] = {}

    def set_fronts(self, metric: str, fronts: Mapping[str, Sequence[tuple[float, float]]]) -> None:
        """``fronts``: a label per run -> its front's (cost, accuracy) points."""
        self.metric = metric
        self.fronts = {label: sorted(points) for label, points in fronts.items()}
        self.replot()

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(f"Pareto fronts: accuracy vs {self.metric}  ('m' switches metric)")
        plt.xlabel(self.metric)
        xs = [x for points in self.fronts.values() for x, _ in points]
        for k, (label, points) in enumerate(self.fronts.items()):
            if points:
                color = self.COLORS[k % len(self.COLORS)]
                plt.plot([x for x, _ in points], [y for _, y in points], marker="hd",
                         color=color, label=label)
                plt.scatter([x for x, _ in points], [y for _, y in points], marker="●",
                            color=color)
        if xs:
            cost_axis(plt, min(xs), max(xs))
