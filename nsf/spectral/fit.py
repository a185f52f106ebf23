r"""The decay constants: where :math:`\kappa_k` is fitted (paper Sec. 4.1.2).

The decay constant :math:`\kappa_k` of each mode is the negative OLS slope of
:math:`\log|a_k(t)|` over a fit window, regressed on t or on the effective time :math:`\tau` of
Eq. 8, with its :math:`R^2`. :func:`decay_table` simulates a table's schedules and fits them: the
paper's 8 x 6 table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nsf.spectral.setup import SpectralSetup
from nsf.spectral.simulate import SpectralRun, simulate

if TYPE_CHECKING:  # pandas is in the book extra; it is imported where a DataFrame is returned
    import pandas as pd

__all__ = ["FLOOR", "DecayFit", "decay_table", "envelope_rebounds", "fit_decay", "rebound_table"]

#: |a_k| is floored here before the log.
FLOOR = 1e-300


@dataclass(frozen=True)
class DecayFit:
    """kappa_k, R^2 and intercept of ``log|a_k| = alpha_k - kappa_k * (t or tau)``, per schedule.

    Arrays are [S, K]; ``crossings`` flags modes whose a_k changes sign inside the window (there
    ``log|a_k|`` dips towards the floor and the single-exponential fit is poor).
    """

    names: tuple[str, ...]
    keys: tuple[int, ...]
    kappa: np.ndarray
    r2: np.ndarray
    intercept: np.ndarray
    crossings: np.ndarray
    variable: str
    window: tuple[float, float]

    def frame(self, values: np.ndarray) -> pd.DataFrame:
        """values [S, K] as a DataFrame: index = schedule names, columns = keys."""
        import pandas as pd

        return pd.DataFrame(
            values,
            index=pd.Index(self.names, name="schedule"),
            columns=pd.Index(self.keys, name="k"),
        )

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(kappa, r2) DataFrames, index = schedule names, columns = keys."""
        return self.frame(self.kappa), self.frame(self.r2)


def fit_decay(
    run: SpectralRun,
    window: Sequence[float] | None = None,
    variable: str | None = None,
    log_envelope: np.ndarray | None = None,
) -> DecayFit:
    r"""The decay constants: OLS fit of :math:`\log|a_k|\approx\alpha_k-\kappa_k u` over the window.

    Paper Sec. 4.1.2 ("regress ``log|a_k(t)|`` on the window"): u is t (``variable="t"``, the
    default) or the effective time :math:`\tau` of Eq. 8 (``"tau"``, where the near-diagonal
    theory gives every mode the slope :math:`c\eta`). The window [t_a, t_b] is
    always in simulated time t; records with t_a <= t <= t_b enter the fit. ``|a_k|`` is floored at
    1e-300. Returns kappa_k = -slope and the coefficient of determination R^2 per schedule and
    mode (R^2 is NaN where ``log|a_k|`` is constant).

    ``log_envelope`` [S, R, K] replaces ``log|a_k|`` of the run
    (used by :func:`diagonal_prediction`).
    """
    s = run.setup
    window = s.fit_window if window is None else tuple(float(w) for w in window)
    variable = s.fit_variable if variable is None else variable
    if variable not in ("t", "tau"):
        raise ValueError(f"variable={variable!r} is refused: use 't' or 'tau'")
    if not (0 <= window[0] < window[1] <= run.t[-1] * (1 + 1e-12)):
        raise ValueError(
            f"window={window!r} is refused: it must satisfy 0 <= t_a < t_b <= {run.t[-1]:g}"
        )
    mask = s.window_mask(run.t, window)
    if mask.sum() < 3:
        raise ValueError(f"window={window!r} is refused: it holds fewer than 3 recorded points")
    if log_envelope is None:
        log_envelope = np.log(np.maximum(np.abs(run.a), FLOOR))
    y = log_envelope[:, mask, :]  # [S, M, K]
    if variable == "tau" and not np.all(np.isfinite(run.tau)):
        raise ValueError(
            f"variable={variable!r} is refused: this run did not track tau; simulate with "
            "track_theory=True"
        )
    u = np.broadcast_to(run.t[mask], y.shape[:2]) if variable == "t" else run.tau[:, mask]
    u = u[:, :, None]
    du = u - u.mean(axis=1, keepdims=True)
    dy = y - y.mean(axis=1, keepdims=True)
    slope = (du * dy).sum(axis=1) / (du**2).sum(axis=1)
    intercept = y.mean(axis=1) - slope * u.mean(axis=1)
    ss_res = ((dy - slope[:, None, :] * du) ** 2).sum(axis=1)
    ss_tot = (dy**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
    sign = np.sign(run.a[:, mask, :])
    crossings = (sign[:, 1:, :] * sign[:, :-1, :] < 0).any(axis=1)
    return DecayFit(
        names=run.names,
        keys=run.keys,
        kappa=-slope,
        r2=r2,
        intercept=intercept,
        crossings=crossings,
        variable=variable,
        window=window,
    )


def decay_table(
    schedules: Mapping[str, Callable], setup: SpectralSetup | None = None, **overrides: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kappa, r2): the decay table of Sec. 4.1.2 for ``schedules``, one batched simulation.

    Index = schedule names, columns = ``keys``. ``**overrides`` are :class:`SpectralSetup` fields.
    Invalid values raise ``ValueError`` before simulating.
    """
    return fit_decay(simulate(schedules, setup=setup, **overrides)).tables()


def envelope_rebounds(run: SpectralRun, window: Sequence[float] | None = None) -> np.ndarray:
    """[S, K]: True where the envelope ``|a_k|`` rises again between two records inside the
    window (default the setup's fit window): the "dips and rebounds" the paper reports for
    strongly negative p (Sec. 4.1.2)."""
    inside = run.setup.window_mask(run.t, window)
    return (np.diff(run.envelope[:, inside], axis=1) > 0).any(axis=1)


def rebound_table(run: SpectralRun, window: Sequence[float] | None = None) -> pd.DataFrame:
    """:func:`envelope_rebounds` as a DataFrame like the kappa table (index = schedule names,
    columns = keys): the ``rebounds`` that :func:`nsf.spectral.claim_checks` reads for K4c."""
    import pandas as pd

    return pd.DataFrame(envelope_rebounds(run, window), index=list(run.names), columns=run.keys)
