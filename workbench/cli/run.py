"""``nasw run CONFIG`` and ``nasw resume RUN``: start or continue a search.

Attached (the default) the coordinator runs in this process under a progress bar; Ctrl-C
stops it cleanly and leaves it resumable. ``--detach`` starts it in its own session (it keeps
running after the terminal or SSH connection closes); ``--tui`` detaches and opens the TUI on
it.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from workbench.cli import (
    ROW_ID,
    db_option,
    db_path,
    echo_json,
    handles_errors,
    json_option,
    main,
)
from workbench.config import load_config
from workbench.runner import Coordinator, launch_detached, start_run
from workbench.store import Store
from workbench.text import plain_text

EXIT_CODES = {"finished": 0, "cancelled": 0, "paused": 0, "interrupted": 130, "failed": 1,
              "lost": 1}


def _open_tui(db: Path, run_id: int) -> None:
    try:
        from workbench.app import run_app
    except ImportError as err:  # the TUI is optional for headless use
        click.echo(f"cannot open the TUI ({err}); follow the run with `nasw show {run_id}`",
                   err=True)
        return
    run_app(db, run_id=run_id)


def _run_attached(db: Path, run_id: int, as_json: bool) -> str:
    """Run the coordinator here, with a progress bar; Ctrl-C = clean, resumable stop."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Store(db) as store:
        run = store.run(run_id)
    budget = run.get("budget")
    bar = Progress(TextColumn("[bold]run {task.fields[run]}[/] {task.description}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), disable=as_json,
                   transient=False)
    task = bar.add_task("starting", total=budget, run=run_id)

    def on_progress(summary: dict[str, Any]) -> None:
        best = summary.get("best_accuracy")
        best_text = f"  best {best:.4f}" if isinstance(best, float) else ""
        text = escape(plain_text(summary["status"])) + best_text
        bar.update(task, completed=summary.get("n_done") or 0, description=text)

    coordinator = Coordinator(db, run_id, on_progress=on_progress)
    handled = [signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {sig: signal.getsignal(sig) for sig in handled}
    coordinator.install_signal_handlers()
    signal.signal(signal.SIGINT, coordinator.request_stop)
    if hasattr(signal, "SIGHUP"):  # attached: a closed terminal stops the run, resumably
        signal.signal(signal.SIGHUP, coordinator.request_stop)
    try:
        with bar:
            return coordinator.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _report(db: Path, run_id: int, status: str, as_json: bool, pid: int | None = None) -> None:
    with Store(db) as store:
        run = store.run(run_id)
    if as_json:
        echo_json({"run_id": run_id, "status": run["status"], "pid": pid or run.get("pid"),
                   "n_done": run["n_done"], "best_accuracy": run["best_accuracy"],
                   "log": run.get("log_path")})
        return
    if pid is not None:
        click.echo(f"run {run_id} started in the background (pid {pid}); "
                   f"log: {plain_text(run['log_path'])}")
        click.echo(f"  follow it: nasw show {run_id}   stop it: nasw cancel {run_id}")
        return
    best = run["best_accuracy"]
    if status == "lost":
        click.echo(f"run {run_id}: another coordinator took it over; this one stopped "
                   "without writing")
        return
    click.echo(f"run {run_id} {status}: {run['n_done']} candidates"
               + (f", best accuracy {best:.4f}" if best is not None else ""))
    if status == "interrupted":
        click.echo(f"  continue it: nasw resume {run_id}")


@main.command("run")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--detach", is_flag=True, help="Run in the background; survives logout.")
@click.option("--tui", is_flag=True, help="Run in the background and open the TUI on it.")
@db_option
@json_option
@click.pass_context
@handles_errors
def run_command(ctx: click.Context, config: Path, detach: bool, tui: bool, as_json: bool) -> None:
    """Start a search described by the YAML file CONFIG.

    The config is validated first; on an error nothing is written and the exit code is 2.
    """
    run_config = load_config(config)
    db = db_path(ctx)
    run_id = start_run(db, run_config)
    if detach or tui:
        pid = launch_detached(db, run_id)
        if tui:
            _open_tui(db, run_id)
        else:
            _report(db, run_id, "started", as_json, pid=pid)
        return
    status = _run_attached(db, run_id, as_json)
    _report(db, run_id, status, as_json)
    sys.exit(EXIT_CODES.get(status, 1))


@main.command("resume")
@click.argument("run_id", type=ROW_ID)
@click.option("--detach", is_flag=True, help="Continue in the background; survives logout.")
@db_option
@json_option
@click.pass_context
@handles_errors
def resume_command(ctx: click.Context, run_id: int, detach: bool, as_json: bool) -> None:
    """Continue RUN: a paused run resumes; a stopped or crashed one gets a new coordinator.

    Finished candidates are kept; candidates that were in flight are evaluated again. A run
    whose checkpoint an older nasw pickled is refused (exit 2): it stays viewable.
    """
    db = db_path(ctx)
    with Store(db, create=False) as store:
        run = store.run(run_id)
        if run["status"] == "paused":  # a live coordinator is waiting for this
            store.send_command(run_id, "resume")
            if as_json:
                echo_json({"run_id": run_id, "command": "resume"})
            else:
                click.echo(f"run {run_id}: resume sent to its coordinator (pid {run['pid']})")
            return
        store.check_resumable(run_id)
        store.check_restorable(run_id)  # unsafe or damaged: exit 2, nothing written
    if detach:
        pid = launch_detached(db, run_id)
        _report(db, run_id, "started", as_json, pid=pid)
        return
    status = _run_attached(db, run_id, as_json)
    _report(db, run_id, status, as_json)
    sys.exit(EXIT_CODES.get(status, 1))
