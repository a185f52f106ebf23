"""The notes beside chapter 06's figures (nsf.pulsetidal.summary): each says where the run agrees
with the paper and where it does not, computed from hand-made result frames whose answer is known
(the frames of test_pulsetidal_metrics)."""

from __future__ import annotations

from test_pulsetidal_metrics import frame, linear

from nsf.pulsetidal import metrics as m
from nsf.pulsetidal import summary as s

PAPER = s.paper_numbers()


def halves(note: str) -> tuple[str, str]:
    """(the agreeing part, the disagreeing part) of a note; '' where a part is absent."""
    agree, _, disagree = note.partition("**Where it does not:**")
    return agree, disagree


def test_top1_note_agrees_when_pulse_tidal_leads_early_and_ends_higher():
    f = frame({"baseline": linear(0.01), "pulse_tidal": linear(0.012)})
    agree, disagree = halves(s.top1_note(f, PAPER, arm="case"))
    assert "+10.00 points here against the paper's +3.8" in agree
    assert "final top-1 gain holds" in agree
    assert "ahead of the baseline's at 25 of the 25 epochs" in agree
    assert disagree == ""


def test_top1_note_disagrees_when_pulse_tidal_trails():
    f = frame({"baseline": linear(0.012), "pulse_tidal": linear(0.01)})
    note = s.top1_note(f, PAPER, arm="case")
    agree, disagree = halves(note)
    assert "Where this run agrees" not in agree
    assert "final top-1 gain does not hold" in disagree and "at 0 of the 25 epochs" in disagree
    assert "Only signs compare" in note
    assert "levels compare too" in s.top1_note(f, PAPER, paper_scale=True, arm="case")


def test_top1_note_leaves_the_final_gain_undecided_with_one_seed_and_gives_its_sign():
    f = frame({"baseline": linear(0.01), "pulse_tidal": linear(0.012)}, offsets=(0.0,))
    note = s.top1_note(f, PAPER, arm="case")
    assert "**Not decided by this run:**" in note and "the paper's sign" in note


def test_speedup_note_sorts_the_three_readings_by_their_verdicts():
    # S = 0.75 at every level: Sec. 5.1.3 and the abstract hold, Sec. 5.1.2's 15-20 % does not
    f = frame({"baseline": linear(0.01), "pt": linear(0.04, cap=0.6)})
    agree, disagree = halves(s.speedup_note(m.speedup_readings(f, "baseline", "pt", arm="case")))
    assert "Sec. 5.1.3" in agree and "abstract" in agree and "Sec. 5.1.2" not in agree
    assert "Sec. 5.1.2" in disagree and "0.750" in disagree


def test_loss_note_checks_the_two_statements_about_the_loss_separately():
    arms = {"baseline": linear(0.01), "pulse_tidal": linear(0.02, cap=0.6)}
    lower = frame(arms, loss={"baseline": lambda e: 2.0, "pulse_tidal": lambda e: 1.0})
    matched = m.loss_at_matched_accuracy(lower, "baseline", "pulse_tidal", arm="case")
    agree, disagree = halves(s.loss_note(lower, matched, arm="case"))
    assert "consistently reduces test error and test loss" in agree and "(lower)" in agree
    assert "final loss change holds" in agree
    assert "did not exhibit a comparable reduction" in disagree
    higher = frame(arms, loss={"baseline": lambda e: 1.0, "pulse_tidal": lambda e: 2.0})
    matched = m.loss_at_matched_accuracy(higher, "baseline", "pulse_tidal", arm="case")
    note = s.loss_note(higher, matched, arm="case")
    agree, disagree = halves(note)
    assert "did not exhibit a comparable reduction" in agree and "(not lower)" in disagree
    assert "demonstrates distinct convergence behavior" in note
