"""The ``synthetic`` evaluator: an instant, deterministic stand-in for proxy training.

Searchers are tested, and their sample efficiency measured, against a function of the
genotype that behaves like proxy accuracy without training anything. It has the structure
that makes NAS non-trivial:

* **per-choice effects** -- each feature token of ``space.features(g)`` (``"L3:k5e6"``) adds a
  fixed, arbitrary amount, so some choices are simply better than others;
* **interactions** -- each pair of adjacent tokens adds its own amount, so choices cannot be
  optimised one at a time (a layer-wise greedy search is good, not exact);
* **diminishing returns in capacity** -- bigger models (params, MAdds from ``space.costs``) score
  higher, but with a concave, saturating gain, so a resource constraint is a real trade-off;
* **seeded noise** -- small Gaussian noise from the training seed, like re-running training.

The formula (all logarithms natural)::

    w(x)    = 2 * u(sha256(space.name + "|" + x)) - 1        in [-1, 1]  (u: first 8 bytes / 2^64)
    tok     = tanh( sum_i w(t_i) / sqrt(n) )                 t_1..t_n = space.features(g)
    pair    = tanh( sum_i w(t_i + " & " + t_(i+1)) / sqrt(n - 1) )     (0 when n < 2)
    hill(r) = r / (1 + r)                                    concave in r, hill(1) = 1/2
    cap     = (hill(params / P_ref) + hill(madds / M_ref)) / 2
    acc     = clip(0.45 + 0.40 * cap + 0.08 * tok + 0.04 * pair + noise, 0.01, 0.99)
    noise   ~ Normal(0, noise_sd = 0.002), drawn from SeedSequence([seed, hash(g)])

``P_ref`` / ``M_ref`` are the median params / MAdds of 32 genotypes sampled from the same space
and preset with a fixed generator (seed 20240531), at the job's input shape and class count:
capacity is judged relative to the space, so every preset -- 8x8 digits to 224x224 ImageNet --
gets the same spread of values (roughly 0.5-0.9, median model about 0.65). The scales make
capacity the largest single factor (rank correlation of params and value about 0.7 on a
six-layer LUT space) while the choice effects still reorder models of equal size. Choosing the space's own
median as the reference is our choice (the design only asks for "diminishing returns"); it keeps
the function meaningful for spaces whose absolute sizes differ by 1000x.

Token weights come from SHA-256, never Python's ``hash()`` (salted per process), so values are
identical across processes, machines and Python versions. ``seed`` enters only through the noise
term: two seeds give values that differ by the noise alone.

Importing this module does not import torch; neither does evaluating it, provided the space's
``features``/``costs``/``sample`` are torch-free (they are, by the Space contract).
"""

from __future__ import annotations

import hashlib
import math
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from searchers.base import Job, Result

#: Offsets and scales of the formula above (documented in the module docstring).
BASE_ACCURACY = 0.45
CAPACITY_SCALE = 0.40
TOKEN_SCALE = 0.08
PAIR_SCALE = 0.04
DEFAULT_NOISE_SD = 0.002
ACCURACY_FLOOR, ACCURACY_CEILING = 0.01, 0.99
REFERENCE_SAMPLES = 32
REFERENCE_SEED = 20240531

_reference_cache: dict[tuple[Any, ...], tuple[float, float]] = {}


def token_weight(namespace: str, token: str) -> float:
    """A stable pseudo-random weight in [-1, 1] for ``token`` (SHA-256, process-independent)."""
    digest = hashlib.sha256(f"{namespace}|{token}".encode()).digest()
    return 2.0 * (int.from_bytes(digest[:8], "big") / 2.0**64) - 1.0


def hill(ratio: float) -> float:
    """Saturating capacity gain: r / (1 + r); 0 at r=0, 1/2 at r=1, -> 1 as r grows.

    Concave in ``r`` everywhere, so each extra parameter is worth less than the previous one.
    """
    ratio = max(ratio, 0.0)
    return ratio / (1.0 + ratio)


def _space_for(genotype: Mapping[str, Any], space: Any | None) -> Any:
    if space is not None:
        return space
    from searchers.spaces import space_of

    return space_of(genotype)


def _shape_and_classes(space: Any, input_shape: Sequence[int] | None,
                       num_classes: int | None) -> tuple[tuple[int, ...], int]:
    shape = tuple(int(v) for v in (input_shape or space.input_shape))
    return shape, int(num_classes or space.num_classes)


def capacity_reference(space: Any, input_shape: Sequence[int] | None = None,
                       num_classes: int | None = None) -> tuple[float, float]:
    """(P_ref, M_ref): median params and MAdds of the space's fixed reference sample (cached)."""
    import numpy as np

    shape, classes = _shape_and_classes(space, input_shape, num_classes)
    settings = repr(sorted((k, repr(v)) for k, v in getattr(space, "settings", {}).items()))
    key = (type(space).__module__, type(space).__qualname__, space.name,
           getattr(space, "preset", None), settings, shape, classes)
    if key not in _reference_cache:
        rng = np.random.default_rng(REFERENCE_SEED)
        params, madds = [], []
        for _ in range(REFERENCE_SAMPLES):
            costs = space.costs(space.sample(rng), shape, classes)
            params.append(float(costs.get("params", 0.0)))
            madds.append(float(costs.get("madds", 0.0)))
        _reference_cache[key] = (max(float(np.median(params)), 1.0),
                                 max(float(np.median(madds)), 1.0))
    return _reference_cache[key]


