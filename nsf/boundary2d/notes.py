"""The chapter's tables and verdicts in words (Sec. 4.2.2; book chapter 05).

Every sentence the chapter prints about its results is written here, from the results, so the
notebook only displays it: the separators, the step-size gains of the confound, each panel's
ranking and B-1..B-3, "accuracy improves while the loss remains high" read per run and against
p = 0 (B-4), and the conclusion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from nsf.boundary2d.checks import alignment_checks, divergence_check, lead_counts, panel_checks
from nsf.boundary2d.geometry import Samples, bayes_predict, best_linear_accuracy
from nsf.boundary2d.results import PanelResult
from nsf.boundary2d.setup import BoundaryDemo, Panels

__all__ = [
    "checks_note",
    "conclusion_note",
    "divergence_note",
    "divergence_table",
    "loss_high_note",
    "metrics_overview",
    "order_words",
    "panel_note",
    "separator_note",
    "separator_table",
    "step_gain_table",
    "step_ratio_note",
    "vhat_note",
]

_WORD = {True: "holds", False: "does not hold", None: "is undecided"}


def _score_checks(res: PanelResult):
    return alignment_checks(res.demo, {p: -s for p, s in res.scores().items()}, label="score")


def separator_table(demo: BoundaryDemo, data: Mapping[str, Samples]):
    """Per sample (training, 50/50 test, test at the training split): its size and the accuracy
    of the Bayes rule and of the best straight line."""
    import pandas as pd

    rows = []
    for name, s in (
        ("training set", data["train"]),
        ("test set (50/50)", data["test"]),
        ("test set (training split)", data["test_trainprop"]),
    ):
        rows.append({
            "sample": name,
            "points": len(s),
            "Bayes rule accuracy": np.mean(bayes_predict(s.X, **demo.geometry()) == s.y),
            "best line's accuracy": best_linear_accuracy(s.X, s.y),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("sample")


def separator_note(demo: BoundaryDemo, separators) -> str:
    """What :func:`separator_table` says: the problem needs a bent boundary."""
    return (
        f"On the training points the Bayes rule is right {separators.iloc[0, 1]:.1%} of the time "
        f"and the best straight line (searched exhaustively over directions and offsets) "
        f"{separators.iloc[0, 2]:.1%}: the problem needs a bent boundary, which is what the MLP "
        f"must learn. On the 50/50 test set, where the sparse near branches weigh as much as the "
        f"far ones, even the Bayes rule scores {separators.iloc[1, 1]:.1%}: a Bayes agreement of "
        f"{demo.align_threshold:g} (the t90 criterion) means matching the optimal separator, not "
        f"classifying every point."
    )


def _first_steps(results: Mapping[str, PanelResult]):
    return {
        key: res.history[res.history.iteration == 1].set_index("p").step_norm
        for key, res in results.items()
    }


def step_gain_table(results: Mapping[str, PanelResult], panels: Panels, n_train: int):
    """Per p: the first-step gain of the sum panel over the mean panel predicted by the
    homogeneity of Eq. 3 ((eta_ii / eta_i) n^(1-2p), eps negligible) and measured."""
    import pandas as pd

    demo = results["mean"].demo
    step1 = _first_steps(results)
    n_scale = n_train if panels.reduction == "mean" else 1
    gain = pd.DataFrame(
        {
            "predicted: (η_ii/η_i) n^(1-2p)": {
                f"{p:g}": panels.lr_sum / panels.lr * n_scale ** (1 - 2 * p) for p in demo.p_values
            },
            "measured: step_ii / step_i at iteration 1": {
                f"{p:g}": step1["sum"][p] / step1["mean"][p] for p in demo.p_values
            },
        }
    )
    gain.index.name = "p"
    return gain


def vhat_note(results: Mapping[str, PanelResult]) -> str:
    """The median v^ at the first checkpoint per panel, and what it implies for v^^(-p)."""
    demo = next(iter(results.values())).demo
    return (
        f"Median $\\hat v$ over all weights at iteration {demo.checkpoints[0]}: "
        + "; ".join(
            f"{res.panel.name}: {res.vhat_median[demo.p_values[0]][0]:.2g}"
            for res in results.values()
        )
        + ". Below 1, $\\hat v^{-p}$ grows with $p$ (larger $p$, larger steps); above 1 it shrinks."
    )


def order_words(demo: BoundaryDemo, order: list[float]) -> str:
    """Whether the ranking ``order`` (best first) is monotone in p, in words."""
    if order == sorted(demo.p_values, reverse=True):
        return "the larger p, the earlier, without exception"
    if order == sorted(demo.p_values):
        return "the more negative p, the earlier, without exception"
    return "the order is not monotone in p"


def panel_note(res: PanelResult) -> str:
    """One panel in words: its ranking, who reaches t90 when, and B-1..B-3 on the score."""
    demo = res.demo
    t90 = res.t_align()
    order = res.ranking()
    reached = [p for p in demo.p_values if math.isfinite(t90[p])]
    checks = _score_checks(res)
    return (
        f"**{res.panel.name}.** Ranked by early alignment (log-time mean Bayes agreement), best "
        f"first: {', '.join(f'{p:g}' for p in order)}: {order_words(demo, order)}. "
        + (
            f"Bayes agreement {demo.align_threshold:g} is reached by "
            + ", ".join(f"p = {p:g} at iteration {t90[p]:.0f}" for p in reached)
            if reached
            else f"No p reaches Bayes agreement {demo.align_threshold:g} within "
            f"{demo.iters} iterations, so t90 cannot rank them"
        )
        + ". Against the paper's observations, in this panel: SGD is the slowest (B-1) "
        f"{_WORD[checks[0].passed]}; the slightly negative p = {demo.p_delta:g} is the fastest "
        f"(B-2) {_WORD[checks[1].passed]}; the positive c = {demo.p_c:g} is slower than "
        f"a, b = {', '.join(f'{q:g}' for q in demo.p_ab)} (B-3) {_WORD[checks[2].passed]}."
    )


def _loss_high(res: PanelResult) -> dict[float, bool]:
    """p -> is the loss still above ``loss_high_frac`` of its initial value when the Bayes
    agreement has made half of its gain (the per-run reading)?"""
    frac = res.demo.loss_high_frac
    return {p: t_loss[1] > frac for p, t_loss in res.half_gain().items()}


def loss_high_note(results: Mapping[str, PanelResult]) -> str:
    """ "Accuracy improves while the loss remains high?", read per run, per panel: at half the
    agreement gain and at t90, is the loss still above ``loss_high_frac`` of its initial value?
    Ends by saying whether that reading separates any p from p = 0 in any panel: a reading that
    holds for SGD too cannot test a claim about p."""
    lines = []
    separated = []
    runs = 0
    held = 0
    for res in results.values():
        demo = res.demo
        frac = demo.loss_high_frac
        flags = _loss_high(res)
        high = [p for p in demo.p_values if flags[p]]
        runs += len(flags)
        held += len(high)
        separated += [(res.panel.name, p) for p in demo.p_values if flags[p] != flags[0.0]]
        t90 = res.t_align()
        reached = [p for p in demo.p_values if math.isfinite(t90[p])]
        ratios = res.history.set_index(["p", "iteration"])["loss_ratio"]
        reached_high = [p for p in reached if ratios.loc[(p, int(t90[p]))] > frac]
        lines.append(
            f"* **{res.panel.name}**: when the Bayes agreement had made half of its gain, the loss "
            f"was still above {frac:g} of its initial value for {len(high)} of "
            f"{len(demo.p_values)} p values"
            + (
                f" (all but {', '.join(f'{p:g}' for p in demo.p_values if p not in high)})"
                if 0 < len(high) < len(demo.p_values)
                else ""
            )
            + ". "
            + (
                f"At t90, the loss was still high for {len(reached_high)} of the "
                f"{len(reached)} p values that reached it."
                if reached
                else "No p reached t90, so the reading at t90 is undecided."
            )
        )
    if not separated:
        verdict = (
            f"Read per run, the observation holds for {held} of {runs} runs, and in every panel it "
            "holds for p = 0 (SGD) exactly when it holds for the other p, the step-matched panel "
            "included: it separates no arm from SGD, so **it does not discriminate** and is no "
            "test of a claim about p. Check B-4 below compares each panel's slightly negative p "
            "with p = 0 at matched iterations instead."
        )
    else:
        verdict = (
            f"Read per run, the observation holds for {held} of {runs} runs; it differs from "
            "p = 0's reading for "
            + "; ".join(f"p = {p:g} in {name}" for name, p in separated)
            + ". Check B-4 below compares each panel's slightly negative p with p = 0 at matched "
            "iterations."
        )
    body = "\n".join(lines)
    return f"**Accuracy improves while the loss remains high?**\n\n{body}\n\n{verdict}"


def divergence_table(results: Mapping[str, PanelResult]):
    """Per panel and p other than 0, at matched iterations against p = 0
    (:func:`~nsf.boundary2d.checks.lead_counts`): at how many iterations p is ahead in Bayes
    agreement, at how many of those its training loss is not lower, and that share."""
    import pandas as pd

    rows = []
    for res in results.values():
        for p in res.demo.p_values:
            if p == 0.0:
                continue
            n, ahead, lagging = lead_counts(res, p)
            rows.append({
                "panel": res.panel.name,
                "p": f"{p:g}",
                "iterations compared": n,
                "ahead of p = 0 in agreement": ahead,
                "of those, loss not lower": lagging,
                "share": lagging / ahead if ahead else np.nan,
            })  # fmt: skip
    return pd.DataFrame(rows).set_index(["panel", "p"])


def divergence_note(results: Mapping[str, PanelResult]) -> str:
    """B-4 in words: its verdict per panel, and whether the step-matched panel agrees with the
    panels at Eq. (3)'s own step lengths."""
    checks = {key: divergence_check(res) for key, res in results.items()}
    d = next(iter(results.values())).demo.p_delta
    words = {True: "holds", False: "does not hold", None: "is undecided"}
    head = "; ".join(
        f"{results[k].panel.name}: B-4 {words[c.passed]} ({c.statistic})" for k, c in checks.items()
    )
    free = [checks[k].passed for k in ("mean", "sum") if k in checks]
    matched = checks["rms"].passed if "rms" in checks else None
    if matched is None:
        tail = "The step-matched panel cannot decide, so it cannot say whether the step length "
        tail += "carries what the other panels show."
    elif any(v is True for v in free) and matched is False:
        tail = (
            f"Where B-4 holds at Eq. (3)'s own step lengths it does not survive at SGD's step "
            f"length (panel iii): the lead of p = {d:g} in accuracy with a lagging loss goes with "
            "the step size, not the direction p chooses."
        )
    elif matched is True:
        tail = (
            f"It holds in the step-matched panel (iii) too: at SGD's step length p = {d:g} is "
            "ahead in accuracy while its loss is not, a difference of direction."
        )
    else:
        tail = (
            f"It holds in none of the panels: p = {d:g} is either not ahead of SGD in accuracy at "
            "most iterations, or, where it is, ahead in loss too, which is faster training, not "
            "accuracy advancing while the loss lags."
        )
    others = []
    for res in results.values():
        for p in res.demo.p_values:
            if p in (0.0, d):
                continue
            n, ahead, lagging = lead_counts(res, p)
            if n and ahead > n / 2 and lagging > ahead / 2:
                others.append(f"p = {p:g} in {res.panel.name}")
    rest = (
        "Of the other p (the table), B-4's two clauses hold for "
        + ("; ".join(others) if others else "none")
        + "."
    )
    return "**B-4, against p = 0 at matched iterations.** " + head + ". " + tail + " " + rest


