"""``nasw export RUN``: the chosen architecture as JSON, ONNX, pt2 (``torch.export``),
TorchScript (legacy) or Graphviz DOT. For deployment use ``onnx`` (any runtime) or ``pt2``
(PyTorch's own stack); see docs/deployment.md."""

from __future__ import annotations

from pathlib import Path

import click

from searchers.errors import NaswError
from workbench.analysis import resolve_architecture
from workbench.cli import db_option, db_path, echo_json, handles_errors, json_option, main
from workbench.export import FORMATS, ONNX_EXPORTERS, check_format, default_path, export
from workbench.runner.final_train import load_weights, weights_path
from workbench.store import Store


@main.command("export")
@click.argument("run_id", type=int)
@click.option("--candidate", "candidate_id", type=int, default=None,
              help="Candidate to export (default: the run's best).")
@click.option("--specialization", "specialization_id", type=int, default=None,
              help="A PONAS specialization to export instead of a candidate.")
@click.option("--format", "fmt", default="json", show_default=True,
              help=f"One of: {', '.join(FORMATS)} (torchscript is legacy).")
@click.option("--onnx-exporter", default="auto", show_default=True,
              help=f"ONNX only, one of {', '.join(ONNX_EXPORTERS)}: auto tries the dynamo "
                   "exporter and falls back to the legacy TorchScript-based one.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: run<RUN>-<c|s><ID>.<ext> here).")
@db_option
@json_option
@click.pass_context
@handles_errors
def export_command(ctx: click.Context, run_id: int, candidate_id: int | None,
                   specialization_id: int | None, fmt: str, onnx_exporter: str,
                   output: Path | None, as_json: bool) -> None:
    """Export a candidate of RUN; costs are re-measured and ONNX/pt2/TorchScript verified.

    A final training run (`nasw train`) exports its trained weights; otherwise the model
    carries freshly initialised weights (the architecture).
    """
    check_format(fmt)
    if onnx_exporter not in ONNX_EXPORTERS:
        raise NaswError("onnx-exporter", onnx_exporter, ONNX_EXPORTERS)
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
    if run["searcher"] == "final" and trained.exists() and fmt in ("onnx", "pt2", "torchscript"):
        weights = load_weights(trained)
        provenance["weights"] = str(trained)
    path = output or default_path(fmt, run_id, label)
    report = export(genotype, fmt, path, provenance=provenance, weights=weights,
                    onnx_exporter=onnx_exporter)
    if as_json:
        echo_json(report)
        return
    costs = report["costs"]
    click.echo(f"wrote {report['path']} ({fmt}; {report['check']})")
    exporter = report.get("exporter") or {}
    if exporter.get("fallback_reason"):
        click.echo(f"  note: legacy ONNX exporter used because {exporter['fallback_reason']}")
    click.echo(f"  params {costs['params']:,.0f}  MAdds {costs['madds']:,.0f}  "
               f"FLOPs {costs['flops']:,.0f}  intensity {costs['intensity']:.2f}")
