"""The profile table: every chapter's parameters, their tags, setups, and the ci/paper overrides.

The table lives in ``profiles.toml`` beside this file. A chapter's ``default`` profile is the
parameters cell of its notebook; ``ci`` (each chapter <= 60 s on 2 CPU cores, for the tests) and
``paper`` (the paper's scale; some chapters need a GPU) override some of those values. Every
parameter carries its tag, the tags of the book pages "How the paper was reconstructed":
``stated``, ``reconstructed`` or ``assumed``, or ``companion`` for choices that only this book
makes (sizes, seeds, plot extents, demos and controls the paper does not run).
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["PROFILES", "TAGS", "chapter_parameters", "chapter_setups", "profile_overrides"]

PROFILES = ("ci", "default", "paper")
TAGS = ("stated", "reconstructed", "assumed", "companion")
TABLE = Path(__file__).with_name("profiles.toml")


@functools.cache
def _table() -> dict[str, Any]:
    with TABLE.open("rb") as f:
        table = tomllib.load(f)
    for chapter, entry in table.items():
        for name, spec in entry.get("parameters", {}).items():
            if spec.get("tag") not in TAGS:
                raise ValueError(
                    f"{TABLE}: {chapter}.{name} has tag {spec.get('tag')!r}, not one of {TAGS}"
                )
        for profile in entry.get("profiles", {}):
            if profile not in PROFILES:
                raise ValueError(
                    f"{TABLE}: {chapter} has unknown profile {profile!r}; use one of {PROFILES}"
                )
    return table


def chapter_parameters(chapter: str) -> dict[str, dict[str, str]]:
    """name -> {"tag": ..., "note": ...} for every parameter the chapter declares."""
    table = _table()
    if chapter not in table:
        raise KeyError(f"chapter {chapter!r} is not in {TABLE}; known: {sorted(table)}")
    return dict(table[chapter].get("parameters", {}))


def chapter_setups(chapter: str) -> list[str]:
    """The chapter's setup classes as ``"module:Class"``: built from its parameters before it runs
    (:func:`nsf.book.parameters.check_parameters`), so their checks refuse a bad value early."""
    chapter_parameters(chapter)  # raises for an unknown chapter
    return list(_table()[chapter].get("setups", []))


def profile_overrides(chapter: str, profile: str) -> dict[str, Any]:
    """The values ``profile`` sets on top of the notebook's defaults (empty for ``default``)."""
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {PROFILES}")
    chapter_parameters(chapter)  # raises for an unknown chapter
    return dict(_table()[chapter].get("profiles", {}).get(profile, {}))