def synthetic_components(genotype: Mapping[str, Any], input_shape: Sequence[int] | None = None,
                         num_classes: int | None = None, *, space: Any | None = None
                         ) -> dict[str, Any]:
    """The noiseless terms of the formula (``tok``, ``pair``, ``cap``, ``mean``) and the costs."""
    space = _space_for(genotype, space)
    shape, classes = _shape_and_classes(space, input_shape, num_classes)
    tokens = [str(t) for t in space.features(genotype)]
    costs = {k: float(v) for k, v in space.costs(genotype, shape, classes).items()}
    namespace = str(space.name)
    n = len(tokens)
    tok = math.tanh(sum(token_weight(namespace, t) for t in tokens) / math.sqrt(n)) if n else 0.0
    pairs = [f"{a} & {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    pair = (math.tanh(sum(token_weight(namespace, p) for p in pairs) / math.sqrt(len(pairs)))
            if pairs else 0.0)
    p_ref, m_ref = capacity_reference(space, shape, classes)
    cap = 0.5 * (hill(costs.get("params", 0.0) / p_ref) + hill(costs.get("madds", 0.0) / m_ref))
    mean = BASE_ACCURACY + CAPACITY_SCALE * cap + TOKEN_SCALE * tok + PAIR_SCALE * pair
    return {"tok": tok, "pair": pair, "cap": cap, "mean": mean, "costs": costs,
            "reference": {"params": p_ref, "madds": m_ref}}


def _noise(space: Any, genotype: Mapping[str, Any], seed: int, noise_sd: float) -> float:
    if noise_sd <= 0:
        return 0.0
    import numpy as np

    identity = int(space.hash(genotype), 16) % 2**63
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**63, identity]))
    return float(rng.normal(0.0, noise_sd))


def synthetic_accuracy(genotype: Mapping[str, Any], seed: int = 0,
                       input_shape: Sequence[int] | None = None, num_classes: int | None = None,
                       *, noise_sd: float = DEFAULT_NOISE_SD, space: Any | None = None) -> float:
    """The synthetic validation accuracy of ``genotype`` (see the module docstring)."""
    space = _space_for(genotype, space)
    parts = synthetic_components(genotype, input_shape, num_classes, space=space)
    value = parts["mean"] + _noise(space, genotype, seed, noise_sd)
    return min(max(value, ACCURACY_FLOOR), ACCURACY_CEILING)


def calibrated_cross_entropy(accuracy: float, num_classes: int) -> float:
    """Expected cross-entropy of a calibrated classifier with this accuracy.

    It puts probability ``accuracy`` on its guess and spreads the rest evenly over the other
    classes: ``-a ln a - (1 - a) ln((1 - a) / (C - 1))``. Gives ``val_loss`` a plausible value.
    """
    a = min(max(accuracy, 1e-6), 1 - 1e-6)
    classes = max(int(num_classes), 2)
    return -a * math.log(a) - (1 - a) * math.log((1 - a) / (classes - 1))


def synthetic_result(job: Job, space: Any | None = None) -> Result:
    """Evaluate ``job`` with the synthetic objective; a bad genotype gives a ``failed`` result.

    ``loss_curve`` has one value per ``job.train.epochs``, decaying exponentially from
    ``ln(num_classes)`` to ``val_loss`` so curves in the TUI look like training curves.
    """
    started = time.perf_counter()
    try:
        space = _space_for(job.genotype, space)
        parts = synthetic_components(job.genotype, job.input_shape, job.num_classes, space=space)
        accuracy = min(max(parts["mean"] + _noise(space, job.genotype, job.train.seed,
                                                  DEFAULT_NOISE_SD), ACCURACY_FLOOR),
                       ACCURACY_CEILING)
        val_loss = calibrated_cross_entropy(accuracy, job.num_classes)
        start_loss = math.log(max(job.num_classes, 2))
        epochs = max(int(job.train.epochs), 0)
        curve = tuple(val_loss + (start_loss - val_loss) * math.exp(-3.0 * (e + 1) / epochs)
                      for e in range(epochs))
        return Result(status="ok", accuracy=accuracy, val_loss=val_loss, loss_curve=curve,
                      costs=parts["costs"], wall_time=time.perf_counter() - started,
                      device="synthetic", epochs=epochs)
    except Exception as exc:  # a bad candidate is a result, never a crash
        tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
        return Result(status="failed", error=f"{type(exc).__name__}: {exc}\n{tail}"[-4000:],
                      wall_time=time.perf_counter() - started, device="synthetic")


__all__ = ["calibrated_cross_entropy", "capacity_reference", "hill", "synthetic_accuracy",
           "synthetic_components", "synthetic_result", "token_weight"]
