"""Evaluation of a classifier over a loader: loss, top-1, top-k and calibration (ECE).

The per-epoch validation metrics of the image runs (paper Sec. 3.3 and 5.1; book chapter 06).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from nsf.train.device import autocast
from nsf.train.distributed import Dist

__all__ = [
    "ECE_BINS",
    "calibration_bins",
    "ece_from_bins",
    "evaluate",
    "expected_calibration_error",
]

#: Bins of the expected calibration error.
ECE_BINS = 15


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    num_classes: int,
    *,
    amp: str = "none",
    dist: Dist | None = None,
) -> dict[str, float]:
    """Loss, top-1, top-min(5, C) and 15-bin ECE of ``model`` (in eval mode) over ``loader``.

    ``ECE = sum_b |sum_{i in b} correct_i - sum_{i in b} confidence_i| / N``, with the bins
    (k/15, (k+1)/15] of the top-1 softmax probability (a companion diagnostic of chapter 06).
    Under DDP every process evaluates its shard and the sums are all-reduced.
    """
    dist = dist or Dist()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    k = min(5, num_classes)
    # [loss, top1, topk, count] and per bin [count, correct, confidence]
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    bins = torch.zeros(3, ECE_BINS, dtype=torch.float64, device=device)
    for x, y in loader.epoch(0):
        if y.numel() == 0:
            continue
        with autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        probs = logits.softmax(dim=1)
        confidence, prediction = probs.max(dim=1)
        correct = (prediction == y).double()
        topk = (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1)
        loss = F.cross_entropy(logits, y, reduction="sum")
        totals += torch.stack(
            [loss.double(), correct.sum(), topk.double().sum(), correct.new_tensor(y.numel())]
        )
        bins += _bins(confidence.double(), correct, ECE_BINS)
    dist.all_reduce_(totals)
    dist.all_reduce_(bins)
    model.train(was_training)
    loss, top1, topk, count = totals.tolist()
    n = max(count, 1.0)
    return {"loss": loss / n, "top1": top1 / n, "topk": topk / n, "ece": ece_from_bins(bins)}


def _bins(confidence: torch.Tensor, correct: torch.Tensor, bins: int) -> torch.Tensor:
    index = (confidence * bins).ceil().long().clamp_(1, bins) - 1
    onehot = (index[:, None] == torch.arange(bins, device=confidence.device)).double()
    return torch.stack([onehot.sum(0), correct @ onehot, confidence @ onehot])  # deterministic


def calibration_bins(confidence: Any, correct: Any, bins: int = ECE_BINS) -> torch.Tensor:
    """Per equal-width confidence bin: [count, number correct, sum of confidence], a float64
    tensor of shape (3, bins) on the input's device. Sums of these over batches (or processes)
    give the bins of the union, which :func:`ece_from_bins` turns into the ECE.

    Bin k (0-based) holds the confidences in (k / bins, (k + 1) / bins]; a confidence of 0 goes
    to the first. ``confidence`` is the top-1 softmax probability of each sample, ``correct``
    whether the top-1 prediction was right (bool or 0/1); numpy arrays or tensors.
    """
    c = torch.as_tensor(confidence).detach().double().reshape(-1)
    ok = torch.as_tensor(correct, device=c.device).detach().double().reshape(-1)
    if c.numel() != ok.numel():
        raise ValueError(f"{c.numel()} confidences but {ok.numel()} correctness values")
    if int(bins) < 1:
        raise ValueError(f"bins={bins} must be >= 1")
    if c.numel() and (c.min() < 0 or c.max() > 1 or c.isnan().any()):
        raise ValueError("confidences must lie in [0, 1]")
    return _bins(c, ok, int(bins))


def ece_from_bins(bins: torch.Tensor) -> float:
    """``ECE = sum_k |correct_k - confidence_k| / N`` from the bins of :func:`calibration_bins`
    (N the total count; 0 for no samples): the count-weighted mean over bins of the gap between
    accuracy and mean confidence."""
    count = float(bins[0].sum())
    return float((bins[1] - bins[2]).abs().sum()) / max(count, 1.0)


def expected_calibration_error(confidence: Any, correct: Any, bins: int = ECE_BINS) -> float:
    """The standard equal-width-bin expected calibration error (15 bins by default) of top-1
    confidences and their correctness: 0 for a calibrated predictor (in every bin the accuracy
    equals the mean confidence). Over-confidence at equal accuracy raises the validation loss,
    one reason accuracy and loss can diverge (Sec. 5.1.3)."""
    return ece_from_bins(calibration_bins(confidence, correct, bins))
