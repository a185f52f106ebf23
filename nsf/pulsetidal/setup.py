"""The setup of chapter 06: the arms of paper Sec. 5.1 (pulse-tidal ResNet-18 on TinyImageNet)
and the controls that separate the spectral effect from the step-size effect, as sweeps.

Stated in Sec. 5.1: ResNet-18 from scratch on TinyImageNet, random crop and flip, 200 epochs,
batch 256, "SGD with momentum 0.9"; the baseline is p = 0; the proposed schedule is a pulse
phase, then p alternating between two values every 200 iterations; three runs. The three p values
(-0.05 in the pulse, then 0.25 and -0.15) are blank in the paper body and come from a third-party
summary of the paper, not from the paper. The pulse length, which tidal value comes first, the
learning rate, its schedule and the weight decay are not given: each is a parameter here, with
the companion's default; the paper profile's 1000-iteration pulse with 0.25 first is our
assumption. The book's reconstruction page for chapter 06 lists every value with its tag.

The arms (:meth:`PulseTidalSetup.arms`): ``baseline`` (p = 0 with heavy-ball momentum, which is
torch's SGD) and ``pulse_tidal``, over ``seeds``; and, over ``control_seeds``:

* ``constant_mean``: a constant p at the schedule's time-mean (pulse included);
* ``rms_matched``: pulse-tidal with every step rescaled to the size of its p = 0 step, so p
  changes the direction only;
* ``low_first``: the tidal values in the other order;
* ``pulse_<N>``: the pulse ``N`` iterations long (``pulse_0`` is tidal without the pulse);
* ``sgd_scaled``: the baseline with its lr multiplied by the mean step-size ratio measured in the
  ``pulse_tidal`` runs (:func:`nsf.pulsetidal.setup.step_ratio`): the step size of pulse-tidal
  without its spectral shaping. It is a second stage, because the ratio is measured.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, model_validator
from pydantic.dataclasses import dataclass

from nsf.validation import CONFIG, Count, Distinct, Finite, NonNegative, Positive, Seeds

__all__ = ["CONTROLS", "PulseTidalSetup", "step_ratio"]

#: The control arms besides the pulse-length ones (``pulse_<N>``).
CONTROLS = ("constant_mean", "rms_matched", "low_first", "sgd_scaled")
Fraction = Annotated[float, Strict(), Field(gt=0, le=1)]


@dataclass(frozen=True, config=CONFIG)
class PulseTidalSetup:
    """Every parameter of chapter 06. The defaults are the CPU profile: the companion's
    reduction, not the paper's scale (the ``paper`` profile of the chapter is that).

    Attributes:
        dataset, data_options: what to train on (``"tinyimagenet"`` at the paper's scale; the
            generated ``"synthetic_bands"`` images at 64 px on a CPU).
        width, stem: ResNet-18's width (64 is the paper's network) and stem.
        epochs, batch_size, lr, weight_decay, milestones, gamma: training; the lr is multiplied
            by ``gamma`` at each milestone, given as a fraction of the epochs.
        pulse_p, pulse_steps, high, low, every: the pulse-tidal schedule (iterations). The p
            values -0.05, 0.25, -0.15 come from a third-party summary (blank in the paper);
            ``every`` = 200 is stated; the pulse length (1000 in the paper profile, 40 here)
            and ``high`` coming first are assumed.
        seeds, control_seeds: the seeds of the two main arms and of the controls.
        controls: which of :data:`~nsf.pulsetidal.setup.CONTROLS` to run.
        pulse_lengths: the ``pulse_<N>`` arms.
        diagnostics_every: iterations between two samples of the per-layer step diagnostics.
        thresholds: accuracy thresholds of the speed-up S(a), as fractions of the baseline's
            final mean top-1 (1.0 is the baseline's final accuracy).
        amp, channels_last, compile, device: how it runs (bf16 and channels_last apply on CUDA).
        workers: local worker processes (how fast, not what is computed).
    """

    dataset: Literal["synthetic_bands", "digits", "tinyimagenet"] = "synthetic_bands"
    data_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"size": 64, "channels": 3, "num_classes": 10, "n": 1500,
                                 "n_test": 500, "band": [1.0, 4.0], "signal": 0.25}
    )  # fmt: skip
    width: Count = 16
    stem: Literal["cifar", "imagenet"] = "imagenet"
    epochs: Count = 10
    batch_size: Count = 64
    lr: Positive = 0.1
    weight_decay: NonNegative = 5e-4
    milestones: Annotated[tuple[Fraction, ...], Distinct] = (0.3, 0.6, 0.8)
    gamma: Positive = 0.2
    pulse_p: Finite = -0.05
    pulse_steps: Annotated[int, Strict(), Field(ge=0)] = 40
    high: Finite = 0.25
    low: Finite = -0.15
    every: Count = 20
    seeds: Seeds = (0, 1, 2)
    control_seeds: Seeds = (0,)
    controls: Annotated[
        tuple[Literal["constant_mean", "rms_matched", "low_first", "sgd_scaled"], ...], Distinct
    ] = CONTROLS
    pulse_lengths: Annotated[tuple[Annotated[int, Strict(), Field(ge=0)], ...], Distinct] = (
        0,
        160,
    )
    diagnostics_every: Count = 10
    thresholds: Annotated[tuple[Fraction, ...], Field(min_length=1), Distinct] = (
        0.5, 0.75, 0.9, 1.0,
    )  # fmt: skip
    amp: Literal["auto", "bf16", "none"] = "auto"
    channels_last: Annotated[bool, Strict()] = True
    compile: Annotated[bool, Strict()] = False
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    workers: Count = 2

    @model_validator(mode="after")
    def _fits(self) -> PulseTidalSetup:
        if self.pulse_steps in self.pulse_lengths:
            raise ValueError(
                f"pulse_lengths holds {self.pulse_steps}, the pulse_tidal arm's own pulse_steps; "
                "leave it out (that arm is pulse_tidal itself)"
            )
        return self

    # -- the schedules -------------------------------------------------------------------------

    def schedule(self, **changes: Any) -> dict[str, Any]:
        """The pulse-tidal p schedule spec, with ``changes`` (e.g. ``pulse_steps=0``)."""
        spec = {"kind": "pulse_tidal", "pulse_p": self.pulse_p, "pulse_steps": self.pulse_steps,
                "high": self.high, "low": self.low, "every": self.every}  # fmt: skip
        return {**spec, **changes}

    def iterations(self) -> int:
        """Iterations of one run: ceil(train images / batch) x epochs (TinyImageNet's 100k train
        images are stated in Sec. 5.1; the generated sets are counted)."""
        from nsf.train.datasets import load_dataset

        if self.dataset == "tinyimagenet":
            n = 100_000
        else:
            n = len(load_dataset(self.dataset, "train", **self.data_options))
        return -(-n // self.batch_size) * self.epochs

    def mean_p(self) -> float:
        """The time-mean of the pulse-tidal p over one run (pulse included): the p of the
        ``constant_mean`` control."""
        from nsf import schedules

        schedule = schedules.from_spec(self.schedule())
        total = self.iterations()
        return sum(schedule(t) for t in range(total)) / total

    # -- the runs ------------------------------------------------------------------------------

    def base_fields(self) -> dict[str, Any]:
        """The TrainConfig fields every arm shares."""
        return {
            "dataset": self.dataset, "data_options": dict(self.data_options),
            "val_split": "val" if self.dataset == "tinyimagenet" else "test",
            "model": "resnet18", "stem": self.stem,
            "model_options": {} if self.width == 64 else {"width": self.width},
            "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "weight_decay": self.weight_decay, "momentum": "heavy_ball",
            "lr_schedule": self.lr_schedule(),
            "p_schedule": {"kind": "constant", "p": 0.0}, "update_norm": "none",
            "diagnostics_every": self.diagnostics_every, "deterministic": self.device == "cpu",
            "device": self.device, "amp": self.amp, "channels_last": self.channels_last,
            "compile": self.compile,
        }  # fmt: skip

    def lr_schedule(self) -> dict[str, Any]:
        """The lr multiplier: ``gamma`` at each milestone (a fraction of the epochs, rounded to
        an epoch inside the run; constant when none is)."""
        epochs = sorted(
            {m for f in self.milestones if 1 <= (m := round(f * self.epochs)) < self.epochs}
        )
        if not epochs:
            return {"kind": "constant", "p": 1.0}
        return {"kind": "multistep", "milestones": epochs, "gamma": self.gamma}

    def arms(self) -> dict[str, dict[str, Any]]:
        """Arm name -> the TrainConfig fields it changes, for every arm but ``sgd_scaled``."""
        arms: dict[str, dict[str, Any]] = {
            "baseline": {},
            "pulse_tidal": {"p_schedule": self.schedule()},
        }
        if "constant_mean" in self.controls:
            arms["constant_mean"] = {"p_schedule": {"kind": "constant", "p": self.mean_p()}}
        if "rms_matched" in self.controls:
            arms["rms_matched"] = {"p_schedule": self.schedule(), "update_norm": "rms_matched"}
        if "low_first" in self.controls:
            arms["low_first"] = {"p_schedule": self.schedule(high=self.low, low=self.high)}
        for n in self.pulse_lengths:
            arms[f"pulse_{n}"] = {"p_schedule": self.schedule(pulse_steps=n)}
        return arms

    def main_sweep(self):
        """``baseline`` and ``pulse_tidal`` over ``seeds``."""
        from nsf.train.sweep import Sweep

        arms = {k: v for k, v in self.arms().items() if k in ("baseline", "pulse_tidal")}
        return Sweep(base=self.base_fields(), cases=arms, seeds=list(self.seeds))

    def control_sweep(self):
        """The controls that need no measurement, over ``control_seeds``; None if there are
        none."""
        from nsf.train.sweep import Sweep

        arms = {k: v for k, v in self.arms().items() if k not in ("baseline", "pulse_tidal")}
        if not arms:
            return None
        return Sweep(base=self.base_fields(), cases=arms, seeds=list(self.control_seeds))

    def scaled_sweep(self, ratio: float):
        """``sgd_scaled``: the baseline at ``lr * ratio`` over ``control_seeds``."""
        from nsf.train.sweep import Sweep

        if not ratio > 0:
            raise ValueError(f"the measured step-size ratio must be > 0, got {ratio!r}")
        arm = {"sgd_scaled": {"lr": float(f"{self.lr * ratio:.6g}")}}
        return Sweep(base=self.base_fields(), cases=arm, seeds=list(self.control_seeds))


def step_ratio(diagnostics) -> float:
    """The mean over sampled iterations of the whole network's step RMS over the RMS of the
    p = 0 step from the same state (the ``*`` rows of ``diagnostics.csv``): by how much the
    schedule's exponent, on average, multiplied the SGD step. Several runs' rows are pooled."""
    rows = diagnostics[diagnostics["layer"] == "*"]
    if rows.empty:
        raise ValueError("the diagnostics hold no whole-network ('*') rows to measure")
    return float(rows["ratio_to_p0"].mean())
