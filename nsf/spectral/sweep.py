"""The sweep of the stripped parameters: which reconstructions could give the paper's table.

Every value of Sec. 4.1.2 was stripped, so the chapter sweeps the ones that matter most (the
amplitude profile, the definition of G, eps, the fit window, the tidal period and phase) and
varies the others one at a time. Per setting, :func:`sensitivity_sweep` reports how many of
the checks hold (K1-K7, K4 in its three parts K4a-K4c) and the distance to the paper's 48
cells; a setting whose explicit Euler step cannot be shown stable is refused before it is
simulated and listed with the reason.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass

from nsf.spectral.checks import CLAIMS, claims_count, claims_on_arrays
from nsf.spectral.fit import envelope_rebounds, fit_decay
from nsf.spectral.paper import paper_aligned
from nsf.spectral.setup import SpectralSetup
from nsf.spectral.simulate import UnstableStepError, simulate
from nsf.spectral.table import paper_family, schedule_roles, table_schedules
from nsf.validation import CONFIG

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SCHEDULE_AXES", "SweepSetup", "sensitivity_sweep", "sweep_note"]

#: Sweep axes that change the schedules, not the setup: A of :func:`paper_family`, T and phi.
SCHEDULE_AXES = ("p_scale", "period", "phase")


def _known_axes(axes: Mapping[str, Sequence[Any]]) -> Mapping[str, Sequence[Any]]:
    fields = {f.name for f in dataclasses.fields(SpectralSetup)}
    bad = [a for a in axes if a not in fields and a not in SCHEDULE_AXES]
    if bad:
        raise ValueError(f"unknown sweep axes {bad}; use SpectralSetup fields or {SCHEDULE_AXES}")
    if any(len(v) == 0 for v in axes.values()):
        raise ValueError(f"every sweep axis needs at least one value, got {dict(axes)}")
    return axes


#: name -> values of a sweep: :class:`SpectralSetup` fields or :data:`SCHEDULE_AXES`.
SweepAxes = Annotated[dict[str, list[Any]], AfterValidator(_known_axes)]


@dataclass(frozen=True, config=CONFIG)
class SweepSetup:
    """The chapter's two sweeps of the stripped parameters (Sec. 4.1.2).

    Attributes:
        sweep_axes: the parameters that matter most, each with the values to try.
        sweep_design: ``"full"`` (every combination of ``sweep_axes``) or ``"one_at_a_time"``.
        sensitivity_axes: the other stripped parameters, varied one at a time around the
            reference.
    """

    sweep_axes: SweepAxes = Field(
        default_factory=lambda: {
            "amps": ["k^-0.5", "1/k", "linear"],
            "G_mode": ["grad2", "err2"],
            "eps": [1e-8, 1e-3, 1e-2],
            "fit_window": [[0.0, 0.5], [0.0, 1.0], [0.0, 2.0]],
            "period": [0.1, 0.25, 0.5, 1.0],
            "phase": [0.0, math.pi / 2],
        }
    )
    sweep_design: Literal["full", "one_at_a_time"] = "full"
    sensitivity_axes: SweepAxes = Field(
        default_factory=lambda: {
            "p_scale": [1.0],
            "amp_scale": [0.5, 2.0],
            "G_integral": [False],
            "integrator": ["exponential"],
            "N": [512, 2048],
            "grid": ["midpoint"],
            "dt": [5e-4, 5e-3],
            "record_every": [1, 50],
            "fit_variable": ["tau"],
        }
    )


def sensitivity_sweep(
    axes: Mapping[str, Sequence[Any]],
    setup: SpectralSetup | None = None,
    p_scale: float = 0.5,
    period: float = 0.5,
    phase: float = 0.0,
    design: str = "full",
) -> pd.DataFrame:
    """How many of the checks hold, and the distance to the paper's table, per reconstruction.

    ``axes`` maps a :class:`SpectralSetup` field (``amps``, ``G_mode``, ``eps``, ``fit_window``,
    ...) or a schedule parameter (``p_scale`` = A of :func:`paper_family`, ``period``, ``phase``)
    to the values to try (:class:`SweepSetup`). ``design="full"`` takes every combination,
    ``"one_at_a_time"`` varies one axis at a time around ``setup`` / ``p_scale`` / ``period`` /
    ``phase``. Schedule axes are batched: one simulation per setup combination holds all the
    schedules it needs. ``steps`` is raised where needed so that the simulation covers the window
    (e.g. for a smaller ``dt`` or a longer ``fit_window``). Every setting's setup is validated
    before anything is simulated (an invalid one raises ``ValueError``); a setting whose explicit
    Euler step cannot be shown stable is refused before its simulation, with the reason in
    ``status`` and NaN results. Nothing is tuned.

    Returns one row per setting: the axis values, one column per check of
    ``nsf.spectral.CLAIMS`` (True/False/None; K4c from the envelopes' rebounds), ``n_pass``,
    ``n_checked``, ``failed`` (the ids that fail), ``rms`` and ``max_abs`` (distance to the
    paper's 48 cells), ``status``.
    """
    import pandas as pd

    base = setup or SpectralSetup()
    fields = {f.name for f in dataclasses.fields(SpectralSetup)}
    _known_axes(axes)
    base_values = {
        **{a: getattr(base, a) for a in axes if a in fields},
        "p_scale": p_scale,
        "period": period,
        "phase": phase,
    }
    axes = {
        a: [tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else v for v in vals]
        for a, vals in axes.items()
    }  # a window given as a list compares equal to a tuple
    names = list(axes)
    if design == "full":
        combos = [dict(zip(names, vals, strict=True)) for vals in itertools.product(*axes.values())]
    elif design == "one_at_a_time":
        combos = [{a: base_values[a] for a in names}]
        for a in names:
            combos += [{**combos[0], a: v} for v in axes[a] if v != base_values[a]]
    else:
        raise ValueError(f"design={design!r} is refused: use 'full' or 'one_at_a_time'")
    setup_axes = [a for a in names if a in fields]
    groups: dict[tuple, list[dict]] = {}
    for combo in combos:
        key = tuple(repr(combo[a]) for a in setup_axes)
        groups.setdefault(key, []).append(combo)

    # every setting's setup is built, so validated, before anything is simulated
    plans = []
    for members in groups.values():
        changes = {a: members[0][a] for a in setup_axes}
        try:
            t_b = float(changes.get("fit_window", base.fit_window)[1])
            dt = float(changes.get("dt", base.dt))
            if math.isfinite(dt) and dt > 0 and math.isfinite(t_b):  # else refused just below
                steps = int(changes.get("steps", base.steps))
                changes["steps"] = max(steps, math.ceil(t_b / dt - 1e-9))
            plans.append((members, base.replace(**changes)))
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"sweep setting {changes} is invalid: {err}") from None

    rows = []
    for members, run_setup in plans:
        # one batch per setup: every distinct schedule once (schedules compare by value)
        unique: dict[Callable, str] = {}
        tables: list[tuple[dict, dict[str, Callable]]] = []
        for combo in members:
            pc, tr = paper_family(combo.get("p_scale", p_scale))
            sched = table_schedules(pc, tr, combo.get("period", period), combo.get("phase", phase))
            for s in sched.values():
                unique.setdefault(s, f"#{len(unique)}")
            tables.append((combo, sched))
        all_sched = {name: s for s, name in unique.items()}
        try:
            track = run_setup.fit_variable == "tau"
            run = simulate(all_sched, setup=run_setup, track_theory=track)
            fit, rises = fit_decay(run), envelope_rebounds(run)
            status = "ok"
        except UnstableStepError as err:
            fit, status = None, f"refused: {err}"
        for combo, mapping in tables:
            out: dict[str, Any] = {a: combo[a] for a in names}
            if fit is None:
                out.update({cid: None for cid, _, _ in CLAIMS})
                out.update(n_pass=np.nan, n_checked=np.nan, failed="", rms=np.nan, max_abs=np.nan)
            else:
                idx = [fit.names.index(unique[s]) for s in mapping.values()]
                kap = dict(zip(mapping, fit.kappa[idx], strict=True))
                rr = dict(zip(mapping, fit.r2[idx], strict=True))
                rb = dict(zip(mapping, rises[idx], strict=True))
                checks = claims_on_arrays(kap, rr, fit.keys, schedule_roles(mapping), rb)
                out.update({c.name: c.passed for c in checks})
                n_pass, n_checked = claims_count(checks)
                out.update(n_pass=n_pass, n_checked=n_checked)
                out["failed"] = ", ".join(c.name for c in checks if c.passed is False)
                try:
                    diff = fit.kappa[idx] - paper_aligned(fit.kappa[idx], fit.keys)
                    out.update(
                        rms=float(np.sqrt(np.mean(diff**2))), max_abs=float(np.abs(diff).max())
                    )
                except ValueError:
                    out.update(rms=np.nan, max_abs=np.nan)
            out["status"] = status
            rows.append(out)
    return pd.DataFrame(rows)


def sweep_note(sweep: pd.DataFrame, reference_rms: float) -> str:
    """A sweep in words: how many settings were simulated or refused (and why), in how many all
    of the checks hold, and the closest setting's distance to the paper against the reference's."""
    done = sweep[sweep["status"] == "ok"]
    refused = sweep[sweep["status"] != "ok"]
    reasons = refused["status"].str.replace("refused: ", "", n=1, regex=False).value_counts()
    text = (
        f"**{len(sweep)} settings**: {len(done)} simulated, {len(refused)} refused before "
        "simulating" + "".join(f"; {count} because “{reason}”" for reason, count in reasons.items())
    )
    if done.empty:
        return text + f". None was simulated; the reference parameters give {reference_rms:.3f}."
    closest = done.loc[done["rms"].idxmin()]
    return text + (
        f". All {len(CLAIMS)} checks (K1–K7, K4 in three parts) hold in "
        f"{int((done['n_pass'] == len(CLAIMS)).sum())} of them. The "
        f"closest setting to the paper has RMS = **{closest['rms']:.3f}** (max |difference| "
        f"{closest['max_abs']:.3f}); the reference parameters give {reference_rms:.3f}."
    )
