"""The paper's claims about its decay table (Sec. 4.1.2), made operational and checked.

Each claim of Sec. 4.1.2 (p = 0 decays every mode alike; p > 0 is low-pass; p < 0 high-pass;
strongly negative p is non-exponential, drops at high k and dips and rebounds; tidal schedules
accelerate early decay; ...) is a :class:`nsf.verdicts.Check` computed from a kappa table, its
R^2 and the envelopes' rebounds by :func:`claim_checks`: K1, K2, K3, K4a, K4b, K4c, K5, K6, K7.
How each operational test reads the paper is on the book page "How the paper was
reconstructed: chapter 03". The
roles of the rows (which is p = 0, which tidal row has which same-mean constant) come from the
schedules themselves (:func:`nsf.spectral.table.schedule_roles`). The tests are deliberately the
weak, qualitative form of the claims.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import spearmanr

from nsf.spectral.paper import paper_p0_value
from nsf.spectral.table import Roles, schedule_roles
from nsf.verdicts import Check

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CLAIMS", "claim_checks", "claims_count", "claims_note", "theory_checks"]

#: The checks, as (id, claim in the paper's words, operational test). The paper's observation 2
#: (strongly negative p) has three parts, and each is its own check: K4a, K4b, K4c.
CLAIMS = (
    (
        "K1",
        "p = 0: all modes decay at 0.400, straight lines",
        "max_k |kappa_k - 0.400| < 5e-4 and min_k R^2 > 0.999",
    ),
    (
        "K2",
        "positive p: mild low-pass bias",
        "for every p > 0: kappa_last < kappa_first and Spearman(kappa_k, log k) < 0",
    ),
    (
        "K3",
        "negative p: high-pass tendency",
        "for every p < 0 except the most negative: kappa_last > kappa_first and Spearman > 0",
    ),
    (
        "K4a",
        "strongly negative p: non-single-exponential behaviour",
        "most negative p: min_k R^2 below that of the next negative p (any drop counts)",
    ),
    (
        "K4b",
        "strongly negative p: kappa drops at high k",
        "most negative p: kappa at the last key < kappa at the key before it",
    ),
    (
        "K4c",
        "strongly negative p: the traces display dips and rebounds",
        "most negative p: some envelope |a_k| rises again between two records in the fit window",
    ),
    (
        "K5",
        "tidal schedules accelerate early decay vs the same-mean constant",
        "tidal of mean 0 > p = 0 at every k; tidal of mean > 0 > its constant at every k; "
        "tidal of mean < 0 > its constant at the last key",
    ),
    (
        "K6",
        "widest swing: multi-slope, slightly lower R^2",
        "mean_k R^2 of the mean-0 tidal < mean_k R^2 of p = 0",
    ),
    (
        "K7",
        "tidal [0, A] stays low-pass; tidal [-A, 0] accelerates high k with high R^2",
        "Spearman(kappa, log k) < 0 for the mean > 0 tidal; > 0 and min_k R^2 > 0.95 for mean < 0",
    ),
)
_CLAIMS = {cid: (claim, test) for cid, claim, test in CLAIMS}
#: K1's 0.400 is the paper's own p = 0 row, and c * eta was chosen from that very row to give it:
#: K1 is a calibration (it checks the simulator and the fit, not the paper). K4a passes on any drop
#: of R^2 against the next negative p, however small: lenient.
_STRENGTH = {"K1": "calibration", "K4a": "lenient"}


def _check(cid: str, statistic: str, passed: bool | None) -> Check:
    claim, test = _CLAIMS[cid]
    return Check(
        name=cid,
        claim=claim,
        criterion=test,
        statistic=statistic,
        passed=None if passed is None else bool(passed),
        undecided=statistic if passed is None else "not applicable",
        strength=_STRENGTH.get(cid, "independent"),
    )


def claims_on_arrays(
    kappa: Mapping[str, np.ndarray],
    r2: Mapping[str, np.ndarray],
    keys: Sequence[int],
    roles: Roles,
    rebounds: Mapping[str, np.ndarray] | None = None,
) -> list[Check]:
    """The checks on plain arrays: name -> kappa_k [K], name -> R^2 [K], and optionally
    name -> [K] booleans, True where the envelope of mode k rises again in the fit window
    (:func:`nsf.spectral.envelope_rebounds`); see :func:`claim_checks`."""
    logk = np.log(np.asarray(keys, dtype=float))
    ranked = {*roles.positive, *roles.mild_negative, *(n for n, _ in roles.upper + roles.lower)}
    rho = {n: float(spearmanr(kappa[n], logk).statistic) for n in ranked}
    out = []
    z = roles.zero
    if z is None:
        out.append(_check("K1", "no p = 0 row", None))
    else:
        dev, r2min = float(np.abs(kappa[z] - paper_p0_value()).max()), float(r2[z].min())
        out.append(
            _check(
                "K1",
                f"max |κ − 0.400| = {dev:.1e}, min R² = {r2min:.4f}",
                dev < 5e-4 and r2min > 0.999,
            )
        )
    for cid, names, sign in (("K2", roles.positive, -1), ("K3", roles.mild_negative, +1)):
        if not names:
            out.append(_check(cid, "no row of that sign", None))
            continue
        ends = {n: sign * (kappa[n][-1] - kappa[n][0]) > 0 for n in names}
        out.append(
            _check(
                cid,
                "; ".join(
                    f"{n}: κ_{keys[-1]} − κ_{keys[0]} = {kappa[n][-1] - kappa[n][0]:+.3f}, "
                    f"ρ = {rho[n]:+.2f}"
                    for n in names
                ),
                all(ends[n] and sign * rho[n] > 0 for n in names),
            )
        )
    sn, nn = roles.strong_negative, roles.next_negative
    if sn is None or nn is None:
        why = "fewer than 2 negative p rows"
        out += [_check("K4a", why, None), _check("K4b", why, None), _check("K4c", why, None)]
    else:
        out.append(
            _check(
                "K4a",
                f"min R² {r2[sn].min():.3f} ({sn}) vs {r2[nn].min():.3f} ({nn})",
                r2[sn].min() < r2[nn].min(),
            )
        )
        if len(keys) < 2:
            out.append(_check("K4b", "fewer than 2 keys", None))
        else:
            out.append(
                _check(
                    "K4b",
                    f"{sn}: κ_{keys[-1]} − κ_{keys[-2]} = {kappa[sn][-1] - kappa[sn][-2]:+.3f}",
                    kappa[sn][-1] < kappa[sn][-2],
                )
            )
        if rebounds is None or sn not in rebounds:
            out.append(_check("K4c", "no envelopes given", None))
        else:
            hit = [k for k, r in zip(keys, np.asarray(rebounds[sn], dtype=bool)) if r]
            out.append(
                _check(
                    "K4c",
                    f"{sn}: envelopes that rise again at k = {', '.join(map(str, hit)) or 'none'}",
                    bool(hit),
                )
            )
    parts, oks = [], []
    lower = {n for n, _ in roles.lower}
    for n, c in roles.same_mean_pairs:
        gain = kappa[n] - kappa[c]
        if n in lower:
            parts.append(f"{n} − {c} at k = {keys[-1]}: {gain[-1]:+.3f}")
            oks.append(bool(gain[-1] > 0))
        else:
            parts.append(f"{n} − {c}: min over k {gain.min():+.3f}")
            oks.append(bool((gain > 0).all()))
    out.append(
        _check(
            "K5",
            "; ".join(parts) or "no tidal / same-mean constant pair",
            all(oks) if oks else None,
        )
    )
    if roles.wide and z:
        a, b = float(r2[roles.wide].mean()), float(r2[z].mean())
        out.append(_check("K6", f"mean R² {a:.4f} vs {b:.4f}", a < b))
    else:
        out.append(_check("K6", "no mean-0 tidal or p = 0 row", None))
    parts, oks = [], []
    for n, _ in roles.upper:
        parts.append(f"{n}: ρ = {rho[n]:+.2f}")
        oks.append(rho[n] < 0)
    for n, _ in roles.lower:
        parts.append(f"{n}: ρ = {rho[n]:+.2f}, min R² = {r2[n].min():.3f}")
        oks.append(rho[n] > 0 and r2[n].min() > 0.95)
    out.append(
        _check("K7", "; ".join(parts) or "no tidal row of mean != 0", all(oks) if oks else None)
    )
    return out


def claim_checks(
    kappa: pd.DataFrame,
    r2: pd.DataFrame,
    schedules: Mapping[str, Callable],
    rebounds: pd.DataFrame | None = None,
) -> list[Check]:
    """The claims of Sec. 4.1.2 (``CLAIMS``: K1, K2, K3, K4a, K4b, K4c, K5, K6, K7) as
    :class:`~nsf.verdicts.Check` records (show them with :func:`nsf.verdicts.checks_table`).

    The schedules' own parameters decide the roles: the p = 0 constant, the positive constants,
    the most negative constant (K4a-K4c) and the other negative ones (K3), the tidal schedule of
    mean 0 with the largest swing, and the tidal schedules of mean > 0 and < 0 with their
    same-mean constants. K1's 0.400 is the paper's printed p = 0 row
    (``data/paper_kappa_table.csv``), from which c * eta was chosen: K1 is a calibration. The
    paper's observation on strongly negative p is split into its three parts, each with its own
    verdict: non-single-exponential (K4a, through a drop of R^2, lenient), kappa drops at the
    highest key (K4b), dips and rebounds of the envelopes (K4c, from ``rebounds``, the frame of
    :func:`nsf.spectral.rebound_table`; undecided without it).
    Spearman's rho is taken between kappa_k and log k. A check whose rows are missing is
    undecided (``passed=None``).
    """
    keys = [int(k) for k in kappa.columns]
    kap = {n: kappa.loc[n].to_numpy(dtype=float) for n in kappa.index}
    rr = {n: r2.loc[n].to_numpy(dtype=float) for n in r2.index}
    rb = None if rebounds is None else {n: rebounds.loc[n].to_numpy(bool) for n in rebounds.index}
    return claims_on_arrays(kap, rr, keys, schedule_roles(schedules), rb)


def claims_count(checks: Sequence[Check]) -> tuple[int, int]:
    """(how many hold, how many were decided)."""
    decided = [c for c in checks if c.passed is not None]
    return sum(c.passed for c in decided), len(decided)


def claims_note(
    checks: Sequence[Check], kappa: pd.DataFrame, schedules: Mapping[str, Callable]
) -> str:
    """How many checks hold (each part of K4 counted as one check), how many of those are
    independent tests, what K1 (a calibration) and K4a (lenient) can say, and whether our most
    negative row drops at the highest key as the paper's does."""
    n_pass, n_checked = claims_count(checks)
    independent = [c for c in checks if c.strength == "independent" and c.passed is not None]
    text = (
        f"**{n_pass} of {n_checked}** checks hold with these parameters, "
        f"{sum(bool(c.passed) for c in independent)} of the {len(independent)} independent ones "
        "(the strength column). The three parts of the paper's observation on strongly negative "
        "p count as three checks, K4a–K4c. K1 is a **calibration**, not a test of the paper: "
        "c·η = 0.4 was chosen from the paper's own p = 0 row, so K1 only confirms that the "
        "simulator and the fit return the rate they were given. K4a is **lenient**: any drop of "
        "R² against the next negative p counts as 'non-single-exponential'. Passing is a weak "
        "statement in any case: the signs and orderings agree, the numbers need not (section 2)."
    )
    strong = schedule_roles(schedules).strong_negative
    if strong is None or kappa.shape[1] < 2:
        return text
    row = kappa.loc[strong]
    if row.iloc[-1] < row.iloc[-2]:
        return text + (
            f" Our most negative row ({strong}) drops at the highest key, as the paper's does."
        )
    return text + (
        f" Our most negative row ({strong}) does **not** drop at the highest key as the paper's "
        "does (K4b)."
    )


