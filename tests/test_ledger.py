"""The claims ledger (nsf.ledger) and the figure index: verdicts computed from chapter records,
the registry complete and consistent, the re-run command read back as the same parameters."""

from __future__ import annotations

import re

import pytest

from nsf import ledger
from nsf.book import build, figure_index
from nsf.book.parameters import parse_value
from nsf.cli import _parser


def _check(name: str, passed, strength: str = "independent") -> dict:
    verdict = {True: "holds", False: "does not hold"}.get(passed, "undecided")
    return {"name": name, "passed": passed, "strength": strength, "statistic": "s",
            "verdict": verdict}  # fmt: skip


def _claim(**kw) -> ledger.Claim:
    base = {"id": "L1", "section": "1", "words": "w", "quantity": "q", "chapter": "01_x"}
    return ledger.Claim(**{**base, **kw})


def _verdict(recorded, profile="default", **kw) -> ledger.LedgerRow:
    recs = {"01_x": {"profile": profile, "checks": recorded, "figures": []}}
    return ledger.ledger_rows(recs, [_claim(**kw)])[0]


@pytest.mark.parametrize(
    ("passed", "verdict"),
    [
        ([True, True], "reproduced"),
        ([True, False], "partial"),
        ([False, False], "not reproduced"),
        ([None, None], "undecided"),
        ([True, None], "reproduced"),
        ([False, None], "not reproduced"),
    ],
)
def test_the_verdict_follows_the_decided_checks(passed, verdict):
    checks = [_check(f"K{i}", p) for i, p in enumerate(passed)]
    assert _verdict(checks, checks=("K*",)).verdict == verdict


def test_only_the_checks_the_patterns_select_count():
    checks = [_check("a · B-1 · t90", True), _check("a · B-2 · t90", False)]
    assert _verdict(checks, checks=("* · B-1 · *",)).verdict == "reproduced"
    assert _verdict(checks, checks=("* · B-2 · *",)).verdict == "not reproduced"
    assert _verdict(checks, checks=("B-1",)).verdict == "undecided"  # no match: not "reproduced"


def test_a_claim_about_the_paper_scale_is_not_decided_by_the_stand_in():
    checks = [_check("S", True)]
    row = _verdict(checks, checks=("S",), scale="paper")
    assert row.verdict == "needs the paper profile" and "1 of 1" in row.ours
    assert _verdict(checks, "paper", checks=("S",), scale="paper").verdict == "reproduced"
    assert _verdict([], checks=("S",), scale="paper").verdict == "needs the paper profile"


def test_the_strength_is_that_of_the_weakest_check():
    checks = [_check("K1", True, "independent"), _check("K2", True, "calibration")]
    assert _verdict(checks, checks=("K*",)).strength == "calibration"
    checks.append(_check("K3", True, "identity"))
    assert _verdict(checks, checks=("K*",)).strength == "identity"


def test_a_missing_chapter_or_an_untestable_claim_says_so():
    rows = ledger.ledger_rows({}, [_claim(checks=("K1",)), _claim(not_testable="one backbone")])
    assert [r.verdict for r in rows] == ["not run", "not testable"]
    counts = ledger.verdict_counts(rows)
    assert list(counts) == list(ledger.VERDICTS) and sum(counts.values()) == 2


def test_the_registry_lists_every_claim_and_ambiguity_once_in_order():
    claims, issues = ledger.claims(), ledger.ambiguities()
    assert [c.id for c in claims] == [f"L{i}" for i in range(1, 38)]
    assert [a.id for a in issues] == [f"I-{i}" for i in range(1, 23)]
    chapters = set(build.chapter_names())
    ids = {a.id for a in issues}
    for c in claims:
        assert c.not_testable or (c.chapter in chapters and c.checks), c.id
        assert set(c.ambiguities) <= ids, c.id
        assert c.scale in ("any", "paper"), c.id
    for a in issues:
        assert set(a.chapters) <= chapters, a.id


def test_the_page_has_a_target_for_every_claim_and_ambiguity():
    page = ledger.ledger_page({})
    for c in ledger.claims():
        assert f"(claim-{c.id.lower()})=" in page
    for a in ledger.ambiguities():
        assert f"(ambiguity-{a.id.lower().replace('-', '')})=" in page
    lines = page.splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("* - {ref}`L")]
    assert len(rows) == 37
    assert all(lines[i + 3] in ("  - **not run**", "  - **not testable**") for i in rows), [
        lines[i + 3] for i in rows
    ]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"p_values": [0.5, -0.25], "eps_mode": "outside", "eta": 0.02, "steps": 10}],
)
def test_the_rerun_command_reads_back_as_the_same_parameters(overrides):
    command = build.rerun_command("04", "ci", overrides)
    import shlex

    args = _parser().parse_args(shlex.split(command)[1:])
    assert (args.chapter, args.profile) == ("04", "ci")
    assert {n: parse_value(v) for n, v in args.parameter} == overrides


def test_the_figure_index_cites_every_recorded_figure():
    fig = {"label": "fig4", "name": "fig-04_x-fig4", "caption": "What to see. More.",
           "png": "/book/_static/figures/04_x/fig4.png",
           "pdf": "/book/_static/figures/04_x/fig4.pdf", "params": "ab12", "commit": "c0ffee",
           "profile": "ci"}  # fmt: skip
    recs = {"04_x": {"figures": [fig], "command": "nsf run 04 --profile ci"}}
    page = figure_index.figure_index_page(recs)
    assert "{download}`PDF </book/_static/figures/04_x/fig4.pdf>`" in page
    assert "What to see" in page and "More" not in page.split("## Cite")[0]
    entry = figure_index.bibtex(figure_index.figure_rows(recs)[0])
    assert re.search(r"c0ffee.*ab12.*nsf run 04 --profile ci", entry)
    assert entry.count("{") == entry.count("}")
