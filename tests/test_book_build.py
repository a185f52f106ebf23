"""The chapter cache (nsf.book.build): a chapter runs again exactly when something it depends on
changes, and never otherwise. Checked on a copy of the repository; nothing is executed."""

from __future__ import annotations

import json
import shutil

import pytest

from nsf.book import build, profiles
from nsf.book.provenance import repo_root


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A copy of notebooks/, data/ and the nsf package that the cache key reads."""
    source = repo_root()
    root = tmp_path / "repo"
    for name in ("notebooks", "data"):
        shutil.copytree(source / name, root / name)
    package = tmp_path / "nsf"
    shutil.copytree(build.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("NSF_REPO_ROOT", str(root))
    monkeypatch.setattr(build, "PACKAGE", package)
    monkeypatch.setattr(profiles, "TABLE", package / "book" / "profiles.toml")
    repo_root.cache_clear()
    profiles._table.cache_clear()
    yield root, package
    repo_root.cache_clear()
    profiles._table.cache_clear()


def _finish(chapter: str, profile: str = "ci", overrides=None) -> None:
    _, _, run = build.chapter_run(chapter, profile, overrides)
    run.path("executed.ipynb").write_text(json.dumps({"chapter": chapter}))
    run.finish({})


def _append(path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _edit_notebook(root, package):
    path = root / "notebooks" / "01_unified_rule.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": ["One more line."]})
    path.write_text(json.dumps(nb))


def _edit_module(root, package):
    _append(package / "schedules.py", "\n# an edit\n")


def _edit_profile_value(root, package):
    table = package / "book" / "profiles.toml"
    text = table.read_text()
    section = "[01_unified_rule.profiles.ci]\n"
    table.write_text(text.replace(section, section + "seed = 7\n"))
    profiles._table.cache_clear()


def _edit_profile_note(root, package):
    _append(package / "book" / "profiles.toml", "\n# a comment\n")
    profiles._table.cache_clear()


def _edit_data(root, package):
    _append(root / "data" / "paper_kappa_table.csv", "\n")


EDITS = [_edit_notebook, _edit_module, _edit_profile_value, _edit_profile_note, _edit_data]


def test_a_finished_chapter_is_cached(tree):
    assert not build.is_cached("01", "ci")
    _finish("01")
    assert build.is_cached("01", "ci") and build.is_cached("01_unified_rule", "ci")


@pytest.mark.parametrize("edit", EDITS, ids=lambda f: f.__name__.removeprefix("_edit_"))
def test_an_edit_the_chapter_depends_on_re_executes_it(tree, edit):
    _finish("01")
    edit(*tree)
    assert not build.is_cached("01", "ci")


def test_another_profile_or_parameter_is_another_run(tree):
    _finish("01")
    assert not build.is_cached("01", "default")
    assert not build.is_cached("01", "ci", {"seed": 1})
    assert build.is_cached("01", "ci", {})


def test_editing_one_notebook_leaves_the_others_cached(tree):
    _finish("01")
    _finish("03")
    _edit_notebook(*tree)
    assert build.is_cached("03", "ci") and not build.is_cached("01", "ci")


def test_a_cached_chapter_is_copied_without_starting_a_kernel(tree, tmp_path, monkeypatch):
    import papermill

    def kernel(*args, **kwargs):
        raise AssertionError("a cached chapter was executed again")

    monkeypatch.setattr(papermill, "execute_notebook", kernel)
    _finish("01")
    out = build.execute_chapter("01", "ci", output=tmp_path / "copy.ipynb")
    assert json.loads(out.read_text()) == {"chapter": "01"}


def test_source_hash_reads_the_whole_package():
    """Every subpackage (nsf.book, nsf.train, nsf.spectral) is inside the hashed tree."""
    hashed = {p.relative_to(build.PACKAGE).parts[0] for p in build.PACKAGE.rglob("*.py")}
    assert {"optim.py", "book", "train", "spectral"} <= hashed
    assert build.PACKAGE.name == "nsf" and (build.PACKAGE / "optim.py").is_file()
