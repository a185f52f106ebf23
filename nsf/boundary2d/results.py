r"""What one panel's training produced, and the alignment metrics read from it (Sec. 4.2.2).

The paper judges early alignment by eye on Fig. 5 ("within the first few iterations", "after
several hundred iterations"). The companion makes it a number (book chapter 05, "Metrics"):
the **Bayes agreement** (the fraction of the 50/50 test set on which the network and the Bayes
rule agree), :math:`t_{90}` (:func:`first_crossing` of the agreement at ``align_threshold``) and
the **log-time score** (:func:`log_time_score`), which unlike :math:`t_{90}` never ties at
"never reached".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nsf.boundary2d import geometry
    from nsf.boundary2d.setup import BoundaryDemo, Panel

__all__ = ["PanelResult", "first_crossing", "log_time_score"]


def first_crossing(series: np.ndarray, threshold: float) -> float:
    """The first index i with series[i] >= threshold, as a float; ``inf`` if none (t90)."""
    hit = np.flatnonzero(np.asarray(series) >= threshold)
    return float(hit[0]) if hit.size else math.inf


def log_time_score(series: np.ndarray) -> float:
    r"""Mean of series[t] over t = 1..T with weights 1/t (companion): the area under the curve
    on a logarithmic iteration axis, normalised to [0, 1] for a series in [0, 1]. Rewards early
    alignment; unlike t90 it never ties at 'never reached'."""
    s = np.asarray(series, dtype=float)[1:]
    w = 1.0 / np.arange(1, len(s) + 1)
    return float(np.sum(w * s) / np.sum(w))


@dataclass
class PanelResult:
    """What :func:`~nsf.boundary2d.train_panel` returns for one :class:`~nsf.boundary2d.Panel`.

    Attributes:
        demo, panel: the configuration.
        data: the :class:`~nsf.boundary2d.geometry.Samples` used (``train``, ``test``,
            ``test_trainprop``).
        history: pandas DataFrame, one row per (p, iteration 0..iters): ``acc`` (test, 50/50),
            ``acc_near`` (test near branches), ``acc_trainprop``, ``bayes_agreement`` (test),
            ``loss`` (mean BCE on the training set, whatever the reduction), ``loss_ratio``
            (loss / loss at iteration 0), ``step_norm`` (||theta_t - theta_{t-1}||_2).
        maps: p -> array (C, R, R) of P(class 1) on the map grid at the checkpoints.
        update_norms: p -> array (C, n_train) of per-sample effective update norms.
        topk: p -> bool array (C, n_train), True for the top-k per class.
        vhat_median: p -> array (C,) median of v^ over all parameters at the checkpoints.
        grid: the map's axis, (R,).

    The metrics below read only ``demo`` and ``history``, so a hand-made history serves to test
    them.
    """

    demo: BoundaryDemo
    panel: Panel
    data: dict[str, geometry.Samples]
    history: object
    maps: dict[float, np.ndarray]
    update_norms: dict[float, np.ndarray]
    topk: dict[float, np.ndarray]
    vhat_median: dict[float, np.ndarray]
    grid: np.ndarray

    def _agreement(self, p: float) -> np.ndarray:
        h = self.history
        return h.loc[h.p == p, "bayes_agreement"].to_numpy()

    def t_align(self) -> dict[float, float]:
        """p -> first iteration with Bayes agreement >= align_threshold (inf if never): t90."""
        return {
            p: first_crossing(self._agreement(p), self.demo.align_threshold)
            for p in self.demo.p_values
        }

    def scores(self) -> dict[float, float]:
        """p -> log-time mean Bayes agreement (:func:`log_time_score`; higher = earlier)."""
        return {p: log_time_score(self._agreement(p)) for p in self.demo.p_values}

    def ranking(self) -> list[float]:
        """The p values ordered by log-time score, best (earliest alignment) first."""
        score = self.scores()
        return sorted(self.demo.p_values, key=lambda p: -score[p])

    def half_gain(self) -> dict[float, tuple[int, float]]:
        """p -> (t_half, loss ratio at t_half): t_half is the first iteration at which the Bayes
        agreement has made half of its largest gain over iteration 0 (companion). "Accuracy
        improves while the loss remains high" (paper abstract, Sec. 4.2.2) reads: loss ratio
        there is still above ``demo.loss_high_frac``."""
        h, out = self.history, {}
        for p in self.demo.p_values:
            hp = h[h.p == p]
            a = hp["bayes_agreement"].to_numpy()
            mark = a[0] + 0.5 * (a.max() - a[0])
            t = int(first_crossing(a, mark)) if a.max() > a[0] else 0
            out[p] = (t, float(hp["loss_ratio"].to_numpy()[t]))
        return out

    def metrics_table(self):
        """Per p: t90, log-time score, loss ratios, and the agreement at the checkpoints."""
        import pandas as pd

        t90, score, half = self.t_align(), self.scores(), self.half_gain()
        h = self.history
        rows = []
        for p in self.demo.p_values:
            hp = h[h.p == p].set_index("iteration")
            t = t90[p]
            row = {
                "p": p,
                "t90": t,
                "log-time score": score[p],
                "loss ratio at t90": float(hp.loc[int(t), "loss_ratio"])
                if math.isfinite(t)
                else np.nan,
                "t_half": half[p][0],
                "loss ratio at t_half": half[p][1],
            }
            for c in self.demo.checkpoints:
                row[f"agree@{c}"] = float(hp.loc[c, "bayes_agreement"])
            row["acc@end"] = float(hp["acc"].iloc[-1])
            row["near acc@end"] = float(hp["acc_near"].iloc[-1])
            row["loss@end"] = float(hp["loss"].iloc[-1])
            rows.append(row)
        return pd.DataFrame(rows).set_index("p")
