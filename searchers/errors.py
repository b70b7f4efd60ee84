"""Errors that name the bad field, the bad value and what is allowed.

Every user-facing layer (CLI, config, TUI) shows ``str(err)`` as it is, so the message must be
complete on its own: ``genotype.choices[3]: got 17; allowed: integers 0..11``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class NaswError(ValueError):
    """Bad input from a user: a config, a genotype, a constraint, a name."""

    def __init__(self, field: str, value: Any, allowed: str | Iterable[Any] | None = None,
                 hint: str = "") -> None:
        self.field = field
        self.value = value
        if allowed is not None and not isinstance(allowed, str):
            allowed = ", ".join(str(a) for a in allowed)
        self.allowed = allowed
        message = f"{field}: got {value!r}"
        if allowed:
            message += f"; allowed: {allowed}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class UnknownName(NaswError):
    """A registry look-up (space, preset, searcher, dataset, evaluator, backend) failed."""


class GenotypeError(NaswError):
    """A genotype does not belong to its space."""
