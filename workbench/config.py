"""Run configuration: the YAML schema, its validation, and what it builds.

A config is read with ``yaml.safe_load`` only (a ``!!python/object`` tag is an error, never an
object) and validated in two passes:

1. **Structure and types** with pydantic models (``extra="forbid"``: a misspelt key is an error,
   not silently ignored).
2. **Names and meaning** against the live registries: the space and its preset, the searcher and
   its preset/parameters, the dataset, the evaluator, the constraints (parsed with
   :func:`searchers.constraints.parse_constraints`; bounds outside what the space can reach,
   when its cost tables can tell, are rejected as impossible).

Every error is a :class:`NaswError` whose message names the field path
(``budget.candidates``), the bad value and what is allowed; the CLI prints it and exits 2.

A config file may come from anyone, so reading it is bounded before anything is built: at most
:data:`MAX_CONFIG_BYTES`, UTF-8 only, no duplicate keys (the last one would silently win), at
most :data:`MAX_ALIASES` YAML aliases and :data:`MAX_NODES` values once aliases are expanded
(an anchor bomb), at most :data:`MAX_DEPTH` levels of nesting; every number finite and within
64-bit range; counts are integers (``true`` is not a count); ``train.epochs >= 1``. A
``latency_ms`` constraint is refused in a search (candidates' latency is not measured while
searching; a latency table serves it at specialization, and the message says how to build
one), and a dataset read from files must name an existing ``dataset.root``.

Example (``sample_configs/random-synthetic.yaml``)::

    name: random-synthetic
    space: {name: mbconv, preset: ponas-digits}
    evaluator: synthetic
    searcher: {name: random}
    constraints: ["params<=60k"]
    budget: {candidates: 200}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from searchers.base import Searcher, TrainSpec, get_searcher, searcher_class, searcher_names
from searchers.constraints import Constraint, parse_constraints
from searchers.errors import NaswError, UnknownName
from searchers.spaces import Space, get_space, space_class, space_names

#: a run with only a wall-time budget still gives searchers a finite candidate budget
UNLIMITED_CANDIDATES = 1_000_000
#: dataset names used when ``searchers.data`` is unavailable (kept equal to its list)
FALLBACK_DATASETS = ("cifar10", "cifar100", "digits", "fashion-mnist", "imagefolder", "mnist",
                     "npz", "synthetic")
#: Searcher keyword arguments accepted in ``searcher.params`` besides the algorithm's own
BASE_SEARCHER_PARAMS = ("reward_p",)
#: limits on a config file (it may come from anyone)
MAX_CONFIG_BYTES = 1_000_000
MAX_ALIASES = 64
MAX_NODES = 100_000
MAX_DEPTH = 32
#: the largest integer a config may hold (SQLite's and numpy's 64-bit range)
MAX_INT = 2**63 - 1
#: datasets read from files the user supplies: ``dataset.root`` must exist
ROOT_REQUIRED = ("imagefolder", "npz")


def _count(value: Any) -> Any:
    """An integer count: ``true``/``false`` and fractional or non-finite numbers are refused
    (pydantic's lax mode would take ``true`` as 1 and ``2.0`` as 2)."""
    if isinstance(value, bool):
        raise ValueError("an integer (not true/false)")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError("an integer")
        value = int(value)
    return value


def _number(value: Any) -> Any:
    """A finite number, not a boolean."""
    if isinstance(value, bool):
        raise ValueError("a number (not true/false)")
    if isinstance(value, (int, float)) and not math.isfinite(float(value)):
        raise ValueError("a finite number")
    return value


Count = Annotated[int, BeforeValidator(_count)]
Number = Annotated[float, BeforeValidator(_number)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True,
                              allow_inf_nan=False)


class SpaceConfig(_Model):
    """Which search space, at which preset, with which preset settings overridden."""

    name: str
    preset: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)


class DatasetConfig(_Model):
    name: str = "digits"
    root: str | None = None
    val_fraction: Number = Field(0.2, gt=0.0, lt=1.0)


class SearcherConfig(_Model):
    name: str = "random"
    preset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ConstraintConfig(_Model):
    metric: str
    op: str
    value: Number | str


