"""The networks of the training chapters: ResNet-18 (paper Sec. 3.3 and Sec. 5.1) and a small CNN.

* :func:`resnet18` is torchvision's ResNet-18, trained from scratch (``weights=None``), with a
  choice of stem (the paper does not name one; chapters 02 and 06). The ``"cifar"`` stem (3x3
  stride-1 conv1, no max-pool) keeps the spatial resolution of small inputs (<= 64 px: CIFAR,
  TinyImageNet, FER2013); the ``"imagenet"`` stem (7x7 stride-2 conv1 and a 3x3 stride-2
  max-pool) is torchvision's own, for the larger images of RAF-DB and Chaoyang.
* :class:`SmallCNN` is the companion's CPU model for the embedded 8x8 digits and the small
  synthetic images (the CPU stand-in of chapter 02). Its normalisation layer is a choice:
  ``"batch"`` (the default), ``"group"`` or ``"none"``. The last two make the loss of a batch
  the sum of per-sample losses, so data-parallel training is exactly single-process training on
  the same global batch (BatchNorm statistics are per process under DDP).
* :func:`build_model` picks one by name, for the training engine's config.

Only torch and torchvision are needed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["MODELS", "STEMS", "SmallCNN", "build_model", "resnet18"]

#: The model names :func:`build_model` accepts.
MODELS = ("resnet18", "small_cnn")
STEMS = ("cifar", "imagenet")
NORMS = ("batch", "group", "none")


def resnet18(
    num_classes: int, stem: str = "cifar", in_channels: int = 3, width: int = 64
) -> nn.Module:
    """torchvision's ResNet-18 with random weights and a CIFAR or ImageNet stem.

    Args:
        num_classes: size of the final linear layer.
        stem: ``"cifar"``: conv1 is a 3x3 stride-1 convolution and the max-pool is removed, so a
            64 px input reaches layer4 at 8x8 (the usual choice for CIFAR and TinyImageNet).
            ``"imagenet"``: torchvision's 7x7 stride-2 conv1 and stride-2 max-pool (a 64 px
            input reaches layer4 at 2x2).
        in_channels: input channels (1 for grayscale data such as FER2013 or digits).
        width: channels of conv1 and layer1 (layers 2-4 have 2x, 4x and 8x). 64 is the
            ResNet-18 of the paper; a smaller width is the same depth and topology (18 layers,
            the same strides, shortcuts and BatchNorms) with about (width/64)^2 of the
            parameters and compute, the companion's CPU reduction (chapter 06).

    The replaced conv1 is initialised like torchvision's own convolutions (Kaiming normal,
    fan-out, ReLU gain), so the two stems differ only in shape.
    """
    from torchvision.models import resnet18 as tv_resnet18

    if stem not in STEMS:
        raise ValueError(f"stem={stem!r} is not one of {STEMS}")
    if int(num_classes) < 1 or int(in_channels) < 1:
        raise ValueError(
            f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}"
        )
    model = tv_resnet18(weights=None, num_classes=int(num_classes))
    if int(width) != 64:
        _narrow(model, int(width), in_channels)
    width = int(width)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3 or width != 64:
        model.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def _narrow(model: nn.Module, width: int, in_channels: int) -> None:
    """Rebuild ``model``'s (torchvision ResNet-18) body at ``width``: the same blocks, strides and
    shortcuts with channels width, 2w, 4w, 8w, initialised as torchvision initialises them."""
    from torchvision.models.resnet import BasicBlock

    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")

    def stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        shortcut = None
        if stride != 1 or c_in != c_out:
            shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        return nn.Sequential(BasicBlock(c_in, c_out, stride, shortcut), BasicBlock(c_out, c_out))

    w = width
    model.conv1 = nn.Conv2d(in_channels, w, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(w)
    model.layer1, model.layer2 = stage(w, w, 1), stage(w, 2 * w, 2)
    model.layer3, model.layer4 = stage(2 * w, 4 * w, 2), stage(4 * w, 8 * w, 2)
    model.fc = nn.Linear(8 * w, model.fc.out_features)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class SmallCNN(nn.Module):
    """A three-block CNN for 8x8 to 32x32 inputs (the CPU stand-in of chapter 02).

    conv3x3(w) - norm - ReLU - conv3x3(2w) - norm - ReLU - maxpool2 - conv3x3(4w) - norm - ReLU -
    global average pool - linear. With ``width=32`` it has about 0.1 M parameters and trains on
    the digits data to >= 95 % test accuracy in seconds on a CPU.

    Args:
        num_classes: output classes.
        in_channels: input channels.
        width: channels of the first block (the next two have 2x and 4x).
        norm: ``"batch"``, ``"group"`` (8 groups) or ``"none"``; ``"none"`` and ``"group"`` keep
            samples independent, which data-parallel equivalence tests need.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 3, width: int = 32, norm: str = "batch"
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not one of {NORMS}")
        if int(width) < 1:
            raise ValueError(f"width must be >= 1, got {width!r}")
        w = int(width)
        bias = norm == "none"

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=bias)
            return [conv, _norm(norm, c_out), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, w),
            *block(w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(4 * w, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    *,
    stem: str = "cifar",
    **options: Any,
) -> nn.Module:
    """The model called ``name`` (one of :data:`MODELS`).

    ``stem`` applies to ``"resnet18"``; ``options`` go to :func:`resnet18` (``width``) or
    :class:`SmallCNN` (``width``, ``norm``).
    """
    if name == "resnet18":
        unknown = set(options) - {"width"}
        if unknown:
            raise ValueError(f"unknown resnet18 options {sorted(unknown)}; known: width")
        return resnet18(num_classes, stem=stem, in_channels=in_channels, **options)
    if name == "small_cnn":
        unknown = set(options) - {"width", "norm"}
        if unknown:
            raise ValueError(f"unknown small_cnn options {sorted(unknown)}; known: width, norm")
        return SmallCNN(num_classes, in_channels, **options)
    raise ValueError(f"model={name!r} is not one of {MODELS}")
