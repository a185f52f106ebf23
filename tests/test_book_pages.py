"""The book's own pages: every citation resolves, every page link points to a page, every page is
in the table of contents. The book build would catch these too, but only in a full (slow) build."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from nsf.book.provenance import repo_root

ROOT = repo_root()
BOOK = ROOT / "book"
BIB = BOOK / "references.bib"
PAGES = sorted(BOOK.glob("*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# MyST roles {cite}`a`, {cite:p}`a,b`, {cite:t}`a` ... and their reST form :cite:p:`a` (eval-rst).
_CITE = re.compile(r"(?:\{cite(?::[a-z]+)?\}|:cite(?::[a-z]+)?:)`([^`]*)`")
_DOC = re.compile(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`")
_ENTRY = re.compile(r"^\s*@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)


def cited_keys(text: str) -> list[str]:
    """The keys of every citation role in a MyST text (several keys per role, comma-separated)."""
    return [k.strip() for group in _CITE.findall(text) for k in group.split(",") if k.strip()]


def bib_keys(text: str) -> list[str]:
    """The keys of a BibTeX file's entries (@string, @comment and @preamble are not entries)."""
    skip = {"string", "comment", "preamble"}
    return [key for kind, key in _ENTRY.findall(text) if kind.lower() not in skip]


def markdown_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return path.read_text(encoding="utf-8")


def test_cited_keys_reads_every_role_form():
    text = (
        "one {cite}`a` two {cite:p}`b, c` three {cite:t}`d,e` and :cite:p:`f` in reST; "
        "not a role: `g` {ref}`h`"
    )
    assert cited_keys(text) == ["a", "b", "c", "d", "e", "f"]


def test_bib_keys_reads_entries_only():
    text = '@string{tmi = "IEEE TMI"}\n@article{x2020,\n title={T}}\n  @Misc{ y-1 ,\n}\n'
    assert bib_keys(text) == ["x2020", "y-1"]


def test_bibliography_has_no_duplicate_keys():
    keys = bib_keys(BIB.read_text(encoding="utf-8"))
    assert keys and len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_bibliography_parses_and_the_key_reader_agrees():
    pybtex = pytest.importorskip("pybtex.database")
    parsed = pybtex.parse_file(str(BIB), bib_format="bibtex")
    assert set(parsed.entries) == set(bib_keys(BIB.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES + NOTEBOOKS, ids=lambda p: p.name)
def test_every_citation_is_in_the_bibliography(page):
    known = set(bib_keys(BIB.read_text(encoding="utf-8")))
    missing = sorted(set(cited_keys(markdown_of(page))) - known)
    assert not missing, f"{page.name} cites {missing}, which book/references.bib lacks"


@pytest.mark.parametrize("page", PAGES + NOTEBOOKS, ids=lambda p: p.name)
def test_every_doc_link_points_to_a_page(page):
    # A book page links relative to book/; a notebook is rendered from book/chapters/.
    base = BOOK if page.suffix == ".md" else BOOK / "chapters"
    for target in _DOC.findall(markdown_of(page)):
        where = ROOT / target.lstrip("/") if target.startswith("/") else base / target
        stem = where.resolve()
        found = stem.with_suffix(".md").exists() or (
            stem.parent == (BOOK / "chapters").resolve()
            and (ROOT / "notebooks" / f"{stem.name}.ipynb").exists()
        )
        assert found, f"{page.name} links {{doc}}`{target}`, which is no page"


def test_every_book_page_is_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {toc["root"]} | {
        c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])
    }
    unlisted = sorted(f"book/{p.stem}" for p in PAGES if f"book/{p.stem}" not in listed)
    assert not unlisted, f"pages the book would not build (only_build_toc_files): {unlisted}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_book_pages_do_not_send_readers_to_the_spec(page):
    assert "SPEC" not in page.read_text(encoding="utf-8")
