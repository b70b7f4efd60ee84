"""``nasw cost CONFIG_OR_GENOTYPE``: what an architecture costs, without training it.

A ``.json`` file holding a genotype (a mapping with a ``space`` key) is costed as it is; a
YAML run config is costed on ``--count`` candidates sampled from its space (seeded), each
checked against the config's constraints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import yaml

from searchers.constraints import feasible
from searchers.errors import NaswError
from searchers.spaces import space_of
from workbench.cli import db_option, echo_json, handles_errors, json_option, main
from workbench.config import build_space, load_config
from workbench.text import plain_text


def _genotype_costs(genotype: Any) -> list[dict[str, Any]]:
    space = space_of(genotype)
    genotype = space.validate(genotype)
    return [{"space": space.name, "preset": space.preset, "hash": space.hash(genotype),
             "costs": space.costs(genotype), "feasible": None, "genotype": genotype}]


def _config_costs(path: Path, count: int, seed: int) -> list[dict[str, Any]]:
    config = load_config(path)
    space = build_space(config)
    constraints = config.parsed_constraints()
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        genotype = space.sample(rng)
        costs = space.costs(genotype)
        rows.append({"space": space.name, "preset": space.preset, "hash": space.hash(genotype),
                     "costs": costs,
                     "feasible": feasible(costs, constraints) if constraints else None,
                     "genotype": genotype})
    return rows


@main.command("cost")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True,
              help="Candidates to sample when SOURCE is a run config.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@db_option
@json_option
@handles_errors
def cost_command(source: Path, count: int, seed: int, as_json: bool) -> None:
    """Costs (params, MAdds, FLOPs, intensity) of a genotype JSON file or of a config's space.

    Reads no database (``--db`` is accepted for symmetry with the other commands).
    """
    text = source.read_text()
    data: Any = None
    if source.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise NaswError("genotype", str(source), "a JSON genotype", hint=str(err)) from None
    if isinstance(data, dict) and "space" in data and isinstance(data["space"], str):
        rows = _genotype_costs(data)
    elif data is not None:
        raise NaswError("genotype.space", None, "a JSON mapping with a 'space' key")
    else:
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("space"), str):
            rows = _genotype_costs(parsed)  # a genotype written in YAML
        else:
            rows = _config_costs(source, count, seed)
    if as_json:
        echo_json(rows if len(rows) > 1 else rows[0])
        return
    for row in rows:
        costs = ", ".join(f"{k} {v:.4g}" for k, v in sorted(row["costs"].items()))
        verdict = {None: "", True: "  feasible", False: "  infeasible"}[row["feasible"]]
        click.echo(plain_text(f"{row['space']}/{row['preset']} {row['hash']}: {costs}{verdict}"))
