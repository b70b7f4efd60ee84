"""Search spaces behind a registry, modelled on timm's model registry.

Each space is a documented genotype grammar (see each module's docstring) plus the code that
decodes a genotype into a ``torch.nn.Module``. Genotypes are plain JSON dicts with a ``space``
key. The genotype logic (sample, validate, canonical, hash, costs, graph) needs no torch;
``build`` imports torch when called.

    from searchers.spaces import get_space
    space = get_space("mbconv", preset="ponas-cifar")
    g = space.sample(numpy.random.default_rng(0))
    model = space.build(g)               # input_shape/num_classes default to the preset's
    space.costs(g) == searchers.costs.measure(model, space.input_shape)   # exact
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from searchers.errors import GenotypeError, UnknownName

_SPACES: dict[str, str] = {
    "layerwise": "searchers.spaces.layerwise:LayerwiseSpace",
    "cell": "searchers.spaces.cell:CellSpace",
    "module": "searchers.epnas.module_space:ModuleSpace",
    "mbconv": "searchers.spaces.mbconv:MBConvSpace",
    "rcas": "searchers.spaces.rcas:RCASSpace",
}


class Space(abc.ABC):
    """A search space at one preset.

    Subclasses set ``name``, ``presets`` (name -> dict of settings, each with at least
    ``input_shape`` and ``num_classes``) and ``default_preset``, and implement the abstract
    methods. ``self.settings`` is the preset's dict with the constructor's overrides applied.
    """

    name: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    default_preset: ClassVar[str] = ""

    def __init__(self, preset: str | None = None, **overrides: Any) -> None:
        preset = preset or self.default_preset
        if preset not in self.presets:
            raise UnknownName("space.preset", preset, sorted(self.presets))
        unknown = set(overrides) - set(self.presets[preset])
        if unknown:
            key = sorted(unknown)[0]
            raise UnknownName(f"space.{key}", overrides[key], sorted(self.presets[preset]))
        self.preset = preset
        self.settings: dict[str, Any] = {**self.presets[preset], **overrides}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.settings["input_shape"])

    @property
    def num_classes(self) -> int:
        return int(self.settings["num_classes"])

    # -- genotype grammar (no torch) ------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: Any) -> dict[str, Any]:
        """A uniformly random valid genotype; ``rng`` is a ``numpy.random.Generator``."""

    @abc.abstractmethod
    def validate(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        """Return the genotype (normalised) or raise GenotypeError naming the bad field."""

    def canonical(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        """The representative of the genotype's equivalence class (default: validated form)."""
        return self.validate(genotype)

    def hash(self, genotype: Mapping[str, Any]) -> str:
        """Stable 16-hex-digit identity of the canonical genotype (dedup across runs)."""
        text = json.dumps(self.canonical(genotype), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @abc.abstractmethod
    def costs(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> dict[str, float]:
        """params, madds, flops, intensity without building the model; equal to ``measure``."""

    @abc.abstractmethod
    def graph(self, genotype: Mapping[str, Any]) -> Any:
        """A ``networkx.DiGraph`` of the architecture for drawing: nodes carry ``label`` and
        ``costs`` (dict) attributes, edges ``kind`` ("seq" or "skip")."""

    def features(self, genotype: Mapping[str, Any]) -> list[str]:
        """Tokens describing the genotype's choices (``"L3:k5e6"``), used by the synthetic
        objective and by predictors; default: one token per canonical item."""
        canon = self.canonical(genotype)
        return [f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(canon.items())]

    # -- modules (torch) ------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> Any:
        """Decode the genotype into a ``torch.nn.Module`` (imports torch)."""

    def _items(self, genotype: Mapping[str, Any], key: str, max_items: int, item: str,
               other_keys: tuple[str, ...] = ()) -> Sequence[Any]:
        """Check a genotype's envelope -- its space, no unknown keys, this preset, a list under
        ``key`` of 1..``max_items`` entries -- and return that list (spaces check the items)."""
        self._check_space(genotype)
        allowed = ["space", "preset", key, *other_keys]
        extra = set(genotype) - set(allowed)
        if extra:
            name = sorted(extra)[0]
            raise GenotypeError(f"genotype.{name}", genotype[name], allowed)
        preset = genotype.get("preset", self.preset)
        if preset != self.preset:
            raise GenotypeError("genotype.preset", preset, [self.preset])
        items = genotype.get(key)
        if not isinstance(items, Sequence) or isinstance(items, str | bytes):
            raise GenotypeError(f"genotype.{key}", items, f"a list of {item}")
        if not 1 <= len(items) <= max_items:
            raise GenotypeError(f"genotype.{key}", f"{len(items)} {key}", f"1..{max_items} {key}")
        return items

    def _check_space(self, genotype: Mapping[str, Any]) -> None:
        if not isinstance(genotype, Mapping):
            raise GenotypeError("genotype", type(genotype).__name__, "a mapping with a 'space' key")
        if genotype.get("space") != self.name:
            raise GenotypeError("genotype.space", genotype.get("space"), [self.name])


def space_names() -> list[str]:
    return sorted(_SPACES)


def space_class(name: str) -> type[Space]:
    if name not in _SPACES:
        raise UnknownName("space", name, space_names())
    module_name, attr = _SPACES[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def get_space(name: str, preset: str | None = None, **overrides: Any) -> Space:
    """``get_space("mbconv", preset="ponas-imagenet")``; preset defaults to a small one."""
    return space_class(name)(preset, **overrides)


def space_of(genotype: Mapping[str, Any]) -> Space:
    """The space (at the genotype's preset, if it names one) a genotype belongs to."""
    if not isinstance(genotype, Mapping) or "space" not in genotype:
        raise GenotypeError("genotype.space", None, space_names())
    return get_space(genotype["space"], genotype.get("preset"))


__all__ = ["Space", "get_space", "space_class", "space_names", "space_of"]