def theory_checks(
    *,
    single_spread: float,
    r2_tau_constant: float,
    distance: Mapping[str, float],
    N: int,
    grid: str = "linspace",
    single_tol: float = 1e-3,
    r2_min: float = 0.99,
    close_rms: float = 0.06,
) -> list[Check]:
    """The statements of Sec. 4.1.1 and the table as a whole, as checks (ledger L13–L15, L24).

    * ``single band`` (L13): for a target with its energy in one band, the spread of kappa over
      the band index, ``single_spread`` (:func:`nsf.spectral.single_band_kappa`), is below
      ``single_tol``; an ``identity``, exact in the continuum whatever the schedule.
    * ``affine in tau`` (L14): the constant-p rows' lowest R^2 of the regression on the effective
      time, ``r2_tau_constant``, is at least ``r2_min``.
    * ``grid error`` (L15): the raw sine basis's Gram matrix on the grid deviates from the
      identity by at most 2/N, Remark (3)'s O(1/N) (exactly (1 - 1/N) I on ``linspace``, the
      identity to rounding on the midpoint grid); an ``identity`` of the grid.
    * ``table distance`` (L24): the RMS over the table's cells of ours minus the paper's
      (:func:`nsf.spectral.table_distance`) is at most ``close_rms``; not expected to hold, since
      the simulation's constants are reconstructed.
    """
    from nsf.spectral.setup import sine_basis

    _, phi = sine_basis(N=N, grid=grid, orthonormalize=False)
    gram = phi.T @ phi / N
    deviation = float(np.abs(gram - np.eye(gram.shape[0])).max())
    return [
        Check("single band", "in the single-band limit kappa is k-invariant (Sec. 4.1.1)",
              f"spread of kappa over the band < {single_tol:g}", f"spread = {single_spread:.1e}",
              bool(single_spread < single_tol), strength="identity"),
        Check("affine in tau", "for constant p, log|a_k| is affine in tau (Sec. 4.1.1)",
              f"min R² of the constant-p fits in tau >= {r2_min:g}",
              f"min R² = {r2_tau_constant:.4f}", bool(r2_tau_constant >= r2_min)),
        Check("grid error", "grid averages differ from the integrals by O(1/N) (Remark 3)",
              "max |Gram - I| <= 2/N for the raw sine basis on the grid",
              f"max |Gram - I| = {deviation:.2e}, 1/N = {1 / N:.2e}",
              bool(deviation <= 2.0 / N), strength="identity"),
        Check("table distance", "the printed table of decay rates (Sec. 4.1.2)",
              f"RMS of ours − paper over all cells <= {close_rms:g}",
              f"RMS = {distance['rms']:.3f}, max = {distance['max_abs']:.3f}",
              bool(distance["rms"] <= close_rms)),
    ]  # fmt: skip
