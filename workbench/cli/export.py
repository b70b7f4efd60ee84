"""``nasw export RUN``: the chosen architecture as JSON, ONNX, TorchScript or Graphviz DOT."""

from __future__ import annotations

from pathlib import Path

import click

from searchers.errors import NaswError
from workbench.analysis import resolve_architecture
from workbench.cli import db_option, db_path, echo_json, handles_errors, json_option, main
from workbench.export import FORMATS, check_format, default_path, export
from workbench.runner.final_train import load_weights, weights_path
from workbench.store import Store


@main.command("export")
@click.argument("run_id", type=int)
@click.option("--candidate", "candidate_id", type=int, default=None,
              help="Candidate to export (default: the run's best).")
@click.option("--specialization", "specialization_id", type=int, default=None,
              help="A PONAS specialization to export instead of a candidate.")
@click.option("--format", "fmt", default="json", show_default=True,
              help=f"One of: {', '.join(FORMATS)}.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: run<RUN>-<c|s><ID>.<ext> here).")
@db_option
@json_option
@click.pass_context
@handles_errors
def export_command(ctx: click.Context, run_id: int, candidate_id: int | None,
                   specialization_id: int | None, fmt: str, output: Path | None,
                   as_json: bool) -> None:
    """Export a candidate of RUN; costs are re-measured and ONNX/TorchScript verified.

    A final training run (`nasw train`) exports its trained weights; otherwise the model
    carries freshly initialised weights (the architecture).
    """
    check_format(fmt)
    if candidate_id is not None and specialization_id is not None:
        raise NaswError("candidate", candidate_id,
                        "either --candidate or --specialization, not both")
    db = db_path(ctx)
    with Store(db, create=False) as store:
        genotype, label, provenance = resolve_architecture(store, run_id, candidate_id,
                                                           specialization_id)
        run = store.run(run_id)
    weights = None
    trained = weights_path(db, run_id)
    if run["searcher"] == "final" and trained.exists() and fmt in ("onnx", "torchscript"):
        weights = load_weights(trained)
        provenance["weights"] = str(trained)
    path = output or default_path(fmt, run_id, label)
    report = export(genotype, fmt, path, provenance=provenance, weights=weights)
    if as_json:
        echo_json(report)
        return
    costs = report["costs"]
    click.echo(f"wrote {report['path']} ({fmt}; {report['check']})")
    click.echo(f"  params {costs['params']:,.0f}  MAdds {costs['madds']:,.0f}  "
               f"FLOPs {costs['flops']:,.0f}  intensity {costs['intensity']:.2f}")
