"""Terminal plots of a run (plotext, through textual-plotext's ``Plot``): curves over steps or
time, the Pareto front, a final training's epochs, and several runs' Pareto fronts overlaid.

The run-detail plots draw *views*: a few hundred points computed off the UI thread from
however many candidates or metric points the run holds (:func:`workbench.tui_data.curve_view`,
the Pareto tab's grid thinning, :func:`workbench.tui_data.metric_series`), so a redraw costs the
same at 100 candidates and at 100,000. Legends are drawn beside the plots (:func:`legend_text`),
not by plotext inside the canvas where they hid the top-left points.

The figures are drawn off the UI thread too: a plot widget (:class:`LazyPlot`) hands a copy of
its data, its size and the app's theme to a thread worker, which imports plotext (with numpy
and textual-plotext, ~0.3-0.5 s on the first showing), builds the figure and posts the text
back; the UI thread only shows that text. A thinned Pareto cloud of 20,000 points takes plotext
~0.1 s to draw, which blocked the UI thread while it was drawn in ``render``. This module
imports none of them itself, so mounting a plot costs the UI thread nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widget import Widget

from searchers.constraints import Constraint, format_number
from workbench.text import plain_text


def cost_axis(plt: Any, lo: float, hi: float) -> None:
    """A padded cost x axis with five ticks written as ``45k`` / ``3.2M``."""
    pad = 0.05 * (hi - lo or hi or 1.0)
    plt.xlim(lo - pad, hi + pad)
    ticks = [lo + (hi - lo) * i / 4 for i in range(5)]
    plt.xticks(ticks, [format_number(round(t, 3 - len(str(int(abs(t) or 1)))) if t else 0)
                       for t in ticks])


#: a legend entry: (label, plotext colour, Rich style of the swatch)
LegendEntry = tuple[str, str, str]


def legend_text(entries: Iterable[LegendEntry]) -> Text:
    """The legend as one line of coloured swatches, shown *beside* a plot: plotext draws its
    own legend inside the canvas, over the points in the top-left corner."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for position, (label, _, style) in enumerate(entries):
        if position:
            text.append("  ")
        text.append("■ ", style=style)
        text.append(label)
    return text


