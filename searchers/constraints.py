"""Resource constraints: parsing, feasibility and the EPNAS soft reward.

A constraint is ``(metric, op, value)`` with op ``<=`` or ``>=``. Users write them as
``params<=3M``, ``madds <= 300e6``, ``intensity>=80`` or as ``{metric, op, value}`` dicts;
:func:`parse_constraints` accepts all of these and returns :class:`Constraint` tuples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from searchers.errors import NaswError

METRICS = ("params", "madds", "flops", "intensity", "latency_ms")
OPS = ("<=", ">=")
_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9, "b": 1e9,
           "B": 1e9, "t": 1e12, "T": 1e12}
_PATTERN = re.compile(
    r"^\s*(?P<metric>[a-z_]+)\s*(?P<op><=|>=|<|>)\s*(?P<num>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)"
    r"\s*(?P<suffix>[kKmMgGbBtT]?)\s*$"
)


class Constraint(NamedTuple):
    metric: str
    op: str
    value: float

    def satisfied(self, costs: Mapping[str, float]) -> bool:
        used = costs.get(self.metric)
        if used is None:
            return False
        return used <= self.value if self.op == "<=" else used >= self.value

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "op": self.op, "value": self.value}

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{format_number(self.value)}"


def format_number(value: float) -> str:
    """``3000000 -> '3M'``, ``80 -> '80'``: the inverse of the parser's suffixes."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def parse_constraint(spec: Any, field: str = "constraints") -> Constraint:
    """One constraint from a string, a dict, a tuple or a :class:`Constraint`."""
    if isinstance(spec, Constraint):
        return spec
    if isinstance(spec, str):
        match = _PATTERN.match(spec)
        if not match:
            raise NaswError(field, spec, "'<metric><=|>=<number>[k|M|G]', e.g. 'params<=3M'")
        metric, op = match["metric"], match["op"]
        value = float(match["num"]) * _SUFFIX[match["suffix"]]
    elif isinstance(spec, Mapping):
        unknown = set(spec) - {"metric", "op", "value"}
        if unknown:
            raise NaswError(f"{field}.{sorted(unknown)[0]}", spec, "keys metric, op, value")
        try:
            metric, op, value = spec["metric"], spec["op"], spec["value"]
        except KeyError as missing:
            raise NaswError(f"{field}.{missing.args[0]}", None, "a value is required") from None
        if isinstance(value, str):
            value = parse_constraint(f"{metric}<={value}", field).value
    elif isinstance(spec, (tuple, list)) and len(spec) == 3:
        metric, op, value = spec
    else:
        raise NaswError(field, spec, "'params<=3M' strings or {metric, op, value} mappings")
    if op in ("<", ">"):
        op += "="
    if metric not in METRICS:
        raise NaswError(f"{field}.metric", metric, METRICS)
    if op not in OPS:
        raise NaswError(f"{field}.op", op, OPS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NaswError(f"{field}.value", value, "a finite number")
    if value <= 0:
        raise NaswError(f"{field}.value", value, "a positive number")
    return Constraint(metric, op, float(value))


def parse_constraints(specs: Iterable[Any] | None, field: str = "constraints") -> list[Constraint]:
    """All constraints of a config or CLI call; rejects contradictory bounds on one metric."""
    parsed = [parse_constraint(s, f"{field}[{i}]") for i, s in enumerate(specs or ())]
    for metric in {c.metric for c in parsed}:
        upper = min((c.value for c in parsed if c.metric == metric and c.op == "<="),
                    default=math.inf)
        lower = max((c.value for c in parsed if c.metric == metric and c.op == ">="),
                    default=0.0)
        if lower > upper:
            raise NaswError(field, [str(c) for c in parsed if c.metric == metric],
                            hint=f"{metric} cannot be both >= {lower:g} and <= {upper:g}")
    return parsed


def feasible(costs: Mapping[str, float], constraints: Iterable[Constraint]) -> bool:
    """True when every constraint holds (a metric missing from ``costs`` fails)."""
    return all(c.satisfied(costs) for c in constraints)


def violation(costs: Mapping[str, float], constraint: Constraint) -> float:
    """Relative violation ``max(0, U/C_u - 1)`` or ``max(0, C_l/U - 1)`` (EPNAS Eq. 3 exponent)."""
    used = float(costs.get(constraint.metric, math.inf))
    if constraint.op == "<=":
        return max(0.0, used / constraint.value - 1.0)
    if used <= 0:
        return math.inf
    return max(0.0, constraint.value / used - 1.0)


#: EPNAS's base penalty ``p_i`` (paper footnote 1: 0.9 for every constraint)
DEFAULT_REWARD_P = 0.9


def parse_reward_p(value: Any, field: str = "reward_p") -> float | dict[str, float]:
    """``reward_p``: one base in ``(0, 1]`` for every constraint, or a per-metric mapping
    (``{params: 0.5, intensity: 0.9}``; a metric left out uses :data:`DEFAULT_REWARD_P`)."""

    def base(number: Any, where: str) -> float:
        if (isinstance(number, bool) or not isinstance(number, (int, float))
                or not math.isfinite(number) or not 0.0 < number <= 1.0):
            raise NaswError(where, number, "a number in (0, 1]",
                            hint="EPNAS Eq. (2): the reward is multiplied by p per unit of "
                                 "relative violation (the paper uses 0.9)")
        return float(number)

    if isinstance(value, Mapping):
        out = {}
        for metric, number in value.items():
            if metric not in METRICS:
                raise NaswError(f"{field}.{metric}", number, METRICS)
            out[str(metric)] = base(number, f"{field}.{metric}")
        return out
    return base(value, field)


def soft_reward(accuracy: float, costs: Mapping[str, float], constraints: Iterable[Constraint],
                p: float | Mapping[str, float] = DEFAULT_REWARD_P) -> float:
    """EPNAS Eq. (2)-(3): ``r = P * prod_i p_i ** violation_i``.

    ``p`` is one base for every constraint or a per-metric mapping (a metric it leaves out
    uses :data:`DEFAULT_REWARD_P`). A feasible model keeps its accuracy as reward; every
    relative unit of violation multiplies the reward by ``p``.
    """
    reward = float(accuracy)
    for c in constraints:
        base = p.get(c.metric, DEFAULT_REWARD_P) if isinstance(p, Mapping) else p
        reward *= base ** violation(costs, c)
    return reward
