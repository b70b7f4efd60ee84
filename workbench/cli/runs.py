"""``nasw ls``, ``nasw show RUN``, ``nasw pause RUN``, ``nasw cancel RUN``: look at and steer runs.

These only read the database, or write one small command row that the run's coordinator
obeys within a second. Every string that comes from the database (names, errors, tags, hosts)
is shown through :mod:`workbench.text`: no Rich markup or terminal escape in a run name can
break the table or reach the terminal. Into a pipe ``nasw ls`` prints whole values, one run
per line, tab-separated (``nasw ls | grep interrupted`` works); ``--json`` is unchanged.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from workbench.cli import (
    ROW_ID,
    db_option,
    db_path,
    echo_json,
    fail,
    handles_errors,
    json_option,
    main,
)
from workbench.store import LIVE_STATUSES, Store
from workbench.text import plain_text, safe_text

#: run columns shown by ``nasw ls --json`` and at the top of ``nasw show --json``
SUMMARY_KEYS = ("id", "name", "status", "space", "preset", "searcher", "evaluator", "budget",
                "n_done", "n_ok", "n_failed", "n_feasible", "progress", "best_accuracy",
                "best_candidate", "best_feasible", "created", "started", "finished", "elapsed",
                "pid", "host", "heartbeat", "log_path", "resumes", "error")
CANDIDATE_KEYS = ("id", "status", "accuracy", "reward", "feasible", "params", "madds", "costs",
                  "hash", "tag", "wall_time", "device", "attempts", "error", "genotype")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _count(value: float | None) -> str:
    if value is None:
        return "-"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def _ago(when: float | None) -> str:
    if not when:
        return "-"
    seconds = max(0.0, time.time() - when)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


@main.command("ls")
@db_option
@json_option
@click.pass_context
@handles_errors
def ls_command(ctx: click.Context, as_json: bool) -> None:
    """List the runs: status, progress, best accuracy, feasibility."""
    path = db_path(ctx)
    if not path.exists():
        runs: list[dict[str, Any]] = []
    else:
        with Store(path, create=False) as store:
            runs = store.runs()
    if as_json:
        echo_json([{k: run.get(k) for k in SUMMARY_KEYS} for run in runs])
        return
    if not runs:
        click.echo(f"no runs in {path}; start one with `nasw run CONFIG.yaml`")
        return
    header = ("id", "name", "status", "searcher", "space", "done", "best acc", "feasible",
              "created")
    rows = []
    for run in runs:
        budget = run.get("budget")
        rows.append([plain_text(cell) for cell in (
            run["id"], run["name"], run["status"], run["searcher"] or "-",
            f"{run['space']}/{run['preset'] or '-'}",
            f"{run['n_done']}/{budget if budget else '-'}",
            _fmt(run["best_accuracy"]), _fmt(run["best_feasible"]), _ago(run["created"]))])
    if not sys.stdout.isatty():  # a pipe or a file: whole values, never cut to a width
        for row in (header, *rows):
            click.echo("\t".join(row))
        return
    table = Table(*header, box=None, header_style="bold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: stored markup stays literal
    Console().print(table)


def _bytes(n: float) -> str:
    """Decimal units, as disks and `du -h --si` count."""
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@main.command("show")
@click.argument("run_id", type=ROW_ID)
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Candidates listed in the table (all of them with --json).")
@db_option
@json_option
@click.pass_context
@handles_errors
def show_command(ctx: click.Context, run_id: int, limit: int, as_json: bool) -> None:
    """Show RUN: config, status, coordinator pid and heartbeat, candidates with costs, best."""
    with Store(db_path(ctx), create=False) as store:
        run = store.run(run_id)
        candidates = store.candidates(run_id)
        best = store.best_candidate(run_id)
        checkpoint = store.state_size(run_id)
        problem = store.checkpoint_problem(run_id)
    if as_json:
        echo_json({**{k: run.get(k) for k in SUMMARY_KEYS}, "config": run["config"],
                   "workers": run.get("workers") or [],
                   "checkpoint": {**checkpoint, "problem": problem},
                   "candidates": [{k: c.get(k) for k in CANDIDATE_KEYS} for c in candidates],
                   "best": None if best is None else {k: best.get(k) for k in CANDIDATE_KEYS}})
        return
    console = Console()
    text = {k: safe_text(run.get(k)) for k in ("name", "status", "searcher", "space", "preset",
                                                "evaluator", "host", "log_path", "error")}
    console.print(f"[bold]run {run['id']}[/] {text['name']}: [bold]{text['status']}[/]  "
                  f"{text['searcher']} on {text['space']}/{text['preset'] or '-'} "
                  f"({text['evaluator']})")
    console.print(f"  candidates {run['n_done']}/{run.get('budget') or '-'} "
                  f"(ok {run['n_ok']}, failed {run['n_failed']}, feasible {run['n_feasible']})"
                  f"  elapsed {run['elapsed'] or 0:.0f}s")
    console.print(f"  coordinator pid {run.get('pid') or '-'} on {text['host'] or '-'}, "
                  f"heartbeat {_ago(run.get('heartbeat'))}; log {text['log_path'] or '-'}")
    console.print(f"  checkpoint {_bytes(checkpoint['state_bytes'])} + "
                  f"{checkpoint['arrays']} arrays ({_bytes(checkpoint['array_bytes'])})")
    if problem:
        console.print(f"  [yellow]checkpoint[/] {safe_text(problem)}")
    config = run["config"] if isinstance(run["config"], dict) else {}
    constraints = config.get("constraints") or []
    console.print(f"  constraints {safe_text(', '.join(map(str, constraints))) or 'none'}")
    if run.get("error"):
        console.print(f"  [red]error[/] {text['error']}")
    if best is not None:
        console.print(f"  best: candidate {best['id']} accuracy {_fmt(best['accuracy'])} "
                      f"params {_count(best['params'])} madds {_count(best['madds'])} "
                      f"feasible {_fmt(best['feasible'])}")
    table = Table("id", "status", "accuracy", "reward", "feasible", "params", "madds", "tag",
                  box=None, header_style="bold")
    shown = sorted(candidates, key=lambda c: (c["accuracy"] is None, -(c["accuracy"] or 0)))
    for cand in shown[:limit]:
        table.add_row(*(Text(plain_text(cell)) for cell in (
            cand["id"], cand["status"], _fmt(cand["accuracy"]), _fmt(cand["reward"]),
            _fmt(cand["feasible"]), _count(cand["params"]), _count(cand["madds"]),
            cand["tag"] or "")))
    if limit:
        console.print(table)


def _steer(ctx: click.Context, run_id: int, command: str, as_json: bool) -> None:
    with Store(db_path(ctx), create=False) as store:
        run = store.run(run_id)
        if run["status"] in LIVE_STATUSES:
            store.send_command(run_id, command)
            message = f"run {run_id}: {command} sent to its coordinator (pid {run['pid']})"
        elif command == "cancel" and run["status"] in ("interrupted", "paused", "created"):
            store.cancel_stopped(run_id)  # revokes the lease: a woken coordinator writes nothing
            message = f"run {run_id}: cancelled (no coordinator was running)"
        else:
            fail(f"run: got {run_id} ({run['status']}); allowed: a run with a live coordinator"
                 + (" or an interrupted one" if command == "cancel" else ""))
    if as_json:
        echo_json({"run_id": run_id, "command": command})
    else:
        click.echo(message)


@main.command("pause")
@click.argument("run_id", type=ROW_ID)
@db_option
@json_option
@click.pass_context
@handles_errors
def pause_command(ctx: click.Context, run_id: int, as_json: bool) -> None:
    """Pause RUN: jobs in flight finish, no new ones start (`nasw resume RUN` continues)."""
    _steer(ctx, run_id, "pause", as_json)


@main.command("cancel")
@click.argument("run_id", type=ROW_ID)
@db_option
@json_option
@click.pass_context
@handles_errors
def cancel_command(ctx: click.Context, run_id: int, as_json: bool) -> None:
    """Cancel RUN: stop its jobs and end it (finished candidates are kept)."""
    _steer(ctx, run_id, "cancel", as_json)
