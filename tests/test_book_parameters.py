"""A chapter's parameters are checked before a kernel starts: by type against the notebook's
defaults and by range through the chapter's own setups (nsf.book.parameters)."""

from __future__ import annotations

import dataclasses

import pytest

from nsf import book
from nsf.book.parameters import check_parameters, notebook_defaults, setup_class
from nsf.book.profiles import PROFILES, chapter_setups

CHAPTERS = book.chapter_names()
SETUPS = [(c, s) for c in CHAPTERS for s in chapter_setups(c)]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("keys", "[1, 2", "a list of int"),  # not a literal: it stays a string
        ("keys", [1.5, 2], "a list of int"),
        ("dt", "abc", "a number"),
        ("N", 5.0, "an int"),
        ("N", True, "an int"),
        ("G_integral", 1, "a bool"),
        ("amps", 3, "a string"),
        ("tidal_ranges", [0.0, 0.5], "a list of list"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_by_name(name, value, expected):
    with pytest.raises(book.ParameterError) as error:
        check_parameters("03_spectral_decay", "default", {name: value})
    message = str(error.value)
    assert f"{name} = {value!r}" in message and expected in message


def test_values_of_the_declared_type_pass_and_are_returned():
    overrides = {"keys": [1, 3], "c": 3, "tidal_ranges": [[-0.25, 0.25]], "amps": "1/k"}
    params = check_parameters("03_spectral_decay", "ci", overrides)
    assert params["profile"] == "ci"
    assert {k: params[k] for k in overrides} == overrides


@pytest.mark.parametrize(("name", "value"), [("N", -5), ("dt", 0.0), ("keys", [1, 1])])
def test_a_value_out_of_the_setups_range_is_refused_by_name(name, value):
    with pytest.raises(book.ParameterError, match=rf"{name} = {value!r}".replace("[", r"\[")):
        check_parameters("03_spectral_decay", "default", {name: value})


def test_an_unknown_name_is_refused_with_the_valid_ones():
    with pytest.raises(book.ParameterError, match=r"no_such_parameter.*its parameters are"):
        check_parameters("03_spectral_decay", "default", {"no_such_parameter": 3})


def test_a_refused_parameter_starts_no_kernel_and_writes_nothing(tmp_path, monkeypatch):
    """execute_chapter checks first: papermill is never called and no run directory appears."""
    import papermill

    from nsf.book.provenance import repo_root

    def kernel(*args, **kwargs):
        raise AssertionError("a kernel was started for a refused parameter")

    monkeypatch.setattr(papermill, "execute_notebook", kernel)
    runs = repo_root() / ".cache" / "chapters"
    before = sorted(runs.iterdir()) if runs.exists() else []
    with pytest.raises(book.ParameterError, match="N = -5"):
        book.execute_chapter("03", "default", {"N": -5}, tmp_path / "out.ipynb")
    assert (sorted(runs.iterdir()) if runs.exists() else []) == before
    assert not (tmp_path / "out.ipynb").exists()


@pytest.mark.parametrize("chapter", CHAPTERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_passes_its_chapters_checks(chapter, profile):
    check_parameters(chapter, profile)


def test_every_chapter_names_its_setups():
    assert {c for c, _ in SETUPS} == set(CHAPTERS)


@pytest.mark.parametrize(("chapter", "path"), SETUPS)
def test_setup_defaults_equal_the_notebook_defaults(chapter, path):
    """The parameters cell is the default; a setup class that says otherwise would make the
    package and the book disagree."""
    defaults = notebook_defaults(chapter)
    fields = {f.name: f for f in dataclasses.fields(setup_class(path))}
    shared = sorted(set(fields) & set(defaults))
    assert shared, f"{path} shares no field with chapter {chapter}'s parameters"
    built = setup_class(path)()  # every field has its default
    for name in shared:
        value, expected = getattr(built, name), defaults[name]
        assert _plain(value) == _plain(expected), f"{path}.{name} = {value!r}, not {expected!r}"


def _plain(value):
    """Tuples as lists, recursively (a setup stores a list parameter as a tuple)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
