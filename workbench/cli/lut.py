"""``nasw lut``: latency tables keyed by the machine they were measured on.

    nasw lut build --preset ponas-cifar --runtime onnxruntime --threads 1   # measure here
    nasw lut calibrate --preset ponas-cifar --lut onnxruntime:cpu --samples 20
    nasw lut ls
    nasw lut export --preset ponas-cifar --lut onnxruntime:cpu -o table.json   # or .csv
    nasw lut kit --preset ponas-cifar -o kit/        # copy kit/ to the device, run its script
    nasw lut import table.json --name my-phone
    nasw lut measure genotype.json --lut onnxruntime:cpu   # predicted vs measured, one model

Tables built here are refused on a machine with another fingerprint (exit 2) unless
``--force``; imported files are validated field by field (exit 2 naming the field). See
:mod:`workbench.latency` and docs/deployment.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from searchers.errors import NaswError
from workbench.cli import db_option, db_path, echo_json, handles_errors, json_option, main
from workbench.store import Store

SPACES = ("mbconv",)


def _space(space_name: str, preset: str | None) -> Any:
    from searchers.spaces import get_space

    if space_name not in SPACES:
        raise NaswError("space", space_name, list(SPACES),
                        hint="latency tables serve PONAS specialization over the mbconv space")
    return get_space(space_name, preset)


def _progress(as_json: bool) -> Any:
    return None if as_json else (lambda text: click.echo(text, err=True))


def space_options(func: Any) -> Any:
    func = click.option("--preset", default=None,
                        help="Space preset (default: the space's default).")(func)
    return click.option("--space", "space_name", default="mbconv", show_default=True,
                        help="Search space whose blocks are timed.")(func)


def table_options(func: Any) -> Any:
    """Which stored table: ``--lut NAME`` (default: the only one there is), ``--batch-size``."""
    func = click.option("--batch-size", type=click.IntRange(min=1), default=1,
                        show_default=True, help="Batch size of the table.")(func)
    return click.option("--lut", "name", default=None,
                        help="Table name (see `nasw lut ls`), e.g. onnxruntime:cpu.")(func)


def method_options(func: Any) -> Any:
    from workbench.lut_kit import DEFAULT_REPEATS, DEFAULT_ROUNDS, DEFAULT_WARMUP

    func = click.option("--rounds", type=click.IntRange(min=1), default=DEFAULT_ROUNDS,
                        show_default=True,
                        help="Interleaved rounds over everything being timed.")(func)
    func = click.option("--repeats", type=click.IntRange(min=1), default=DEFAULT_REPEATS,
                        show_default=True, help="Timed runs per item and round.")(func)
    return click.option("--warmup", type=click.IntRange(min=0), default=DEFAULT_WARMUP,
                        show_default=True, help="Untimed runs per item first.")(func)


def _summary(table: dict[str, Any]) -> str:
    from workbench import latency, lut_kit

    base, blocks, calibrated = latency.calibrated_tables(table)
    low, high = base + blocks.min(axis=1).sum(), base + blocks.max(axis=1).sum()
    text = (f"{table['space']}/{table['preset']} table {table['name']!r} (batch "
            f"{table['batch_size']}): {lut_kit.describe(table['fingerprint'])}; predicted model "
            f"latency {low:.3f}..{high:.3f} ms")
    fit = table.get("calibration")
    if calibrated:
        text += (f" (calibrated: {fit['slope']:.3f} x sum {fit['intercept']:+.3f} ms, MAPE raw "
                 f"{fit['mape_raw']:.1f}% -> {fit['mape_loo']:.1f}% leave-one-out)")
    else:
        text += " (not calibrated: nasw lut calibrate)"
    return text


@main.group("lut")
def lut_group() -> None:
    """Per-device latency tables: build, calibrate, export, import, measuring kit."""


@lut_group.command("build")
@space_options
@click.option("--runtime", default="torch", show_default=True,
              help="torch (eager) or onnxruntime (what an ONNX export runs in).")
@click.option("--device", default="cpu", show_default=True,
              help="torch: cpu, cuda, cuda:N; onnxruntime: cpu or cuda (its providers).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size measured besides batch 1.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Intra-op CPU threads, fixed while timing and recorded in the fingerprint.")
@method_options
@click.option("--onnx-exporter", default="auto", show_default=True,
              help="onnxruntime: exporter of the block files (auto, dynamo, legacy).")
@click.option("--timer", default="wall", show_default=True,
              help="wall (the latency users see) or cpu (this process's CPU time: one thread "
                   "on the CPU only; for a machine shared with other work).")
@click.option("--force", is_flag=True,
              help="Replace a table of the same name that another machine measured.")
@db_option
@json_option
@click.pass_context
@handles_errors
def lut_build_command(ctx: click.Context, space_name: str, preset: str | None, runtime: str,
                      device: str, batch_size: int, threads: int, warmup: int, repeats: int,
                      rounds: int, onnx_exporter: str, timer: str, force: bool,
                      as_json: bool) -> None:
    """Measure every candidate block's latency here and store the table(s) as
    <runtime>:<device>; a table of that name measured on another machine (a shared database)
    is not replaced without --force."""
    from workbench import latency
    from workbench.export import ONNX_EXPORTERS

    space = _space(space_name, preset)
    device = latency.check_device(runtime, device)  # before the database is opened
    if onnx_exporter not in ONNX_EXPORTERS:
        raise NaswError("onnx-exporter", onnx_exporter, ONNX_EXPORTERS)
    tables = []
    with Store(db_path(ctx)) as store:
        for size in sorted({1, int(batch_size)}):
            existing = store.latency_lut(space.name, space.preset,
                                         latency.table_name(runtime, device), size)
            if existing is not None and isinstance(existing.get("fingerprint"), dict):
                latency.check_fingerprint({**existing, "name": latency.table_name(runtime,
                                                                                  device)},
                                          force=force, action="replace it")
            table = latency.build_table(space, runtime, device, size, threads=threads,
                                        warmup=warmup, repeats=repeats, rounds=rounds,
                                        exporter=onnx_exporter, timer=timer,
                                        progress=_progress(as_json))
            latency.save_table(store, table)
            tables.append(table)
    if as_json:
        echo_json(tables)
        return
    for table in tables:
        click.echo(f"{_summary(table)}; built in {table['build_s']:.1f} s")


@lut_group.command("ls")
@db_option
@json_option
@click.pass_context
@handles_errors
def lut_ls_command(ctx: click.Context, as_json: bool) -> None:
    """List the stored latency tables."""
    from workbench import latency
    from workbench.text import plain_text

    with Store(db_path(ctx), create=False) as store:
        tables = latency.list_tables(store)
    if as_json:
        echo_json(tables)
        return
    if not tables:
        click.echo("no latency tables: nasw lut build, or nasw lut import FILE")
        return
    for t in tables:
        fit = (f"calibrated, MAPE {t['mape_raw']:.1f}% -> {t['mape_calibrated']:.1f}%"
               if t["calibrated"] else "not calibrated")
        click.echo(plain_text(f"{t['name']:<28} {t['space']}/{t['preset']} batch "
                              f"{t['batch_size']}  {t['origin'] or 'v1'}  {fit}  "
                              f"{t['machine'] or 'no fingerprint (rebuild)'}"))


@lut_group.command("export")
@space_options
@table_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A .json or .csv file.")
@db_option
@json_option
@click.pass_context
@handles_errors
def lut_export_command(ctx: click.Context, space_name: str, preset: str | None,
                       name: str | None, batch_size: int, output: Path, as_json: bool) -> None:
    """Write a stored table (with its fingerprint and calibration) to a JSON or CSV file."""
    from workbench import latency

    space = _space(space_name, preset)
    if output.suffix not in (".json", ".csv"):
        raise NaswError("output", str(output), "a .json or .csv file")
    with Store(db_path(ctx), create=False) as store:
        table = latency.load_table(store, space, name, batch_size)
    report = latency.export_table(table, output)
    if as_json:
        echo_json(report)
        return
    click.echo(f"wrote {report['path']} (table {table['name']!r}, {report['format']})")


@lut_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None,
              help="Store it under this name (default <runtime>:<device>@<fingerprint id>).")
@click.option("--replace", is_flag=True, help="Overwrite a table of the same name.")
@db_option
@json_option
@click.pass_context
@handles_errors
def lut_import_command(ctx: click.Context, file: Path, name: str | None, replace: bool,
                       as_json: bool) -> None:
    """Import a table measured elsewhere (by `nasw lut export` or the kit's script).

    The file is untrusted: every field is validated and nothing is stored unless all are
    valid; a calibration it carries is refitted from its own points."""
    from workbench import latency

    with Store(db_path(ctx)) as store:
        table = latency.import_table(store, file, name, replace=replace)
    if as_json:
        echo_json({k: v for k, v in table.items() if k not in ("blocks", "blocks_iqr")})
        return
    click.echo(f"imported {_summary(table)}")
    click.echo(f"  use it: nasw specialize RUN -c 'latency_ms<=...' --lut {table['name']}")


@lut_group.command("kit")
@space_options
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="A new (or empty) folder.")
@click.option("--models", type=click.IntRange(min=0), default=20, show_default=True,
              help="Sampled whole architectures included for calibration.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--onnx-exporter", default="auto", show_default=True,
              help="auto, dynamo or legacy.")
@json_option
@handles_errors
def lut_kit_command(space_name: str, preset: str | None, output: Path, models: int, seed: int,
                    onnx_exporter: str, as_json: bool) -> None:
    """Write a measuring kit: block ONNX files + one script (numpy + onnxruntime only) that
    measures a table on the device you copy it to."""
    from workbench import latency
    from workbench.export import ONNX_EXPORTERS

    space = _space(space_name, preset)
    if onnx_exporter not in ONNX_EXPORTERS:
        raise NaswError("onnx-exporter", onnx_exporter, ONNX_EXPORTERS)
    manifest = latency.write_kit(space, output, models=models, seed=seed,
                                 exporter=onnx_exporter, progress=_progress(as_json))
    if as_json:
        echo_json(manifest)
        return
    blocks = len(manifest["files"]) - len(manifest["models"])
    click.echo(f"wrote {output}: {blocks} distinct block files, {len(manifest['models'])} "
               f"whole models, measure_latency.py ({manifest['build_s']:.0f} s)")
    click.echo("  on the device: python measure_latency.py . --threads N -o table.json; "
               "here: nasw lut import table.json --name DEVICE")


@lut_group.command("calibrate")
@space_options
@table_options
@click.option("--samples", type=click.IntRange(min=3), default=20, show_default=True,
              help="Random architectures measured end to end.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Calibrate a table from another machine here.")
@db_option
@json_option
@click.pass_context
@handles_errors
def lut_calibrate_command(ctx: click.Context, space_name: str, preset: str | None,
                          name: str | None, batch_size: int, samples: int, seed: int,
                          force: bool, as_json: bool) -> None:
    """Fit sum-of-blocks -> measured latency on sampled whole models; store it; report MAPE."""
    from workbench import latency

    space = _space(space_name, preset)
    with Store(db_path(ctx), create=False) as store:
        table = latency.load_table(store, space, name, batch_size)
        latency.check_fingerprint(table, force=force, action="calibrate it here")
        table = latency.calibrate(space, table, samples, seed, force=True,
                                  progress=_progress(as_json))
        latency.save_table(store, table)
    fit = table["calibration"]
    if as_json:
        echo_json(fit)
        return
    click.echo(f"calibrated {table['name']!r} on {fit['samples']} architectures: measured ~= "
               f"{fit['slope']:.3f} x sum {fit['intercept']:+.3f} ms")
    click.echo(f"  MAPE: raw sum {fit['mape_raw']:.1f}%, calibrated {fit['mape_calibrated']:.1f}%"
               f" in sample, {fit['mape_loo']:.1f}% leave-one-out")


@lut_group.command("measure")
@click.argument("genotype_file", type=click.Path(dir_okay=False, path_type=Path))
@table_options
@click.option("--force", is_flag=True, help="Measure against a table from another machine.")
@db_option
@json_option
@click.pass_context
@handles_errors
def lut_measure_command(ctx: click.Context, genotype_file: Path, name: str | None,
                        batch_size: int, force: bool, as_json: bool) -> None:
    """Predicted (raw, calibrated) vs measured latency of one architecture (a JSON genotype,
    e.g. from `nasw export`), timed as the table was."""
    from workbench import latency
    from workbench.export import load_genotype_document

    genotype = load_genotype_document(genotype_file)["genotype"]
    space = _space(genotype["space"], genotype.get("preset"))
    with Store(db_path(ctx), create=False) as store:
        table = latency.load_table(store, space, name, batch_size)
    latency.check_fingerprint(table, force=force, action="measure against it here")
    stats = latency.measure_models(space, [genotype], table, progress=_progress(as_json))[0]
    report = {"table": table["name"], "raw_ms": latency.predict(table, genotype["choices"],
                                                                calibrated=False),
              "predicted_ms": latency.predict(table, genotype["choices"]),
              "calibrated": bool(table.get("calibration")),
              "measured_ms": stats["median_ms"], "measured_iqr_ms": stats["iqr_ms"]}
    if as_json:
        echo_json(report)
        return
    click.echo(f"table {report['table']!r}: raw sum {report['raw_ms']:.3f} ms, predicted "
               f"{report['predicted_ms']:.3f} ms"
               f"{' (calibrated)' if report['calibrated'] else ''}, measured "
               f"{report['measured_ms']:.3f} ms (IQR {report['measured_iqr_ms']:.3f})")