def step_ratio_note(results: Mapping[str, PanelResult]) -> str:
    """The ratio of the longest to the shortest first step across p, per panel."""
    first = _first_steps(results)
    return (
        "Ratio of the longest to the shortest first step across p: "
        + "; ".join(
            f"{res.panel.name}: {first[k].max() / first[k].min():.3g}×"
            for k, res in results.items()
        )
        + ". One learning rate for every p is therefore far from one step size in panels (i) "
        "and (ii)."
    )


def metrics_overview(results: Mapping[str, PanelResult]):
    """Every panel's :meth:`~nsf.boundary2d.results.PanelResult.metrics_table`, a selection of
    its columns renamed for reading, stacked and indexed by (panel, p)."""
    import pandas as pd

    demo = next(iter(results.values())).demo
    cp = demo.checkpoints
    mid = cp[len(cp) // 2]
    keep = {
        "t90": "t90",
        "log-time score": "log-time score",
        "t_half": "t½",
        "loss ratio at t_half": "loss ratio at t½",
        f"agree@{cp[0]}": f"agreement @{cp[0]}",
        f"agree@{mid}": f"agreement @{mid}",
        f"agree@{cp[-1]}": f"agreement @{cp[-1]}",
        "acc@end": "test acc (end)",
        "near acc@end": "near acc (end)",
        "loss@end": "loss (end)",
    }
    tables = []
    for res in results.values():
        t = res.metrics_table()[list(keep)].rename(columns=keep)
        t.index = pd.MultiIndex.from_product(
            [[res.panel.name], [f"{p:g}" for p in t.index]], names=["panel", "p"]
        )
        tables.append(t)
    return pd.concat(tables)


def checks_note(results: Mapping[str, PanelResult]) -> str:
    """Per panel: which of B-1..B-3 hold on the log-time score, and each verdict on t90."""
    summary = []
    for res in results.values():
        on_t90, on_score = panel_checks(res)
        held = [c.name for c in on_score if c.verdict == "holds"]
        summary.append(
            f"* **{res.panel.name}**: on the log-time score {', '.join(held) or 'none of B-1…B-3'} "
            f"{'hold' if len(held) != 1 else 'holds'}; on t90: "
            + ", ".join(f"{c.name} {c.verdict}" for c in on_t90)
            + "."
        )
    return "\n".join(summary)


def conclusion_note(results: Mapping[str, PanelResult]) -> str:
    """What holds and what it means: the fastest and slowest p per panel, whether the reduction
    flips the ranking, how much the direction matters at matched step lengths, and whether the
    paper's full ordering (B-1, B-2 and B-3 together) is reproduced in any panel."""
    orders = {key: res.ranking() for key, res in results.items()}
    verdicts = {key: [c.passed for c in _score_checks(res)] for key, res in results.items()}
    spread = {
        key: max(res.scores().values()) - min(res.scores().values()) for key, res in results.items()
    }
    lines = [
        f"* {res.panel.name}: fastest p = {orders[k][0]:g}, slowest p = {orders[k][-1]:g}; "
        f"{order_words(res.demo, orders[k])}. B-1/B-2/B-3 on the log-time score: "
        + "/".join({True: "holds", False: "fails", None: "undecided"}[v] for v in verdicts[k])
        + f"; spread of the log-time score across p: {spread[k]:.3f}."
        for k, res in results.items()
    ]
    flip = orders["mean"][0] != orders["sum"][0]
    lines.append(
        "\nThe fastest p "
        + (
            "changes between the mean and the sum reduction"
            if flip
            else "is the same under the mean and the sum reduction"
        )
        + " at fixed learning rates: the step-size confound "
        + ("is what ranks the p values in this demo. " if flip else "does not flip it here. ")
        + f"With the step length matched (panel iii) the score spread across p is "
        f"{spread['rms']:.3f}, against {spread['mean']:.3f} and {spread['sum']:.3f} in panels (i) "
        "and (ii): "
        + (
            "the direction that p chooses matters much less than the step length it implies."
            if spread["rms"] < 0.5 * min(spread["mean"], spread["sum"])
            else "the direction that p chooses matters as much as the step length."
        )
    )
    paper_all = any(all(v is True for v in verdicts[k]) for k in results)
    lines.append(
        "The paper's complete ordering (B-1, B-2 and B-3 together) "
        + (
            "is reproduced in at least one panel."
            if paper_all
            else "is reproduced in none of the three panels; where a panel disagrees, the figure "
            "above shows by how much."
        )
    )
    return "\n".join(lines)
