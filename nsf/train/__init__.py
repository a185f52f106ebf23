"""Training on the paper's image datasets (Sec. 3.3, Sec. 5.1): data, models and the device loader.

* :mod:`nsf.train.datasets`: :func:`load_dataset` for the six on-disk datasets and the two
  embedded ones (:mod:`nsf.train.synthetic`), returning an :class:`ImageDataset` that carries
  the dataset's train :class:`Augmentation` (:data:`TRAIN_AUGMENTATION`).
* :mod:`nsf.train.loader`: :class:`DeviceLoader`, batches augmented and normalised on the device.
* :mod:`nsf.train.models`: ResNet-18 and the small CPU CNN, by name (:func:`build_model`).
* :mod:`nsf.train.config`: :class:`TrainConfig`, a run's configuration, checked when built.
* :mod:`nsf.train.loop`: :func:`train`, one run from a CPU core to torchrun on GPUs, resumable;
  beside it :mod:`~nsf.train.distributed` (DDP), :mod:`~nsf.train.device`,
  :mod:`~nsf.train.evaluation`, :mod:`~nsf.train.metrics` (``metrics.csv``),
  :mod:`~nsf.train.plog` (the run-length p log) and :mod:`~nsf.train.results` (the run directory).

Needs the ``data`` extra (torchvision, scikit-learn, pillow, tqdm).
"""

from nsf.train.config import TrainConfig
from nsf.train.datasets import DATASETS, TRAIN_AUGMENTATION, load_dataset
from nsf.train.errors import DatasetCorruptError, DatasetNotFoundError
from nsf.train.imagedataset import Augmentation, ImageDataset
from nsf.train.loader import DeviceLoader, crop_flip
from nsf.train.loop import train
from nsf.train.models import MODELS, build_model, resnet18
from nsf.train.results import RunResult
from nsf.train.synthetic import digits, make_synthetic_bands

__all__ = [
    "DATASETS",
    "MODELS",
    "TRAIN_AUGMENTATION",
    "Augmentation",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "DeviceLoader",
    "ImageDataset",
    "RunResult",
    "TrainConfig",
    "build_model",
    "crop_flip",
    "digits",
    "load_dataset",
    "make_synthetic_bands",
    "resnet18",
    "train",
]
