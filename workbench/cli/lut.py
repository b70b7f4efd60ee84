"""``nasw lut build --space mbconv --preset P --device cpu|cuda:0 [--batch-size N]``.

Times every candidate block of the space at its position on the device (warm-up, median of
repeats) at batch 1 and at the chosen batch size, and stores the latency LUTs in the database so
``nasw specialize RUN --constraint 'latency_ms<=8' --device D`` can use them.
"""

from __future__ import annotations

import click

from searchers.errors import NaswError
from searchers.spaces import get_space
from workbench.cli import db_option, db_path, echo_json, handles_errors, json_option, main
from workbench.specialize import check_device, save_latency_luts
from workbench.store import Store


@main.group("lut")
def lut_group() -> None:
    """Per-device latency look-up tables for specialization."""


@lut_group.command("build")
@click.option("--space", "space_name", default="mbconv", show_default=True,
              help="Search space whose blocks are timed.")
@click.option("--preset", default=None, help="Space preset (default: the space's default).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size measured besides batch 1.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
              help="Untimed forward passes before timing.")
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed forward passes; the median is stored.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads torch uses while timing (default: torch's setting).")
@db_option
@json_option
@click.pass_context
@handles_errors
def lut_build_command(ctx: click.Context, space_name: str, preset: str | None, device: str,
                      batch_size: int, warmup: int, repeats: int, threads: int | None,
                      as_json: bool) -> None:
    """Measure every candidate block's latency on DEVICE and store the LUTs."""
    if space_name != "mbconv":
        raise NaswError("space", space_name, ["mbconv"],
                        hint="latency LUTs serve PONAS specialization over the mbconv space")
    space = get_space(space_name, preset)
    check_device(device)  # before the database is opened: bad input writes nothing
    with Store(db_path(ctx)) as store:
        luts = save_latency_luts(store, space, device, batch_size, warmup=warmup,
                                 repeats=repeats, threads=threads)
    if as_json:
        echo_json(luts)
        return
    for lut in luts:
        blocks = lut["blocks"]
        low = lut["base"] + sum(min(row) for row in blocks)
        high = lut["base"] + sum(max(row) for row in blocks)
        click.echo(f"{lut['space']}/{lut['preset']} on {lut['device']}, batch "
                   f"{lut['batch_size']}: {len(blocks)} x {len(blocks[0])} blocks in "
                   f"{lut['build_s']:.1f} s; predicted model latency {low:.3f}..{high:.3f} ms "
                   f"(base {lut['base']:.3f} ms)")
