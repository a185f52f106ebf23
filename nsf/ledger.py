"""The claims ledger: every checkable claim of the paper, with the verdict the chapters computed.

The claims L1–L37 and the ambiguities I-1–I-22 are listed once, in ``data/ledger.toml``: the
paper's words and section, the number the paper prints (where it prints one), the chapter that
tests the claim and which of its recorded checks decide it (name patterns, as in
:mod:`fnmatch`). Nothing there is a verdict. The verdicts come from the chapters' records
(:meth:`nsf.book.figures.Chapter.record`), which :func:`nsf.book.execute_chapter` keeps in each
executed notebook, so rebuilding a chapter with other parameters changes its rows.

A claim's verdict, from the checks its patterns select:

* **reproduced**: every decided check holds; **not reproduced**: every decided check fails;
  **partial**: some hold and some fail; **undecided**: checks ran but none could decide;
* **needs the paper profile**: the claim is about the paper's data or scale (``scale =
  "paper"``) and the chapter ran on the embedded stand-in; the stand-in's outcome is still shown;
* **not testable**: no computation here can decide it (the registry says why);
* **not run**: the chapter's record is missing (the chapter was not executed).

The strength of a verdict is that of its weakest check (an identity says least, then a
calibration, then a lenient criterion, then an independent test); :data:`nsf.verdicts.STRENGTHS`.
"""

from __future__ import annotations

import fnmatch
import functools
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "VERDICTS",
    "Ambiguity",
    "Claim",
    "LedgerRow",
    "ambiguities",
    "claims",
    "ledger_page",
    "ledger_rows",
    "verdict_counts",
]

#: Every verdict a row can carry, in the order the summary counts them.
VERDICTS = (
    "reproduced",
    "partial",
    "not reproduced",
    "undecided",
    "needs the paper profile",
    "not testable",
    "not run",
)

#: Weakest first: a verdict is as strong as its weakest check.
_STRENGTH_ORDER = ("identity", "calibration", "lenient", "independent")


@dataclass(frozen=True)
class Claim:
    """One checkable claim of the paper (a ``[[claim]]`` of ``data/ledger.toml``)."""

    id: str
    section: str
    words: str
    quantity: str
    chapter: str = ""
    checks: tuple[str, ...] = ()
    paper_value: str = ""
    scale: str = "any"
    figure: str = ""
    not_testable: str = ""
    source: str = ""
    ambiguities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ambiguity:
    """One inconsistency or gap of the paper (an ``[[ambiguity]]`` of ``data/ledger.toml``)."""

    id: str
    title: str
    issue: str
    where: str
    handling: str
    chapters: tuple[str, ...] = ()


def _registry_path() -> Path:
    from nsf.book.provenance import repo_root

    return repo_root() / "data" / "ledger.toml"


@functools.cache
def _registry(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return tomllib.load(f)


def _entries(kind: str, cls: type, path: Path | None) -> list[Any]:
    fields = set(cls.__dataclass_fields__)
    out = []
    for entry in _registry(path or _registry_path()).get(kind, []):
        unknown = set(entry) - fields
        if unknown:
            raise ValueError(f"data/ledger.toml: {kind} {entry.get('id')} has unknown {unknown}")
        out.append(cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}))
    return out


def claims(path: Path | None = None) -> list[Claim]:
    """The claims L1–L37 of ``data/ledger.toml`` (or ``path``), in order."""
    return _entries("claim", Claim, path)


def ambiguities(path: Path | None = None) -> list[Ambiguity]:
    """The ambiguities I-1–I-22 of ``data/ledger.toml`` (or ``path``), in order."""
    return _entries("ambiguity", Ambiguity, path)


@dataclass(frozen=True)
class LedgerRow:
    """A claim with what the chapters computed for it."""

    claim: Claim
    verdict: str
    strength: str
    ours: str
    checks: tuple[dict[str, Any], ...] = field(default=())
    figure: str = ""


