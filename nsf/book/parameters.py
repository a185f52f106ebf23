"""A chapter's parameters, checked before any kernel starts.

A chapter's parameters cell is the source of its defaults (the ``default`` profile); the profile
table (:mod:`nsf.book.profiles`) adds the ``ci`` and ``paper`` values and names the chapter's setup
classes. :func:`check_parameters` merges the profile and the user's overrides and refuses, in well
under a second and before papermill starts a kernel:

- a name the chapter does not declare;
- a value of the wrong type for its default: ``keys`` is a list of int, so ``"[1, 2"`` (which is
  not a Python literal and stays a string) is refused, and so is a string where a number belongs;
- a value the chapter's own setup refuses (``N = -5``): every setup named in the profile table is
  built from the merged parameters, so the range checks are those of the setup, written once.

Each refusal names the parameter, the value and what is expected.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nsf.book.profiles import chapter_parameters, chapter_setups, profile_overrides
from nsf.book.provenance import repo_root

__all__ = ["ParameterError", "check_parameters", "notebook_defaults", "parse_value", "setup_class"]


class ParameterError(ValueError):
    """A chapter parameter that is unknown, of the wrong type, or out of its setup's range."""


def parse_value(text: str) -> Any:
    """A command-line value as a Python literal where it is one (``3``, ``[0.5, -0.25]``,
    ``True``), else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@functools.cache
def _parameters_cell(notebook: Path, mtime_ns: int) -> dict[str, Any]:
    cells = json.loads(notebook.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{notebook} has {len(tagged)} cells tagged 'parameters'; it needs one")
    source = "".join(tagged[0]["source"])
    values = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{notebook}: a parameters cell holds only `name = literal` lines")
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def notebook_defaults(chapter: str) -> dict[str, Any]:
    """name -> value of the chapter's parameters cell (its ``default`` profile)."""
    notebook = repo_root() / "notebooks" / f"{chapter}.ipynb"
    return dict(_parameters_cell(notebook, notebook.stat().st_mtime_ns))


def setup_class(path: str) -> type:
    """``"nsf.spectral:SpectralSetup"`` -> the class."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _a(value: Any) -> str:
    """The kind of ``value`` with its article: "an int", "a list of number"."""
    kind = _type_name(value)
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number" if isinstance(value, float) else "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        kinds = sorted({_type_name(v) for v in value})
        return f"list of {' or '.join(kinds)}" if kinds else "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` has the shape of ``default``: an int where an int is, a number (int or
    float, never a bool) where a float is, a list whose items fit some item of the default."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, int | str | dict):
        return isinstance(value, type(default))
    if isinstance(default, list | tuple):
        if not isinstance(value, list | tuple):
            return False
        return not default or all(any(_fits(v, d) for d in default) for v in value)
    return True


def _setup_message(chapter: str, error: Any) -> str:
    lines = []
    for e in error.errors():
        name = e["loc"][0] if e["loc"] else None
        where = f"{name} = {e['input']!r}: " if name is not None else ""
        lines.append(f"  {where}{e['msg'].removeprefix('Value error, ')}")
    return f"chapter {chapter}: a parameter is out of range\n" + "\n".join(lines)


def check_parameters(
    chapter: str, profile: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The papermill parameters of one execution (``profile``, the profile's values, then
    ``overrides``), checked against the chapter's defaults and setups; raises
    :class:`ParameterError` naming the parameter, the value and what is expected."""
    overrides = dict(overrides or {})
    declared = chapter_parameters(chapter)
    unknown = [k for k in overrides if k not in declared and k != "profile"]
    if unknown:
        raise ParameterError(
            f"chapter {chapter} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters are: {', '.join(sorted(declared))}"
        )
    defaults = notebook_defaults(chapter)
    params = {"profile": profile, **profile_overrides(chapter, profile), **overrides}
    for name, value in params.items():
        if name != "profile" and not _fits(value, defaults[name]):
            raise ParameterError(
                f"chapter {chapter}: parameter {name} = {value!r} is {_a(value)}, "
                f"expected {_a(defaults[name])} like its default {defaults[name]!r} "
                "(pass it as a Python literal, quoted for the shell)"
            )
    from pydantic import ValidationError

    from nsf.validation import setup_from

    merged = {**defaults, **params}
    for path in chapter_setups(chapter):
        try:
            setup_from(setup_class(path), merged)
        except ValidationError as error:
            raise ParameterError(_setup_message(chapter, error)) from None
    return params
