"""The fused path of :class:`nsf.NSF` (``fused=True``): the whole update as one pass over each
tensor's memory, with two kernels behind it.

* On the CPU, float32 and float64 tensors go through :mod:`nsf._cpu_kernel`: one call of a C
  function per parameter group and step, all tensors in one OpenMP region (see there).
* Everything else (CUDA, other dtypes, or ``fused_backend="compile"``) goes through a
  ``torch.compile``-generated kernel, :func:`_nsf_chunk_kernel`: inductor's Triton on CUDA and
  C++/OpenMP on the CPU, where the tests run it (the same Python code; on CUDA it is correct by
  construction, not measured here).

Every number that may change between steps (p, lr, the betas, eps, the weight decay and the
bias-correction divisors) is an argument of the kernel, a float for the C kernel and a 0-d CPU
tensor for the compiled one, so a p schedule never recompiles and never waits for the device;
see :func:`fused_nsf`. The rule is paper Sec. 3.1, Eq. 3 (the book's reconstruction page of
chapter 01, "Eq. (3): the unified update").
Imported by :func:`nsf.optim.nsf_update` only when ``fused=True``: ``import nsf`` does not load
inductor or build the C kernel.

Private torch API, each behind a tested fallback: ``torch.fx.experimental._config``'s
``use_duck_shape`` (without it dynamo may compile once more for a new pattern of equal tensor
lengths, see :func:`_no_duck_shapes`) and the inductor options of :func:`_compiled_kernel`
(without them the kernel compiles with inductor's defaults).
"""

from __future__ import annotations

import contextlib
import math
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from nsf import _cpu_kernel
from nsf import optim as _optim
from nsf.optim import (
    _bias_corrections,
    _group_by_device_and_dtype,
    _increment_steps,
    _multi_tensor_nsf,
    _p0_denominator,
    _single_tensor_nsf,
)

__all__ = ["fused_nsf"]

# Tensors per compiled call. Each call of a compiled function costs some tens of microseconds of
# Python (dynamo's guards, AOT wrappers), so one call per tensor would cost ~5 ms a step on
# ResNet-18's 62 tensors; compilation time grows with the chunk (~4 s per tensor on a loaded
# 2-core CPU). Short chunks are padded with scratch tensors, so every call has the same shape.
_FUSED_CHUNK = 4

# The compiled chunk function per (device type, dtype, amsgrad, rms_matched, multi-threaded),
# built on first use.
_FUSED_KERNELS: dict[tuple[Any, ...], Callable[..., None]] = {}
# Scratch tensors that pad a short chunk, per (device, dtype, amsgrad).
_FUSED_PADDING: dict[tuple[Any, ...], list[tuple[Tensor, ...]]] = {}


def _log2(x: Tensor) -> Tensor:
    """log2 inside the compiled kernel: ``torch.log2``, except for float32 on the CPU.

    There inductor's vectorised log2 (a SLEEF call) costs as much as the rest of the step, so
    this is inlined: x = 2^e m with m in [sqrt(1/2), sqrt(2)) read from the bits, then
    log2(m) = f P(f) with f = m - 1 and P of degree 7 (fitted minimax on that interval; error
    below 6e-8, under the float32 rounding of e + log2 m, which the other paths also have).
    Subnormals are scaled by 2^24 first; 0, inf and NaN give -inf, inf and NaN, as
    ``torch.log2`` does. The constants are literals so that dynamo bakes them into the kernel.
    """
    if x.dtype != torch.float32 or x.device.type != "cpu":
        return torch.log2(x)
    tiny = x < 1.1754943508222875e-38  # below the smallest normal float32, or zero
    bits = torch.where(tiny, x * 16777216.0, x).view(torch.int32) - 0x3F3504F3  # - bits(2^-0.5)
    e = (bits >> 23).to(torch.float32) - torch.where(tiny, 24.0, 0.0)
    f = ((bits & 0x007FFFFF) + 0x3F3504F3).view(torch.float32) - 1.0  # m - 1
    r = -0.14574462784752523 * f + 0.23689040855109622
    r = r * f - 0.25006899774904706
    r = r * f + 0.28670744902842654
    r = r * f - 0.360087219809637
    r = r * f + 0.48093944518285076
    r = r * f - 0.721357148813047
    r = r * f + 1.4426947724232895
    special = torch.where(x == 0.0, -math.inf, x)  # inf stays inf, NaN stays NaN
    return torch.where((x > 0.0) & (x < math.inf), e + f * r, special)


