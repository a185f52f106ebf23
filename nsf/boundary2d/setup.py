"""The setups of the Sec. 4.2.2 demo: the data, network, optimizer and roles, and the panels.

Paper Sec. 4.2.2 names the ingredients of its 2D experiment (a two-layer ReLU MLP of [H] hidden
units, [X] % far and [Y] % near samples, several p at "the same learning rate", identical seeds,
top-k samples by effective update norm) and prints none of their values. :class:`BoundaryDemo`
holds each of them with the companion's reconstruction as defaults (book chapter 05, its
parameters table); :class:`Panels` holds the three columns of the step-size confound control
(book chapter 05, "Training, three ways"). Both are checked once, when built: a bad value raises
``pydantic.ValidationError`` (a ``ValueError``) naming the field, the value and the fix.

The class defaults are the notebook's parameters-cell defaults; the notebook builds both with
:func:`nsf.validation.setup_from`. Nothing here imports torch, so the command line refuses a bad
parameter before torch is loaded.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, Strict, model_validator
from pydantic.dataclasses import dataclass

from nsf.boundary2d.geometry import Samples, crossed_l_samples
from nsf.validation import CONFIG, Beta, Count, Finite, Increasing, NonNegative, OpenUnit, Positive

__all__ = ["BoundaryDemo", "Panel", "Panels", "Reduction"]

#: The reduction of the BCE loss over the training points.
Reduction = Literal["mean", "sum"]
# NSF's choices (nsf.optim.Momentum, EpsMode, UpdateNorm), restated so that checking a setup does
# not import torch; tests/test_boundary2d.py checks that they agree.
_Momentum = Literal["ema", "heavy_ball"]
_EpsMode = Literal["outside", "inside"]
_UpdateNorm = Literal[None, "rms_matched"]

Seed = Annotated[int, Strict(), Field(ge=0)]


def _distinct_exponents(values: tuple[float, ...]) -> tuple[float, ...]:
    if not values:
        raise ValueError("it is empty; give at least one exponent, e.g. [0.5, 0, -0.1]")
    if len(set(values)) != len(values):
        raise ValueError(f"{list(values)} has duplicates; list each p once")
    return values


#: A non-empty tuple of distinct finite exponents p (a list is accepted).
Exponents = Annotated[tuple[Finite, ...], AfterValidator(_distinct_exponents)]


@dataclass(frozen=True, config=CONFIG)
class Panel:
    """One column of the confound control (book chapter 05, "Training, three ways").

    Attributes: ``name``; ``reduction`` of the BCE loss, ``"mean"`` or ``"sum"``; ``lr``, one
    learning rate for every p; ``update_norm``, ``None`` or ``"rms_matched"`` (NSF's control: each
    tensor's step is rescaled to the length of the p = 0 step).
    """

    name: str
    reduction: Reduction = "mean"
    lr: Positive = 0.01
    update_norm: _UpdateNorm = None


@dataclass(frozen=True, config=CONFIG)
class Panels:
    """The three panels of the chapter: (i) ``reduction`` at ``lr``, (ii) the sum reduction at
    ``lr_sum``, (iii) ``update_norm="rms_matched"`` with ``rms_reduction`` at ``lr_rms``.

    At one learning rate the step of Eq. 3 is multiplied by v^^(-p), and whether v^ sits above
    or below 1 is set by the loss reduction alone; (ii) against (iii) separates the step length
    from the direction (Sec. 4.2.2; book chapter 05).
    """

    reduction: Reduction = "mean"
    lr: Positive = 0.01
    lr_sum: Positive = 3e-4
    rms_reduction: Reduction = "sum"
    lr_rms: Positive = 3e-4

    def panels(self) -> dict[str, Panel]:
        """``{"mean": (i), "sum": (ii), "rms": (iii)}``, named for the figures."""
        return {
            "mean": Panel(
                f"(i) {self.reduction} reduction, η = {self.lr:g}", self.reduction, self.lr
            ),
            "sum": Panel(f"(ii) sum reduction, η = {self.lr_sum:g}", "sum", self.lr_sum),
            "rms": Panel(
                f"(iii) rms_matched, {self.rms_reduction}, η = {self.lr_rms:g}",
                self.rms_reduction,
                self.lr_rms,
                "rms_matched",
            ),
        }


@dataclass(frozen=True, config=CONFIG)
class BoundaryDemo:
    """The parameters of the Sec. 4.2.2 demo; the defaults are the companion's reconstruction.

    Attributes:
        L, sigma, far_frac: branch length, noise and far-branch fraction of the training data.
        n_train_per_class, n_test_per_class: sample sizes; the test set has ``test_far_frac``
            far points per class (1/2 by default, so the near branches weigh as much as the far).
        data_seed, seed: seeds of the data and of the network's initialisation (shared by all p).
        hidden: hidden width H.
        p_values: exponents (rows of Fig. 5), non-empty, no duplicates, 0 among them.
        iters: full-batch iterations; checkpoints: strictly increasing, in [0, iters].
        topk: samples per class highlighted by effective update norm (1 <= k <= class size).
        betas, eps, eps_mode, momentum: NSF's settings (Eq. 3 literal by default).
        align_threshold: Bayes agreement that counts as aligned (t90 uses 0.9), in (0, 1].
        loss_high_frac: "the loss remains high" means above this fraction of the initial loss.
        p_delta, p_ab, p_c: the paper's roles: the "slightly negative" p, the two competitive
            values a and b, and the positive c (Sec. 4.2.2); each must be in ``p_values``.
        map_extent, map_resolution: the square [-extent, extent]^2 and grid of the probability maps.
    """

    L: Positive = 1.5
    sigma: Positive = 0.05
    far_frac: OpenUnit = 0.8
    n_train_per_class: Count = 200
    n_test_per_class: Count = 400
    test_far_frac: OpenUnit = 0.5
    data_seed: Seed = 0
    seed: Seed = 0
    hidden: Count = 32
    p_values: Exponents = (0.5, 0.25, 0.0, -0.1, -0.25, -0.5)
    iters: Count = 500
    checkpoints: Increasing = (1, 2, 5, 10, 20, 50, 100, 200, 500)
    topk: Count = 10
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: NonNegative = 1e-8
    eps_mode: _EpsMode = "outside"
    momentum: _Momentum = "ema"
    align_threshold: Annotated[float, Strict(), Field(gt=0, le=1)] = 0.9
    loss_high_frac: OpenUnit = 0.5
    p_delta: Annotated[float, Strict(), Field(lt=0, allow_inf_nan=False)] = -0.1
    p_ab: Annotated[tuple[Finite, ...], Field(min_length=1)] = (-0.25, -0.5)
    p_c: Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)] = 0.25
    map_extent: Positive = 1.3
    map_resolution: Annotated[int, Strict(), Field(ge=8)] = 121

    @model_validator(mode="after")
    def _consistent(self) -> BoundaryDemo:
        c = self.checkpoints
        if c[0] < 0 or c[-1] > self.iters:
            raise ValueError(
                f"checkpoints={list(c)} is refused: they must lie in [0, iters={self.iters}]; "
                "drop the later ones or raise iters"
            )
        if self.topk > self.n_train_per_class:
            raise ValueError(
                f"topk={self.topk} is refused: it exceeds the class size "
                f"n_train_per_class={self.n_train_per_class}; lower topk"
            )
        if 0.0 not in self.p_values:
            raise ValueError(
                f"p_values={list(self.p_values)} is refused: it must include 0, the SGD endpoint "
                "of B-1"
            )
        roles = [("p_delta", self.p_delta), ("p_c", self.p_c)]
        for role, value in roles + [("p_ab", v) for v in self.p_ab]:
            if value not in self.p_values:
                raise ValueError(
                    f"{role}={value!r} is not in p_values {list(self.p_values)}; "
                    "add it or change the role"
                )
        return self

    def geometry(self) -> dict[str, float]:
        """The keyword arguments of the Bayes functions: far_frac, L, sigma."""
        return {"far_frac": self.far_frac, "L": self.L, "sigma": self.sigma}

    def datasets(self) -> dict[str, Samples]:
        """``train`` (far_frac split), ``test`` (test_far_frac split) and ``test_trainprop``
        (the training split), from ``data_seed`` (three independent streams)."""
        kw = {"L": self.L, "sigma": self.sigma}
        return {
            "train": crossed_l_samples(
                self.n_train_per_class, self.far_frac, seed=self.data_seed, **kw
            ),
            "test": crossed_l_samples(
                self.n_test_per_class, self.test_far_frac, seed=self.data_seed + 1_000_003, **kw
            ),
            "test_trainprop": crossed_l_samples(
                self.n_test_per_class, self.far_frac, seed=self.data_seed + 2_000_003, **kw
            ),
        }
