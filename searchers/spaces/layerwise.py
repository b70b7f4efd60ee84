"""``layerwise``: the EPNAS layer-by-layer search space and its morph actions.

Grammar (decoded into modules like timm's ``_efficientnet_builder`` decodes its strings)::

    genotype := {"space": "layerwise", "preset": P, "layers": [layer, ...]}   1..max_layers
    layer    := {"op": OP, "kernel": K, "filters": F | null, "stride": S,
                 "src2": J, "merge": "add" | "concat", "activation": A}
    A        := preset ``activations`` (relu, crelu, elu, selu, swish; EPNAS Table 2), conv
                and sepconv layers only; the key is left out for relu, the default
    OP       := "conv" | "sepconv" | "maxpool" | "avgpool"        (preset ``ops``)
    K        := preset ``kernels`` ([1, 3, 5, 7])                   (filter / pooling width)
    F        := preset ``filters`` ([16, 32, 64, 96, 128, 256])     (null for pooling layers)
    S        := preset ``strides`` ([1, 2])
    J        := -1 (no skip) or the index of an earlier layer, 0 <= J < i

The model is ``stem -> layer 0 -> ... -> layer L-1 -> head``:

- stem: ``Conv3x3(c_in -> stem_filters) + BN``; head: ``ReLU -> global avg pool -> Linear``.
- ``conv``: ``ReLU -> Conv KxK stride S -> BN`` (EPNAS supplement §4: activation, convolution,
  batch-norm). ``sepconv``: ``ReLU -> depthwise KxK stride S -> pointwise 1x1 -> BN``.
  ``maxpool`` / ``avgpool``: ``KxK`` pooling, stride S, channels unchanged (``filters`` is
  null). Every op pads ``K // 2``, so a layer maps ``H`` to ``ceil(H / S)``.
- skip ("Src2"): if ``src2 = j >= 0``, the output of layer ``j`` is merged into layer ``i``'s
  output, by addition (``merge = "add"``) or channel concatenation (``"concat"``). Shape
  mismatches are resolved deterministically by a projection ``Conv1x1 stride P + BN`` on the
  skip path (ResNet's option-B shortcut), where ``P`` is the product of the strides of layers
  ``j+1..i`` (so ``ceil`` sizes always agree); it outputs the layer's channels for ``add`` and
  keeps the source's channels for ``concat``. No projection when shapes already match.

Choices where the paper is silent or ambiguous (all tested):

- Pooling widths share the odd kernel list instead of the paper's ``[2, 3]``: odd windows with
  ``K // 2`` padding keep every layer at ``ceil(H / S)``, which keeps skips well defined.
- The activation (Table 2) is searched for conv and sepconv layers, whose order is
  activation, convolution, batch-norm; ``crelu`` (``[relu(x), relu(-x)]``) doubles the
  channels the convolution reads. Pooling layers have none. ``relu`` is the default and is
  left out of the genotype, so networks written before the choice existed keep their hash.
- A fixed stem lets the first searched layer start with its activation like every other.

Morph actions (:class:`Action`, :func:`apply_action`, pure functions, always valid output):

- scale (supplement §2, 6 logits per group): the layers are split into ``F = scale_groups``
  (4, as in the paper) contiguous groups, layer ``i`` of ``L`` in group ``floor(i * F / L)``;
  a scale action moves every layer of one group one step up / keeps / one step down in the
  ``filters`` list and independently in the ``kernels`` list, clamped at the ends (pooling
  layers have no filters and only take the kernel step). A group with no layer (``L < F``)
  makes the action a no-op.
- insert at ``place`` (Src1; the policy draws it from ``L + 5`` values, places ``>= L``
  append): a new layer becomes index ``place``; skip indices of later layers are shifted.
  Its ``src2`` must be ``-1`` or ``< place``, anything else becomes ``-1`` (the paper's
  "Src2 = l means no skip"). At ``max_layers`` an insert is a no-op.
- remove at ``place``: skips that pointed at the removed layer now point at its input
  (``place - 1``, or no skip when ``place == 0``); later indices shift down. Removing the only
  layer, or a ``place >= L``, is a no-op.
- keep: returns the genotype unchanged.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from searchers.errors import GenotypeError
from searchers.spaces import Space
from searchers.spaces import _layerwise_cell_costs as C

OPS_WITH_FILTERS = ("conv", "sepconv")
POOL_OPS = ("maxpool", "avgpool")
ALL_OPS = OPS_WITH_FILTERS + POOL_OPS
MERGES = ("add", "concat")
LAYER_KEYS = ("op", "kernel", "filters", "stride", "src2", "merge", "activation")
ACTIVATIONS = ("relu", "crelu", "elu", "selu", "swish")  # EPNAS Table 2
SCALE_STEPS = ("up", "keep", "down")  # the paper's logit order
INSERT_KINDS = ("insert", "keep", "remove")  # the paper's logit order


@dataclass(frozen=True)
class Action:
    """One EPNAS morph action; build with the ``scale``/``insert``/``remove``/``keep``
    constructors. Scale steps are ``+1`` (up), ``0`` (keep), ``-1`` (down)."""

    kind: str  # "scale" | "insert" | "remove" | "keep"
    group: int = 0
    filter_step: int = 0
    kernel_step: int = 0
    place: int = 0
    layer: Mapping[str, Any] | None = field(default=None, hash=False, compare=True)

    @classmethod
    def scale(cls, group: int, filter_step: int = 0, kernel_step: int = 0) -> Action:
        return cls("scale", group=group, filter_step=filter_step, kernel_step=kernel_step)

    @classmethod
    def insert(cls, place: int, op: str = "conv", kernel: int = 3, filters: int | None = None,
               stride: int = 1, src2: int = -1, merge: str = "add",
               activation: str = "relu") -> Action:
        """Insert a layer at ``place``; values off the preset's lists snap to the nearest
        entry (``filters=None`` on a conv: the smallest filter count)."""
        layer = {"op": op, "kernel": kernel, "filters": filters, "stride": stride,
                 "src2": src2, "merge": merge, "activation": activation}
        return cls("insert", place=place, layer=layer)

    @classmethod
    def remove(cls, place: int) -> Action:
        return cls("remove", place=place)

    @classmethod
    def keep(cls) -> Action:
        return cls("keep")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "group": self.group, "filter_step": self.filter_step,
                "kernel_step": self.kernel_step, "place": self.place,
                "layer": dict(self.layer) if self.layer is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Action:
        layer = data.get("layer")
        return cls(kind=data["kind"], group=int(data.get("group", 0)),
                   filter_step=int(data.get("filter_step", 0)),
                   kernel_step=int(data.get("kernel_step", 0)),
                   place=int(data.get("place", 0)),
                   layer=dict(layer) if layer is not None else None)


@dataclass(frozen=True)
class ActionSpace:
    """Sizes of the EPNAS policy's output heads for one genotype (supplement §2).

    Scale head: ``num_groups`` groups x (3 filter logits + 3 kernel logits), in
    ``SCALE_STEPS`` order. Insert head: 3 kind logits (``INSERT_KINDS``), ``num_places``
    (= L + 5) place logits, ``place + 1`` src2 logits for a chosen place (index ``place`` means
    no skip), then one logit per entry of ``ops``, ``filters``, ``kernels``, ``strides``,
    ``merges``, ``activations``.
    """

    num_layers: int
    max_layers: int
    num_groups: int
    num_places: int
    ops: tuple[str, ...]
    kernels: tuple[int, ...]
    filters: tuple[int, ...]
    strides: tuple[int, ...]
    merges: tuple[str, ...]
    activations: tuple[str, ...] = ("relu",)
    scale_steps: tuple[str, ...] = SCALE_STEPS
    insert_kinds: tuple[str, ...] = INSERT_KINDS

    def src2_choices(self, place: int) -> int:
        """Number of Src2 logits for an insert at ``place``: ``0..place-1`` plus "none"."""
        return min(place, self.num_layers) + 1


class LayerwiseSpace(Space):
    """EPNAS layer-by-layer search: a chain of conv/pool layers with optional skips."""

    name: ClassVar[str] = "layerwise"
    default_preset: ClassVar[str] = "epnas-digits"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # EPNAS Table 2 (CIFAR-10 layer-by-layer search space), 32x32x3.
        "epnas-cifar": {
            "input_shape": (3, 32, 32), "num_classes": 10,
            "ops": list(ALL_OPS), "kernels": [1, 3, 5, 7],
            "filters": [16, 32, 64, 96, 128, 256], "strides": [1, 2],
            "merges": list(MERGES), "activations": list(ACTIVATIONS), "max_layers": 24,
            "sample_layers": (4, 16),
            "stem_filters": 32, "scale_groups": 4, "skip_prob": 0.3, "downsample_prob": 0.15,
        },
        # Same grammar scaled down to 1x8x8 digits (CPU tests, tiny proxies).
        "epnas-digits": {
            "input_shape": (1, 8, 8), "num_classes": 10,
            "ops": list(ALL_OPS), "kernels": [1, 3, 5, 7],
            "filters": [4, 8, 12, 16, 24, 32], "strides": [1, 2],
            # relu only: with Table 2's five activations the digits policy, ten updates long,
            # found the first feasible network later than random search (docs/epnas.md)
            "merges": list(MERGES), "activations": ["relu"], "max_layers": 8,
            "sample_layers": (1, 6),
            "stem_filters": 8, "scale_groups": 4, "skip_prob": 0.3, "downsample_prob": 0.2,
        },
    }

    # -- grammar -------------------------------------------------------------------------
    @property
    def max_layers(self) -> int:
        return int(self.settings["max_layers"])

    def initial(self) -> dict[str, Any]:
        """The EPNAS starting network: one 3x3 conv with the second-smallest filter count."""
        filters = self.settings["filters"]
        return self.validate({"space": self.name, "preset": self.preset, "layers": [
            {"op": "conv", "kernel": 3, "filters": filters[min(1, len(filters) - 1)],
             "stride": 1, "src2": -1, "merge": "add"}]})

    def sample(self, rng: Any) -> dict[str, Any]:
        """A random network: depth uniform in ``sample_layers``, op/kernel/filters/merge
        uniform, stride 2 with ``downsample_prob`` and a skip from a uniformly chosen earlier
        layer with ``skip_prob`` (uniform strides and skips would give mostly 1x1 maps and
        dense skips, unlike the networks EPNAS grows)."""
        s = self.settings
        low, high = s["sample_layers"]
        n_layers = int(rng.integers(low, min(high, self.max_layers) + 1))
        layers = []
        for i in range(n_layers):
            op = str(s["ops"][int(rng.integers(len(s["ops"])))])
            layers.append({
                "op": op,
                "kernel": int(s["kernels"][int(rng.integers(len(s["kernels"])))]),
                "filters": (int(s["filters"][int(rng.integers(len(s["filters"])))])
                            if op in OPS_WITH_FILTERS else None),
                "stride": (max(s["strides"]) if rng.random() < s["downsample_prob"]
                           else min(s["strides"])),
                "src2": (int(rng.integers(i)) if i > 0 and rng.random() < s["skip_prob"]
                         else -1),
                "merge": str(s["merges"][int(rng.integers(len(s["merges"])))]),
            })
            activations = s.get("activations", ["relu"])
            if op in OPS_WITH_FILTERS and len(activations) > 1:
                layers[-1]["activation"] = str(activations[int(rng.integers(len(activations)))])
        return self.validate({"space": self.name, "preset": self.preset, "layers": layers})

    def validate(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        s = self.settings
        layers = self._items(genotype, "layers", self.max_layers, "layer dicts")
        out = []
        for i, layer in enumerate(layers):
            where = f"genotype.layers[{i}]"
            if not isinstance(layer, Mapping):
                raise GenotypeError(where, layer, "a dict with keys " + ", ".join(LAYER_KEYS))
            unknown = set(layer) - set(LAYER_KEYS)
            if unknown:
                key = sorted(unknown)[0]
                raise GenotypeError(f"{where}.{key}", layer[key], LAYER_KEYS)
            op = _choice(layer, "op", s["ops"], where)
            kernel = _choice(layer, "kernel", s["kernels"], where)
            stride = _choice(layer, "stride", s["strides"], where)
            if op in OPS_WITH_FILTERS:
                filters = _choice(layer, "filters", s["filters"], where)
            else:
                filters = layer.get("filters")
                if filters is not None and filters not in s["filters"]:
                    raise GenotypeError(f"{where}.filters", filters,
                                        ["null"] + list(s["filters"]))
                filters = None
            src2 = layer.get("src2", -1)
            if not _is_int(src2) or not -1 <= src2 < i:
                raise GenotypeError(f"{where}.src2", src2,
                                    "-1 (no skip)" + (f" or 0..{i - 1}" if i else ""))
            merge = layer.get("merge", "add")
            if merge not in s["merges"]:
                raise GenotypeError(f"{where}.merge", merge, s["merges"])
            activation = layer.get("activation", "relu")
            allowed = s.get("activations", ["relu"])
            if op in OPS_WITH_FILTERS and activation not in allowed:
                raise GenotypeError(f"{where}.activation", activation, allowed)
            entry = {"op": op, "kernel": int(kernel),
                     "filters": None if filters is None else int(filters),
                     "stride": int(stride), "src2": int(src2),
                     "merge": merge if src2 >= 0 else "add"}
            if op in OPS_WITH_FILTERS and activation != "relu":
                entry["activation"] = activation
            out.append(entry)
        return {"space": self.name, "preset": self.preset, "layers": out}

    def features(self, genotype: Mapping[str, Any]) -> list[str]:
        """One token per layer (``L3:sepconv:k5:f64:s1``), one per skip
        (``L3:skip-2:add``: a skip from two layers back) and the depth."""
        g = self.validate(genotype)
        tokens = [f"depth={len(g['layers'])}"]
        for i, layer in enumerate(g["layers"]):
            filters = layer["filters"] if layer["filters"] is not None else "-"
            token = f"L{i}:{layer['op']}:k{layer['kernel']}:f{filters}:s{layer['stride']}"
            if "activation" in layer:  # relu layers keep the token they always had
                token += f":{layer['activation']}"
            tokens.append(token)
            if layer["src2"] >= 0:
                tokens.append(f"L{i}:skip-{i - layer['src2']}:{layer['merge']}")
        return tokens

    # -- shapes, plan and costs ----------------------------------------------------------
    def shapes(self, genotype: Mapping[str, Any],
               input_shape: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
        """Per layer: input/output channels and sizes, skip projection and merge details."""
        g = self.validate(genotype)
        _, h, w = tuple(input_shape or self.input_shape)
        stem = int(self.settings["stem_filters"])
        outs: list[tuple[int, int, int]] = []  # (channels, h, w) after each layer
        strides: list[int] = []
        info = []
        prev = (stem, h, w)
        for layer in g["layers"]:
            c, hi, wi = prev
            k, s = layer["kernel"], layer["stride"]
            ho, wo = C.conv_out(hi, k, s, k // 2), C.conv_out(wi, k, s, k // 2)
            c_main = layer["filters"] if layer["op"] in OPS_WITH_FILTERS else c
            entry: dict[str, Any] = {"in": (c, hi, wi), "main": (c_main, ho, wo),
                                     "proj": None, "skip_stride": 1}
            c_out = c_main
            if layer["src2"] >= 0:
                j = layer["src2"]
                cj, hj, wj = outs[j]
                stride = math.prod(strides[j + 1:]) * s
                c_skip = c_main if layer["merge"] == "add" else cj
                if stride != 1 or c_skip != cj:
                    entry["proj"] = (cj, c_skip, stride, (hj, wj))
                entry["skip_stride"] = stride
                entry["skip"] = (c_skip, ho, wo)
                if layer["merge"] == "concat":
                    c_out = c_main + c_skip
            entry["out"] = (c_out, ho, wo)
            info.append(entry)
            outs.append(entry["out"])
            strides.append(s)
            prev = entry["out"]
        return info

    def plan(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
             num_classes: int | None = None) -> list[tuple[str, list[C.OpRecord]]]:
        """The leaf ops of the built model, grouped by graph node (stem, L0.., head)."""
        g = self.validate(genotype)
        c_in, h, w = tuple(input_shape or self.input_shape)
        n_classes = int(num_classes or self.num_classes)
        stem = int(self.settings["stem_filters"])
        nodes: list[tuple[str, list[C.OpRecord]]] = [
            ("stem", [C.conv(c_in, stem, (3, 3), (1, 1), 1, (h, w), (h, w)),
                      C.batchnorm(stem, (h, w))])]
        for i, (layer, sh) in enumerate(zip(g["layers"], self.shapes(g, input_shape))):
            c_layer, hi, wi = sh["in"]
            c_main, ho, wo = sh["main"]
            k, s = layer["kernel"], layer["stride"]
            act = layer.get("activation", "relu")
            c = c_layer * (2 if act == "crelu" else 1)  # what the convolution reads
            records: list[C.OpRecord] = []
            if layer["op"] == "conv":
                records += [C.activation(act, c_layer, (hi, wi)),
                            C.conv(c, c_main, (k, k), (s, s), 1, (hi, wi), (ho, wo)),
                            C.batchnorm(c_main, (ho, wo))]
            elif layer["op"] == "sepconv":
                records += [C.activation(act, c_layer, (hi, wi)),
                            C.conv(c, c, (k, k), (s, s), c, (hi, wi), (ho, wo)),
                            C.conv(c, c_main, (1, 1), (1, 1), 1, (ho, wo), (ho, wo)),
                            C.batchnorm(c_main, (ho, wo))]
            else:
                records.append(C.pool(layer["op"], c_layer, k, s, (hi, wi), (ho, wo)))
            if layer["src2"] >= 0:
                if sh["proj"] is not None:
                    cj, c_skip, stride, hwj = sh["proj"]
                    records += [C.conv(cj, c_skip, (1, 1), (stride, stride), 1, hwj, (ho, wo)),
                                C.batchnorm(c_skip, (ho, wo))]
                if layer["merge"] == "add":
                    records.append(C.add(c_main, (ho, wo)))
                else:
                    records.append(C.concat(sh["out"][0], (ho, wo)))
            nodes.append((f"L{i}", records))
        c_last, h_last, w_last = (self.shapes(g, input_shape)[-1]["out"])
        nodes.append(("head", [C.relu(c_last, (h_last, w_last)),
                               C.global_avgpool(c_last, (h_last, w_last)),
                               C.linear(c_last, n_classes)]))
        return nodes

    def costs(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> dict[str, float]:
        nodes = self.plan(genotype, input_shape, num_classes)
        return C.total_costs(r for _, records in nodes for r in records)

    def graph(self, genotype: Mapping[str, Any]) -> Any:
        """Chain ``input -> stem -> L0 -> ... -> head`` with ``skip`` arcs ``Lj -> Li``."""
        import networkx as nx

        g = self.validate(genotype)
        plan = dict(self.plan(g))
        shapes = self.shapes(g)
        graph = nx.DiGraph()
        c_in, h, w = self.input_shape
        graph.add_node("input", label=f"input {c_in}x{h}x{w}", costs=C.total_costs([]))
        graph.add_node("stem", label=f"stem conv3x3 {self.settings['stem_filters']}",
                       costs=C.total_costs(plan["stem"]))
        graph.add_edge("input", "stem", kind="seq")
        prev = "stem"
        for i, (layer, sh) in enumerate(zip(g["layers"], shapes)):
            node = f"L{i}"
            c, ho, wo = sh["out"]
            k = layer["kernel"]
            label = f"{layer['op']} {k}x{k}"
            if layer["filters"] is not None:
                label += f" {layer['filters']}"
            if layer["stride"] > 1:
                label += f" /{layer['stride']}"
            graph.add_node(node, label=label, costs=C.total_costs(plan[node]),
                           shape=(c, ho, wo), **{k2: v for k2, v in layer.items()})
            graph.add_edge(prev, node, kind="seq")
            if layer["src2"] >= 0:
                graph.add_edge(f"L{layer['src2']}", node, kind="skip", merge=layer["merge"])
            prev = node
        graph.add_node("head", label=f"gap + linear {self.num_classes}",
                       costs=C.total_costs(plan["head"]))
        graph.add_edge(prev, "head", kind="seq")
        return graph

    def build(self, genotype: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> Any:
        from searchers.spaces._layerwise_modules import LayerwiseNet

        g = self.validate(genotype)
        shape = tuple(input_shape or self.input_shape)
        return LayerwiseNet(g["layers"], self.shapes(g, shape), shape[0],
                            int(self.settings["stem_filters"]),
                            int(num_classes or self.num_classes))

    # -- morph actions -------------------------------------------------------------------
    def groups(self, genotype: Mapping[str, Any]) -> list[list[int]]:
        """Layer indices of each of the ``scale_groups`` contiguous scale groups."""
        n = len(genotype["layers"])
        f = int(self.settings["scale_groups"])
        groups: list[list[int]] = [[] for _ in range(f)]
        for i in range(n):
            groups[i * f // n].append(i)
        return groups

    def action_space(self, genotype: Mapping[str, Any]) -> ActionSpace:
        g = self.validate(genotype)
        s = self.settings
        return ActionSpace(num_layers=len(g["layers"]), max_layers=self.max_layers,
                           num_groups=int(s["scale_groups"]),
                           num_places=len(g["layers"]) + 5, ops=tuple(s["ops"]),
                           kernels=tuple(s["kernels"]), filters=tuple(s["filters"]),
                           strides=tuple(s["strides"]), merges=tuple(s["merges"]),
                           activations=tuple(s.get("activations", ["relu"])))

    def decode_scale(self, group: int, filter_choice: int, kernel_choice: int) -> Action:
        """Scale action from the two 3-way choices of one group (index into SCALE_STEPS)."""
        steps = {0: 1, 1: 0, 2: -1}
        return Action.scale(group, steps[int(filter_choice)], steps[int(kernel_choice)])

    def decode_insert(self, genotype: Mapping[str, Any], kind: int, place: int, src2: int,
                      op: int, filters: int, kernel: int, stride: int = 0,
                      merge: int = 0, activation: int = 0) -> Action:
        """Insert/keep/remove action from the insert head's choices (indices). ``src2``
        equal to the (clamped) place means no skip, as in the supplement."""
        space = self.action_space(genotype)
        what = INSERT_KINDS[int(kind)]
        if what == "keep":
            return Action.keep()
        if what == "remove":
            return Action.remove(int(place))
        where = min(int(place), space.num_layers)
        return Action.insert(int(place), op=space.ops[int(op)], kernel=space.kernels[int(kernel)],
                             filters=space.filters[int(filters)], stride=space.strides[int(stride)],
                             src2=-1 if int(src2) >= where else int(src2),
                             merge=space.merges[int(merge)],
                             activation=space.activations[int(activation)])

    def apply_action(self, genotype: Mapping[str, Any], action: Action) -> dict[str, Any]:
        """The genotype after ``action``: always valid; invalid actions are no-ops."""
        g = self.validate(genotype)
        layers = copy.deepcopy(g["layers"])
        s = self.settings
        if action.kind == "keep":
            return g
        if action.kind == "scale":
            groups = self.groups(g)
            if not 0 <= action.group < len(groups):
                return g
            for i in groups[action.group]:
                layer = layers[i]
                layer["kernel"] = _step(s["kernels"], layer["kernel"], action.kernel_step)
                if layer["filters"] is not None:
                    layer["filters"] = _step(s["filters"], layer["filters"], action.filter_step)
        elif action.kind == "insert":
            if len(layers) >= self.max_layers or action.layer is None:
                return g
            place = max(0, min(int(action.place), len(layers)))
            new = dict(action.layer)
            op = new.get("op")
            if op not in s["ops"]:
                return g
            new["kernel"] = _nearest(s["kernels"], new.get("kernel", s["kernels"][0]))
            new["stride"] = _nearest(s["strides"], new.get("stride", min(s["strides"])))
            new["filters"] = (_nearest(s["filters"], new.get("filters") or s["filters"][0])
                              if op in OPS_WITH_FILTERS else None)
            src2 = new.get("src2", -1)
            new["src2"] = src2 if _is_int(src2) and 0 <= src2 < place else -1
            new["merge"] = new.get("merge", "add") if new.get("merge") in s["merges"] else "add"
            if new.get("activation") not in s.get("activations", ["relu"]):
                new["activation"] = "relu"
            for layer in layers[place:]:
                if layer["src2"] >= place:
                    layer["src2"] += 1
            layers.insert(place, {k: new[k] for k in LAYER_KEYS if k in new})
        elif action.kind == "remove":
            place = int(action.place)
            if len(layers) <= 1 or not 0 <= place < len(layers):
                return g
            del layers[place]
            for layer in layers[place:]:
                if layer["src2"] == place:
                    layer["src2"] = place - 1
                elif layer["src2"] > place:
                    layer["src2"] -= 1
        else:
            return g
        return self.validate({"space": self.name, "preset": self.preset, "layers": layers})

    def apply_actions(self, genotype: Mapping[str, Any],
                      actions: Sequence[Action]) -> dict[str, Any]:
        """Apply actions in order (one EPNAS step: F scale actions, then one insert)."""
        g = self.validate(genotype)
        for action in actions:
            g = self.apply_action(g, action)
        return g


def apply_action(genotype: Mapping[str, Any], action: Action) -> dict[str, Any]:
    """Module-level form of :meth:`LayerwiseSpace.apply_action` for the genotype's preset."""
    return LayerwiseSpace(genotype.get("preset")).apply_action(genotype, action)


def _is_int(value: Any) -> bool:
    """An integer, numpy integers included (genotypes built from ``rng`` draws), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _choice(layer: Mapping[str, Any], key: str, allowed: Sequence[Any], where: str) -> Any:
    value = layer.get(key)
    if isinstance(value, bool) or value not in allowed:
        raise GenotypeError(f"{where}.{key}", value, allowed)
    return value


def _step(options: Sequence[int], value: int, step: int) -> int:
    i = list(options).index(value)
    return int(options[max(0, min(len(options) - 1, i + int(step)))])


def _nearest(options: Sequence[int], value: Any) -> int:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return int(options[0])
    return int(min(options, key=lambda o: (abs(o - value), o)))


__all__ = ["Action", "ActionSpace", "LayerwiseSpace", "apply_action"]
