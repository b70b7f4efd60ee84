"""The PONAS accuracy-loss table as a coloured layer x candidate grid that fills in live.

Cells show the loss in accuracy points (``1.2`` = 1.2 % of validation accuracy lost by using
that candidate block in that layer, the paper's T_d), one column per block named as the
space names it (``k3e3`` … ``k7e6se`` for MBConv); the background goes from green (no loss)
to red (the largest loss measured so far). Cells not measured yet show ``·``. The column after
the layer is its importance (the largest loss in the layer, PONAS §3.3), as a bar and a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from workbench.text import plain_text

CELL = 5
BAR = 6


def loss_colour(fraction: float) -> Color:
    """Green -> yellow -> red for 0 -> 1 (clamped)."""
    f = min(1.0, max(0.0, fraction))
    if f < 0.5:
        red, green = int(40 + 400 * f), 150
    else:
        red, green = 230, int(150 - 240 * (f - 0.5))
    return Color.from_rgb(min(red, 230), max(green, 30), 40)


class LossTable:
    """Rows of ``accuracy_table`` gathered into a grid (later rows replace earlier ones)."""

    def __init__(self) -> None:
        self.cells: dict[tuple[int, int], float] = {}
        self.accuracy: dict[tuple[int, int], float] = {}

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            key = (int(row["layer"]), int(row["choice"]))
            loss = row.get("loss")
            if loss is None and row.get("accuracy") is not None:
                continue
            self.cells[key] = float(loss) if loss is not None else float("nan")
            if row.get("accuracy") is not None:
                self.accuracy[key] = float(row["accuracy"])

    @property
    def layers(self) -> int:
        return 1 + max((layer for layer, _ in self.cells), default=-1)

    @property
    def choices(self) -> int:
        return 1 + max((choice for _, choice in self.cells), default=-1)

    def importance(self) -> dict[int, float]:
        """Per-layer importance: the largest accuracy loss measured in the layer."""
        result: dict[int, float] = {}
        for (layer, _), loss in self.cells.items():
            result[layer] = max(result.get(layer, 0.0), loss)
        return result

    def __len__(self) -> int:
        return len(self.cells)


def render_heatmap(table: LossTable, layers: int | None = None, choices: int | None = None,
                   labels: Sequence[str] | None = None) -> Text:
    """The grid; ``labels`` names the choices (``k3e3``, ``k7e6se``: the space's
    ``option_label``) in the header, else their indices. Columns widen to fit the labels."""
    n_layers = max(layers or 0, table.layers)
    n_choices = max(choices or 0, table.choices)
    names = [plain_text(labels[c], max_len=10) if labels and c < len(labels) else str(c)
             for c in range(n_choices)]
    cell = max([CELL] + [len(name) + 1 for name in names])
    text = Text(no_wrap=True, overflow="crop")
    if not n_layers or not n_choices:
        text.append("No accuracy-table rows yet (PONAS writes one per layer and candidate).",
                    style="dim")
        return text
    worst = max((v for v in table.cells.values() if v == v), default=0.0) or 1e-9
    importance = table.importance()
    most = max(importance.values(), default=0.0) or 1e-9
    # importance first: at 80 columns the grid scrolls sideways, the layer summary stays
    text.append(f"layer {'importance':<{BAR + 7}}", style="bold")
    for name in names:
        text.append(f"{name:>{cell}}", style="bold")
    text.append("\n")
    for layer in range(n_layers):
        text.append(f"L{layer:<5}")
        value = importance.get(layer)
        if value is None:
            text.append(" " * (BAR + 7))
        else:
            filled = round(BAR * value / most)
            text.append("█" * filled, style="red")
            text.append("░" * (BAR - filled), style="dim")
            text.append(f" {100 * value:>4.1f}  ")
        for choice in range(n_choices):
            loss = table.cells.get((layer, choice))
            if loss is None:
                text.append(f"{'·':>{cell}}", style="dim")
                continue
            style = Style(bgcolor=loss_colour(loss / worst), color="black")
            text.append(" ")
            text.append(f"{100 * loss:>{cell - 1}.1f}", style=style)
        text.append("\n")
    measured = len(table)
    text.append(f"\n{measured}/{n_layers * n_choices} cells measured · loss in accuracy points",
                style="dim")
    return text


class AccuracyHeatmap(Static):
    """Keeps a :class:`LossTable` and redraws it as rows arrive."""

    DEFAULT_CSS = """
    AccuracyHeatmap { width: auto; height: auto; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = LossTable()
        self.shape: tuple[int | None, int | None] = (None, None)
        self.labels: list[str] | None = None

    def redraw(self) -> None:
        self.update(render_heatmap(self.table, *self.shape, labels=self.labels))

    def on_mount(self) -> None:
        self.redraw()

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.table.add(rows)
        self.redraw()

    def set_shape(self, layers: int | None, choices: int | None) -> None:
        self.shape = (layers, choices)
        self.redraw()

    def set_labels(self, labels: Sequence[str] | None) -> None:
        """The choices' block names, for the column headers."""
        self.labels = list(labels) if labels else None
        self.redraw()
