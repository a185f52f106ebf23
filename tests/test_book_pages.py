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
PAGES = sorted(p for p in BOOK.rglob("*.md") if "_build" not in p.parts)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# MyST roles {cite}`a`, {cite:p}`a,b`, {cite:t}`a` ... and their reST form :cite:p:`a` (eval-rst).
_CITE = re.compile(r"(?:\{cite(?::[a-z]+)?\}|:cite(?::[a-z]+)?:)`([^`]*)`")
_DOC = re.compile(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`")
_ENTRY = re.compile(r"^\s*@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
# The private working notes the book replaces with its reconstruction pages. The pattern is spelt so
# that a search of the repository for the word finds no file that still points readers to them.
_NOTES = re.compile(r"\bS[P]EC\b")
_LABEL = re.compile(r"^\(([A-Za-z0-9_-]+)\)=\s*$", re.MULTILINE)
_REF = re.compile(r"\{ref\}`(?:[^`<]*<)?([^`>]+)>?`")


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
    # A book page links relative to its own folder; a notebook is rendered from book/chapters/.
    base = page.parent if page.suffix == ".md" else BOOK / "chapters"
    for target in _DOC.findall(markdown_of(page)):
        where = ROOT / target.lstrip("/") if target.startswith("/") else base / target
        stem = where.resolve()
        found = stem.with_suffix(".md").exists() or (
            stem.parent == (BOOK / "chapters").resolve()
            and (ROOT / "notebooks" / f"{stem.name}.ipynb").exists()
        )
        assert found, f"{page.name} links {{doc}}`{target}`, which is no page"


#: Pages the build writes from the chapters' records (nsf.book.build.write_generated_pages).
GENERATED = {"book/ledger", "book/figures"}


def _toc_files(entries) -> set[str]:
    """Every file of a list of toc entries, with their sections, recursively."""
    out = set()
    for entry in entries or []:
        if "file" in entry:
            out.add(entry["file"])
        out |= _toc_files(entry.get("sections"))
    return out


def test_toc_files_reads_nested_sections():
    entries = [{"file": "a", "sections": [{"file": "b", "sections": [{"file": "c"}]}]}, {"x": 1}]
    assert _toc_files(entries) == {"a", "b", "c"}


def test_every_book_page_is_in_the_toc_and_every_toc_file_exists():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {toc["root"]} | {
        f for part in toc.get("parts", []) for f in _toc_files(part.get("chapters"))
    }
    pages = {p.relative_to(ROOT).with_suffix("").as_posix() for p in PAGES}
    unlisted = sorted(pages - listed)
    assert not unlisted, f"pages the book would not build (only_build_toc_files): {unlisted}"
    chapters = {f"book/chapters/{n.stem}" for n in NOTEBOOKS}
    missing = sorted(listed - pages - chapters - GENERATED)
    assert not missing, f"toc entries with no page (the build fails on them): {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_book_pages_do_not_send_readers_to_the_private_notes(page):
    assert not _NOTES.search(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("chapter", [n.stem for n in NOTEBOOKS])
def test_chapters_and_their_parameter_notes_do_not_point_to_the_private_notes(chapter):
    from nsf.book.profiles import chapter_parameters

    nb = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
    assert not _NOTES.search("\n".join(c.source for c in nb.cells))
    notes = [f"{k}: {v.get('note', '')}" for k, v in chapter_parameters(chapter).items()]
    assert not [n for n in notes if _NOTES.search(n)]


def test_the_notes_pattern_finds_the_word_only():
    assert _NOTES.search("see S" + "PEC 5.4")
    assert not _NOTES.search("S" + "PECTRAL, spec, spectrum")


def test_every_ref_in_the_reconstruction_pages_and_chapters_has_a_label():
    """A {ref} to a label no page defines is a build warning (an error in the strict build).
    The ledger page is generated at build time; its ambiguity labels come from the registry."""
    from nsf import ledger

    texts = [markdown_of(p) for p in PAGES + NOTEBOOKS]
    labels = {label for text in texts for label in _LABEL.findall(text)}
    labels |= {f"ambiguity-{a.id.lower().replace('-', '')}" for a in ledger.ambiguities()}
    missing = sorted({r for text in texts for r in _REF.findall(text)} - labels)
    assert not missing, f"{{ref}} targets no page labels: {missing}"
