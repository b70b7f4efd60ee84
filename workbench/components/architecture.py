"""The Architecture tab: the selected candidate's graph, drawn as text.

Selecting a candidate anywhere reads that one candidate by id and builds its graph
(``space.graph(g)``: the first call imports networkx and the space) in a thread worker; an
answer for a candidate that is no longer selected is dropped.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message

from workbench import tui_data
from workbench.components.base import RunComponent
from workbench.text import plain_text
from workbench.tui_data import fmt_accuracy
from workbench.widgets.arch_graph import ArchitectureView

WAITING = ("Select a candidate (Candidates tab, enter) to draw its architecture; the best one "
           "is shown once results arrive.")


class GraphReady(Message):
    def __init__(self, candidate_id: int, graph: Any, title: str, error: str = "") -> None:
        super().__init__()
        self.candidate_id = candidate_id
        self.graph = graph
        self.title = title
        self.error = error


class ArchitectureTab(RunComponent):
    def __init__(self, db_path: Any, run_id: int, **kwargs: Any) -> None:
        super().__init__(db_path, run_id, **kwargs)
        self.graph_for: int | None = None
        self.requested: int | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="arch-scroll"):
            yield ArchitectureView(id="arch-view")

    def on_mount(self) -> None:
        self.query_one("#arch-view", ArchitectureView).show_message(WAITING)

    def focus_target(self) -> Any:
        return self.query_one("#arch-scroll")

    def load(self) -> None:
        """A candidate's architecture does not change: draw only a new selection."""
        self.maybe_draw()

    def selection_changed(self) -> None:
        if self.active:
            self.maybe_draw()
        else:
            self.stale()

    def maybe_draw(self) -> None:
        if self.active and self.selected_id is not None and self.selected_id != self.requested:
            self.requested = self.selected_id
            self.build_graph(self.selected_id)

    @work(thread=True, exclusive=True, group="graph")
    def build_graph(self, candidate_id: int) -> None:
        cand = tui_data.candidate(self.db_path, self.run_id, candidate_id)
        if cand is None:
            self.post_message(GraphReady(candidate_id, None, f"Candidate #{candidate_id}",
                                         error="not in this run (yet)"))
            return
        genotype = cand["genotype"]
        title = (f"Candidate #{candidate_id} · {plain_text(genotype.get('space'))}/"
                 f"{plain_text(genotype.get('preset'))} · accuracy "
                 f"{fmt_accuracy(cand.get('accuracy'))}")
        try:
            from searchers.spaces import space_of

            graph = space_of(genotype).graph(genotype)
        except Exception as err:
            self.post_message(GraphReady(candidate_id, None, title, error=plain_text(err)))
            return
        self.post_message(GraphReady(candidate_id, graph, title))

    def on_graph_ready(self, message: GraphReady) -> None:
        message.stop()
        if message.candidate_id != self.selected_id:
            return
        view = self.query_one("#arch-view", ArchitectureView)
        self.graph_for = message.candidate_id
        if message.error:
            self.requested = None  # a candidate still running may be drawable next time
            view.show_message(f"{message.title}\ncannot draw it: {message.error}")
        else:
            view.show_graph(message.graph, message.title)


__all__ = ["ArchitectureTab"]
