"""``nasw compare RUN RUN...``: runs side by side, Pareto fronts overlaid."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from searchers.errors import NaswError
from workbench.analysis import compare_runs
from workbench.cli import (
    ROW_ID,
    db_option,
    db_path,
    echo_json,
    handles_errors,
    json_option,
    main,
)
from workbench.store import Store
from workbench.text import plain_text

COSTS = ("params", "madds", "flops")


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@main.command("compare")
@click.argument("run_ids", type=ROW_ID, nargs=-1, required=True)
@click.option("--cost", default="params", show_default=True,
              help=f"Cost axis of the Pareto fronts: {', '.join(COSTS)}.")
@click.option("--plot/--no-plot", default=True, help="Draw the fronts overlaid (terminal plot).")
@db_option
@json_option
@click.pass_context
@handles_errors
def compare_command(ctx: click.Context, run_ids: tuple[int, ...], cost: str, plot: bool,
                    as_json: bool) -> None:
    """Compare runs: best accuracy, feasibility, evaluations to reach it, wall time, fronts."""
    if cost not in COSTS:
        raise NaswError("cost", cost, COSTS)
    with Store(db_path(ctx), create=False) as store:
        rows = compare_runs(store, run_ids, cost)
    if as_json:
        echo_json(rows)
        return
    header = ("run", "searcher", "space", "status", "evals", "best acc", "best feasible",
              "evals to best", "1st feasible", "wall time", "front")
    cells = [[plain_text(cell) for cell in (
        f"{r['id']} {r['name']}", r["searcher"] or "-", r["space"], r["status"],
        r["evaluations"], _acc(r["best_accuracy"]), _acc(r["best_feasible_accuracy"]),
        r["evaluations_to_best"] or "-", r["evaluations_to_first_feasible"] or "-",
        f"{r['wall_time_s']:.0f}s", len(r["pareto_front"]))] for r in rows]
    console = Console()
    if not sys.stdout.isatty():  # a pipe or a file: whole values, tab-separated
        for line in (header, *cells):
            click.echo("\t".join(line))
    else:
        table = Table(*header, box=None, header_style="bold")
        for line in cells:
            table.add_row(*(Text(cell) for cell in line))  # stored text stays literal
        console.print(table)
    if plot and any(r["pareto_front"] for r in rows):
        import plotext as plt

        plt.clear_figure()
        plt.plotsize(min(console.width, 100), 20)
        for r in rows:
            front = r["pareto_front"]
            if front:
                plt.plot([p[cost] for p in front], [p["accuracy"] for p in front],
                         marker="braille",
                         label=plain_text(f"run {r['id']} ({r['searcher']})", max_len=40))
        plt.title(f"Pareto fronts: accuracy vs {cost}")
        plt.xlabel(cost)
        plt.ylabel("accuracy")
        plt.show()
