"""The configuration of a training run: :class:`TrainConfig`, checked once when it is built.

A config is plain data (JSON or TOML, :meth:`TrainConfig.from_file`); its schedules are specs of
:mod:`nsf.schedules`. A bad field is refused when the config is built, with one message naming
the field and the value: types, ranges and unknown fields by pydantic (:mod:`nsf.validation`),
the optimizer's hyperparameters by :class:`nsf.optim.NSF` itself (built once on a dummy parameter,
so the rules live in one place), the schedules by :func:`nsf.schedules.from_spec`.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, Strict, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass

from nsf import schedules
from nsf.optim import NSF
from nsf.train.models import MODELS, STEMS
from nsf.validation import CONFIG, Count, Finite, OpenUnit

__all__ = ["CADENCE_FIELDS", "TrainConfig"]

#: Fields that say how often a run reports, not what it computes; not part of the run key.
CADENCE_FIELDS = ("checkpoint_every", "log_every", "tensorboard")

#: A whole number >= 0 (a seed, a padding, an interval where 0 means "never").
Whole = Annotated[int, Strict(), Field(ge=0)]
#: A bool, never read from a string or a number.
Flag = Annotated[bool, Strict()]


def _spec(value: Any) -> dict[str, Any]:
    """The canonical spec of a schedule (defaults filled in, numbers as the schedule keeps them),
    so two specs that mean the same schedule are one config with one hash."""
    return schedules.to_spec(schedules.from_spec(value))


@dataclass(frozen=True, config=CONFIG)
class TrainConfig:
    """Everything that determines a training run; its :meth:`run_key` names the run directory.

    The defaults are the companion's values for paper Sec. 3.3 and Sec. 5.1, which leave them
    blank (assumed, except beta1 = 0.9, stated in Sec. 5.1; the book's reconstruction pages give
    each value's tag): NSF with heavy-ball momentum beta1 = 0.9, beta2 = 0.999, eps = 1e-8
    outside the power, bias correction of v only, coupled weight decay 5e-4 on every parameter,
    lr 0.1.

    Data: ``dataset`` and ``data_options`` go to :func:`nsf.train.datasets.load_dataset`;
    ``val_split`` is the split evaluated every epoch (``"test"``; TinyImageNet's is ``"val"``);
    ``train_split`` is the split trained on: ``"train"``, or ``"fit"`` to hold out
    ``holdout_fraction`` of each class of train as the split ``"holdout"`` (evaluate on it to
    choose a hyperparameter without seeing the test split). Augmentation:
    ``crop_pad`` (RandomCrop padding), ``flip`` and ``vflip`` (horizontal and vertical flips);
    ``None`` takes the dataset's declared default
    (:data:`nsf.train.datasets.TRAIN_AUGMENTATION`: CIFAR's pad 4 and flip; none for digits).
    Model: ``model`` (``"resnet18"`` or ``"small_cnn"``), ``stem`` (ResNet-18's ``"cifar"`` or
    ``"imagenet"``) and ``model_options`` (ResNet-18's ``width``, 64 unless reduced; SmallCNN's
    ``width``, ``norm``).
    Training: ``epochs``, ``batch_size`` (the global batch, split over processes),
    ``eval_batch_size``, ``drop_last`` (False: ceil(N/B) iterations per epoch);
    ``lr`` and ``lr_schedule``, a spec of :mod:`nsf.schedules` that multiplies ``lr`` (the lr of
    step t is ``lr * schedule(t)``, as ``LambdaLR``), its steps counted in ``lr_unit``
    (``"epoch"``: the lr changes between epochs; ``"iteration"``); ``p_schedule``, a spec of a p
    schedule in iterations; the NSF options ``betas``, ``eps``, ``weight_decay`` (coupled L2),
    ``momentum``, ``bias_correction``, ``eps_mode``, ``update_norm`` (``None``, also
    written ``"none"``, or ``"rms_matched"``).
    Execution: ``seed``, ``deterministic`` (deterministic algorithms, no cuDNN benchmark),
    ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``), ``amp`` (``"auto"``: bf16 autocast on CUDA,
    none on a CPU; ``"bf16"``; ``"none"``), ``channels_last`` (CUDA only), ``compile``
    (``torch.compile``); ``diagnostics_every`` (iterations between two samples of the per-layer
    step diagnostics of ``diagnostics.csv``, :data:`nsf.train.results.DIAGNOSTIC_COLUMNS`;
    0 = none); the cadence ``checkpoint_every`` (iterations; 0 = at epoch ends only),
    ``log_every`` (iterations between progress-bar updates) and ``tensorboard`` (also write
    TensorBoard event files under the run's ``tensorboard/``; needs the ``tensorboard``
    package).

    :func:`nsf.train.loop.train` keys and records the config :meth:`on` its device (what ``"auto"``
    and ``None`` became there), and records the augmentation the loader applied in the run's
    ``finished.json`` and in ``RunResult.config``.

    Example, the Sec. 5.1 run as the companion reads it. Its p values (-0.05, 0.25, -0.15) come
    from a third-party summary of the paper, not the paper (its body leaves them blank); only the
    switch every 200 iterations is stated; the 1000-iteration pulse and 0.25 coming first are
    our assumptions, and so is the cosine lr schedule of this example::

        TrainConfig(dataset="tinyimagenet", model="resnet18", val_split="val", epochs=200,
                    lr_schedule={"kind": "cosine", "steps": 200},
                    p_schedule={"kind": "pulse_tidal", "pulse_p": -0.05, "pulse_steps": 1000,
                                "high": 0.25, "low": -0.15, "every": 200})
    """

    dataset: str = "digits"
    data_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    val_split: str = "test"
    train_split: Literal["train", "fit"] = "train"
    holdout_fraction: OpenUnit = 0.1
    crop_pad: Whole | None = None
    flip: Flag | None = None
    vflip: Flag | None = None
    model: str = "small_cnn"
    stem: str = "cifar"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs: Count = 10
    batch_size: Count = 128
    eval_batch_size: Count = 512
    drop_last: Flag = False
    lr: Finite = 0.1
    lr_schedule: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"kind": "constant", "p": 1.0}
    )
    lr_unit: Literal["epoch", "iteration"] = "epoch"
    p_schedule: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"kind": "constant", "p": 0.0}
    )
    betas: tuple[Finite, Finite] = (0.9, 0.999)
    eps: Finite = 1e-8
    weight_decay: Finite = 5e-4
    momentum: str = "heavy_ball"
    bias_correction: Flag = True
    eps_mode: str = "outside"
    update_norm: str | None = None
    seed: Whole = 0
    deterministic: Flag = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "none"] = "auto"
    channels_last: Flag = True
    compile: Flag = False
    diagnostics_every: Whole = 0
    checkpoint_every: Whole = 0
    log_every: Count = 50
    tensorboard: Flag = False

    @field_validator("dataset", "model", "stem")
    @classmethod
    def _known_name(cls, value: str, info: ValidationInfo) -> str:
        from nsf.train.datasets import DATASETS

        choices = {"dataset": DATASETS, "model": MODELS, "stem": STEMS}[info.field_name]
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {choices}")
        return value

    @field_validator("update_norm", mode="before")
    @classmethod
    def _none_by_name(cls, value: Any) -> Any:
        """``"none"`` is ``None``: TOML has no null, and a sweep's grid may list both."""
        return None if value == "none" else value

    @field_validator("lr_schedule", "p_schedule")
    @classmethod
    def _schedule_spec(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _spec(value)

    @model_validator(mode="after")
    def _fits_together(self) -> TrainConfig:
        if self.val_split == "holdout" and self.train_split != "fit":
            raise ValueError(
                'val_split="holdout" needs train_split="fit": the holdout is part of "train"'
            )
        if self.val_split == "fit" or (self.train_split == "fit" and self.val_split == "train"):
            raise ValueError(
                f"val_split={self.val_split!r} overlaps the training split "
                f"{self.train_split!r}; evaluate on test, val or holdout"
            )
        if self.model == "resnet18" and set(self.model_options) - {"width"}:
            raise ValueError(f"model_options={self.model_options!r}: resnet18 takes only width")
        unknown = sorted(set(self.model_options) - {"width", "norm"})
        if self.model == "small_cnn" and unknown:
            raise ValueError(f"model_options {unknown} unknown for small_cnn (width, norm)")
        # The optimizer checks its own hyperparameters; asking it once here refuses a bad one
        # before any data loads.
        self.optimizer([torch.zeros(1, requires_grad=True)])
        return self

    def optimizer(self, params: Any) -> NSF:
        """The run's :class:`nsf.optim.NSF` over ``params`` (its p and lr are then scheduled)."""
        return NSF(
            params,
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
            bias_correction=self.bias_correction,
            eps_mode=self.eps_mode,
            update_norm=self.update_norm,
        )

    # -- plain data ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples become lists); ``from_dict(to_dict())`` round-trips."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from a mapping; an unknown key is refused by name (a typo must not pass)."""
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """A config from a ``.toml`` or ``.json`` file of its fields (a table / an object at the
        top level; the suffix says which). Any other suffix, a file that does not parse, and an
        unknown or bad field are refused with the file's name in the message."""
        path = Path(path)
        parsers = {".toml": tomllib.loads, ".json": json.loads}
        parse = parsers.get(path.suffix.lower())
        if parse is None:
            raise ValueError(
                f"{path}: a TrainConfig file must end in .toml or .json, not {path.suffix!r}"
            )
        try:
            data = parse(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a table of TrainConfig fields, not {data!r}")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def run_key(self) -> dict[str, Any]:
        """What determines the results: every field but the cadence (:data:`CADENCE_FIELDS`).

        The run store hashes this (:meth:`nsf.runstore.RunStore.run`), so a finished run is
        reused whatever ``log_every`` or ``checkpoint_every`` a later call asks for.
        """
        return {k: v for k, v in self.to_dict().items() if k not in CADENCE_FIELDS}

    @property
    def run_prefix(self) -> str:
        """The readable head of the run directory's name, ``<dataset>-<model>``."""
        return f"{self.dataset}-{self.model}"

    def on(self, device: torch.device) -> TrainConfig:
        """The config as it runs on ``device``: ``device``, ``amp`` and ``channels_last`` as
        they apply there (bf16 autocast and channels_last are CUDA's; a CPU run uses float32),
        and ``crop_pad``, ``flip``, ``vflip`` left ``None`` as the dataset declares them (so a
        run that leaves them to the dataset and one that spells them out are one run)."""
        from nsf.train.datasets import TRAIN_AUGMENTATION

        cuda = device.type == "cuda"
        augmentation = TRAIN_AUGMENTATION[self.dataset].override(
            self.crop_pad, self.flip, self.vflip
        )
        return self.replace(
            device=device.type,
            amp=("bf16" if self.amp in ("auto", "bf16") else "none") if cuda else "none",
            channels_last=self.channels_last and cuda,
            **augmentation.to_dict(),
        )

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))
