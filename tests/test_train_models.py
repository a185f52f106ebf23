"""The networks (paper Sec. 3.3 and 5.1): ResNet-18 stems at 32 and 64 px, and the small CPU CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nsf.train.models import SmallCNN, build_model, resnet18

# Spatial size of layer4's output: the CIFAR stem keeps the input resolution until layer2
# (strides 1, 1, 2, 2, 2 in total 8), the ImageNet stem divides by 4 first (total 32).
LAYER4_SIDE = {("cifar", 32): 4, ("cifar", 64): 8, ("imagenet", 32): 1, ("imagenet", 64): 2}


@pytest.mark.parametrize(("stem", "size"), sorted(LAYER4_SIDE))
def test_resnet18_forward_backward(stem, size):
    torch.manual_seed(0)
    model = resnet18(num_classes=7, stem=stem).train()
    seen = {}

    def record(module, inputs, output):
        seen["shape"] = output.shape  # returns None: the output is left as it is

    model.layer4.register_forward_hook(record)
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 7)
    assert seen["shape"][-2:] == (LAYER4_SIDE[stem, size],) * 2
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.conv1.weight.grad.abs().sum() > 0


def test_resnet18_stems_differ_only_in_the_stem():
    cifar, imagenet = resnet18(10, stem="cifar"), resnet18(10, stem="imagenet")
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    n_cifar = sum(p.numel() for p in cifar.parameters())
    n_imagenet = sum(p.numel() for p in imagenet.parameters())
    assert n_imagenet - n_cifar == 64 * 3 * (49 - 9)  # conv1 only: ~11.2 M parameters each


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_resnet18_grayscale_input(stem):
    model = resnet18(num_classes=10, stem=stem, in_channels=1).eval()
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 48, 48)).shape == (2, 10)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_small_cnn_shapes_and_gradients(norm):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=10, in_channels=1, width=8, norm=norm)
    logits = model(torch.randn(5, 1, 8, 8))
    assert logits.shape == (5, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert has_bn == (norm == "batch")


@pytest.mark.parametrize("norm", ["group", "none"])
def test_small_cnn_without_batchnorm_keeps_samples_independent(norm):
    """What the DDP equivalence needs: a sample's output does not depend on its batch."""
    torch.manual_seed(0)
    model = SmallCNN(num_classes=10, in_channels=3, width=8, norm=norm).train()
    x = torch.randn(6, 3, 16, 16)
    whole = model(x)
    halves = torch.cat([model(x[:2]), model(x[2:])])
    torch.testing.assert_close(whole, halves)


def test_build_model_dispatch_and_errors():
    assert isinstance(build_model("small_cnn", 10, 1, width=4, norm="none"), SmallCNN)
    assert isinstance(build_model("resnet18", 10, 3, stem="imagenet").maxpool, nn.MaxPool2d)
    with pytest.raises(ValueError, match="'vgg11'"):
        build_model("vgg11", 10)
    with pytest.raises(ValueError, match="'mobile'"):
        build_model("resnet18", 10, stem="mobile")
    with pytest.raises(ValueError, match="'layer'"):
        SmallCNN(10, norm="layer")
    with pytest.raises(ValueError, match="depth"):
        build_model("small_cnn", 10, depth=3)
    with pytest.raises(ValueError, match="known: width"):
        build_model("resnet18", 10, norm="group")
    assert build_model("resnet18", 10, width=8).fc.in_features == 64
