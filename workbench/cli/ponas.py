"""``nasw ponas validate RUN --networks K``: check a PONAS table against training from scratch.

Trains K architectures spread along the run's accuracy-loss range from scratch (the preset's
final schedule; ``--epochs`` shortens it), prints each network's table loss and accuracy,
Kendall's tau (the paper reports 0.733 for six ImageNet networks) and a plot of table loss
against accuracy, and stores the validation with the run (``--json`` for scripts). Exit codes:
0 done, 2 bad input (unknown run, not PONAS, incomplete table, bad K) with nothing written.
See :mod:`workbench.ponas_validate`.
"""

from __future__ import annotations

import math
from typing import Any

import click

from workbench.cli import db_option, db_path, echo_json, handles_errors, json_option, main
from workbench.store import Store


@main.group("ponas")
def ponas_group() -> None:
    """PONAS accuracy tables: validate them against networks trained from scratch."""


def _print(result: dict[str, Any]) -> None:
    from searchers.spaces.mbconv import choice_label

    spec = result["spec"]
    click.echo(f"run {result['run_id']}: {len(result['networks'])} networks trained from "
               f"scratch ({spec['epochs']} epochs, lr {spec['lr']:g} {spec['schedule']}, "
               f"batch {spec['batch_size']})")
    click.echo(f"{'#':>2} {'table loss':>10} {'accuracy':>9}  blocks")
    for index, row in enumerate(result["networks"]):
        accuracy = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else row["status"]
        blocks = " ".join(choice_label(c) for c in row["choices"])
        click.echo(f"{index:>2} {row['table_loss']:>10.4f} {accuracy:>9}  {blocks}")
    tau = result["tau"]
    if tau is None or (isinstance(tau, float) and math.isnan(tau)):
        click.echo("Kendall tau: n/a (fewer than two networks trained, or constant accuracy)")
    else:
        click.echo(f"Kendall tau (predicted accuracy = -table loss vs trained accuracy): "
                   f"{tau:.3f} (p = {result['p_value']:.3g}; the paper: "
                   f"{result['paper_tau']:.3f} on 6 ImageNet networks)")
    if result["plot"]:
        click.echo(result["plot"])


@ponas_group.command("validate")
@click.argument("run_id", type=int)
@click.option("--networks", "-k", type=click.IntRange(min=2), default=6, show_default=True,
              help="How many architectures to train (spread along the table's loss range).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Train each this many epochs instead of the preset's final schedule.")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed.")
@db_option
@json_option
@click.pass_context
@handles_errors
def validate_command(ctx: click.Context, run_id: int, networks: int, epochs: int | None,
                     seed: int, as_json: bool) -> None:
    """Kendall's tau between a PONAS run's table and networks trained from scratch."""
    from workbench.ponas_validate import validate_run

    def progress(index: int, row: dict[str, Any]) -> None:
        if not as_json:
            accuracy = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else row["status"]
            click.echo(f"  trained {index + 1}/{networks}: table loss {row['table_loss']:.4f}, "
                       f"accuracy {accuracy} ({row['wall_s']:.0f} s)", err=True)

    with Store(db_path(ctx), create=False) as store:
        result = validate_run(store, run_id, networks, epochs=epochs, seed=seed,
                              progress=progress)
    if as_json:
        echo_json(result)
    else:
        _print(result)