def bucket_starts(n: int, buckets: int) -> Any:
    """Start indices of ``min(n, buckets)`` consecutive, near-equal index ranges of ``n``
    (a numpy array)."""
    import numpy as np

    count = max(1, min(n, buckets))
    return np.unique((np.arange(count) * n) // count)


class CurveSeries:
    """The per-candidate curves of a run, in the order results arrived, kept as columns.

    ``step`` is the number of candidates evaluated; ``minutes`` the time since the run
    started; ``best`` the best feasible accuracy so far; ``feasible_fraction`` the running
    fraction of feasible results. :meth:`add` folds in new rows (a candidate seen again after
    an update is counted once) in O(new rows); :meth:`view` downsamples for a plot of a given
    width, so drawing costs the same at 100 candidates and at 100,000.
    """

    def __init__(self) -> None:
        self.minutes: list[float] = []
        self.accuracy: list[float] = []
        self.best: list[float] = []
        self.reward: list[float] = []
        self.feasible_fraction: list[float] = []
        self._feasible = 0
        self._best = math.nan
        self._seen: set[int] = set()

    def add(self, rows: Iterable[Any], started_at: float | None) -> None:
        """Fold in ``(id, accuracy, reward, feasible, finished)`` rows or row mappings."""
        for row in rows:
            if isinstance(row, Mapping):
                row = (row.get("id"), row.get("accuracy"), row.get("reward"),
                       row.get("feasible"), row.get("finished"))
            cid, accuracy, reward, is_feasible, finished = row
            if accuracy is None or cid in self._seen:
                continue
            self._seen.add(cid)
            finished = finished or started_at or 0.0
            self.minutes.append(max(0.0, (finished - (started_at or finished)) / 60.0))
            self.accuracy.append(float(accuracy))
            if is_feasible:
                self._feasible += 1
                self._best = float(accuracy) if self._best != self._best else max(
                    self._best, float(accuracy))
            self.best.append(self._best)
            self.reward.append(float(reward or 0.0))
            self.feasible_fraction.append(self._feasible / len(self.accuracy))

    def __len__(self) -> int:
        return len(self.accuracy)

    @property
    def steps(self) -> list[int]:
        return list(range(1, len(self) + 1))

    def view(self, buckets: int, by_time: bool = False) -> dict[str, Any]:
        """At most ``buckets`` points per series: accuracy keeps each bucket's lowest and
        highest value (the scatter's envelope survives), best and feasible fraction the
        bucket's last value (both are running values), reward the bucket's mean. The reference
        for :func:`workbench.tui_data.curve_view`, which computes the same view in SQL."""
        import numpy as np

        n = len(self)
        if not n:
            return {"n": 0}
        x = np.asarray(self.minutes) if by_time else np.arange(1, n + 1, dtype=float)
        starts = bucket_starts(n, buckets)
        ends = np.append(starts[1:], n) - 1
        sizes = np.diff(np.append(starts, n))
        centre = np.add.reduceat(x, starts) / sizes
        accuracy = np.asarray(self.accuracy)
        best = np.asarray(self.best)
        last_best = best[ends]
        keep = ~np.isnan(last_best)
        return {
            "n": n, "by_time": by_time,
            "acc_x": np.concatenate([centre, centre]).tolist(),
            "acc_y": np.concatenate([np.minimum.reduceat(accuracy, starts),
                                     np.maximum.reduceat(accuracy, starts)]).tolist(),
            "best_x": centre[keep].tolist(), "best_y": last_best[keep].tolist(),
            "x": centre.tolist(),
            "reward": (np.add.reduceat(np.asarray(self.reward), starts) / sizes).tolist(),
            "feasible_fraction": np.asarray(self.feasible_fraction)[ends].tolist(),
        }


class FigureRendered(Message):
    """A figure built in a plot's worker: the text and what it was built for."""

    def __init__(self, key: tuple[Any, ...], text: Text) -> None:
        super().__init__()
        self.key = key
        self.text = text


#: serialises plotext's theme registry (a module-level dict) between render workers
_THEME_LOCK = threading.Lock()


def build_figure(draw: Any, figure: Mapping[str, Any], width: int, height: int,
                 theme: str, colors: tuple[str, str]) -> Text:
    """``draw(plt, figure)`` on a fresh plotext figure of ``width`` x ``height`` cells with
    textual-plotext's automatic theme ``theme`` (the app's surface and foreground ``colors``),
    as rich text: what :class:`textual_plotext.PlotextPlot` renders, built in any thread (a
    textual-plotext ``Plot`` has no global state)."""
    from plotext._dict import themes
    from textual.color import Color
    from textual_plotext.plot import Plot, _rgbify_theme, _sequence

    with _THEME_LOCK:
        if theme not in themes:
            surface, foreground = (Color.parse(c).rgb for c in colors)
            themes[theme] = _rgbify_theme(surface, surface, foreground, "default", _sequence)
    plt = Plot()
    draw(plt, figure)
    plt.plotsize(width, height)
    plt._set_size(width, height)
    plt.theme(theme)
    # cropped, not wrapped, while a resized plot waits for the figure of its new size
    return Text.from_ansi(plt.build(), no_wrap=True, overflow="crop")


class LazyPlot(Widget):
    """A plotext figure drawn off the UI thread, again only when its data, size or theme change.

    Each plot keeps its data as plain attributes; :meth:`figure` copies what :meth:`draw`
    needs, and a thread worker builds the figure (:func:`build_figure`) and posts the text,
    which :meth:`render` shows. A hidden plot (size 0) draws nothing: the worker runs when it
    is shown and laid out. ``rendered`` is None until the first figure arrives.
    """

    DEFAULT_CSS = """
    LazyPlot { width: 1fr; height: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = 0
        self.rendered: Text | None = None
        self.rendered_key: tuple[Any, ...] | None = None
        self.wanted_key: tuple[Any, ...] | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.request_figure())
        self.request_figure()

    def on_resize(self) -> None:
        self.request_figure()

    def replot(self) -> None:
        """The data changed: build the figure again."""
        self.version += 1
        self.request_figure()

    def request_figure(self) -> None:
        width, height = self.size
        if not self.is_mounted or width <= 0 or height <= 0:
            return
        key = (width, height, self.app.theme, self.version)
        if key in (self.rendered_key, self.wanted_key):
            return
        self.wanted_key = key
        variables = self.app.theme_variables
        colors = (variables.get("surface") or "black", variables.get("foreground") or "white")
        self.build(key, self.figure(), colors)

    @work(thread=True, group="plot-figure")
    def build(self, key: tuple[Any, ...], figure: dict[str, Any],
              colors: tuple[str, str]) -> None:
        width, height, theme, _ = key
        text = build_figure(type(self).draw, figure, width, height, f"textual-auto-{theme}",
                            colors)
        self.post_message(FigureRendered(key, text))

    def on_figure_rendered(self, message: FigureRendered) -> None:
        message.stop()
        if message.key == self.wanted_key:  # an older build that finished late is dropped
            self.rendered, self.rendered_key = message.text, message.key
            self.refresh()

    @property
    def drawn(self) -> bool:
        """The figure shown is the latest asked for (its data, size and theme), or the plot
        is not laid out (hidden)."""
        width, height = self.size
        return width <= 0 or height <= 0 or (
            self.rendered is not None and self.rendered_key == self.wanted_key)

    def figure(self) -> dict[str, Any]:
        """A copy of the data :meth:`draw` needs (taken on the UI thread)."""
        return {}

    @staticmethod
    def draw(plt: Any, figure: Mapping[str, Any]) -> None:
        """Build the plotext figure from :meth:`figure`'s copy; each plot overrides it."""
        plt.clear_figure()

    def render(self) -> Any:
        return self.rendered if self.rendered is not None else Text("")


class CurvesPlot(LazyPlot):
    """Accuracy (the envelope of each step range), best feasible accuracy and reward on the
    left axis; the feasible fraction on its own right axis (0-1). Draws a downsampled
    :meth:`CurveSeries.view`; the legend is :data:`LEGEND`, shown beside the plot."""

    LEGEND: tuple[LegendEntry, ...] = (
        ("accuracy", "blue", "blue"), ("best feasible", "green", "green"),
        ("reward", "magenta", "magenta"), ("feasible fraction (right axis)", "orange",
                                           "dark_orange"))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.view: dict[str, Any] = {"n": 0}
        self.by_time = False

    def set_view(self, view: dict[str, Any]) -> None:
        self.view = view
        self.replot()

    @property
    def points(self) -> int:
        """How many candidates the drawing stands for."""
        return int(self.view.get("n", 0))

    def figure(self) -> dict[str, Any]:
        return {"view": self.view, "by_time": self.by_time}

    @staticmethod
    def draw(plt: Any, figure: Mapping[str, Any]) -> None:
        plt.clear_data()
        plt.clear_figure()
        v = figure["view"]
        by_time = v.get("by_time", figure["by_time"])
        plt.title(f"{v['n']} candidates: accuracy, best feasible, reward | feasible fraction"
                  if v["n"] else "candidates: none finished yet")
        plt.xlabel("minutes since start" if by_time else "candidates evaluated")
        if not v["n"]:
            return
        plt.plot(v["x"], v["feasible_fraction"], marker="hd", color="orange", yside="right")
        plt.plot(v["x"], v["reward"], marker="hd", color="magenta")
        if v["best_y"]:
            plt.plot(v["best_x"], v["best_y"], marker="hd", color="green")
        plt.scatter(v["acc_x"], v["acc_y"], marker="dot", color="blue")  # on top
        values = v["acc_y"] + v["reward"] + v["best_y"]
        plt.ylim(min(0.0, min(values)), max(1.0, max(values)), yside="left")
        plt.ylim(0, 1, yside="right")
        plt.ylabel("accuracy / reward", yside="left")
        plt.ylabel("feasible", yside="right")
        if not by_time:  # whole candidates on the step axis, not bucket centres
            ticks = sorted({max(1, round(v["n"] * i / 4)) for i in range(5)})
            plt.xticks(ticks, [str(t) for t in ticks])


class MetricsPlot(LazyPlot):
    """One searcher metric series (``metrics`` table: key, step, value) at a time, as the
    downsampled points :func:`workbench.tui_data.metric_series` returns."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keys: list[str] = []
        self.key: str | None = None
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.count = 0

    def set_series(self, keys: Sequence[str], key: str | None, xs: Sequence[float],
                   ys: Sequence[float], count: int) -> None:
        self.keys, self.key, self.xs, self.ys, self.count = list(keys), key, list(xs), \
            list(ys), count
        self.replot()

    def next_key(self) -> str | None:
        """The key after the shown one ('v' cycles through them)."""
        if not self.keys:
            return None
        return self.keys[(self.keys.index(self.key) + 1) % len(self.keys)] \
            if self.key in self.keys else self.keys[0]

    def figure(self) -> dict[str, Any]:
        return {"keys": len(self.keys), "key": self.key, "xs": self.xs, "ys": self.ys,
                "count": self.count}

    @staticmethod
    def draw(plt: Any, figure: Mapping[str, Any]) -> None:
        plt.clear_data()
        plt.clear_figure()
        key, xs, count = figure["key"], figure["xs"], figure["count"]
        if key is None:
            plt.title("searcher metrics: none recorded yet")
            return
        shown = f", {len(xs)} shown" if len(xs) < count else ""
        plt.title(f"searcher metric {plain_text(key, max_len=40)}  ({count} points"
                  f"{shown}; {figure['keys']} series, 'v' cycles)")
        plt.xlabel("step")
        if xs:
            plt.plot(xs, figure["ys"], marker="hd", color="cyan")


class ParetoPlot(LazyPlot):
    """Accuracy vs a cost metric: the (downsampled) cloud of candidates, the Pareto front,
    the constraint lines and the selected candidate, from a view the Pareto tab computes off
    the UI thread. The legend is :meth:`legend`, shown beside the plot."""

    METRICS = ("params", "madds")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metric = "params"
        self.view: dict[str, Any] = {}
        self.constraints: list[Constraint] = []
        self.selected: int | None = None

    def set_view(self, view: dict[str, Any]) -> None:
        self.view = view
        self.replot()

    def set_constraints(self, constraints: Sequence[Constraint]) -> None:
        self.constraints = list(constraints)
        self.replot()

    def legend(self) -> Text:
        entries: list[LegendEntry] = [("infeasible", "gray", "grey50"),
                                      ("feasible", "blue", "blue"),
                                      ("Pareto front", "red", "red")]
        if self.view.get("selected"):
            entries.append((f"candidate {self.selected}", "green", "green"))
        entries += [(f"{c}", "yellow", "yellow") for c in self.constraints
                    if c.metric == self.metric]
        return legend_text(entries)

    def figure(self) -> dict[str, Any]:
        return {"metric": self.metric, "view": self.view, "constraints": self.constraints}

    @staticmethod
    def draw(plt: Any, figure: Mapping[str, Any]) -> None:
        plt.clear_data()
        plt.clear_figure()
        m = figure["metric"]
        v = figure["view"]
        constraints = figure["constraints"]
        plt.title(f"accuracy vs {m}  ('m' switches metric)")
        plt.xlabel(m)
        if not v.get("n"):
            return
        if v["infeasible_x"]:
            plt.scatter(v["infeasible_x"], v["infeasible_y"], marker="dot", color="gray")
        if v["feasible_x"]:
            plt.scatter(v["feasible_x"], v["feasible_y"], marker="dot", color="blue")
        front = v["front"]
        plt.plot([p[0] for p in front], [p[1] for p in front], marker="hd", color="red")
        plt.scatter([p[0] for p in front], [p[1] for p in front], marker="●", color="red")
        for c in constraints:
            if c.metric == m:
                plt.vertical_line(c.value, color="yellow")
        chosen = v.get("selected")
        if chosen:
            plt.scatter([chosen[0]], [chosen[1]], marker="◆", color="green")
        bounds = [c.value for c in constraints if c.metric == m]
        cost_axis(plt, min([v["lo"], *bounds]), max([v["hi"], *bounds]))


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

    def figure(self) -> dict[str, Any]:
        return {"points": {key: dict(series) for key, series in self.points.items()},
                "total_epochs": self.total_epochs, "epochs_done": self.epochs_done}

    @staticmethod
    def draw(plt: Any, figure: Mapping[str, Any]) -> None:
        plt.clear_data()
        plt.clear_figure()
        total_epochs = figure["total_epochs"]
        total = f"/{total_epochs}" if total_epochs else ""
        plt.title(f"final training: epoch {figure['epochs_done']}{total} — loss (left), "
                  "val accuracy (right)")
        plt.xlabel("epoch")
        for key, label, color, side in TrainingPlot.SERIES:
            series = figure["points"][key]
            if series:
                epochs = sorted(series)
                plt.plot(epochs, [series[e] for e in epochs], marker="hd", color=color,
                         label=label, yside=side)
        if total_epochs:
            plt.xlim(0, total_epochs)
            ticks = sorted({round(total_epochs * i / 4) for i in range(5)})
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

    def figure(self) -> dict[str, Any]:
        return {"metric": self.metric, "fronts": self.fronts}

    @staticmethod
    def draw(plt: Any, figure: Mapping[str, Any]) -> None:
        plt.clear_data()
        plt.clear_figure()
        metric, fronts = figure["metric"], figure["fronts"]
        plt.title(f"Pareto fronts: accuracy vs {metric}  ('m' switches metric)")
        plt.xlabel(metric)
        xs = [x for points in fronts.values() for x, _ in points]
        for k, (label, points) in enumerate(fronts.items()):
            if points:
                color = ParetoFrontsPlot.COLORS[k % len(ParetoFrontsPlot.COLORS)]
                plt.plot([x for x, _ in points], [y for _, y in points], marker="hd",
                         color=color, label=label)
                plt.scatter([x for x, _ in points], [y for _, y in points], marker="●",
                            color=color)
        if xs:
            cost_axis(plt, min(xs), max(xs))
