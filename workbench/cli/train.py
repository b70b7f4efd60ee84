"""``nasw train RUN --candidate ID``: train a chosen architecture from scratch.

The training is a run of its own (searcher ``final``): listed by ``nasw ls``, watched live in
the TUI (loss and accuracy per epoch), checkpointed every epoch and continued by ``nasw resume``.
"""

from __future__ import annotations

import sys

import click

from workbench.cli import ROW_ID, db_option, db_path, handles_errors, json_option, main
from workbench.cli.run import EXIT_CODES, _report, _run_attached
from workbench.runner import launch_detached
from workbench.runner.final_train import create_final_run, weights_path


@main.command("train")
@click.argument("run_id", type=ROW_ID)
@click.option("--candidate", "candidate_id", type=ROW_ID, default=None,
              help="Candidate of RUN to train.")
@click.option("--specialization", "specialization_id", type=ROW_ID, default=None,
              help="Specialization of RUN (PONAS) to train.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Override the preset's final-training epochs.")
@click.option("--aux-weight", type=click.FloatRange(min=0), default=None,
              help="Auxiliary-classifier loss weight (cell space; PNAS preset default 0.4).")
@click.option("--drop-path", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Final drop-path probability (cell space; PNAS preset default 0.4).")
@click.option("--train-on-val/--no-train-on-val", default=None,
              help="Train on train + validation (PNAS preset default: on).")
@click.option("--detach", is_flag=True, help="Train in the background; survives logout.")
@db_option
@json_option
@click.pass_context
@handles_errors
def train_command(ctx: click.Context, run_id: int, candidate_id: int | None,
                  specialization_id: int | None, epochs: int | None, aux_weight: float | None,
                  drop_path: float | None, train_on_val: bool | None, detach: bool,
                  as_json: bool) -> None:
    """Train a candidate (or a specialization) of RUN from scratch with its preset's full
    schedule, as a new run of its own; the weights end in <db>.runs/run-<new id>/weights.pt."""
    db = db_path(ctx)
    overrides = {key: value for key, value in (("aux_weight", aux_weight),
                                               ("drop_path", drop_path),
                                               ("train_on_val", train_on_val))
                 if value is not None}
    new_run = create_final_run(db, run_id, candidate_id=candidate_id,
                               specialization_id=specialization_id, epochs=epochs,
                               train_overrides=overrides)
    if detach:
        pid = launch_detached(db, new_run)
        _report(db, new_run, "started", as_json, pid=pid)
        return
    status = _run_attached(db, new_run, as_json)
    _report(db, new_run, status, as_json)
    if status == "finished" and not as_json:
        click.echo(f"  weights: {weights_path(db, new_run)}")
    sys.exit(EXIT_CODES.get(status, 1))