def _exp2(y: Tensor) -> Tensor:
    """2^y inside the compiled kernel: ``torch.exp2``, except for float32 on the CPU.

    There it is Cephes' ``exp2f`` inlined (y = k + f with k = round(y), 2^f by a degree-6
    polynomial on [-1/2, 1/2], 2^k built in the exponent bits), which spares the kernel a
    function call in its inner loop. 2^k is applied as 2^h * 2^h * 2^(k-2h) with h = floor(k/2),
    so results that overflow, or fall among the subnormals, round like ``torch.exp2``'s;
    +-inf and NaN give inf, 0 and NaN.
    """
    if y.dtype != torch.float32 or y.device.type != "cpu":
        return torch.exp2(y)
    y = y.clamp(-252.0, 254.0)  # beyond, 2^y is 0 or inf anyway
    k = torch.round(y)
    f = y - k
    q = 1.535336188319500e-4 * f + 1.339887440266574e-3
    q = q * f + 9.618437357674640e-3
    q = q * f + 5.550332471162809e-2
    q = q * f + 2.402264791363012e-1
    q = q * f + 6.931472028550421e-1
    h = torch.floor(0.5 * k)
    two_h = ((h.to(torch.int32) + 127) << 23).view(torch.float32)  # 2^h, h in [-126, 127]
    return (1.0 + f * q) * (1.0 + (k - 2.0 * h)) * two_h * two_h


def _nsf_tensor_kernel(
    param: Tensor, grad: Tensor, m: Tensor, v: Tensor, vmax: Tensor | None, scalars: tuple
) -> None:
    r"""One tensor's whole NSF step, written to be compiled into a single pass over memory.

    ``scalars`` are 0-d float64 CPU tensors (see :func:`_fused_scalars`):
    (sign, lambda_l2, 1-beta1, beta2, 1-beta2, p, eps_in, eps_out, decay, c), and
    (r, -lr) after them for ``update_norm="rms_matched"``. amsgrad is on when ``vmax`` is given.
    The structure of the arguments (``vmax`` None or not, 10 or 12 scalars) is what dynamo
    specialises on; the values of the scalars are never specialised::

        g <- sign*grad + lambda_l2*theta
        m <- lerp(m, g, 1-beta1)                 (ATen's formula, exact at beta1 = 0)
        v <- beta2*v + (1-beta2)*g^2;  v <- max(v_max, v) with amsgrad
        D <- exp2(p*log2(v + eps_in)) + eps_out  (v^0 = 1 exactly, 0^p = inf or 0)
        theta <- decay*theta + c*m/D             (c = -lr*bc2^p/bc1)

    or, with ``rms_matched``, u = c*m/D (c = bc2^p/bc1) and
    theta <- decay*theta - lr * u * (r ||m|| / ||u||)  (r = p0_scale/bc1; ratio 1 if u = 0).
    """
    sign, wd_l2, w1, beta2, w2, p, eps_in, eps_out, decay, c = scalars[:10]
    g = grad * sign + wd_l2 * param
    diff = g - m
    m.copy_(torch.where(w1.abs() < 0.5, m + w1 * diff, g - diff * (1.0 - w1)))
    v.mul_(beta2).add_(w2 * g * g)
    if vmax is not None:
        vmax.copy_(torch.maximum(vmax, v))
        v = vmax
    power = torch.where(p == 0.0, 1.0, _exp2(p * _log2(v + eps_in)))
    den = power + eps_out
    param.mul_(decay)
    if len(scalars) == 10:
        param.add_(c * (m / den))
        return
    ref_scale, neg_lr = scalars[10:]
    update = m * c / den
    norm = torch.linalg.vector_norm(update)
    target = torch.linalg.vector_norm(m) * ref_scale
    param.add_(neg_lr * (update * torch.where(norm > 0, target / norm, 1.0)))


