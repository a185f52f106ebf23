"""Evaluation of a classifier over a loader: loss, top-1, top-k and calibration (ECE).

The per-epoch validation metrics of the image runs (paper Sec. 3.3 and 5.1; SPEC section 8.3).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from nsf.train.device import autocast
from nsf.train.distributed import Dist

__all__ = ["ECE_BINS", "evaluate"]

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
    (k/15, (k+1)/15] of the top-1 softmax probability (SPEC section 8.3). Under DDP every process
    evaluates its shard and the sums are all-reduced.
    """
    dist = dist or Dist()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    k = min(5, num_classes)
    # [loss, top1, topk, count] and per bin [count, correct, confidence]
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    bins = torch.zeros(3, ECE_BINS, dtype=torch.float64, device=device)
    edges = torch.arange(ECE_BINS, device=device)
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
        index = (confidence * ECE_BINS).ceil().long().clamp_(1, ECE_BINS) - 1
        onehot = (index[:, None] == edges).double()  # a matmul, not a scatter: deterministic
        bins += torch.stack([onehot.sum(0), correct @ onehot, confidence.double() @ onehot])
    dist.all_reduce_(totals)
    dist.all_reduce_(bins)
    model.train(was_training)
    loss, top1, topk, count = totals.tolist()
    ece = (bins[1] - bins[2]).abs().sum().item() / max(count, 1.0)
    n = max(count, 1.0)
    return {"loss": loss / n, "top1": top1 / n, "topk": topk / n, "ece": ece}