class BudgetConfig(_Model):
    """Stop after ``candidates`` evaluations and/or ``wall_time_s`` seconds of running."""

    candidates: Count | None = Field(None, gt=0, le=10**9)
    wall_time_s: Number | None = Field(None, gt=0, le=10 * 365 * 86400.0)

    @model_validator(mode="after")
    def _some_budget(self) -> BudgetConfig:
        if self.candidates is None and self.wall_time_s is None:
            raise NaswError("budget", None, "candidates and/or wall_time_s",
                            hint="a run needs an end")
        return self


class TrainConfig(_Model):
    """The proxy training of each candidate (``TrainSpec`` minus the dataset fields)."""

    epochs: Count = Field(5, ge=1, le=100_000)
    batch_size: Count = Field(128, gt=0, le=1_000_000)
    lr: Number = Field(0.05, gt=0, le=1e3)
    lr_min: Number = Field(0.0, ge=0, le=1e3)
    momentum: Number = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: Number = Field(5e-4, ge=0, le=1e3)
    schedule: Literal["cosine", "cosine_restarts", "constant", "step"] = "cosine"
    warmup_epochs: Count = Field(0, ge=0, le=100_000)
    # cosine_restarts (SGDR, EPNAS §4.1 without prediction): see searchers.base.TrainSpec
    restart_t0: Count = Field(10, ge=1, le=100_000)
    restart_mult: Count = Field(2, ge=1, le=1_000)
    label_smoothing: Number = Field(0.0, ge=0, lt=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    augment: bool = True
    max_batches: Count | None = Field(None, gt=0, le=MAX_INT)
    seed: Count | None = Field(None, ge=0, le=2**32 - 1)
    # PNAS §5.4 final-training regularisers (cell space): see searchers.base.TrainSpec
    aux_weight: Number = Field(0.0, ge=0, le=1e3)
    drop_path: Number = Field(0.0, ge=0, lt=1)
    train_on_val: bool = False


class BackendConfig(_Model):
    """Where candidates are evaluated.

    ``workers``: number of local worker processes; ``0`` evaluates in the coordinator process
    (no workers: the fast path for the synthetic evaluator, and the default for it); unset
    means one per GPU in ``CUDA_VISIBLE_DEVICES`` times ``jobs_per_gpu``, else
    ``max(1, cpus // 2)`` CPU workers.
    """

    kind: Literal["local", "ray"] = "local"
    workers: Count | None = Field(None, ge=0, le=4096)
    jobs_per_gpu: Count = Field(1, gt=0, le=1024)
    address: str | None = None
    gpus_per_job: Number = Field(1.0, ge=0, le=1024)
    cpus_per_job: Number = Field(1.0, gt=0, le=4096)


class RunConfig(_Model):
    """One search, as written in YAML."""

    name: str = Field("run", min_length=1, max_length=200)
    space: SpaceConfig
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    evaluator: Literal["train", "synthetic"] = "train"
    searcher: SearcherConfig = Field(default_factory=SearcherConfig)
    constraints: list[str | ConstraintConfig] = Field(default_factory=list)
    hard_constraints: bool = False
    budget: BudgetConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    seed: Count = Field(0, ge=0, le=2**32 - 1)

    def parsed_constraints(self) -> list[Constraint]:
        return parse_constraints(
            [c if isinstance(c, str) else c.model_dump() for c in self.constraints])

    def train_spec(self) -> TrainSpec:
        fields = self.train.model_dump()
        if fields["seed"] is None:
            fields["seed"] = self.seed
        return TrainSpec(dataset=self.dataset.name, data_root=self.dataset.root,
                         val_fraction=self.dataset.val_fraction, **fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored with the run (and accepted back by :func:`parse_config`)."""
        return self.model_dump(mode="json")


# -- validation ------------------------------------------------------------------------------
def dataset_names() -> list[str]:
    try:
        from searchers.data import dataset_names as names
    except ImportError:
        return list(FALLBACK_DATASETS)
    return list(names())


def _loc(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("str", "ConstraintConfig"):  # union branch names are noise to a user
            continue
        else:
            path += ("." if path else "") + str(part)
    return path or "config"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model a misspelt key sat in."""
    for part in loc[:-1]:
        if isinstance(part, int) or part in ("str",):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            if part == "ConstraintConfig":
                model = ConstraintConfig
            continue
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return sorted(model.model_fields)


def _from_validation_error(err: ValidationError) -> NaswError:
    """The most useful single message of a pydantic error (field, bad value, what is allowed)."""
    errors = err.errors()
    # a constraint (str | mapping union) reports both branches: keep the one the user meant
    errors = [e for e in errors
              if not ("str" in e["loc"] and not isinstance(e.get("input"), str))
              and not ("ConstraintConfig" in e["loc"] and e["loc"][-1] == "ConstraintConfig"
                       and isinstance(e.get("input"), str))] or errors
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")  # a typo explains the rest
    first = errors[0]
    for candidate in errors:
        if isinstance(candidate.get("ctx", {}).get("error"), NaswError):
            first = candidate
            break
    original = first.get("ctx", {}).get("error")
    if isinstance(original, NaswError):
        return original
    field = _loc(first["loc"])
    value = first.get("input")
    kind = first["type"]
    if kind == "extra_forbidden":
        return NaswError(field, value, _allowed_keys(RunConfig, first["loc"]),
                         hint="unknown key")
    if first["loc"][0] == "constraints" and len(first["loc"]) > 1 and not isinstance(
            value, (str, Mapping)):
        return NaswError(field, value, "'params<=3M' strings or {metric, op, value} mappings")
    if kind == "missing":
        return NaswError(field, None, "a value is required")
    message = first["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
    message = re.sub(r" or instance of \w+$", "", message)
    return NaswError(field, value, message)


def _check_names(config: RunConfig) -> None:
    """Registry look-ups and constraint meaning; raises NaswError naming the field."""
    if config.space.name not in space_names():
        raise UnknownName("space.name", config.space.name, space_names())
    presets = sorted(space_class(config.space.name).presets)
    if config.space.preset is not None and config.space.preset not in presets:
        raise UnknownName("space.preset", config.space.preset, presets)
    if config.searcher.name not in searcher_names():
        raise UnknownName("searcher.name", config.searcher.name, searcher_names())
    cls = searcher_class(config.searcher.name)
    if config.searcher.preset is not None and config.searcher.preset not in cls.presets:
        raise UnknownName("searcher.preset", config.searcher.preset, sorted(cls.presets))
    allowed_params = sorted({*cls.default_params(), *BASE_SEARCHER_PARAMS})
    for key in config.searcher.params:
        if key not in allowed_params:
            raise UnknownName(f"searcher.params.{key}", config.searcher.params[key],
                              allowed_params)
    base = config.dataset.name.partition(":")[0].strip().lower()
    if base not in dataset_names():
        raise UnknownName("dataset.name", config.dataset.name, dataset_names())
    config.parsed_constraints()


def _reachable_range(space: Space) -> dict[str, tuple[float, float]]:
    """Min/max of each additive cost over the space, from its cost tables (when it has them)."""
    cost_tables = getattr(space, "cost_tables", None)
    if cost_tables is None:
        return {}
    base, tables = cost_tables()
    ranges = {}
    for metric, table in tables.items():
        if metric == "intensity":
            continue
        rows = [[float(v) for v in row if math.isfinite(float(v))] for row in table]
        ranges[metric] = (float(base.get(metric, 0.0)) + sum(min(r) for r in rows if r),
                          float(base.get(metric, 0.0)) + sum(max(r) for r in rows if r))
    return ranges


def check_constraints_reachable(space: Space, constraints: list[Constraint]) -> None:
    """Reject a bound no architecture of the space can meet (e.g. ``params<=10``)."""
    ranges = _reachable_range(space)
    for index, constraint in enumerate(constraints):
        if constraint.metric not in ranges:
            continue
        low, high = ranges[constraint.metric]
        impossible = (constraint.value < low if constraint.op == "<=" else constraint.value > high)
        if impossible:
            raise NaswError(f"constraints[{index}]", str(constraint),
                            f"{constraint.metric} between {low:.4g} and {high:.4g} in "
                            f"{space.name}/{space.preset}", hint="no architecture can meet it")


def _check_values(data: Any) -> None:
    """Every value of a config: bounded size and depth once aliases are expanded, numbers
    finite and within 64-bit range, mapping keys plain strings. Raises NaswError naming the
    path of the first bad value."""
    budget = [MAX_NODES]

    def walk(value: Any, path: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise NaswError("config", f"more than {MAX_NODES} values",
                            f"at most {MAX_NODES} values (aliases expanded)",
                            hint="a YAML anchor expanded into too much data")
        if depth > MAX_DEPTH:
            raise NaswError(path or "config", "deeper nesting", f"at most {MAX_DEPTH} levels")
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise NaswError(path or "config", value, "integers within 64-bit range")
            return
        if isinstance(value, float):
            if not math.isfinite(value):
                raise NaswError(path or "config", value, "a finite number")
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise NaswError(f"{path}.{key}" if path else str(key), key,
                                    "text keys", hint="YAML keys must be names")
                walk(item, f"{path}.{key}" if path else key, depth + 1)
            return
        if isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]", depth + 1)
            return
        raise NaswError(path or "config", type(value).__name__,
                        "text, numbers, true/false, lists and mappings")

    walk(data, "", 0)


def _check_meaning(config: RunConfig) -> None:
    """What only makes sense together: reward_p's form, latency bounds, dataset files."""
    from searchers.constraints import parse_reward_p

    if "reward_p" in config.searcher.params:
        parse_reward_p(config.searcher.params["reward_p"], "searcher.params.reward_p")
    for index, constraint in enumerate(config.parsed_constraints()):
        if constraint.metric == "latency_ms":
            space = config.space
            raise NaswError(
                f"constraints[{index}]", str(constraint),
                "params, madds, flops or intensity bounds in a search",
                hint="a search does not measure each candidate's latency; build a latency "
                     f"table with `nasw lut build --space {space.name}"
                     + (f" --preset {space.preset}" if space.preset else "")
                     + " --device cpu` and apply the bound when specializing: "
                     f"`nasw specialize RUN -c '{constraint}' --device cpu`")
    base = config.dataset.name.partition(":")[0].strip().lower()
    if config.evaluator == "train" and base in ROOT_REQUIRED:
        root = config.dataset.root
        if not root:
            raise NaswError("dataset.root", None, f"the path of the {base} data",
                            hint=f"the {base} dataset is read from your files")


def check_dataset_files(config: RunConfig) -> None:
    """Before a run is created on this machine: a dataset read from the user's files must
    name a path that exists here (else every candidate would fail), and a downloadable
    dataset's root must be a folder. Not part of :func:`parse_config`: a config written for
    another machine (the paper presets' ``/data/imagenet``) still validates here."""
    base = config.dataset.name.partition(":")[0].strip().lower()
    root = config.dataset.root
    if config.evaluator != "train" or not root:
        return
    path = Path(root).expanduser()
    if base in ROOT_REQUIRED and not path.exists():
        raise NaswError("dataset.root", root, f"an existing path holding the {base} data")
    if base not in ROOT_REQUIRED and path.is_file():
        raise NaswError("dataset.root", root, "a folder (it is a file)")


def parse_config(data: Any) -> RunConfig:
    """Validate a config mapping (from YAML, the TUI form, or a stored run)."""
    if data is None:
        raise NaswError("config", "an empty file", "a mapping of settings (YAML keys)")
    if not isinstance(data, Mapping):
        raise NaswError("config", type(data).__name__, "a mapping of settings (YAML keys)")
    _check_values(data)
    try:
        config = RunConfig.model_validate(dict(data))
    except ValidationError as err:
        raise _from_validation_error(err) from None
    _check_names(config)
    _check_meaning(config)
    space = build_space(config)
    check_constraints_reachable(space, config.parsed_constraints())
    return config


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys, deep nesting and alias floods while
    composing -- before an anchor bomb is expanded or the recursion limit is met."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise NaswError("config", f"more than {MAX_ALIASES} aliases",
                                f"at most {MAX_ALIASES} YAML aliases (*name)",
                                hint=f"line {mark.line + 1}")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise NaswError("config", "deeper nesting", f"at most {MAX_DEPTH} levels",
                                hint=f"line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                        key_node, yaml.ScalarNode):
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise NaswError(str(key_node.value), "a duplicate key",
                                    "each key once per mapping",
                                    hint=f"line {key_node.start_mark.line + 1}; "
                                         "the last one would silently win")
                seen.add(key)
        return super().construct_mapping(node, deep)


_BoundedLoader.add_constructor("tag:yaml.org,2002:map", _BoundedLoader.construct_yaml_map)


def read_config_text(path: str | Path) -> str:
    """A config file's text: at most :data:`MAX_CONFIG_BYTES`, UTF-8 (a UTF-8 BOM is fine)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise NaswError("config", str(path), "a readable YAML file",
                        hint=err.strerror or "") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise NaswError("config", str(path), f"a YAML file of at most {MAX_CONFIG_BYTES:,} bytes",
                        hint="it is larger")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise NaswError("config", str(path), "UTF-8 text", hint="it is UTF-16; save it as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise NaswError("config", str(path), "UTF-8 text",
                        hint=f"byte {err.start} is not UTF-8 (binary, latin-1?)") from None
    if "\x00" in text:
        raise NaswError("config", str(path), "UTF-8 text", hint="it holds NUL bytes (binary?)")
    return text


def load_yaml(text: str, source: str = "config") -> Any:
    """Parse config text with :class:`_BoundedLoader` (safe: plain YAML, no tags)."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise NaswError("config", source, "plain YAML (no tags)",
                        hint=f"{where}{problem}"[:300]) from None
    except RecursionError:
        raise NaswError("config", source, f"at most {MAX_DEPTH} levels of nesting") from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML config (bounded, UTF-8, a SafeLoader that refuses duplicate
    keys and alias floods)."""
    return parse_config(load_yaml(read_config_text(path), str(path)))


def build_space(config: RunConfig) -> Space:
    try:
        return get_space(config.space.name, config.space.preset, **config.space.overrides)
    except NaswError as err:
        key = err.field.removeprefix("space.")
        if key in config.space.overrides:
            raise NaswError(f"space.overrides.{key}", err.value, err.allowed) from None
        raise
    except (TypeError, ValueError) as err:
        raise NaswError("space.overrides", config.space.overrides, hint=str(err)) from None


def _train_spec(config: RunConfig) -> TrainSpec:
    """The config's training spec over the searcher preset's ``train`` defaults.

    A searcher preset may carry its paper's proxy-training settings (``train``); the fields a
    config sets explicitly win over them, the preset wins over the schema's defaults.
    """
    spec = config.train_spec()
    preset = config.searcher.preset
    if preset is None:
        return spec
    defaults = searcher_class(config.searcher.name).presets.get(preset, {}).get("train") or {}
    explicit = config.train.model_fields_set
    return spec.with_(**{k: v for k, v in defaults.items() if k not in explicit})


def make_searcher(config: RunConfig) -> tuple[Space, Searcher]:
    """The space and the searcher a run config describes."""
    space = build_space(config)
    kwargs: dict[str, Any] = {
        "constraints": config.parsed_constraints(),
        "budget": config.budget.candidates or UNLIMITED_CANDIDATES,
        "seed": config.seed, "train": _train_spec(config),
        "hard_constraints": config.hard_constraints, **config.searcher.params,
    }
    if config.searcher.preset is not None:
        kwargs["preset"] = config.searcher.preset
    return space, get_searcher(config.searcher.name, space=space, **kwargs)


__all__ = [
    "BackendConfig", "BudgetConfig", "DatasetConfig", "RunConfig", "SearcherConfig",
    "SpaceConfig", "TrainConfig", "build_space", "check_constraints_reachable",
    "check_dataset_files", "dataset_names",
    "load_config", "make_searcher", "parse_config",
]
