"""Checked setups: the one way the package validates a chapter's or a run's parameters.

Every setup of the package (the simulations' setups, the training config) is a frozen pydantic
dataclass built with :data:`CONFIG`: an unknown field is refused, a type is checked (a string is
never read as a number, a bool never as an int), a range is declared in the field's annotation
with the aliases below, and a bad value raises ``pydantic.ValidationError`` (a
``ValueError``) that names the field, the value and what is expected. Cross-field rules are
``model_validator(mode="after")`` methods on the setup itself.

pydantic is an extra (``nsf[book]``, ``nsf[data]``): ``import nsf`` (the optimizer and the
schedules) does not import this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, Strict, ValidationError

__all__ = [
    "CONFIG",
    "Beta",
    "Count",
    "Distinct",
    "Finite",
    "Increasing",
    "NonNegative",
    "OpenUnit",
    "Positive",
    "Seeds",
    "describe",
    "setup_from",
]

#: The pydantic config of every setup; unknown fields refused, no NaN or infinity.
CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)

#: A finite real number (an int is accepted, a string or a bool is not).
Finite = Annotated[float, Strict(), Field(allow_inf_nan=False)]
#: A finite number > 0.
Positive = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
#: A finite number >= 0.
NonNegative = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
#: A number strictly between 0 and 1 (a fraction that must leave mass on both sides).
OpenUnit = Annotated[float, Strict(), Field(gt=0, lt=1)]
#: A moment decay rate in [0, 1).
Beta = Annotated[float, Strict(), Field(ge=0, lt=1)]
#: A whole number >= 1 (a size, a number of steps).
Count = Annotated[int, Strict(), Field(ge=1)]


def _strictly_increasing(values: Sequence[int]) -> tuple[int, ...]:
    if not values:
        raise ValueError("it is empty; give at least one iteration")
    if any(b <= a for a, b in pairwise(values)):
        raise ValueError(f"{list(values)} must be strictly increasing; sort it and drop repeats")
    return tuple(values)


#: A non-empty, strictly increasing tuple of whole numbers (checkpoints, iterations); a list
#: is accepted and stored as a tuple.
Increasing = Annotated[tuple[Annotated[int, Strict()], ...], AfterValidator(_strictly_increasing)]


def _distinct(values: Sequence[Any]) -> tuple[Any, ...]:
    if not values:
        raise ValueError("it is empty; give at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{list(values)} repeats a value; list each value once")
    return tuple(values)


#: A non-empty sequence without repeats (each value is one run, one row, one curve), kept as
#: a tuple: ``Annotated[tuple[X, ...], Distinct]``.
Distinct = AfterValidator(_distinct)
#: A non-empty tuple of distinct whole numbers, the seeds of a run grid (a list is accepted).
Seeds = Annotated[tuple[Annotated[int, Strict(), Field(ge=0)], ...], Distinct]

S = TypeVar("S")


def setup_from(cls: type[S], namespace: Mapping[str, Any], **changes: Any) -> S:
    """``cls`` built from the names in ``namespace`` that are its fields (a notebook passes
    ``globals()``: its parameters cell names the fields), then ``changes``.

    This is how a chapter states its parameters once: the notebook's parameters cell holds the
    values, the setup class holds their meaning and checks, and nothing lists them twice.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in namespace.items() if k in names}, **changes)


def describe(error: ValidationError) -> str:
    """A pydantic error as one line per problem, ``field = value: what is wrong`` (no links, no
    error codes): what a command line prints."""
    lines = []
    for e in error.errors():
        name = ".".join(str(part) for part in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"{name} = {e['input']!r}: {message}" if name else message)
    return "; ".join(lines)
