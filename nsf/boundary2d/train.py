r"""Training the Sec. 4.2.2 MLP with NSF at every p, and the per-sample effective update norms.

The paper trains "a small two-layer MLP ([H] hidden units, ReLU)" with the unified rule (Eq. 3)
at several p, "the same learning rate", no weight decay and identical seeds, and rings in Fig. 5
the top-k samples per class by "effective update norm". :func:`train_panel` does that for one
:class:`~nsf.boundary2d.Panel`; :func:`effective_update_norms` is the companion's reading of that
norm (book chapter 05, "Figure 5, three times"):
:math:`\lVert \eta\, r\, \nabla\ell_i \oslash (\hat v^p+\epsilon)\rVert_2`, with the denominator
and the rms_matched factor r of the optimizer's most recent step taken from
:meth:`nsf.optim.NSF.update_terms` (the one place the terms of Eq. 3 are computed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.func import functional_call, grad, vmap

from nsf.boundary2d.geometry import Samples, bayes_predict
from nsf.boundary2d.results import PanelResult
from nsf.boundary2d.setup import BoundaryDemo, Panel
from nsf.optim import NSF

__all__ = [
    "UpdateFactors",
    "effective_update_norms",
    "mlp",
    "per_sample_grads",
    "train_panel",
    "update_factors",
]


def mlp(hidden: int, seed: int, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """The two-layer MLP 2 -> hidden -> 1 with ReLU (Sec. 4.2.2), initialised from ``seed``.

    The initial values follow PyTorch's default ``nn.Linear`` distribution (weights and biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))) but are drawn from a private ``torch.Generator``, so the
    same seed gives the same network whatever the global RNG state.
    """
    if int(hidden) < 1:
        raise ValueError(f"hidden={hidden!r} must be >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1)).to(dtype)
    with torch.no_grad():
        for layer in (net[0], net[2]):
            bound = 1.0 / math.sqrt(layer.in_features)
            for t in (layer.weight, layer.bias):
                t.copy_((torch.rand(t.shape, generator=gen, dtype=dtype) * 2 - 1) * bound)
    return net


def _loss(logits: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction=reduction)


class UpdateFactors(NamedTuple):
    """What turns a gradient g into its update lr * ratio * g / denominator, for one tensor."""

    lr: float  #: the learning rate of the tensor's group
    denominator: torch.Tensor  #: v^^p + eps (or (v^ + eps)^p) of the most recent step
    ratio: float  #: the rms_matched factor ||u|| / ||m^ / denominator||; 1 without the control


def update_factors(opt: NSF, model: nn.Module) -> dict[str, UpdateFactors]:
    """name -> :class:`UpdateFactors` of each parameter's most recent step (Eq. 3).

    The denominator is :meth:`nsf.optim.NSF.update_terms`' own, so bias correction, the
    heavy-ball buffer, eps_mode and amsgrad are those the optimizer applied. The ratio is read
    off the same terms: the step u is m^ / denominator rescaled per tensor, so
    r = ||u|| / ||m^ / denominator|| (1 where m^ = 0, as NSF leaves such a step unscaled). Needs
    at least one step: before it, the optimizer has no terms (``update_terms`` raises).
    """
    out = {}
    for name, param in model.named_parameters():
        group = next(g for g in opt.param_groups if any(q is param for q in g["params"]))
        terms = opt.update_terms(param)
        ratio = 1.0
        if group["update_norm"] is not None:
            plain = torch.linalg.vector_norm(terms.m_hat / terms.denominator)
            if plain > 0:
                ratio = float(torch.linalg.vector_norm(terms.step) / plain)
        out[name] = UpdateFactors(group["lr"], terms.denominator, ratio)
    return out


def per_sample_grads(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, reduction: str
) -> dict[str, torch.Tensor]:
    """name -> ``(n, *shape)``: the gradient of each sample's share of the batch loss (BCE/n for
    ``"mean"``, BCE for ``"sum"``) at the model's current parameters, by
    ``torch.func.vmap(grad(...))``."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    scale = 1.0 / len(y) if reduction == "mean" else 1.0

    def sample_loss(prm, xi, yi):
        out = functional_call(model, prm, (xi[None, :],)).reshape(())
        return _loss(out, yi, "sum") * scale

    return vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, X, y)


