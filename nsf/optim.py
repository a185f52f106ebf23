r"""The unified p-exponent optimizer of paper Sec. 3.1, Eq. 3.

.. math::

    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t
    \quad\text{(ema; heavy ball: } m_t = \beta_1 m_{t-1} + g_t)

    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    \hat m_t = m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t)

    \theta_{t+1} = \theta_t - \eta\, \hat m_t / (\hat v_t^{\,p} + \epsilon)
    \quad\text{(Eq. 3)}

p = 1/2 is Adam, p = 0 is momentum SGD (up to the constant 1/(1+eps)), p < 0 amplifies
coordinates with a large second moment (paper Sec. 3.1, Eq. 3 and its special cases; the book's
chapter 01 and its reconstruction page, "Eq. (3): the unified update" and "The special cases").
The layout follows ``torch.optim.Adam``: a small class that validates and gathers state, and a
functional update :func:`nsf_update` with a single-tensor, a foreach (the default) and a fused
implementation; the fused one (``fused=True``: one pass over each tensor's memory) lives in
``nsf._fused`` and is imported on first use. :mod:`nsf.reference` writes the same rule literally
in float64.

Private torch API is used only behind a guarded fallback, each tested: the ``torch._foreach_*``
ops (without them the default path is the single-tensor loop) and
``Optimizer._group_tensors_by_device_and_dtype`` (without it, the same grouping in Python).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["NSF", "EpsMode", "FusedBackend", "Momentum", "UpdateNorm", "UpdateTerms", "nsf_update"]

#: The first moment, the EMA of Eqs. 1-3, or torch SGD's heavy-ball buffer.
Momentum = Literal["ema", "heavy_ball"]
#: Where eps goes, v^^p + eps (Eq. 3) or (v^ + eps)^p (the toy models of Sec. 4).
EpsMode = Literal["outside", "inside"]
#: Rescale each tensor's step to the p = 0 step's norm, or not.
UpdateNorm = Literal[None, "rms_matched"]
#: The kernel of the fused path, "auto" (the C kernel for float32/float64 on CPUs) or "compile".
FusedBackend = Literal["auto", "compile"]

#: The foreach ops the multi-tensor path needs (private torch API: without them, single-tensor).
_FOREACH_OPS = ("add", "add_", "addcdiv_", "addcmul_", "div", "lerp_", "log2", "log2_",
                "maximum_", "mul", "mul_", "neg", "norm", "sqrt", "sqrt_")  # fmt: skip
_HAS_FOREACH = all(hasattr(torch, f"_foreach_{op}") for op in _FOREACH_OPS)
#: torch's grouping by (device, dtype), a private static method; None: the Python fallback.
_TORCH_GROUPING = getattr(Optimizer, "_group_tensors_by_device_and_dtype", None)


class UpdateTerms(NamedTuple):
    """The terms of one parameter's most recent NSF step (Eq. 3), from :meth:`NSF.update_terms`.

    ``theta_before - theta_after = lr * step``, plus ``lr * weight_decay * theta_before`` with
    decoupled weight decay (coupled L2 is already inside m and v).
    """

    m_hat: Tensor  #: m / (1 - beta1^t) (ema), or torch SGD's heavy-ball buffer
    v_hat: Tensor  #: v / (1 - beta2^t); the running maximum of v with amsgrad
    denominator: Tensor  #: v_hat^p + eps ("outside") or (v_hat + eps)^p ("inside")
    step: Tensor  #: u = m_hat / denominator, rescaled with update_norm="rms_matched"


def _check_hyperparameters(
    lr: float, p: float, betas: tuple[float, float], eps: float, weight_decay: float
) -> None:
    if not (isinstance(lr, Tensor) or math.isfinite(lr)) or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    if not math.isfinite(p):
        raise ValueError(f"p must be a finite number (any sign), got {p!r}")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"betas[{i}] must lie in [0, 1), got {beta!r}")
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")


def _check_choices(
    momentum: Any, eps_mode: Any, update_norm: Any, fused_backend: Any = "auto"
) -> None:
    for name, value, mode in (
        ("momentum", momentum, Momentum),
        ("eps_mode", eps_mode, EpsMode),
        ("update_norm", update_norm, UpdateNorm),
        ("fused_backend", fused_backend, FusedBackend),
    ):
        if value not in get_args(mode):
            raise ValueError(f"{name}={value!r} is not one of {get_args(mode)}")


class NSF(Optimizer):
    r"""Natural Spectral Fusion: Adam/SGD with a free second-moment exponent p (Sec. 3.1, Eq. 3).

    Per parameter tensor, at step t (paper Sec. 3.1, Eq. 3; the book's reconstruction page of
    chapter 01, "Eq. (3): the unified update")::

        g  <- grad + weight_decay * theta                    (coupled L2, unless decoupled)
        m  <- beta1*m + (1-beta1)*g      ("ema")   |  beta1*m + g   ("heavy_ball", torch SGD)
        v  <- beta2*v + (1-beta2)*g^2                        (always tracked, even at p = 0)
        m^ <- m/(1-beta1^t)  if bias_correction and momentum == "ema" else m
        v^ <- v/(1-beta2^t)  if bias_correction else v      (v^ <- max(v) first with amsgrad)
        u  <- m^ / (v^^p + eps)     ("outside", Eq. 3)  |  m^ / (v^ + eps)^p   ("inside")
        u  <- u * ||u0|| / ||u||    with update_norm="rms_matched", u0 the p = 0 step
        theta <- theta*(1 - lr*weight_decay)                 (decoupled_weight_decay only)
        theta <- theta - lr*u

    Args:
        params: parameters or parameter groups.
        lr: learning rate eta (>= 0).
        p: second-moment exponent, any finite real. It lives in each group as ``group["p"]``,
            may differ per group and may change between steps
            (see :class:`~nsf.schedules.PScheduler`).
        betas: (beta1, beta2), each in [0, 1).
        eps: stabiliser (>= 0), added outside or inside the power per ``eps_mode``.
        weight_decay: L2 coefficient lambda (>= 0).
        momentum: ``"ema"`` (Eqs. 1-3 as written) or ``"heavy_ball"`` (``torch.optim.SGD``'s
            buffer, never bias-corrected).
        bias_correction: correct v^ always, and m^ in ``"ema"`` mode.
        eps_mode: ``"outside"`` (Eq. 3; Adam at p = 1/2) or ``"inside"`` (the toy models of
            Sec. 4, exactly 1 at p = 0).
        amsgrad: feed the running maximum of v to v^, as ``torch.optim.Adam(amsgrad=True)``.
        decoupled_weight_decay: AdamW-style decay instead of coupled L2.
        update_norm: ``None`` or ``"rms_matched"``: rescale each tensor's update to the norm of
            the p = 0 update from the same state, so p changes the direction only (the
            step-size control of the book's reconstruction page of chapter 01, "The step-size
            confound").
        maximize: ascend instead of descend.
        foreach: use the multi-tensor path; ``None`` picks it (on CPU and CUDA alike) unless
            ``fused=True``.
        fused: run the whole update as one pass over each tensor's memory (theta, g, m, v read
            once, theta, m, v written once); ``None`` means ``False``. Whatever p, lr, betas,
            eps and weight_decay are, and however they change between steps, nothing is
            recompiled and nothing waits for the device. Which kernel runs is ``fused_backend``'s
            choice; both need a C compiler on the CPU. See ``nsf._fused.fused_nsf``.
        fused_backend: ``"auto"``: float32 and float64 tensors on the CPU go through nsf's C
            kernel (``nsf._cpu_kernel``: one call per step for all tensors; built in about a
            second on first use and cached on disk across processes), every other tensor (CUDA,
            other dtypes) through ``torch.compile`` (Triton on CUDA; the first step compiles,
            once per process and (device, dtype, amsgrad, update_norm)). ``"compile"``:
            ``torch.compile`` for every tensor, the code CUDA runs, which on CPUs is slower.

    Endpoints (exact on the foreach and single-tensor paths, tested): p = 1/2 is
    ``torch.optim.Adam`` (and ``AdamW``, ``amsgrad``); p = 0 with ``momentum="heavy_ball"`` and
    eps = 0 is ``torch.optim.SGD(momentum=beta1)``; p = 1/2 with beta1 = 0 and no bias
    correction is ``torch.optim.RMSprop``.

    Note: at a fixed lr, changing p also changes the step size by v^^(-p) (the book's chapter 01,
    "What p does to a coordinate, and to the step size", and its reconstruction page, "The
    step-size confound").

    The three implementations agree to rounding. The fused one has no p = 1/2 special case and
    computes v^^p as exp2(p log2 v) in the parameter's precision (for float32 with its own
    log2/exp2, as accurate as the foreach path's), so in float32 it agrees to a few ulp per
    step, in float64 to about 1e-15.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        p: float = 0.5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        momentum: Momentum = "ema",
        bias_correction: bool = True,
        eps_mode: EpsMode = "outside",
        amsgrad: bool = False,
        decoupled_weight_decay: bool = False,
        update_norm: UpdateNorm = None,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        fused_backend: FusedBackend = "auto",
    ) -> None:
        if fused and foreach:
            raise ValueError("fused=True and foreach=True cannot be set together")
        _check_hyperparameters(lr, p, betas, eps, weight_decay)
        _check_choices(momentum, eps_mode, update_norm, fused_backend)
        defaults = dict(
            lr=lr,
            p=float(p),
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            bias_correction=bool(bias_correction),
            eps_mode=eps_mode,
            amsgrad=bool(amsgrad),
            decoupled_weight_decay=bool(decoupled_weight_decay),
            update_norm=update_norm,
            maximize=bool(maximize),
            foreach=foreach,
            fused=fused,
            fused_backend=fused_backend,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (missing keys take the defaults); its hyperparameters are validated."""
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        _check_hyperparameters(g["lr"], g["p"], g["betas"], g["eps"], g["weight_decay"])
        _check_choices(g["momentum"], g["eps_mode"], g["update_norm"], g["fused_backend"])

    def _init_group(self, group: dict[str, Any]) -> tuple[list[Tensor], ...]:
        params, grads, ms, vs, vmaxes, steps = [], [], [], [], [], []
        for param in group["params"]:
            if param.grad is None:
                continue
            if param.grad.is_sparse:
                raise RuntimeError("NSF does not support sparse gradients")
            if torch.is_complex(param):
                raise RuntimeError("NSF does not support complex parameters; use view_as_real")
            state = self.state[param]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        param, memory_format=torch.preserve_format
                    )
            params.append(param)
            grads.append(param.grad)
            ms.append(state["exp_avg"])
            vs.append(state["exp_avg_sq"])
            steps.append(state["step"])
            if group["amsgrad"]:
                vmaxes.append(state["max_exp_avg_sq"])
        return params, grads, ms, vs, vmaxes, steps

    @torch.no_grad()
    def update_terms(self, param: Tensor, p: float | None = None) -> UpdateTerms:
        """m^, v^, the denominator and the step u of ``param``'s most recent update (Eq. 3).

        With ``p`` given, the terms at that exponent from the same state instead: what the
        step would have been at ``p`` (``p=0.0`` gives the SGD-endpoint step a p schedule is
        measured against).

        Computed from the optimizer state (the step count, m, v or v_max) with the group's
        current hyperparameters, by the code of the single-tensor step: call it before a
        scheduler changes p (or eps, the betas), and the terms are those the step used. Bias
        correction is applied as the step applies it (none without ``bias_correction``; the
        heavy-ball m^ is the buffer m/(1 - beta1)); with ``maximize`` m^ and u carry the
        ascent's sign, so ``theta_before - theta_after = lr * u`` (see :class:`UpdateTerms`).
        The fused path computes the same terms to rounding.
        """
        group = next((g for g in self.param_groups if any(q is param for q in g["params"])), None)
        if group is None:
            raise ValueError("update_terms: the tensor is not a parameter of this optimizer")
        state = self.state.get(param)
        if not state:
            raise ValueError("update_terms: the parameter has no state yet (no step taken)")
        beta1, beta2 = group["betas"]
        bc1, bc2 = _bias_corrections(
            state["step"].item(), beta1, beta2, group["momentum"], group["bias_correction"]
        )
        m = state["exp_avg"]
        v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
        eps, eps_mode = group["eps"], group["eps_mode"]
        step = _tensor_step(
            m, v, bc1, bc2, p=group["p"] if p is None else p, eps=eps, eps_mode=eps_mode,
            update_norm=group["update_norm"],
        )  # fmt: skip
        if step.denominator is None:
            denominator = torch.full_like(v, _p0_denominator(eps, eps_mode))
        else:
            denominator = step.denominator / step.scale
        if step.factor is None:
            u = step.numerator
        elif step.denominator is None:
            u = step.numerator * (step.factor / bc1)
        else:
            u = (step.factor / bc1) * step.numerator / step.denominator
        return UpdateTerms(m / bc1, v / bc2, denominator, u)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one update of every parameter with a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for i, group in enumerate(self.param_groups):
            if not math.isfinite(group["p"]):
                raise ValueError(f"param_groups[{i}]['p'] must be finite, got {group['p']!r}")
            params, grads, ms, vs, vmaxes, steps = self._init_group(group)
            if not params:
                continue
            nsf_update(
                params,
                grads,
                ms,
                vs,
                vmaxes,
                steps,
                lr=group["lr"],
                p=group["p"],
                beta1=group["betas"][0],
                beta2=group["betas"][1],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                bias_correction=group["bias_correction"],
                eps_mode=group["eps_mode"],
                amsgrad=group["amsgrad"],
                decoupled_weight_decay=group["decoupled_weight_decay"],
                update_norm=group["update_norm"],
                maximize=group["maximize"],
                foreach=group["foreach"],
                fused=group.get("fused"),  # absent from state_dicts saved before it existed
                fused_backend=group.get("fused_backend", "auto"),  # likewise
            )
        return loss


def nsf_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    p: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum: Momentum,
    bias_correction: bool,
    eps_mode: EpsMode,
    amsgrad: bool,
    decoupled_weight_decay: bool,
    update_norm: UpdateNorm,
    maximize: bool,
    foreach: bool | None = None,
    fused: bool | None = None,
    fused_backend: FusedBackend = "auto",
) -> None:
    """Functional form of :class:`NSF`: updates ``params`` and the state tensors in place.

    ``fused=True`` selects ``nsf._fused.fused_nsf`` (imported here, on first use) with
    ``fused_backend``, else ``foreach`` (``None``: on) picks the multi-tensor or the
    single-tensor loop; the single-tensor loop also serves ``foreach=True`` where this torch
    lacks a ``torch._foreach_*`` op the multi-tensor path needs.
    """
    if fused and foreach:
        raise ValueError("fused=True and foreach=True cannot be set together")
    extra = {}
    if fused:
        from nsf._fused import fused_nsf as impl

        extra["backend"] = fused_backend
    else:
        if foreach is None:
            foreach = not torch.jit.is_scripting()
        impl = _multi_tensor_nsf if foreach and _HAS_FOREACH else _single_tensor_nsf
    impl(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        state_steps,
        lr=lr,
        p=p,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        bias_correction=bias_correction,
        eps_mode=eps_mode,
        amsgrad=amsgrad,
        decoupled_weight_decay=decoupled_weight_decay,
        update_norm=update_norm,
        maximize=maximize,
        **extra,
    )


def _bias_corrections(
    step: float, beta1: float, beta2: float, momentum: Momentum, bias_correction: bool
) -> tuple[float, float]:
    """The divisors (d1, d2) with m^ = m/d1 and v^ = v/d2, for the stored EMA m.

    Both momentum modes store the EMA m = beta1*m + (1-beta1)*g. The heavy-ball buffer
    b = beta1*b + g (torch SGD) is exactly m/(1 - beta1) from a zero start, so heavy ball uses
    d1 = 1 - beta1 and is never bias-corrected; one ``lerp`` then serves both modes.
    """
    d2 = 1.0 - beta2**step if bias_correction else 1.0
    if momentum == "heavy_ball":
        return 1.0 - beta1, d2
    return (1.0 - beta1**step if bias_correction else 1.0), d2


def _single_tensor_nsf(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, lr, p, beta1, beta2,
    eps, weight_decay, momentum, bias_correction, eps_mode, amsgrad, decoupled_weight_decay,
    update_norm, maximize,
) -> None:  # fmt: skip
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        m, v, step_t = exp_avgs[i], exp_avg_sqs[i], state_steps[i]
        step_t += 1
        if weight_decay != 0 and not decoupled_weight_decay:
            grad = grad.add(param, alpha=weight_decay)

        m.lerp_(
            grad, 1 - beta1
        )  # heavy ball too: its buffer is m/(1 - beta1), see _bias_corrections
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
            v = max_exp_avg_sqs[i]

        bc1, bc2 = _bias_corrections(step_t.item(), beta1, beta2, momentum, bias_correction)
        if decoupled_weight_decay and weight_decay != 0:
            param.mul_(1 - lr * weight_decay)
        step = _tensor_step(
            m, v, bc1, bc2, p=p, eps=eps, eps_mode=eps_mode, update_norm=update_norm
        )
        if step.factor is None:
            param.add_(step.numerator, alpha=-lr)
        elif step.denominator is None:
            param.add_(step.numerator * (-lr * step.factor / bc1))
        else:
            param.addcdiv_(step.numerator, step.denominator, value=-lr * step.factor / bc1)


class _TensorStep(NamedTuple):
    """One tensor's step u, factored the way the single-tensor path applies it.

    u = (factor / bc1) * numerator / denominator, the numerator being m; ``denominator`` None
    means u = (factor / bc1) * m (p = 0 without rms_matched: v^^0 = 1). With rms_matched
    ``factor`` is None and the numerator is u itself. ``denominator`` is the folded
    D = scale * (v^^p + eps) (or scale * (v^ + eps)^p) of :func:`_denominator`, scale = bc2^p.
    """

    numerator: Tensor
    denominator: Tensor | None
    scale: float
    factor: float | None


def _p0_denominator(eps: float, eps_mode: EpsMode) -> float:
    """The denominator at p = 0: v^^0 + eps = 1 + eps outside, (v^ + eps)^0 = 1 inside."""
    return 1.0 + eps if eps_mode == "outside" else 1.0


def _tensor_step(
    m: Tensor, v: Tensor, bc1: float, bc2: float, *, p: float, eps: float, eps_mode: EpsMode,
    update_norm: UpdateNorm,
) -> _TensorStep:  # fmt: skip
    """The step of one tensor from its moments m, v (v_max with amsgrad) and the divisors
    bc1, bc2 of :func:`_bias_corrections`: the one place the single-tensor path and
    :meth:`NSF.update_terms` compute it (the foreach path does the same on lists)."""
    if update_norm is None and p == 0.0:
        return _TensorStep(m, None, 1.0, 1.0 / _p0_denominator(eps, eps_mode))
    dens, scales = _denominator([v], [bc2], p, eps, eps_mode, foreach=False)
    if update_norm is None:
        return _TensorStep(m, dens[0], scales[0], scales[0])
    m_hat = m / bc1
    update = m_hat * scales[0] / dens[0]
    norm = torch.linalg.vector_norm(update)
    target = torch.linalg.vector_norm(m_hat) * (1.0 / _p0_denominator(eps, eps_mode))
    update.mul_(torch.where(norm > 0, target / norm, torch.ones_like(norm)))
    return _TensorStep(update, dens[0], scales[0], None)


def _group_by_device_and_dtype(
    tensorlists: list[list[Tensor]],
) -> dict[tuple[torch.device, torch.dtype], tuple[list[list[Tensor]], list[int]]]:
    """Group index-aligned tensor lists by the (device, dtype) of the first list's tensors:
    {key: (the lists restricted to the key, their indices)}. torch's C++ grouping where it
    exists (``Optimizer._group_tensors_by_device_and_dtype``, private), else the same in Python."""
    if _TORCH_GROUPING is not None:
        return _TORCH_GROUPING(tensorlists)
    grouped: dict[tuple[torch.device, torch.dtype], tuple[list[list[Tensor]], list[int]]] = {}
    for i, t in enumerate(tensorlists[0]):
        lists, indices = grouped.setdefault((t.device, t.dtype), ([[] for _ in tensorlists], []))
        for out, tl in zip(lists, tensorlists):
            out.append(tl[i])
        indices.append(i)
    return grouped


def _increment_steps(steps: list[Tensor]) -> None:
    if _HAS_FOREACH:
        torch._foreach_add_(steps, 1)
    else:
        for t in steps:
            t += 1


def _corrections_per_step(
    steps: list[Tensor], beta1: float, beta2: float, momentum: Momentum, bias_correction: bool
) -> tuple[list[float], list[float]]:
    """(bc1s, bc2s) of :func:`_bias_corrections`, computed once per distinct step count."""
    cache: dict[float, tuple[float, float]] = {}
    bc1s, bc2s = [], []
    for t in steps:
        step = t.item()  # CPU step counters: no device sync
        if step not in cache:
            cache[step] = _bias_corrections(step, beta1, beta2, momentum, bias_correction)
        bc1, bc2 = cache[step]
        bc1s.append(bc1)
        bc2s.append(bc2)
    return bc1s, bc2s


def _scalars(values: list[float]) -> float | list[float]:
    """One number when all are equal (ATen's Scalar overload), else the list."""
    return values[0] if values and all(x == values[0] for x in values) else values


def _multi_tensor_nsf(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, lr, p, beta1, beta2,
    eps, weight_decay, momentum, bias_correction, eps_mode, amsgrad, decoupled_weight_decay,
    update_norm, maximize,
) -> None:  # fmt: skip
    tensors = [params, grads, exp_avgs, exp_avg_sqs, state_steps]
    if amsgrad:
        tensors.append(max_exp_avg_sqs)
    grouped = _group_by_device_and_dtype(tensors)
    for (_device, _dtype), (group_tensors, _) in grouped.items():
        dev_params, dev_grads, dev_ms, dev_vs, dev_steps = group_tensors[:5]
        dev_vmaxes = group_tensors[5] if amsgrad else []
        if maximize:
            dev_grads = torch._foreach_neg(dev_grads)
        torch._foreach_add_(dev_steps, 1)
        if weight_decay != 0 and not decoupled_weight_decay:
            dev_grads = torch._foreach_add(dev_grads, dev_params, alpha=weight_decay)

        torch._foreach_lerp_(dev_ms, dev_grads, 1 - beta1)  # both modes; see _bias_corrections
        torch._foreach_mul_(dev_vs, beta2)
        torch._foreach_addcmul_(dev_vs, dev_grads, dev_grads, 1 - beta2)
        if amsgrad:
            torch._foreach_maximum_(dev_vmaxes, dev_vs)
            dev_vs = dev_vmaxes

        bc1s, bc2s = _corrections_per_step(dev_steps, beta1, beta2, momentum, bias_correction)
        if decoupled_weight_decay and weight_decay != 0:
            torch._foreach_mul_(dev_params, 1 - lr * weight_decay)

        if update_norm is None and p == 0.0:
            # Fast path: v^^0 = 1, so the step is m^/(1 + eps) outside and m^ inside.
            scale = 1.0 / _p0_denominator(eps, eps_mode)
            torch._foreach_add_(
                dev_params, torch._foreach_mul(dev_ms, _scalars([-lr * scale / b for b in bc1s]))
            )
            continue

        den, scales = _denominator(dev_vs, bc2s, p, eps, eps_mode)
        if update_norm is None:
            step_sizes = [-lr * s / b for s, b in zip(scales, bc1s)]
            torch._foreach_addcdiv_(dev_params, dev_ms, den, _scalars(step_sizes))
            continue

        # rms_matched: u <- u * ||u0|| / ||u||, with u0 the p = 0 step from the same m^.
        m_hats = torch._foreach_div(dev_ms, bc1s)
        updates = torch._foreach_div(torch._foreach_mul(m_hats, scales), den)
        norms = torch._foreach_norm(updates)
        targets = torch._foreach_mul(
            torch._foreach_norm(m_hats), 1.0 / _p0_denominator(eps, eps_mode)
        )
        ratios = [torch.where(n > 0, t / n, torch.ones_like(n)) for n, t in zip(norms, targets)]
        torch._foreach_mul_(updates, ratios)
        torch._foreach_add_(dev_params, updates, alpha=-lr)


def _denominator(
    vs: list[Tensor], bc2s: list[float], p: float, eps: float, eps_mode: EpsMode,
    foreach: bool = True,
) -> tuple[list[Tensor], list[float]]:  # fmt: skip
    """Denominators D and factors s with  v^^p + eps = D/s  ("outside") or (v^ + eps)^p = D/s.

    With v^ = v/bc2, both forms equal bc2^(-p) * D, so the caller divides by D and multiplies
    the step by s = bc2^p: the bias correction costs a scalar, not a pass over the tensors.
    v^p is computed as exp2(p * log2 v): on CPUs ``log2`` and ``exp2`` together cost about half of
    ``pow``, and ``exp2`` a third of ``exp`` (which would also round p ln2 log2 v). There is no
    ``_foreach_exp2_``: exp2 runs tensor by tensor, in place. For v = 0 this gives inf at p < 0
    (a zero step, not NaN) and 0 at p > 0. ``foreach=False`` (the single-tensor path) uses no
    foreach op.
    """
    scales = [b**p for b in bc2s]
    if p == 0.0:  # v^0 = 1 (and 0^0 = 1), whichever side eps is on
        den = [torch.full_like(v, _p0_denominator(eps, eps_mode)) for v in vs]
        return den, [1.0] * len(vs)
    if not foreach:
        out = []
        for v, s, b in zip(vs, scales, bc2s):
            x = v if eps_mode == "outside" else v + eps * b
            d = x.sqrt() if p == 0.5 else x.log2().mul_(p).exp2_()
            out.append(d.add_(eps * s) if eps_mode == "outside" else d)
        return out, scales
    if eps_mode == "outside":
        # p = 1/2: Adam's denominator; sqrt is exact and cheaper than exp2/log2
        den = torch._foreach_sqrt(vs) if p == 0.5 else _pow_log2(torch._foreach_log2(vs), p)
        torch._foreach_add_(den, _scalars([eps * s for s in scales]))
        return den, scales
    den = torch._foreach_add(vs, _scalars([eps * b for b in bc2s]))
    if p == 0.5:
        torch._foreach_sqrt_(den)
    else:
        torch._foreach_log2_(den)
        _pow_log2(den, p)
    return den, scales


def _pow_log2(logs: list[Tensor], p: float) -> list[Tensor]:
    """2^(p * x) in place over the list x = log2(v)."""
    torch._foreach_mul_(logs, p)
    for t in logs:
        t.exp2_()
    return logs
