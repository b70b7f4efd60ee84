"""Architecture graphs drawn as text: one row per node, skip arcs in lanes on the left.

Every space's ``graph(g)`` is a DAG whose nodes carry ``label`` and ``costs`` and whose edges
carry ``kind`` ("seq" or "skip"). We draw it as an *arc diagram*: nodes in topological order
down a spine, an edge between neighbours in that order as a ``│`` on the spine, and every other
edge (skip connections of layer chains, the inputs of a cell's blocks) as an arc in its own
lane to the left of the spine. Lanes are given out greedily like registers to intervals, so
arcs that do not overlap share a lane and the drawing stays narrow. The same drawing works for
layer chains (``layerwise``/``mbconv``/``rcas``) and for cell DAGs, stays legible in 80 columns
and needs neither Graphviz nor a mouse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.text import Text
from textual.widgets import Static

from searchers.constraints import format_number

SHOWN_COSTS = ("params", "madds")
SPINE_STYLE = "bold"
SKIP_STYLE = "magenta"
ARC_STYLE = "cyan"


def topological_order(nodes: Iterable[Any], edges: Iterable[tuple[Any, Any]]) -> list[Any]:
    """Kahn's algorithm keeping the graph's own node order among ready nodes (stable drawing)."""
    order_of = {node: i for i, node in enumerate(nodes)}
    indegree = dict.fromkeys(order_of, 0)
    successors: dict[Any, list[Any]] = {node: [] for node in order_of}
    for u, v in edges:
        successors[u].append(v)
        indegree[v] += 1
    ready = sorted((n for n, d in indegree.items() if d == 0), key=order_of.__getitem__)
    order: list[Any] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for nxt in successors[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
                ready.sort(key=order_of.__getitem__)
    if len(order) != len(order_of):
        raise ValueError("the architecture graph has a cycle")
    return order


def assign_lanes(arcs: list[tuple[int, int]]) -> list[int]:
    """Lane per arc (start row < end row): shortest arcs nearest the spine.

    Arcs in one lane may not even touch at an end row, otherwise an arc ending at a node and
    another starting there would read as one arc passing by.
    """
    lanes: list[int] = [0] * len(arcs)
    busy: list[list[tuple[int, int]]] = []  # per lane: occupied (start, end) intervals
    for index in sorted(range(len(arcs)), key=lambda i: (arcs[i][1] - arcs[i][0], arcs[i][0])):
        start, end = arcs[index]
        for lane, taken in enumerate(busy):
            if all(end < s or start > e for s, e in taken):
                taken.append((start, end))
                lanes[index] = lane
                break
        else:
            busy.append([(start, end)])
            lanes[index] = len(busy) - 1
    return lanes


def format_costs(costs: Mapping[str, float] | None, keys: tuple[str, ...] = SHOWN_COSTS) -> str:
    if not costs:
        return ""
    return "  ".join(f"{k} {format_number(float(costs[k]))}" for k in keys if k in costs)


def render_graph(graph: Any, selected: Any = None, show_costs: bool = True) -> Text:
    """Draw a DAG (``networkx.DiGraph`` or anything with ``nodes(data=True)``/``edges``)."""
    node_data = dict(graph.nodes(data=True))
    edge_list = list(graph.edges(data=True))
    if not node_data:
        return Text("(empty graph)", style="dim")
    order = topological_order(node_data, [(u, v) for u, v, _ in edge_list])
    row_of = {node: row for row, node in enumerate(order)}
    spine_links: set[int] = set()  # row r links to row r + 1 on the spine
    arcs: list[tuple[int, int]] = []
    arc_kinds: list[str] = []
    for u, v, attrs in edge_list:
        start, end = row_of[u], row_of[v]
        if end == start + 1 and attrs.get("kind", "seq") != "skip":
            spine_links.add(start)
        else:
            arcs.append((start, end))
            arc_kinds.append(str(attrs.get("kind", "seq")))
    lanes = assign_lanes(arcs)
    width = 2 * (max(lanes) + 1) if arcs else 0
    labels = [str(node_data[n].get("label", n)) for n in order]
    label_width = max(len(label) for label in labels)

    # A canvas of 2 rows per node (node row, link row) x lane columns, filled arc by arc.
    height = 2 * len(order) - 1
    canvas = [[(" ", "")] * (width + 1) for _ in range(height)]

    def put(y: int, x: int, char: str, style: str) -> None:
        old, _ = canvas[y][x]
        merged = {("│", "─"): "┼", ("─", "│"): "┼", ("╭", "─"): "┬", ("╰", "─"): "┴",
                  ("─", "╭"): "┬", ("─", "╰"): "┴", ("│", "╭"): "├", ("│", "╰"): "├",
                  ("╭", "│"): "├", ("╰", "│"): "├"}.get((old, char), char)
        canvas[y][x] = (merged, style)

    for (start, end), lane, kind in zip(arcs, lanes, arc_kinds, strict=True):
        style = SKIP_STYLE if kind == "skip" else ARC_STYLE
        column = width - 2 - 2 * lane
        top, bottom = 2 * start, 2 * end
        put(top, column, "╭", style)
        put(bottom, column, "╰", style)
        for y in range(top + 1, bottom):
            put(y, column, "│", style)
        for x in range(column + 1, width):
            put(top, x, "─", style)
            put(bottom, x, "─", style)
        put(bottom, width, "▶", style)  # replaced by the node marker below, arrow kept left

    text = Text(no_wrap=True, overflow="crop")
    for y in range(height):
        row, is_node_row = divmod(y, 2)[0], y % 2 == 0
        for x in range(width):
            char, style = canvas[y][x]
            text.append(char, style=style)
        if is_node_row:
            node = order[row]
            arrow = canvas[y][width][0] == "▶"
            marker = "◆" if node == selected else "●"
            text.append(("▶" if arrow else " ") if width else "", style=SKIP_STYLE)
            text.append(marker, style=SPINE_STYLE)
            text.append(" ")
            text.append(labels[row].ljust(label_width), style="bold" if node == selected else "")
            if show_costs:
                costs = format_costs(node_data[order[row]].get("costs"))
                if costs:
                    text.append("  " + costs, style="dim")
        else:
            text.append(" " if width else "")
            text.append("│" if row in spine_links else " ", style=SPINE_STYLE)
        text.append("\n")
    text.rstrip()
    return text


def graph_summary(graph: Any) -> str:
    nodes = graph.number_of_nodes() if hasattr(graph, "number_of_nodes") else len(graph.nodes)
    skips = sum(1 for *_, a in graph.edges(data=True) if a.get("kind") == "skip")
    return f"{nodes} nodes, {skips} skip connection{'s' if skips != 1 else ''}"


class ArchitectureView(Static):
    """The selected candidate's architecture, drawn by :func:`render_graph`."""

    DEFAULT_CSS = """
    ArchitectureView { width: auto; height: auto; padding: 0 1; }
    """

    def show_graph(self, graph: Any, title: str = "") -> None:
        body = render_graph(graph)
        header = Text(f"{title}\n", style="bold") if title else Text()
        header.append(graph_summary(graph) + "\n\n", style="dim")
        self.update(header + body)

    def show_message(self, message: str) -> None:
        self.update(Text(message, style="dim"))
