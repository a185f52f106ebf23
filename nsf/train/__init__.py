"""Training on the paper's image datasets (Sec. 3.3, Sec. 5.1): data, models and the device loader.

* :mod:`nsf.train.datasets`: :func:`load_dataset` for the six on-disk datasets and the two
  embedded ones (:mod:`nsf.train.synthetic`), returning an :class:`ImageDataset`.
* :mod:`nsf.train.loader`: :class:`DeviceLoader`, batches augmented and normalised on the device.
* :mod:`nsf.train.models`: ResNet-18 and the small CPU CNN, by name (:func:`build_model`).

Needs the ``data`` extra (torchvision, scikit-learn, pillow, tqdm).
"""

from nsf.train.datasets import DATASETS, load_dataset
from nsf.train.errors import DatasetCorruptError, DatasetNotFoundError
from nsf.train.imagedataset import ImageDataset
from nsf.train.loader import DeviceLoader, crop_flip
from nsf.train.models import MODELS, build_model, resnet18
from nsf.train.synthetic import digits, make_synthetic_bands

__all__ = [
    "DATASETS",
    "MODELS",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "DeviceLoader",
    "ImageDataset",
    "build_model",
    "crop_flip",
    "digits",
    "load_dataset",
    "make_synthetic_bands",
    "resnet18",
]