def effective_update_norms(
    model: nn.Module, opt: NSF, X: torch.Tensor, y: torch.Tensor, reduction: str,
    grads: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:  # fmt: skip
    r"""Per-sample effective update norms :math:`\lVert \eta\, r\, \nabla\ell_i \oslash
    (\hat v^p+\epsilon)\rVert_2` over all parameters (Sec. 4.2.2; the paper's term, the
    companion's formula).

    ``ell_i`` is sample i's share of the batch loss; the denominator and r are
    :func:`update_factors` of the optimizer's most recent step, eta its learning rate.
    ``grads`` are :func:`per_sample_grads` (default: at the model's current parameters). Needs a
    step taken; :func:`train_panel` gives checkpoint 0 the gradients at initialisation and the
    terms of the first step (v^ = g^2, m^ = g of the first full batch, up to rounding), the
    preconditioner that first step applied. Returns a (n,) tensor.
    """
    grads = per_sample_grads(model, X, y, reduction) if grads is None else grads
    total = torch.zeros(len(y), dtype=X.dtype)
    for name, (lr, den, ratio) in update_factors(opt, model).items():
        u = lr * ratio * grads[name] / den
        total += u.reshape(len(y), -1).pow(2).sum(1)
    return total.sqrt()


def _topk_per_class(norms: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros(len(norms), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        # stable order: largest norm first, ties by index
        top = idx[np.lexsort((idx, -norms[idx]))[:k]]
        mask[top] = True
    return mask


def train_panel(
    demo: BoundaryDemo, panel: Panel, data: dict[str, Samples] | None = None
) -> PanelResult:
    """Train the MLP full-batch with :class:`~nsf.optim.NSF` at every p of ``demo``, per ``panel``.

    Every p starts from the same network (``demo.seed``) and data (``demo.data_seed``); the
    optimizer is NSF with ``betas``, ``eps``, ``eps_mode``, ``momentum`` of ``demo``, bias
    correction, no weight decay, and the panel's reduction, learning rate and update_norm.
    Metrics are recorded at every iteration (book chapter 05, "Metrics") and snapshots at the
    checkpoints. Deterministic on CPU for fixed seeds. Returns a
    :class:`~nsf.boundary2d.results.PanelResult`.
    """
    import pandas as pd

    if not isinstance(demo, BoundaryDemo):
        raise TypeError(f"demo must be a BoundaryDemo, got {type(demo).__name__}")
    if not isinstance(panel, Panel):
        raise TypeError(f"panel must be a Panel, got {type(panel).__name__}")
    data = demo.datasets() if data is None else data
    dt = torch.float32
    tr, te, te2 = data["train"], data["test"], data["test_trainprop"]
    Xtr, ytr = torch.as_tensor(tr.X, dtype=dt), torch.as_tensor(tr.y, dtype=dt)
    Xte, Xte2 = torch.as_tensor(te.X, dtype=dt), torch.as_tensor(te2.X, dtype=dt)
    bayes_te = bayes_predict(te.X, **demo.geometry())
    grid = np.linspace(-demo.map_extent, demo.map_extent, demo.map_resolution)
    GX, GY = np.meshgrid(grid, grid)
    Xmap = torch.as_tensor(np.stack([GX.ravel(), GY.ravel()], 1), dtype=dt)
    R = demo.map_resolution
    want = {c: i for i, c in enumerate(demo.checkpoints)}
    C = len(demo.checkpoints)

    rows, maps, norms, tops, vmeds = [], {}, {}, {}, {}
    for p in demo.p_values:
        model = mlp(demo.hidden, demo.seed, dt)
        opt = NSF(
            model.parameters(), lr=panel.lr, p=p, betas=demo.betas, eps=demo.eps,
            weight_decay=0.0, momentum=demo.momentum, bias_correction=True,
            eps_mode=demo.eps_mode, update_norm=panel.update_norm, foreach=False,
        )  # fmt: skip
        maps[p] = np.empty((C, R, R))
        norms[p] = np.empty((C, len(ytr)))
        tops[p] = np.zeros((C, len(ytr)), dtype=bool)
        vmeds[p] = np.full(C, np.nan)
        prev = torch.cat([q.detach().flatten() for q in model.parameters()])

        def record(t: int, step_norm: float, model=model, p=p) -> None:
            with torch.no_grad():
                loss = float(_loss(model(Xtr).squeeze(1), ytr, "mean"))
                pred = (model(Xte).squeeze(1) > 0).numpy().astype(int)
                pred2 = (model(Xte2).squeeze(1) > 0).numpy().astype(int)
            rows.append({
                "p": p, "iteration": t,
                "acc": float(np.mean(pred == te.y)),
                "acc_near": float(np.mean(pred[te.near] == te.y[te.near])),
                "acc_trainprop": float(np.mean(pred2 == te2.y)),
                "bayes_agreement": float(np.mean(pred == bayes_te)),
                "loss": loss, "step_norm": step_norm,
            })  # fmt: skip

        def snapshot_map(t: int, model=model, p=p) -> None:
            with torch.no_grad():
                maps[p][want[t]] = torch.sigmoid(model(Xmap)).reshape(R, R).numpy()

        def snapshot_norms(t: int, grads=None, model=model, opt=opt, p=p) -> None:
            k = want[t]
            u = effective_update_norms(model, opt, Xtr, ytr, panel.reduction, grads).numpy()
            norms[p][k] = u
            tops[p][k] = _topk_per_class(u, tr.y, demo.topk)
            v = [opt.update_terms(q).v_hat for q in model.parameters()]
            vmeds[p][k] = float(torch.cat([x.flatten() for x in v]).median())

        record(0, 0.0)
        for t in range(1, demo.iters + 1):
            opt.zero_grad(set_to_none=True)
            loss = _loss(model(Xtr).squeeze(1), ytr, panel.reduction)
            loss.backward()
            first = t == 1 and 0 in want
            if first:  # checkpoint 0: the initial network, its gradients, the first step's terms
                snapshot_map(0)
                grads0 = per_sample_grads(model, Xtr, ytr, panel.reduction)
            opt.step()
            if first:
                snapshot_norms(0, grads0)
            cur = torch.cat([q.detach().flatten() for q in model.parameters()])
            record(t, float(torch.linalg.vector_norm(cur - prev)))
            prev = cur
            if t in want:
                snapshot_map(t)
                snapshot_norms(t)

    history = pd.DataFrame(rows)
    first_loss = history[history.iteration == 0].set_index("p")["loss"]
    history["loss_ratio"] = history["loss"] / history["p"].map(first_loss)
    return PanelResult(demo, panel, data, history, maps, norms, tops, vmeds, grid)
