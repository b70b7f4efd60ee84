"""Shared machinery of the chain spaces (``mbconv``, ``rcas``): a fixed stem, L searchable
positions each taking one of C options, a fixed head.

Because every position has fixed input/output widths and resolution whatever is chosen at the
other positions, the cost of a genotype is *additive*: ``base + sum_l table[l, choice_l]``.
:meth:`ChainSpace.cost_tables` exposes that table (PONAS specialisation, RCAS budgets) and
:meth:`ChainSpace.costs` uses it, without building a model.
"""

from __future__ import annotations

import abc
import json
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from searchers.costs import METRICS, LayerCost, with_intensity
from searchers.errors import GenotypeError, NaswError
from searchers.spaces import Space


@dataclass(frozen=True)
class CostPlan:
    """Exact integer costs of every piece of the network at one input shape / class count."""

    stem: LayerCost
    head: LayerCost
    table: tuple[tuple[LayerCost, ...], ...]  # [position][option]
    # fixed (non-searchable) layers between positions: (before_position, node, label, cost)
    fixed: tuple[tuple[int, str, str, LayerCost], ...] = ()

    @property
    def base(self) -> LayerCost:
        cost = self.stem + self.head
        for _, _, _, fixed_cost in self.fixed:
            cost = cost + fixed_cost
        return cost


_PLAN_CACHE: dict[str, CostPlan] = {}