def _nsf_chunk_kernel(params, grads, ms, vs, vmaxes, scalars) -> None:
    """The compiled unit: :func:`_nsf_tensor_kernel` on each of ``_FUSED_CHUNK`` 1-D tensors
    (``vmaxes`` is None without amsgrad). Inductor makes one loop per tensor."""
    for i in range(len(params)):
        vmax = vmaxes[i] if vmaxes is not None else None
        _nsf_tensor_kernel(params[i], grads[i], ms[i], vs[i], vmax, scalars)


def _compiled_kernel(device: torch.device, dtype: torch.dtype, amsgrad: bool, rms_matched: bool):
    """The compiled :func:`_nsf_chunk_kernel` for these static flags (cached for the process).

    Each key compiles its own copy of the function's code object: dynamo keeps compiled graphs,
    and its limit on recompilations (8), per code object, so the keys do not share that budget.
    ``dynamic=True`` (with duck sizing off, see :func:`fused_nsf`) makes every tensor's length
    a separate symbol: one graph serves all tensor sizes of at least 2 elements. On the CPU,
    ``-ffp-contract=fast`` lets the C++ compiler use FMAs (the polynomials of :func:`_log2` and
    :func:`_exp2`; results stay within rounding of the foreach path). Whether the CPU kernel is
    multi-threaded is decided by ``torch.get_num_threads() > 1`` at its first use and is part of
    the key; multi-threaded kernels take ``dynamic_threads``, which gives every loop an OpenMP
    scope sized at run time (inductor would otherwise parallelise by the tensor sizes of the
    first call, which may be small). A single-threaded kernel avoids OpenMP, whose outlined loops
    run some 15-20% slower on one thread.
    """
    parallel = device.type == "cpu" and torch.get_num_threads() > 1
    key = (device.type, dtype, amsgrad, rms_matched, parallel)
    kernel = _FUSED_KERNELS.get(key)
    if kernel is None:
        flags = ["amsgrad"] * amsgrad + ["rms"] * rms_matched + ["omp"] * parallel
        tag = "_".join([device.type, str(dtype).removeprefix("torch."), *flags])
        code = _nsf_chunk_kernel.__code__
        code = code.replace(co_name=f"{code.co_name}_{tag}")
        fn = types.FunctionType(code, _nsf_chunk_kernel.__globals__)
        options = {"cpp.enable_floating_point_contract_flag": "fast"}
        if parallel:
            options["cpp.dynamic_threads"] = True
        known = _inductor_options()
        options = {k: v for k, v in options.items() if k in known}
        kernel = torch.compile(fn, dynamic=True, options=options)
        _FUSED_KERNELS[key] = kernel
    return kernel


def _padding(device: torch.device, dtype: torch.dtype, amsgrad: bool) -> list[tuple[Tensor, ...]]:
    """``_FUSED_CHUNK - 1`` sets of distinct 2-element scratch tensors (theta, g, m, v[, v_max])
    to fill a short chunk; the kernel updates them and nothing reads them."""
    key = (device, dtype, amsgrad)
    if key not in _FUSED_PADDING:
        n = 5 if amsgrad else 4
        _FUSED_PADDING[key] = [
            tuple(torch.zeros(2, device=device, dtype=dtype) for _ in range(n))
            for _ in range(_FUSED_CHUNK - 1)
        ]
    return _FUSED_PADDING[key]


def _inductor_options() -> set[str]:
    """The inductor options :func:`_compiled_kernel` may set that this torch knows (they live in
    the private ``torch._inductor.config``; an unknown option would fail the compilation)."""
    try:
        from torch._inductor import config
    except ImportError:
        return set()
    names = ("enable_floating_point_contract_flag", "dynamic_threads")
    return {f"cpp.{n}" for n in names if hasattr(getattr(config, "cpp", None), n)}


def _no_duck_shapes() -> contextlib.AbstractContextManager:
    """Dynamo's shape environment without duck sizing: tensors of equal length then get
    separate symbols, and no guard on that equality (which would recompile whenever a chunk's
    pattern of equal lengths changed). Private (``torch.fx.experimental._config``); where it is
    missing, a null context (correct, possibly a few more compilations)."""
    try:
        from torch.fx.experimental import _config
    except ImportError:
        return contextlib.nullcontext()
    if not hasattr(_config, "use_duck_shape"):
        return contextlib.nullcontext()
    return _config.patch(use_duck_shape=False)


