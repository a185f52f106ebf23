"""The figure index: every figure of the book, with what a citation of it needs.

Read from the chapters' records (:meth:`nsf.book.figures.Chapter.savefig` keeps each figure's
label, caption, files and parameter hash): one row per figure with its number in the book, the
chapter, the caption, the parameter hash and commit that produced it, its PDF, the exact
``nsf run`` command that regenerates it, and a BibTeX entry to cite it. ``nsf figures`` prints the
same rows; ``nsf book`` writes the page ``book/figures.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["bibtex", "figure_index_page", "figure_rows", "first_sentence"]


def figure_rows(recs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per figure, chapters in paper order, figures in the order they were saved:
    ``chapter``, ``label``, ``name`` (the MyST target), ``caption``, ``params``, ``commit``,
    ``profile``, ``pdf``, ``png`` and ``command`` (the chapter's ``nsf run`` line)."""
    rows = []
    for chapter in sorted(recs):
        rec = recs[chapter]
        for f in rec.get("figures", []):
            rows.append({"chapter": chapter, **f, "command": rec.get("command") or ""})
    return rows


#: A sentence ends at a full stop and a capital (except after an abbreviation such as "Eq."),
#: or at a full stop after a closing parenthesis.
_SENTENCE_END = re.compile(
    r"(?<!Eq)(?<!Eqs)(?<!Sec)(?<!Secs)(?<!Fig)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z])|(?<=\))\.\s+"
)


def first_sentence(caption: str) -> str:
    """The caption's first sentence (what the figure shows), without its full stop."""
    return _SENTENCE_END.split(" ".join(caption.split()), maxsplit=1)[0].rstrip(".")


def bibtex(row: Mapping[str, Any]) -> str:
    """A ``@misc`` entry citing one figure at its commit and label."""
    key = f"nsfbook-{row['chapter'][:2]}-{row['label']}".replace("_", "-")
    first = first_sentence(row["caption"])
    return (
        f"@misc{{{key},\n"
        f"  title        = {{{{nsf-book}}, chapter {row['chapter']}, figure {row['label']}: "
        f"{first}}},\n"
        f"  author       = {{{{The nsf-book developers}}}},\n"
        f"  note         = {{Companion of arXiv:2509.04713. Commit {row['commit']}, profile "
        f"{row['profile']}, parameters {row['params']}; regenerate with `{row['command']}`}},\n"
        f"  howpublished = {{{row['pdf'].lstrip('/')}}},\n"
        "}"
    )


def figure_index_page(recs: Mapping[str, Mapping[str, Any]]) -> str:
    """The figure index as a MyST page: a table of every figure, then a citation per figure."""
    rows = figure_rows(recs)
    lines = [
        "(figure-index)=",
        "# Figure index",
        "",
        f"The {len(rows)} figures of this build of the book. Each was produced by the commit and "
        "the parameters named in its row (the hash is that of the chapter's parameters, also in "
        "the figure's caption), and the command in its row regenerates it. To cite a figure, "
        "quote its number and use its BibTeX entry below; the PDF is the vector version.",
        "",
        "```{list-table}",
        ":header-rows: 1",
        ":widths: 10 44 14 8 24",
        "",
        "* - figure",
        "  - what it shows",
        "  - commit, parameters",
        "  - PDF",
        "  - regenerate with",
    ]
    for r in rows:
        lines += [
            f"* - {{numref}}`{r['name']}`",
            f"  - {first_sentence(r['caption'])}",
            f"  - `{r['commit']}`, `{r['params']}`",
            f"  - {{download}}`PDF <{r['pdf']}>`",
            f"  - `{r['command']}`",
        ]
    lines.append("```")
    lines += ["", "## Cite a figure", ""]
    for r in rows:
        lines += [
            f":::{{dropdown}} {r['chapter'][:2]} · {r['label']}",
            "```bibtex",
            bibtex(r),
            "```",
            ":::",
            "",
        ]
    return "\n".join(lines)