class ChainSpace(Space):
    """A :class:`Space` whose genotype is ``{"space", "preset", <field>: [int] * L}``."""

    field: ClassVar[str] = "choices"

    # -- what a subclass provides ----------------------------------------------------------
    @property
    @abc.abstractmethod
    def num_positions(self) -> int:
        """L: the number of searchable positions at this preset."""

    @property
    @abc.abstractmethod
    def num_options(self) -> int:
        """C: the number of options per position (the table's columns)."""

    @abc.abstractmethod
    def option_label(self, option: int) -> str:
        """Short name of an option, used in features and graph labels (``k5e6se``)."""

    @abc.abstractmethod
    def _cost_plan(self, input_shape: tuple[int, int, int], num_classes: int) -> CostPlan:
        """Analytic costs of stem, head and every (position, option) pair."""

    @abc.abstractmethod
    def _position_info(self, position: int) -> dict[str, Any]:
        """``c_in``, ``c_out``, ``stride`` of a position (graph labels, docs)."""

    @abc.abstractmethod
    def _has_residual(self, position: int, option: int) -> bool:
        """Whether this option at this position adds its input to its output."""

    def _allowed_text(self) -> str:
        return f"integers 0..{self.num_options - 1}"

    # -- genotype grammar -----------------------------------------------------------------
    def sample(self, rng: Any) -> dict[str, Any]:
        picks = rng.integers(0, self.num_options, size=self.num_positions)
        return self._genotype([int(c) for c in picks])

    def _genotype(self, picks: Sequence[int]) -> dict[str, Any]:
        return {"space": self.name, "preset": self.preset, self.field: [int(c) for c in picks]}

    def validate(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        self._check_space(genotype)
        preset = genotype.get("preset", self.preset)
        if preset != self.preset:
            raise GenotypeError("genotype.preset", preset, [self.preset],
                                hint="use the space of the genotype's preset")
        allowed_keys = {"space", "preset", self.field}
        extra = sorted(set(genotype) - allowed_keys)
        if extra:
            raise GenotypeError(f"genotype.{extra[0]}", genotype[extra[0]], sorted(allowed_keys))
        picks = genotype.get(self.field)
        if isinstance(picks, (str, bytes)) or not isinstance(picks, Sequence):
            raise GenotypeError(f"genotype.{self.field}", picks,
                                f"a list of {self.num_positions} {self._allowed_text()}")
        if len(picks) != self.num_positions:
            raise GenotypeError(f"genotype.{self.field}", f"{len(picks)} entries",
                                f"exactly {self.num_positions} entries (preset {self.preset})")
        options = self.num_options
        for index, pick in enumerate(picks):
            if type(pick) is int and 0 <= pick < options:
                continue  # the common case, checked fast
            if (isinstance(pick, bool) or not isinstance(pick, numbers.Integral)
                    or not 0 <= int(pick) < options):
                raise GenotypeError(f"genotype.{self.field}[{index}]", pick, self._allowed_text())
        return self._genotype(picks)

    def picks(self, genotype: Mapping[str, Any]) -> list[int]:
        """The validated option index of every position."""
        return self.validate(genotype)[self.field]

    def features(self, genotype: Mapping[str, Any]) -> list[str]:
        """One token per position: ``"L3:k5e6se"`` (mbconv), ``"P3:b5"`` / ``"P3:empty"``."""
        return [f"{self._token_prefix}{i}:{self.option_label(c)}"
                for i, c in enumerate(self.picks(genotype))]

    _token_prefix: ClassVar[str] = "L"

    # -- costs ----------------------------------------------------------------------------
    def _shape_and_classes(self, input_shape: Sequence[int] | None,
                           num_classes: int | None) -> tuple[tuple[int, int, int], int]:
        values = [int(v) for v in (input_shape or self.input_shape)]
        if len(values) != 3 or min(values) < 1:
            raise NaswError("input_shape", values, "three positive integers (C, H, W)")
        classes = int(num_classes or self.num_classes)
        if classes < 1:
            raise NaswError("num_classes", classes, "a positive integer")
        return (values[0], values[1], values[2]), classes

    def cost_plan(self, input_shape: Sequence[int] | None = None,
                  num_classes: int | None = None) -> CostPlan:
        """The cached :class:`CostPlan` for this preset (with overrides), shape and classes."""
        shape, classes = self._shape_and_classes(input_shape, num_classes)
        own = self.__dict__.setdefault("_plans", {})
        plan = own.get((shape, classes))
        if plan is None:
            key = json.dumps([self.name, self.preset, self.settings, shape, classes],
                             sort_keys=True, default=str)
            plan = _PLAN_CACHE.get(key)
            if plan is None:
                plan = self._cost_plan(shape, classes)
                _PLAN_CACHE[key] = plan
            own[(shape, classes)] = plan
        return plan

    def cost_tables(self, input_shape: Sequence[int] | None = None,
                    num_classes: int | None = None) -> tuple[dict[str, float], dict[str, Any]]:
        """``(base, tables)``: base (stem + head) per metric, and an (L, C) numpy array per
        metric (params, madds, flops, bytes) with the cost of option c at position l."""
        import numpy as np

        plan = self.cost_plan(input_shape, num_classes)
        base = {metric: float(getattr(plan.base, metric)) for metric in METRICS}
        tables = {metric: np.array([[float(getattr(cost, metric)) for cost in row]
                                    for row in plan.table], dtype=np.float64)
                  for metric in METRICS}
        return base, tables

    def costs(self, genotype: Mapping[str, Any], input_shape: Sequence[int] | None = None,
              num_classes: int | None = None) -> dict[str, float]:
        plan = self.cost_plan(input_shape, num_classes)
        base = plan.base
        params, madds, flops, accessed = base.params, base.madds, base.flops, base.bytes
        for position, option in enumerate(self.picks(genotype)):
            cost = plan.table[position][option]
            params += cost.params
            madds += cost.madds
            flops += cost.flops
            accessed += cost.bytes
        return LayerCost(params, madds, flops, accessed).as_dict()

    # -- graph ----------------------------------------------------------------------------
    def graph(self, genotype: Mapping[str, Any]) -> Any:
        """``stem -> (fixed layers, chosen blocks, add nodes for residuals) -> head``; node
        ``costs`` sum to :meth:`costs` (an add node's cost is part of its block's node); empty
        positions (identities) have no node."""
        import networkx as nx

        picks = self.picks(genotype)
        plan = self.cost_plan()
        fixed_before: dict[int, list[tuple[str, str, LayerCost]]] = {}
        for before, node, label, cost in plan.fixed:
            fixed_before.setdefault(before, []).append((node, label, cost))
        g = nx.DiGraph()
        g.add_node("stem", label=self._stem_label(), costs=plan.stem.as_dict())
        previous = "stem"
        for position, option in enumerate([*picks, None]):
            for node, label, cost in fixed_before.get(position, []):
                g.add_node(node, label=label, costs=cost.as_dict())
                g.add_edge(previous, node, kind="seq")
                previous = node
            if option is None or self._is_empty(option):
                continue
            info = self._position_info(position)
            node = f"{self._token_prefix}{position}"
            label = (f"{node} {self.option_description(option)} {info['c_in']}->{info['c_out']}"
                     + (f" s{info['stride']}" if info["stride"] != 1 else ""))
            g.add_node(node, label=label, costs=plan.table[position][option].as_dict(),
                       position=position, option=option)
            g.add_edge(previous, node, kind="seq")
            if self._has_residual(position, option):
                add = f"{node}.add"
                g.add_node(add, label="add", costs=with_intensity(dict.fromkeys(METRICS, 0)))
                g.add_edge(node, add, kind="seq")
                g.add_edge(previous, add, kind="skip")
                node = add
            previous = node
        g.add_node("head", label=self._head_label(), costs=plan.head.as_dict())
        g.add_edge(previous, "head", kind="seq")
        return g

    def _is_empty(self, option: int) -> bool:
        return False

    def option_description(self, option: int) -> str:
        """Longer name of an option for graph labels (default: :meth:`option_label`)."""
        return self.option_label(option)

    def _stem_label(self) -> str:
        return "stem"

    def _head_label(self) -> str:
        """``conv1x1 C + avgpool + FC`` (the 1x1 conv only where the preset has a head width)."""
        c_head = self.settings.get("head_channels")
        return (f"conv1x1 {c_head} + " if c_head else "") + "avgpool + FC"
