"""``nasw doctor``: is this machine ready, and is the database healthy?

Checks Python, torch (and whether CUDA works), the GPUs NVML sees (``nvidia-ml-py``), Ray, and
the database: it opens, is in WAL mode, passes SQLite's quick check, has the schema this
version expects, and is not world-writable (anyone on the machine could then rewrite runs,
and the searcher checkpoints it stores are unpickled on resume). Problems are listed and make
the exit code 1.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

import click

from workbench.cli import db_option, db_path, echo_json, json_option, main
from workbench.gpus import read_gpus
from workbench.store import SCHEMA_VERSION, Store, world_writable
from workbench.text import plain_text


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch() -> dict[str, Any]:
    try:
        import torch
    except ImportError as err:
        return {"installed": False, "error": str(err)}
    info: dict[str, Any] = {"installed": True, "version": torch.__version__,
                            "cuda_available": torch.cuda.is_available(),
                            "threads": torch.get_num_threads()}
    if info["cuda_available"]:
        info["cuda_version"] = torch.version.cuda
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _gpus() -> dict[str, Any]:
    report = read_gpus()
    report["gpus"] = [{"index": g["index"], "name": g["name"],
                       "memory_total_mib": g["memory_total"] // 2**20,
                       "memory_used_mib": g["memory_used"] // 2**20,
                       "utilization_pct": g["utilization"]} for g in report["gpus"]]
    return report


def _database(path: Path) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    if not path.exists():
        return {"path": str(path), "exists": False}, problems
    if world_writable(path):
        problems.append(f"database {path} is world-writable: chmod o-w {path}")
    try:
        with Store(path, create=False, migrate=False) as store:
            health = store.health()
    except Exception as err:  # a corrupt or foreign file: report, do not crash
        problems.append(f"database {path} cannot be opened: {err}")
        return {"path": str(path), "exists": True, "error": str(err)}, problems
    if health["journal_mode"] != "wal":
        problems.append(f"database journal mode is {health['journal_mode']}, expected wal")
    if health["integrity"] != "ok":
        problems.append(f"database integrity check: {health['integrity']}")
    if health["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema version {health['schema_version']}, expected {SCHEMA_VERSION}")
    return {"exists": True, **health}, problems


@main.command("doctor")
@db_option
@json_option
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check torch, CUDA, GPUs, Ray and the database; exit 1 if something is wrong."""
    database, problems = _database(db_path(ctx))
    report = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "nasw": _version("nasw"), "torch": _torch(), "gpus": _gpus(),
        "ray": _version("ray"), "database": database, "problems": problems,
    }
    if as_json:
        echo_json(report)
    else:
        torch_info = report["torch"]
        click.echo(f"python     {report['python']} ({report['platform']})")
        click.echo(f"nasw       {report['nasw']}")
        click.echo(f"torch      {torch_info.get('version', 'not installed')}, CUDA "
                   f"{'yes' if torch_info.get('cuda_available') else 'no'}")
        gpus = report["gpus"]["gpus"]
        click.echo(f"gpus       {'' if gpus else 'none'}")
        for g in gpus:
            busy = "-" if g["utilization_pct"] is None else f"{g['utilization_pct']}%"
            click.echo(f"  {g['index']}: {g['name']}  memory {g['memory_used_mib']:,}/"
                       f"{g['memory_total_mib']:,} MiB  utilisation {busy}")
        click.echo(f"ray        {report['ray'] or 'not installed'}")
        click.echo(f"database   {database.get('path')}: " + (
            f"{database.get('journal_mode')}, schema {database.get('schema_version')}, "
            f"{database.get('runs')} runs, mode {database.get('mode')}"
            if database.get("exists") and "error" not in database else
            plain_text(database.get("error", "not created yet"))))
        for problem in problems:
            click.echo(f"PROBLEM    {plain_text(problem)}")
        if not problems:
            click.echo("ok")
    ctx.exit(1 if problems else 0)
