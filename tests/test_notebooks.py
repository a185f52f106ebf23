"""Chapter hygiene: committed notebooks, the profile table and the table of contents agree."""

from __future__ import annotations

import ast
import shutil

import nbformat
import pytest
import yaml

from nsf import book
from nsf.book.build import GENERATED_PAGES
from nsf.book.profiles import PROFILES, chapter_parameters, profile_overrides
from nsf.book.provenance import repo_root

CHAPTERS = book.chapter_names()


def parameters_cells(nb) -> list:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def test_there_are_chapters():
    assert CHAPTERS and CHAPTERS[0] == "01_unified_rule"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_is_committed_clean_with_one_parameters_cell(chapter):
    nb = nbformat.read(repo_root() / "notebooks" / f"{chapter}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{chapter} has outputs"
    cells = parameters_cells(nb)
    assert len(cells) == 1, f"{chapter} has {len(cells)} cells tagged 'parameters'"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_parameters_cell_matches_the_profile_table(chapter):
    """Every parameter of the notebook carries a tag in nsf/book/profiles.toml and vice versa, and
    the ci/paper profiles override only declared parameters with values of the same type."""
    nb = nbformat.read(repo_root() / "notebooks" / f"{chapter}.ipynb", as_version=4)
    body = ast.parse(parameters_cells(nb)[0].source).body
    defaults = {node.targets[0].id: ast.literal_eval(node.value) for node in body}
    assert next(iter(defaults)) == "profile" and defaults["profile"] == "default"
    declared = chapter_parameters(chapter)
    assert set(defaults) - {"profile"} == set(declared)
    for profile in PROFILES:
        for name, value in profile_overrides(chapter, profile).items():
            assert name in declared, f"{chapter}.profiles.{profile} sets undeclared {name}"
            default = defaults[name]
            assert isinstance(value, type(default)) or (
                isinstance(default, float) and isinstance(value, int)
            ), f"{chapter}.{profile}.{name} = {value!r} is not of the type of {default!r}"


def test_toc_lists_exactly_the_chapters_in_paper_order():
    toc = yaml.safe_load((repo_root() / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    listed = [f.rsplit("/", 1)[1] for f in files if f.startswith("book/chapters/")]
    assert listed == CHAPTERS
    generated = [f"book/{name}" for name in GENERATED_PAGES]
    assert set(generated) <= set(files), "a page nsf book writes is missing from _toc.yml"
    for f in files:
        if not f.startswith("book/chapters/") and f not in generated:
            assert (repo_root() / f"{f}.md").exists(), f"{f} is in _toc.yml but does not exist"


def test_chapter_names_resolve():
    assert book.resolve_chapter("01") == "01_unified_rule"
    assert book.resolve_chapter("01_unified_rule") == "01_unified_rule"
    with pytest.raises(ValueError, match="the chapters are"):
        book.resolve_chapter("99")


def test_unknown_parameter_is_refused_before_executing():
    with pytest.raises(book.ParameterError, match="no_such_parameter"):
        book.execute_chapter("01", "ci", {"no_such_parameter": 3})


def test_values_parse_as_python_literals():
    assert book.parse_value("3") == 3
    assert book.parse_value("[0.5, -0.25]") == [0.5, -0.25]
    assert book.parse_value("cuda") == "cuda"


def test_source_hash_changes_when_the_package_changes(tmp_path):
    package = tmp_path / "nsf"
    shutil.copytree(repo_root() / "nsf", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = book.source_hash(package)
    assert book.source_hash(package) == before
    (package / "optim.py").write_text((package / "optim.py").read_text() + "\n# touched\n")
    assert book.source_hash(package) != before


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_papermill_reads_every_parameter(chapter):
    """`papermill --help-notebook` lists what a user may pass; its parser must read every line."""
    import papermill

    path = repo_root() / "notebooks" / f"{chapter}.ipynb"
    inferred = papermill.inspect_notebook(str(path))
    nb = nbformat.read(path, as_version=4)
    names = [node.targets[0].id for node in ast.parse(parameters_cells(nb)[0].source).body]
    assert list(inferred) == names
