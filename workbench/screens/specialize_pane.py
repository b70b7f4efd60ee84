"""The Specialize tab: constraints in, the best architecture the PONAS table allows out.

Typing constraints (``params<=60k, madds<=3M``) and pressing enter solves the multiple-choice
knapsack on the run's accuracy-loss table and the space's cost look-up tables
(:func:`searchers.specialize.solve`, exact) in a thread worker: the architecture, its costs,
its estimated accuracy and whether it is proven optimal appear at once. ``ctrl+s`` stores the
specialization in the run (``specializations`` table), ``ctrl+o`` exports the architecture
(JSON genotype; other formats via ``nasw export --specialization``), ``ctrl+t`` trains it from
scratch as a new detached run (``nasw train --specialization --detach``) and opens that run.

Solving, saving and the optimality proof are :func:`workbench.specialize.specialize_run`, the
function behind ``nasw specialize``. Estimated accuracy (our choice, instant and torch-free; the
paper ranks by summed loss only): the table's reference accuracy (the best accuracy measured in
the table) minus the summed loss of the chosen blocks, the additive model the solver minimises.
``nasw specialize --estimate`` measures it with cropped supernet weights instead.
"""

from __future__ import annotations

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


def latency_text(latency: dict[str, Any]) -> Text:
    """Predicted (calibrated or raw) and measured latency of the chosen architecture, and the
    budget warning in red when the measurement exceeds it (``latency`` of ``specialize_run``)."""
    from workbench.text import plain_text

    text = Text()
    how = "calibrated" if latency.get("calibrated") else "raw sum, not calibrated"
    text.append(f"latency ({plain_text(str(latency.get('table')))}): predicted "
                f"{latency['predicted_ms']:.3f} ms ({how}) · ")
    measured = latency.get("measured_ms")
    if measured is None:
        text.append("measured n/a" + (f" ({latency['note']})" if latency.get("note") else ""),
                    style="dim")
    else:
        text.append(f"measured {measured:.3f} ms",
                    style="bold red" if latency.get("exceeds_budget") else "green")
    text.append("\n")
    if latency.get("warning"):
        text.append(f"warning: {latency['warning']}\n", style="bold red")
    return text + Text("\n")


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
        self.saved_id: int | None = None

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
        from searchers._specialize_kernel import needs_compiling

        if needs_compiling():  # once per install: say so rather than look stuck
            self.app.call_from_thread(
                self.query_one("#specialize-result", Static).update,
                Text("Compiling the exact solver (once per install, up to half a minute)...", style="dim"))
        try:
            result, genotype, graph = self.specialize(constraints)
        except Exception as err:
            self.post_message(Specialized(None, None, None, error=str(err)))
            return
        self.post_message(Specialized(result, genotype, graph))

    def specialize(self, constraints: list[Any], save: bool = False,
                   ) -> tuple[dict[str, Any], Any, Any]:
        """:func:`workbench.specialize.specialize_run` (what ``nasw specialize`` runs) on the
        run's complete table, plus a table estimate of accuracy and the architecture graph."""
        from searchers.errors import NaswError
        from searchers.spaces import space_of
        from workbench import tui_data
        from workbench.specialize import specialize_run

        if not self.rows:
            raise NaswError("run", self.run_id, "a PONAS run with accuracy-table rows")
        store = tui_data.reader(self.app.db_path).store
        result = specialize_run(store, self.run_id, constraints, save=save)
        reference = max((r["accuracy"] for r in self.rows.values()
                         if r.get("accuracy") is not None), default=None)
        result["estimated_accuracy"] = (reference - result["loss"]
                                        if reference is not None and result["feasible"] else None)
        genotype = result.get("genotype")
        graph = space_of(genotype).graph(genotype) if genotype else None
        return result, genotype, graph

    def on_specialized(self, message: Specialized) -> None:
        out = self.query_one("#specialize-result", Static)
        if message.error:
            out.update(Text(message.error, style="red"))
            return
        result = message.result or {}
        self.result, self.genotype, self.saved_id = result, message.genotype, None
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
        text.append("Best architecture for " + (", ".join(
            f"{c['metric']}{c['op']}{fmt_cost(c['value'])}"
            for c in result.get("constraints") or []) or "no constraints") + "\n", style="bold")
        text.append(f"choices {result['choices']}\n")
        text.append(f"estimated accuracy {fmt_accuracy(result.get('estimated_accuracy'))}"
                    f" · table loss {100 * result['loss']:.2f} points · ")
        text.append("optimal (proven)" if result.get("optimal") else "not proven optimal",
                    style="green" if result.get("optimal") else "yellow")
        text.append(f" · solved in {result.get('solve_ms', 0):.1f} ms\n")
        text.append("costs: " + "  ".join(f"{k} {fmt_cost(costs[k])}" for k in
                                           ("params", "madds", "flops", "intensity")
                                           if k in costs) + "\n\n")
        if result.get("latency"):
            text.append_text(latency_text(result["latency"]))
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
        if self._need_result():
            self.save(list(self.constraints))

    def _saved_id(self, constraints: list[Any]) -> int:
        """The stored specialization of the current result (stored now if it is not yet)."""
        if self.saved_id is None:
            result, _, _ = self.specialize(constraints, save=True)
            self.saved_id = int(result["id"])
        return self.saved_id

    @work(thread=True, exclusive=True, group="specialize-save")
    def save(self, constraints: list[Any]) -> None:
        """Store it as ``nasw specialize`` does (re-solved: instant, and the same answer)."""
        try:
            spec_id = self._saved_id(constraints)
        except Exception as err:
            self.app.call_from_thread(self.notify, f"save failed: {err}", severity="error")
            return
        self.app.call_from_thread(
            self.notify, f"saved as specialization {spec_id} of run {self.run_id}")

    def action_export(self) -> None:
        if self._need_result():
            self.export_json(list(self.constraints), dict(self.genotype or {}))

    @work(thread=True, exclusive=True, group="specialize-export")
    def export_json(self, constraints: list[Any], genotype: dict[str, Any]) -> None:
        """Save, then write the JSON genotype document with :func:`workbench.export.export`
        (it traces the model's costs, so this worker loads torch); ONNX, TorchScript and DOT
        are the same call on the CLI."""
        from workbench.export import default_path, export

        try:
            spec_id = self._saved_id(constraints)
            path = default_path("json", self.run_id, f"s{spec_id}")
            export(genotype, "json", path, provenance={"run": self.run_id,
                                                       "specialization": spec_id})
        except Exception as err:
            self.app.call_from_thread(self.notify, f"export failed: {err}", severity="error")
            return
        self.app.call_from_thread(
            self.notify, f"wrote {path.resolve()}; other formats: nasw export {self.run_id} "
            f"--specialization {spec_id} --format onnx|pt2|torchscript|dot", timeout=10)

    def action_train(self) -> None:
        if not self._need_result():
            return
        from workbench.screens.modals import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.train(list(self.constraints))

        self.app.push_screen(ConfirmScreen(
            "Train this architecture from scratch as a new background run "
            "(nasw train --detach)?"), answered)

    @work(thread=True, exclusive=True, group="specialize-train")
    def train(self, constraints: list[Any]) -> None:
        """``nasw train RUN --specialization ID --detach``: a new run, then open it."""
        from workbench.runner import launch_detached
        from workbench.runner.final_train import create_final_run

        try:
            spec_id = self._saved_id(constraints)
            new_run = create_final_run(self.app.db_path, self.run_id,
                                       specialization_id=spec_id)
            launch_detached(self.app.db_path, new_run)
        except Exception as err:
            self.app.call_from_thread(self.notify, f"train failed: {err}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"training run {new_run} started")
        self.app.call_from_thread(self.app.open_run, new_run)
