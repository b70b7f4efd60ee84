"""``nasw specialize RUN --constraint 'params<=3M' ...``: a model for a new budget, now.

Reads a finished PONAS run's accuracy table, solves the multiple-choice knapsack over its cost
LUTs (exact by default, or the paper's GA), prints and stores the specialization. Exit codes:
0 a feasible architecture was found, 1 no architecture satisfies the constraints (the reachable
extremes are printed; the attempt is still stored), 2 bad input (nothing written).
"""

from __future__ import annotations

from typing import Any

import click

from searchers.constraints import format_number
from searchers.specialize import SOLVERS
from workbench.cli import db_option, db_path, echo_json, handles_errors, json_option, main
from workbench.specialize import specialize_run
from workbench.store import Store

EXIT_INFEASIBLE = 1


def _say_if_compiling(solver: str) -> None:
    """The exact solver's kernel compiles on its first call after installing (15-35 s): tell
    a person at a terminal, rather than look hung; pipes and scripts see nothing."""
    if solver != "exact" or not click.get_text_stream("stderr").isatty():
        return
    from searchers._specialize_kernel import needs_compiling

    if needs_compiling():
        click.echo("compiling the exact solver (once per install, up to half a minute; "
                   "cached after)", err=True)


def _label(space_choice: int) -> str:
    from searchers.spaces.mbconv import choice_label

    return choice_label(space_choice)


def _print_result(result: dict[str, Any]) -> None:
    constraints = ", ".join(f"{c['metric']}{c['op']}{format_number(c['value'])}"
                            for c in result["constraints"]) or "none"
    proof = "proven optimal" if result["optimal"] else "not proven optimal"
    click.echo(f"run {result['run_id']}  constraints: {constraints}  solver: {result['solver']} "
               f"({result['solve_ms']:.1f} ms)")
    if not result["feasible"]:
        click.echo("no architecture in the table satisfies the constraints"
                   + (" (proven)" if result["optimal"] else ""))
        for metric, value in result["min_costs"].items():
            line = f"  {metric}: smallest reachable {format_number(value)}"
            if metric in result["max_costs"]:
                line += f", largest reachable {format_number(result['max_costs'][metric])}"
            click.echo(line)
        return
    click.echo(f"accuracy loss (table): {result['loss']:.4f}  [{proof}]")
    click.echo("blocks: " + " ".join(f"{i}:{_label(c)}" for i, c in enumerate(result["choices"])))
    costs = result["costs"]
    parts = [f"{m} {format_number(costs[m])}" for m in ("params", "madds", "flops") if m in costs]
    if "intensity" in costs:
        parts.append(f"intensity {costs['intensity']:.2f}")
    click.echo("costs: " + ", ".join(parts))
    latency = result.get("latency")
    if latency:
        _print_latency(latency)
    estimate = result.get("estimate")
    if estimate:
        if estimate.get("accuracy") is None:
            click.echo(f"estimated accuracy: n/a ({estimate.get('note') or estimate.get('error')})")
        else:
            how = (f"batch-norm recalibrated on up to {estimate['calibration_batches']} batches"
                   if estimate.get("calibration_batches") else "as cropped")
            click.echo(f"estimated accuracy (inherited supernet weights, no training, {how}): "
                       f"{estimate['accuracy']:.4f}")
    if "id" in result:
        click.echo(f"stored as specialization {result['id']}; train it from scratch with "
                   f"`nasw train {result['run_id']} --specialization {result['id']}`")


def _print_latency(latency: dict[str, Any]) -> None:
    """Predicted (calibrated or raw) and measured latency; the budget warning on its own line."""
    from workbench.text import plain_text

    measured = latency["measured_ms"]
    how = (f"calibrated, MAPE {latency['calibration_mape']:.1f}%" if latency.get("calibrated")
           else "raw block sum, not calibrated")
    text = (f"latency on {latency['runtime']}:{latency['device']} (table "
            f"{plain_text(str(latency['table']))}, batch {latency['batch_size']}): predicted "
            f"{latency['predicted_ms']:.3f} ms ({how})")
    if measured is not None:
        text += (f", measured {measured:.3f} ms ({measured / latency['predicted_ms']:.2f}x, "
                 f"IQR {latency['measured_iqr_ms']:.3f})")
    click.echo(text)
    if latency.get("note"):
        click.echo(f"  {latency['note']}")
    if latency.get("warning"):
        click.echo(f"WARNING: {latency['warning']}")


@main.command("specialize")
@click.argument("run_id", type=int)
@click.option("--constraint", "-c", "constraints", multiple=True, metavar="EXPR",
              help="A bound such as 'params<=3M', 'madds<=300M', 'intensity>=20', "
                   "'latency_ms<=8' (repeatable).")
@click.option("--solver", type=click.Choice(SOLVERS), default="exact", show_default=True,
              help="exact: provably optimal on the table; ga: the paper's genetic algorithm.")
@click.option("--device", default=None,
              help="Device of the latency table for latency_ms (with --runtime; see "
                   "`nasw lut ls`).")
@click.option("--runtime", default=None,
              help="Runtime of the latency table: torch or onnxruntime (default torch when "
                   "--device is given).")
@click.option("--lut", "lut", default=None,
              help="Latency table by name (`nasw lut ls`), e.g. an imported one; default: the "
                   "only table there is.")
@click.option("--verify", is_flag=True,
              help="Measure the chosen architecture here, timed as the table was, and warn "
                   "when it exceeds the latency budget.")
@click.option("--force", is_flag=True,
              help="Use or verify a latency table measured on another machine.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size of the latency LUT.")
@click.option("--estimate", is_flag=True,
              help="Evaluate the subnet with cropped supernet weights (needs torch + the data).")
@click.option("--calibration-batches", type=click.IntRange(min=0), default=50, show_default=True,
              help="With --estimate: training batches that recalibrate batch-norm statistics "
                   "(weights frozen) before evaluating; 0 evaluates the cropped weights as is.")
@click.option("--no-measure", is_flag=True,
              help="Do not measure the whole model's latency (unless --verify).")
@click.option("--seed", type=int, default=0, show_default=True, help="GA seed.")
@db_option
@json_option
@click.pass_context
@handles_errors
def specialize_command(ctx: click.Context, run_id: int, constraints: tuple[str, ...], solver: str,
                       device: str | None, runtime: str | None, lut: str | None, verify: bool,
                       force: bool, batch_size: int, estimate: bool,
                       calibration_batches: int, no_measure: bool, seed: int,
                       as_json: bool) -> None:
    """Pick the best architecture of a PONAS run's accuracy table under new constraints."""
    _say_if_compiling(solver)
    with Store(db_path(ctx), create=False) as store:
        result = specialize_run(store, run_id, list(constraints), solver, device=device,
                                batch_size=batch_size, estimate=estimate,
                                calibration_batches=calibration_batches,
                                measure=not no_measure, seed=seed, runtime=runtime, lut=lut,
                                force=force, verify=verify)
    if as_json:
        echo_json(result)
        warning = (result.get("latency") or {}).get("warning")
        if warning:  # the JSON has it in latency.warning; say it where a person sees it too
            click.echo(f"WARNING: {warning}", err=True)
    else:
        _print_result(result)
    if not result["feasible"]:
        ctx.exit(EXIT_INFEASIBLE)