def _matching(claim: Claim, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    def selected(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in claim.checks)

    return [c for c in record.get("checks", []) if selected(c["name"])]


def _outcome(checks: list[dict[str, Any]]) -> str:
    held = sum(c["passed"] is True for c in checks)
    failed = sum(c["passed"] is False for c in checks)
    if held and failed:
        return "partial"
    if held:
        return "reproduced"
    if failed:
        return "not reproduced"
    return "undecided"


def _row(claim: Claim, recs: Mapping[str, Mapping[str, Any]]) -> LedgerRow:
    if claim.not_testable:
        return LedgerRow(claim, "not testable", "", claim.not_testable)
    record = recs.get(claim.chapter)
    if record is None:
        return LedgerRow(claim, "not run", "", f"chapter {claim.chapter} was not executed")
    checks = _matching(claim, record)
    figure = {f["label"]: f["name"] for f in record.get("figures", [])}.get(claim.figure, "")
    stand_in = claim.scale == "paper" and record.get("profile") != "paper"
    if not checks:
        if stand_in:
            why = f"the embedded stand-in ({record.get('profile')} profile) has no case it tests"
            return LedgerRow(claim, "needs the paper profile", "", why, figure=figure)
        why = f"no recorded check of {claim.chapter} matches {list(claim.checks)}"
        return LedgerRow(claim, "undecided", "", why, figure=figure)
    held = sum(c["passed"] is True for c in checks)
    decided = sum(c["passed"] is not None for c in checks)
    outcome = _outcome(checks)
    if decided:
        ours = f"{held} of {decided} decided checks hold" + (
            f" ({len(checks) - decided} undecided)" if decided < len(checks) else ""
        )
    else:
        why = checks[0]["verdict"]
        if why.startswith("undecided (") and why.endswith(")"):
            why = why[len("undecided (") : -1]
        ours = f"{len(checks)} undecided: {why}"
    verdict = outcome
    if stand_in:
        verdict = "needs the paper profile"
        ours = f"on the embedded stand-in ({record.get('profile')} profile): {ours}"
    strength = min((c["strength"] for c in checks), key=_STRENGTH_ORDER.index)
    return LedgerRow(claim, verdict, strength, ours, tuple(checks), figure)


def ledger_rows(
    recs: Mapping[str, Mapping[str, Any]], registry: Iterable[Claim] | None = None
) -> list[LedgerRow]:
    """One :class:`LedgerRow` per claim, its verdict computed from the chapters' records
    (:func:`nsf.book.build.records`)."""
    return [_row(c, recs) for c in (claims() if registry is None else registry)]


def verdict_counts(rows: Iterable[LedgerRow]) -> dict[str, int]:
    """How many rows carry each verdict, in the order of :data:`VERDICTS` (zeros included)."""
    counts = Counter(r.verdict for r in rows)
    return {v: counts.get(v, 0) for v in VERDICTS}


# --- the page -----------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _list_table(header: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    """A MyST list-table (column widths in percent), one line per cell."""
    lines = ["```{list-table}", ":header-rows: 1", f":widths: {' '.join(map(str, widths))}", ""]
    for row in [header, *rows]:
        lines += [f"{'* -' if i == 0 else '  -'} {' '.join(str(c).split()) or '—'}"
                  for i, c in enumerate(row)]  # fmt: skip
    return [*lines, "```"]


def _section(section: str) -> str:
    """ "Sec. 4.1.2" for a numbered section, the name itself otherwise ("Abstract")."""
    return f"Sec. {section}" if section[:1].isdigit() else section


def _label(a: Ambiguity) -> str:
    return f"ambiguity-{a.id.lower().replace('-', '')}"


def _link(row: LedgerRow) -> str:
    chapter = row.claim.chapter
    if row.figure:
        return f"{{numref}}`{row.figure}`"
    return f"{{doc}}`ch. {chapter[:2]} <chapters/{chapter}>`" if chapter else ""


def _checks_list(row: LedgerRow) -> str:
    return "; ".join(f"{c['name']}: {c['verdict']} ({c['statistic']})" for c in row.checks)


def ledger_page(
    recs: Mapping[str, Mapping[str, Any]],
    registry: Iterable[Claim] | None = None,
    issues: Iterable[Ambiguity] | None = None,
    summary: Mapping[str, str] | None = None,
) -> str:
    """The ledger as a MyST page: the reproducibility summary (computed counts), the claims
    table, each claim's checks, and the ambiguities with their labels ``ambiguity-iN``."""
    rows = ledger_rows(recs, registry)
    issues = ambiguities() if issues is None else list(issues)
    text = summary if summary is not None else _registry(_registry_path()).get("summary", {})
    counts = verdict_counts(rows)
    chapters = sorted({r.claim.chapter for r in rows if r.claim.chapter})
    profiles = sorted({str(recs[c].get("profile")) for c in chapters if c in recs})
    decided = ("reproduced", "partial", "not reproduced")
    strengths = Counter(r.strength for r in rows if r.strength and r.verdict in decided)
    lines = [
        "(ledger)=",
        "# The claims ledger",
        "",
        "Every checkable claim of the paper, the number the paper prints where it prints one, "
        "and the verdict this build of the book computed for it. No verdict on this page is "
        "typed: each comes from the checks the chapters recorded when they were executed "
        f"(profile{'s' if len(profiles) != 1 else ''} {', '.join(profiles) or 'none'}), so "
        "re-running a chapter with other parameters changes its rows.",
        "",
        "## Reproducibility summary",
        "",
        f"**Scope.** {len(rows)} claims of the paper (abstract, introduction, Secs. 3–6), tested "
        f"in {len(chapters)} chapters, and {len(issues)} places where the text is ambiguous or "
        "contradicts itself. " + text.get("scope", ""),
        "",
        f"**Methodology.** {text.get('methodology', '')}",
        "",
        "**Results.** "
        + "; ".join(f"{n} {v}" for v, n in counts.items() if n)
        + ". By the strength of the weakest check behind each decided verdict: "
        + (", ".join(f"{n} {s}" for s, n in sorted(strengths.items())) or "none")
        + ". "
        + text.get("results", ""),
        "",
        f"**What was easy.** {text.get('easy', '')}",
        "",
        f"**What was difficult.** {text.get('difficult', '')}",
        "",
        "## Claims",
        "",
        "Each row links to how the claim is checked below, and to the figure or chapter that "
        "shows it. A verdict's strength is that of its weakest check.",
        "",
        *_list_table(
            ["claim", "the paper says", "paper's number", "verdict (strength)"],
            [
                [
                    f"{{ref}}`{r.claim.id} <claim-{r.claim.id.lower()}>` ({r.claim.section}); "
                    f"{_link(r)}",
                    r.claim.words,
                    r.claim.paper_value or "—",
                    f"**{r.verdict}**" + (f" ({r.strength})" if r.strength else ""),
                ]
                for r in rows
            ],
            widths=[20, 45, 15, 20],
        ),
    ]
    lines += ["", "## How each claim is checked", ""]
    for r in rows:
        c = r.claim
        lines += [f"(claim-{c.id.lower()})=", f"### {c.id} · {_section(c.section)}", "",
                  f"> {c.words}", "", f"**Checked by.** {c.quantity}", "",
                  f"**Ours.** {r.ours}"]  # fmt: skip
        if c.paper_value:
            lines += ["", f"**The paper's number.** {c.paper_value}"]
        if c.source:
            lines += ["", f"**Source of the values.** {c.source}"]
        if r.checks:
            lines += ["", f"**Recorded checks.** {_cell(_checks_list(r))}"]
        if c.ambiguities:
            refs = ", ".join(f"{{ref}}`{i} <ambiguity-{i.lower().replace('-', '')}>`"
                             for i in c.ambiguities)  # fmt: skip
            lines += ["", f"**Ambiguities.** {refs}"]
        lines += ["", f"**Verdict.** {r.verdict}" + (f" ({r.strength})" if r.strength else "")
                  + f". {_link(r)}", ""]  # fmt: skip
    lines += ["## Ambiguities and inconsistencies", "",
              *_list_table(["id", "what", "where", "how the book handles it"],
                           [[f"{{ref}}`{a.id} <{_label(a)}>`", a.title, a.where, a.handling]
                            for a in issues], widths=[8, 25, 17, 50])]  # fmt: skip
    lines.append("")
    for a in issues:
        label = _label(a)
        where = ", ".join(f"{{doc}}`ch. {ch[:2]} <chapters/{ch}>`" for ch in a.chapters)
        lines += [f"({label})=", f"### {a.id} · {a.title}", "", a.issue, "",
                  f"**Where.** {a.where}" + (f"; it bites in {where}" if where else "") + ".",
                  "", f"**How the book handles it.** {a.handling}", ""]  # fmt: skip
    return "\n".join(lines)
