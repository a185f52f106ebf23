"""The setup of chapter 02: the embedded p ablation as a sweep, and the sweep's results as runs.

Paper Sec. 3.3 trains ResNet-18 on six datasets over a grid of constant p with "everything else
fixed" and prints no numbers and no hyperparameters. :class:`AblationSetup` holds the companion's
CPU proxy of that experiment, fixed before any p result was looked at: scikit-learn's digits
(real, clean) and the frequency-band images of :func:`nsf.train.synthetic.make_synthetic_bands`,
whose class signal sits in a low or a high spatial-frequency band, crossed with 0, 20 and 40 %
label noise, which is the mechanism the paper proposes (noise in the high-variance, high-frequency
gradient directions that p < 0 amplifies). :meth:`AblationSetup.sweep` is the grid as a
:class:`nsf.train.sweep.Sweep`; :func:`runs` turns what ``nsf sweep collect`` writes into one row
per run and epoch with the columns :mod:`nsf.ablation.results` reads.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, Strict, model_validator
from pydantic.dataclasses import dataclass

from nsf.validation import CONFIG, Count, Distinct, NonNegative, OpenUnit, Positive, Seeds

__all__ = ["GRID_POLICIES", "POLICIES", "AblationRuns", "AblationSetup", "run_ablation", "runs"]

#: LR policies and the ``update_norm`` each sets: ``fixed`` is one lr for every p (the paper's
#: protocol, so p also changes the step size); ``rms_matched`` rescales every tensor's step to the
#: size of its p = 0 step, so p changes the direction only; ``per_p`` takes, at every p, the lr
#: a search on a holdout of train chose (:mod:`nsf.ablation.search`).
POLICIES = {"fixed": "none", "rms_matched": "rms_matched", "per_p": "none"}
#: The policies that are axes of the main grid (``per_p`` is its own two-stage sweep).
GRID_POLICIES = ("fixed", "rms_matched")
Policy = Literal["fixed", "rms_matched", "per_p"]


def _with_zero(values: tuple[float, ...]) -> tuple[float, ...]:
    if 0.0 not in values:
        raise ValueError(f"{list(values)} lacks p = 0, the reference of the step-size ratios")
    return tuple(sorted(values))


PGrid = Annotated[
    tuple[Annotated[float, Strict(), Field(ge=-2, le=2)], ...],
    Field(min_length=2),
    Distinct,
    AfterValidator(_with_zero),
]
Band = Annotated[tuple[NonNegative, NonNegative], Field()]
Noise = Annotated[float, Strict(), Field(ge=0, lt=1)]


@dataclass(frozen=True, config=CONFIG)
class AblationSetup:
    """Every parameter of chapter 02's embedded ablation; the defaults are the companion's
    choices (the paper states none), fixed before looking at any p result.

    Attributes:
        p_values: the constant p of the grid (must hold 0); the paper's grid runs from the SGD
            endpoint 0 past Adam's 1/2, with extrapolated values on both sides.
        policies: LR policies (:data:`~nsf.ablation.setup.POLICIES`).
        seeds: seeds per (case, p, policy): the spread that decides what is a finding.
        digits: include scikit-learn's 8x8 digits (real, clean data).
        bands: name -> (f_lo, f_hi) in cycles per image: where the synthetic class signal lies.
        label_noise: the fractions of train labels flipped, crossed with every band.
        band_size, band_classes, band_train, band_test, band_signal: the synthetic images' side
            (pixels), classes, train and test images, and the RMS of the class pattern (the
            white noise has RMS 1).
        width: channels of the small CNN's first layer.
        epochs, batch_size, lr: training; ``lr`` is the one step size of every p under
            ``fixed`` (and the p = 0 size every p is matched to under ``rms_matched``).
        lr_factors, search_seeds, holdout_fraction: the ``per_p`` search
            (:mod:`nsf.ablation.search`): the lr grid ``lr * factor``, the seeds it is scored
            over, and the share of each class of train held out to score it on.
        roles: case -> ``"noisy"``, ``"clean"`` or ``"peaked"``: which of the paper's findings
            a case stands in for (:data:`nsf.ablation.checks.ROLES`).
        k_sigma, tolerance, min_peaks: the checks' seed spread (in standard errors of a
            difference), C2's allowed loss of top-1, C3's number of distinct peaks
            (:mod:`nsf.ablation.checks`).
        workers: local worker processes of the sweep (how fast, not what is computed).
    """

    p_values: PGrid = (-0.5, -0.25, 0.0, 0.25, 0.5)
    policies: Annotated[tuple[Policy, ...], Field(min_length=1), Distinct] = (
        "fixed",
        "rms_matched",
    )
    seeds: Seeds = (0, 1)
    digits: Annotated[bool, Strict()] = True
    bands: dict[str, Band] = dataclasses.field(
        default_factory=lambda: {"low": (1.0, 3.0), "high": (5.0, 8.0)}
    )
    label_noise: Annotated[tuple[Noise, ...], Distinct] = (0.0, 0.2, 0.4)
    band_size: Count = 16
    band_classes: Annotated[int, Strict(), Field(ge=2)] = 4
    band_train: Count = 1024
    band_test: Count = 512
    band_signal: Positive = 1.0
    width: Count = 16
    epochs: Count = 4
    batch_size: Count = 64
    lr: Positive = 0.01
    lr_factors: Annotated[tuple[Positive, ...], Field(min_length=1), Distinct] = (0.1, 1.0, 10.0)
    search_seeds: Seeds = (0,)
    holdout_fraction: OpenUnit = 0.1
    roles: dict[str, Literal["noisy", "clean", "peaked"]] = dataclasses.field(
        default_factory=lambda: {
            "digits": "clean",
            "bands_low_noise0": "clean",
            "bands_high_noise0": "clean",
            "bands_low_noise20": "peaked",
            "bands_high_noise20": "peaked",
            "bands_low_noise40": "noisy",
            "bands_high_noise40": "noisy",
        }
    )

    k_sigma: NonNegative = 2.0
    tolerance: NonNegative = 0.02
    min_peaks: Annotated[int, Strict(), Field(ge=0)] = 1
    workers: Count = 2

    @model_validator(mode="after")
    def _cases_fit(self) -> AblationSetup:
        nyquist = self.band_size / 2
        for name, (lo, hi) in self.bands.items():
            if not lo <= hi <= nyquist * 2**0.5:
                raise ValueError(
                    f"bands[{name!r}] = {(lo, hi)} must satisfy f_lo <= f_hi <= "
                    f"{nyquist * 2**0.5:.2f} cycles per image (band_size = {self.band_size})"
                )
        if not self.cases():
            raise ValueError("no case to run: set digits = True or give bands and label_noise")
        unknown = sorted(set(self.roles) - set(self.cases()))
        if unknown:
            raise ValueError(f"roles names {unknown}, which are not cases: {sorted(self.cases())}")
        return self

    def cases(self) -> dict[str, dict[str, Any]]:
        """case name -> the TrainConfig fields that make it (dataset and data options)."""
        cases: dict[str, dict[str, Any]] = {"digits": {"dataset": "digits"}} if self.digits else {}
        for band, (lo, hi) in self.bands.items():
            for noise in self.label_noise:
                options = {
                    "size": self.band_size, "channels": 1, "num_classes": self.band_classes,
                    "n": self.band_train, "n_test": self.band_test, "band": [lo, hi],
                    "signal": self.band_signal, "label_noise": noise,
                }  # fmt: skip
                name = f"bands_{band}_noise{round(noise * 100)}"
                cases[name] = {"dataset": "synthetic_bands", "data_options": options}
        return cases

    def base_fields(self) -> dict[str, Any]:
        """The TrainConfig fields every run of every policy shares."""
        return {
            "model": "small_cnn", "model_options": {"width": self.width},
            "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "device": "cpu", "deterministic": True, "update_norm": "none",
        }  # fmt: skip

    def sweep(self):
        """The main grid as a :class:`nsf.train.sweep.Sweep`: cases x p x the grid policies
        (:data:`~nsf.ablation.setup.GRID_POLICIES` among ``policies``) x seeds; None when
        ``per_p`` is the only policy."""
        from nsf.train.sweep import Sweep

        policies = [p for p in self.policies if p in GRID_POLICIES]
        if not policies:
            return None
        grid = {
            "p_schedule.kind": ["constant"],
            "p_schedule.p": list(self.p_values),
            "update_norm": [POLICIES[p] for p in policies],
        }
        return Sweep(base=self.base_fields(), cases=self.cases(), grid=grid, seeds=list(self.seeds))


def runs(collected):
    """What ``nsf sweep collect`` wrote for :meth:`AblationSetup.sweep` (a DataFrame of its CSV)
    as the runs of the ablation: ``dataset`` (the case), ``policy``, ``p``, ``seed`` and the
    epoch metrics."""
    by_norm = {POLICIES[policy]: policy for policy in GRID_POLICIES}
    frame = collected.rename(columns={"case": "dataset", "p_schedule.p": "p"})
    frame["policy"] = frame["update_norm"].fillna("none").map(by_norm)
    return frame.drop(columns=["update_norm", "p_schedule.kind"], errors="ignore")


@dataclasses.dataclass(frozen=True)
class AblationRuns:
    """Everything chapter 02 ran: ``frame`` (one row per run and epoch, every policy),
    ``statuses`` (sweep name -> index -> status), and ``search``
    (:func:`nsf.ablation.search.choose_lr`'s table; None without the ``per_p`` policy)."""

    frame: Any
    statuses: dict[str, dict[int, str]]
    search: Any = None


def run_ablation(setup: AblationSetup, store, *, progress: bool = False) -> AblationRuns:
    """Run (or reuse from ``store``) every sweep the setup's policies need and read them back:
    the main grid, then for ``per_p`` the lr search and the runs at the chosen lrs. Raises if a
    sweep is incomplete (a failed run must not leave a hole in a curve)."""
    import pandas as pd

    from nsf.ablation import search
    from nsf.ablation.summary import runs_note
    from nsf.train.sweep import collect, run_local

    def run(name, sweep):
        statuses[name] = run_local(sweep, store, workers=setup.workers, progress=progress)
        runs_note(statuses[name], store)  # raises on a hole
        return pd.read_csv(collect(sweep, store, store / f"{name}.csv"))

    statuses: dict[str, dict[int, str]] = {}
    frames, chosen = [], None
    main = setup.sweep()
    if main is not None:
        frames.append(runs(run("grid", main)))
    if "per_p" in setup.policies:
        chosen = search.choose_lr(run("lr_search", search.search_sweep(setup)), setup.lr)
        collected = run("per_p", search.per_p_sweep(setup, chosen))
        frames.append(search.per_p_runs(collected, setup, chosen))
    return AblationRuns(pd.concat(frames, ignore_index=True), statuses, chosen)