def _fused_scalar_values(
    step: float, *, lr, p, beta1, beta2, eps, weight_decay, momentum, bias_correction, eps_mode,
    decoupled_weight_decay, update_norm, maximize,
) -> list[float]:  # fmt: skip
    """The per-step numbers of both kernels, folded on the host in float64: (sign, lambda_l2,
    1-beta1, beta2, 1-beta2, p, eps_in, eps_out, decay, c), then (r, -lr) with rms_matched.

    As in the foreach path, the bias correction of v costs a scalar: with v^ = v/bc2,
    v^^p + eps = bc2^(-p) (v^p + eps bc2^p) and (v^ + eps)^p = bc2^(-p) (v + eps bc2)^p, so
    eps moves to ``eps_out`` = eps bc2^p or ``eps_in`` = eps bc2 and bc2^p joins the step.
    """
    bc1, bc2 = _bias_corrections(step, beta1, beta2, momentum, bias_correction)
    s = bc2**p
    values = [
        -1.0 if maximize else 1.0,
        0.0 if decoupled_weight_decay else weight_decay,
        1.0 - beta1,
        beta2,
        1.0 - beta2,
        p,
        eps * bc2 if eps_mode == "inside" else 0.0,
        eps * s if eps_mode == "outside" else 0.0,
        1.0 - lr * weight_decay if decoupled_weight_decay else 1.0,
    ]
    if update_norm is None:
        values.append(-lr * s / bc1)
    else:
        values += [s / bc1, 1.0 / _p0_denominator(eps, eps_mode) / bc1, -lr]
    return values


def _fused_scalars(step: float, **hyper) -> tuple[Tensor, ...]:
    """:func:`_fused_scalar_values` as 0-d float64 CPU tensors, the compiled kernel's arguments
    (inductor reads them as kernel arguments: a new value is neither a recompile nor a sync)."""
    # Separate tensors (not views of one): aliasing inputs would change dynamo's guards.
    return tuple(torch.tensor(x, dtype=torch.float64) for x in _fused_scalar_values(step, **hyper))


def _flat(t: Tensor) -> Tensor:
    """A 1-D alias of a contiguous tensor that is not a view (dynamo would guard on a view's
    base, and compile once per base shape)."""
    return t.view(-1).detach()


_C_DTYPES = (torch.float32, torch.float64)
_warned_fallback = False


def _use_cpu_kernel(device: torch.device, dtype: torch.dtype, backend: str) -> bool:
    """Whether this (device, dtype) group goes through the C kernel: "auto", a float32 or
    float64 CPU group, and a kernel that builds here (else a warning, once, and the compiled
    kernel)."""
    global _warned_fallback
    if backend != "auto" or device.type != "cpu" or dtype not in _C_DTYPES:
        return False
    try:
        _cpu_kernel.library()
    except _cpu_kernel.KernelUnavailableError as exc:
        if not _warned_fallback:
            warnings.warn(f"{exc}; fused=True uses torch.compile instead", stacklevel=4)
            _warned_fallback = True
        return False
    return True


