"""The Specialize tab: constraints in, the best architecture the PONAS table allows out.

Typing constraints (``params<=60k, madds<=3M``) and pressing enter solves the multiple-choice
knapsack on the run's accuracy-loss table and the space's cost look-up tables
(:func:`searchers.specialize.solve`, exact) in a thread worker: the architecture, its costs,
its estimated accuracy and whether it is proven optimal appear at once. ``ctrl+s`` stores the
specialization in the run (``specializations`` table), ``ctrl+o`` exports the architecture
(JSON genotype; other formats via ``nasw export``), ``ctrl+t`` shows the command that trains it
from scratch.

Estimated accuracy (our choice; the paper ranks by summed loss only): the table's reference
accuracy (the best accuracy measured in the table) minus the summed loss of the chosen blocks,
i.e. an additive model of per-layer losses, which is what the solver minimises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static

from workbench.tui_data import fmt_accuracy, fmt_cost
from workbench.widgets.arch_graph import render_graph


class Specialized(Message):
    def __init__(self, result: dict[str, Any] | None, genotype: dict[str, Any] | None,
                 graph: Any, error: str = "") -> None:
        super().__init__()
        self.result = result
        self.genotype = genotype
        self.graph = graph
        self.error = error


def parse_constraint_text(text: str) -> list[Any]:
    """``"params<=3M, madds<=300M"`` (commas or spaces) -> constraints (NaswError if bad)."""
    from searchers.constraints import parse_constraints

    parts = [p for chunk in text.split(",") for p in chunk.split()]
    merged: list[str] = []
    for part in parts:  # "params <= 3M" typed with spaces: glue operator and number back on
        if merged and (part[:1] in "<>" or merged[-1][-1:] in "=<>"):
            merged[-1] += part
        else:
            merged.append(part)
    return parse_constraints(merged)


def loss_table_of(rows: dict[tuple[int, int], dict[str, Any]], layers: int,
                  choices: int) -> Any:
    """(L, C) loss array from accuracy-table rows; None while a cell is missing."""
    import numpy as np

    table = np.full((layers, choices), np.nan)
    for (layer, choice), row in rows.items():
        if layer < layers and choice < choices and row.get("loss") is not None:
            table[layer, choice] = row["loss"]
    return None if np.isnan(table).any() else table


class SpecializePane(Vertical):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "export", "Export"),
        Binding("ctrl+t", "train", "Train"),
    ]

    def __init__(self, run_id: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.run: dict[str, Any] | None = None
        self.rows: dict[tuple[int, int], dict[str, Any]] = {}
        self.result: dict[str, Any] | None = None
        self.genotype: dict[str, Any] | None = None
        self.constraints: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Input(placeholder="constraints, e.g. params<=60k, madds<=3M  (enter solves)",
                    id="constraint-input")
        yield Static("", id="specialize-status")
        with VerticalScroll(id="specialize-scroll"):
            yield Static("", id="specialize-result")

    def on_mount(self) -> None:
        self.show_status()

    def set_run(self, run: dict[str, Any]) -> None:
        self.run = run
        self.show_status()

    def set_table(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.rows[(int(row["layer"]), int(row["choice"]))] = row
        self.show_status()

    def table_shape(self) -> tuple[int, int]:
        if not self.rows:
            return 0, 0
        return (1 + max(k[0] for k in self.rows), 1 + max(k[1] for k in self.rows))

    def show_status(self) -> None:
        status = self.query_one("#specialize-status", Static)
        layers, choices = self.table_shape()
        if self.run is not None and self.run.get("searcher") != "ponas" and not self.rows:
            status.update(Text(f"Run {self.run_id} is a {self.run.get('searcher')} run: "
                               "specialization needs a PONAS accuracy table.", style="yellow"))
        elif not self.rows:
            status.update(Text("Waiting for the accuracy table…", style="dim"))
        else:
            missing = layers * choices - len(self.rows)
            status.update(Text(
                f"Table {layers} layers x {choices} candidates"
                + (f", {missing} cells still being measured" if missing else ", complete")
                + " · ctrl+s save · ctrl+o export · ctrl+t train", style="dim"))

    @on(Input.Submitted, "#constraint-input")
    def submitted(self, event: Input.Submitted) -> None:
        from searchers.errors import NaswError

        try:
            self.constraints = parse_constraint_text(event.value)
        except NaswError as err:
            self.query_one("#specialize-result", Static).update(Text(str(err), style="red"))
            return
        self.solve(list(self.constraints))

    @work(thread=True, exclusive=True, group="specialize")
    def solve(self, constraints: list[Any]) -> None:
        """Solve on the table measured so far (exact), build the genotype and its graph."""
        try:
            result, genotype, graph = self.specialize(constraints)
        except Exception as err:
            self.post_message(Specialized(None, None, None, error=str(err)))
            return
        self.post_message(Specialized(result, genotype, graph))

    def specialize(self, constraints: list[Any]) -> tuple[dict[str, Any], Any, Any]:
        from searchers.errors import NaswError
        from searchers.spaces import get_space
        from searchers.specialize import solve

        run = self.run or {}
        if not self.rows:
            raise NaswError("run", self.run_id, "a PONAS run with accuracy-table rows")
        config = run.get("config") or {}
        space_config = config.get("space") or {}
        space = get_space(run.get("space") or space_config.get("name"),
                          run.get("preset") or space_config.get("preset"),
                          **(space_config.get("overrides") or {}))
        base, tables = space.cost_tables()
        layers, choices = next(iter(tables.values())).shape
        loss = loss_table_of(self.rows, layers, choices)
        if loss is None:
            raise NaswError("accuracy_table", f"{len(self.rows)} of {layers * choices} cells",
                            "a complete table", hint="wait until every layer is measured")
        result = solve(loss, tables, constraints, base=base)
        reference = max((r["accuracy"] for r in self.rows.values()
                         if r.get("accuracy") is not None), default=None)
        result["estimated_accuracy"] = (reference - result["loss"]
                                        if reference is not None and result["feasible"] else None)
        genotype = graph = None
        if result["feasible"]:
            genotype = {"space": space.name, "preset": space.preset,
                        "choices": result["choices"]}
            genotype = space.validate(genotype)
            graph = space.graph(genotype)
        return result, genotype, graph

    def on_specialized(self, message: Specialized) -> None:
        out = self.query_one("#specialize-result", Static)
        if message.error:
            out.update(Text(message.error, style="red"))
            return
        result = message.result or {}
        self.result, self.genotype = result, message.genotype
        text = Text()
        if not result.get("feasible"):
            text.append("No architecture in the table satisfies these constraints.\n",
                        style="bold red")
            lows = result.get("min_costs") or {}
            text.append("Smallest reachable: " + ", ".join(
                f"{k} {fmt_cost(v)}" for k, v in sorted(lows.items())) + "\n")
            out.update(text)
            return
        costs = result.get("costs") or {}
        text.append("Best architecture for " + ", ".join(
            f"{c['metric']}{c['op']}{fmt_cost(c['value'])}"
            for c in result.get("constraints") or []) + "\n", style="bold")
        text.append(f"choices {result['choices']}\n")
        text.append(f"estimated accuracy {fmt_accuracy(result.get('estimated_accuracy'))}"
                    f" · table loss {100 * result['loss']:.2f} points · ")
        text.append("optimal (proven)" if result.get("optimal") else "not proven optimal",
                    style="green" if result.get("optimal") else "yellow")
        text.append(f" · solved in {result.get('solve_ms', 0):.1f} ms\n")
        text.append("costs: " + "  ".join(f"{k} {fmt_cost(costs[k])}" for k in
                                           ("params", "madds", "flops", "intensity")
                                           if k in costs) + "\n\n")
        if message.graph is not None:
            text.append_text(render_graph(message.graph))
        out.update(text)

    # -- save / export / train -----------------------------------------------------------
    def _need_result(self) -> bool:
        if not self.result or not self.result.get("feasible"):
            self.notify("specialize first: type constraints and press enter", severity="warning")
            return False
        return True

    def action_save(self) -> None:
        if not self._need_result():
            return
        from workbench import tui_data

        result = dict(self.result or {})
        result["genotype"] = self.genotype
        store = tui_data.reader(self.app.db_path).store
        spec_id = store.add_specialization(
            self.run_id, [c.as_dict() for c in self.constraints], result,
            result.get("solver", "exact"), float(result.get("solve_ms") or 0.0))
        self.notify(f"saved as specialization {spec_id} of run {self.run_id}")

    def action_export(self) -> None:
        if not self._need_result():
            return
        import json

        path = Path(f"run{self.run_id}-specialized.json")
        try:
            from workbench.export import export

            export(self.genotype or {}, "json", path)
        except Exception:  # fall back to the plain genotype document
            path.write_text(json.dumps(self.genotype, indent=2, sort_keys=True) + "\n")
        constraints = " ".join(f"--constraint '{c}'" for c in self.constraints)
        self.notify(f"wrote {path.resolve()}; ONNX/TorchScript/DOT: "
                    f"nasw export {self.run_id} {constraints} --format onnx", timeout=8)

    def action_train(self) -> None:
        if not self._need_result():
            return
        path = Path(f"run{self.run_id}-specialized.json")
        self.notify(f"train it from scratch: nasw train {self.run_id} --genotype {path}"
                    " (export it first with ctrl+o)", timeout=8)
