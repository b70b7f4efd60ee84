"""The ``nasw`` command line: thin commands over library calls.

Each command lives in its own module under ``workbench/cli/`` and registers itself on
:data:`main` with ``@main.command()``; :data:`COMMANDS` maps each command name to its module,
which is imported only when that command runs (or help lists it), so ``nasw`` opening the TUI
loads no command's dependencies. Bad input raises :class:`searchers.errors.NaswError` (or a click usage error):
the message names the field and the allowed values, the exit code is 2 and nothing is written.
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from searchers.errors import NaswError

EXIT_BAD_INPUT = 2
DEFAULT_DB = "nasw.db"

#: command name -> module of ``workbench.cli`` that defines it on ``main``.
COMMANDS: dict[str, str] = {
    "run": "run", "resume": "run", "ls": "runs", "show": "runs", "pause": "runs",
    "cancel": "runs", "cost": "cost", "doctor": "doctor", "train": "train", "export": "export",
    "compare": "compare", "specialize": "specialize", "lut": "lut", "ponas": "ponas",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module on first use (click's lazy-loading
    pattern), keeping start-up light."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            importlib.import_module(f"workbench.cli.{COMMANDS[cmd_name]}")
        return super().get_command(ctx, cmd_name)


def db_path(ctx: click.Context) -> Path:
    """The database path from ``--db`` (before or after the command), ``NASW_DB`` or ``./nasw.db``."""
    root = ctx.find_root()
    return Path(ctx.meta.get("nasw.db") or root.params.get("db") or os.environ.get("NASW_DB")
                or DEFAULT_DB)


def _remember_db(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta["nasw.db"] = value


def db_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--db PATH`` accepted after a subcommand too (``nasw ls --db x.db``); read it with
    :func:`db_path`."""
    return click.option("--db", type=click.Path(dir_okay=False), default=None, expose_value=False,
                        callback=_remember_db, is_eager=True,
                        help="SQLite database (default: $NASW_DB or ./nasw.db).")(func)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: machine-readable output (passed to the command as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON instead of a table.")(func)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``message`` to stderr and exit with ``code`` (2: bad input)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


#: a run or candidate id: SQLite's integers are 64-bit, so a larger number is bad input
ROW_ID = click.IntRange(min=0, max=2**63 - 1)


def _sqlite_message(err: sqlite3.Error) -> str:
    from workbench.text import plain_text

    text = plain_text(err)
    if isinstance(err, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return ("db: the database is busy: another process holds its write lock; "
                "try again in a moment")
    if isinstance(err, sqlite3.OperationalError) and "readonly" in text.replace(" ", ""):
        return "db: the database file or its directory is read-only"
    return f"db: the database is damaged or not nasw's (SQLite says: {text})"


def handles_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn bad input into a one-line message and exit code 2, never a traceback: a
    :class:`NaswError`, a database that is busy, damaged or read-only, a path that cannot be
    read or written, a number too large for the database."""
    from workbench.text import plain_text

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NaswError as err:
            fail(plain_text(err))
        except sqlite3.Error as err:
            fail(_sqlite_message(err))
        except OverflowError as err:
            fail(f"number: {plain_text(err)}; allowed: integers below 2**63")
        except OSError as err:
            where = f"{plain_text(err.filename)}: " if err.filename else ""
            fail(f"path: {where}{plain_text(err.strerror or err)}")

    return wrapper


def Store(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 -- the store class, imported late
    """:class:`workbench.store.Store`, imported only when used (keeps ``nasw --help`` light)."""
    from workbench.store import Store as _Store

    return _Store(*args, **kwargs)


@click.group(cls=LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="SQLite database (default: $NASW_DB or ./nasw.db).")
@click.version_option(package_name="nasw")
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """NAS Workbench: neural architecture search under hardware constraints.

    With no command, opens the terminal UI on the database.
    """
    if ctx.invoked_subcommand is None:
        from workbench.app import run_app

        path = db_path(ctx)
        if path.exists():  # a foreign, damaged or future file: a message, not a broken screen
            check_database = handles_errors(lambda: Store(path, create=False).close())
            check_database()
        run_app(path)