def fused_nsf(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, lr, p, beta1, beta2,
    eps, weight_decay, momentum, bias_correction, eps_mode, amsgrad, decoupled_weight_decay,
    update_norm, maximize, backend: str = "auto",
) -> None:  # fmt: skip
    """The fused step: one pass over each tensor's memory.

    Per (device, dtype) group and distinct step count, either one call of the C kernel
    (:func:`nsf._cpu_kernel.step`, ``backend="auto"`` on float32/float64 CPU tensors) or calls of
    the compiled :func:`_nsf_tensor_kernel` on chunks of ``_FUSED_CHUNK`` tensors flattened to
    1-D, compiled once per (device type, dtype, amsgrad, update_norm, threading), whatever the
    tensor sizes. Both read theta, g, m, v (and v_max) once and write theta, m, v once: 7 (9
    with amsgrad) tensor-sized transfers where the foreach path makes about 20. eps_mode,
    momentum, bias correction, weight decay and ``maximize`` are folded into the scalars of
    :func:`_fused_scalar_values`, computed on the host from the CPU step counters: changing p
    (or lr, eps, ...) every step neither recompiles nor synchronises with the device. There is
    no p = 1/2 shortcut here (a schedule passing through it must not switch kernels): v^p is
    always exp2(p log2 v), with v^0 = 1 exact.

    Tensors that cannot be flattened in place alike (a non-contiguous parameter, gradient or
    state, or one of another dtype or device than its parameter) take the foreach path, and so
    do tensors of fewer than 2 elements on the compiled kernel (one graph serves all lengths
    from 2 up).
    """
    hyper = dict(
        lr=lr, p=p, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
        momentum=momentum, bias_correction=bias_correction, eps_mode=eps_mode,
        decoupled_weight_decay=decoupled_weight_decay, update_norm=update_norm, maximize=maximize,
    )  # fmt: skip
    fusable, rest = [], []
    for i, (param, grad) in enumerate(zip(params, grads)):
        tensors = (param, grad, exp_avgs[i], exp_avg_sqs[i])
        if amsgrad:
            tensors += (max_exp_avg_sqs[i],)
        ok = param.numel() > 0 and all(
            t.is_contiguous() and t.dtype == param.dtype and t.device == param.device
            and t.numel() == param.numel()
            for t in tensors
        )  # fmt: skip
        if ok and param.numel() < 2:  # the C kernel takes any length, the compiled one >= 2
            ok = _use_cpu_kernel(param.device, param.dtype, backend)
        (fusable if ok else rest).append(i)
    if rest:
        pick = lambda ts: [ts[i] for i in rest] if ts else []  # noqa: E731
        (_multi_tensor_nsf if _optim._HAS_FOREACH else _single_tensor_nsf)(
            pick(params), pick(grads), pick(exp_avgs), pick(exp_avg_sqs),
            pick(max_exp_avg_sqs), pick(state_steps), amsgrad=amsgrad, **hyper,
        )  # fmt: skip
    if not fusable:
        return

    tensors = [[t[i] for i in fusable] for t in (params, grads, exp_avgs, exp_avg_sqs)]
    tensors.append([state_steps[i] for i in fusable])
    if amsgrad:
        tensors.append([max_exp_avg_sqs[i] for i in fusable])
    rms = update_norm == "rms_matched"
    for (device, dtype), (group_tensors, _) in _group_by_device_and_dtype(tensors).items():
        dev_steps = group_tensors[4]
        _increment_steps(dev_steps)
        by_step: dict[float, list[int]] = {}  # one set of scalars per distinct step count
        for j, step_t in enumerate(dev_steps):
            by_step.setdefault(step_t.item(), []).append(j)  # CPU tensors: no device sync
        arrays = [group_tensors[k] for k in ((0, 1, 2, 3, 5) if amsgrad else (0, 1, 2, 3))]
        if _use_cpu_kernel(device, dtype, backend):
            for step, indices in by_step.items():
                values = _fused_scalar_values(step, **hyper)
                values += [0.0] * (12 - len(values))
                chunk = arrays if len(indices) == len(dev_steps) else [
                    [ts[j] for j in indices] for ts in arrays
                ]  # fmt: skip
                _cpu_kernel.step(dtype, chunk, values, amsgrad=amsgrad, rms=rms)
            continue
        kernel = _compiled_kernel(device, dtype, amsgrad, rms)
        padding = _padding(device, dtype, amsgrad)
        with _no_duck_shapes():
            for step, indices in by_step.items():
                scalars = _fused_scalars(step, **hyper)
                for start in range(0, len(indices), _FUSED_CHUNK):
                    chunk = indices[start : start + _FUSED_CHUNK]
                    pad = padding[: _FUSED_CHUNK - len(chunk)]
                    args = [
                        [_flat(ts[j]) for j in chunk] + [scratch[a] for scratch in pad]
                        for a, ts in enumerate(arrays)
                    ]
                    kernel(*args[:4], args[4] if amsgrad else None, scalars)
