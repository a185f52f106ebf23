"""The fused path's kernels (nsf._cpu_kernel, nsf._fused): accuracy of the C kernel's v^p against
exact arithmetic on both of its builds, special values, blocks and tails, threads, its on-disk
cache, and every fallback that stands behind private torch API or a missing compiler.

Speed is measured in benchmarks/optimizer_step.py, never here."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from nsf import NSF, _cpu_kernel, _fused, optim

pytestmark = pytest.mark.slow  # every test here builds the C kernel or compiles (make quick skips)


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """The kernel module with nothing loaded and its cache in ``tmp_path`` (restored after)."""
    monkeypatch.setenv("NSF_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(_cpu_kernel, "_LIBRARY", None)
    monkeypatch.setattr(_cpu_kernel, "_FAILURE", None)
    monkeypatch.setattr(_cpu_kernel, "_BUILD", {})
    return _cpu_kernel


#: The two builds of the float32 kernel: for the host (AVX-512 where the CPU has it) and the
#: portable loop (AVX-512 switched off; on other CPUs the ISA flag fails and the build is plain).
BUILDS = {
    "native": _cpu_kernel._ISA_FLAGS,
    "portable": (["-march=native", "-mno-avx512f"], ["-mcpu=native"], []),
}


@pytest.fixture(params=sorted(BUILDS))
def kernel_build(request, fresh_kernel, monkeypatch):
    monkeypatch.setattr(fresh_kernel, "_ISA_FLAGS", BUILDS[request.param])
    fresh_kernel.library()
    if request.param == "portable":
        assert fresh_kernel.build_info()["isa"] == "portable"
    return request.param


def one_step(g: torch.Tensor, p: float, **kw) -> torch.Tensor:
    """theta after one step from theta = 0 with beta1 = beta2 = 0, eps = 0, lr = 1 and no bias
    correction: m = g, v = g^2 (rounded to the dtype), theta = -g / (g^2)^p."""
    theta = torch.zeros_like(g, requires_grad=True)
    kw = dict(lr=1.0, p=p, betas=(0.0, 0.0), eps=0.0, bias_correction=False) | kw
    opt = NSF([theta], **kw)
    theta.grad = g.clone()
    opt.step()
    return theta.detach()


def ulps(got: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """|got - exact| in units of float32's spacing at ``exact`` (normal finite values only)."""
    ok = torch.isfinite(exact) & (exact.abs() > 1.2e-38) & (exact.abs() < 3.4e38)
    spacing = torch.from_numpy(np.spacing(exact.float().abs().numpy())).double()
    return ((got.double() - exact).abs() / spacing)[ok]


SIZES = [1, 15, 16, 17, _cpu_kernel.BLOCK - 1, _cpu_kernel.BLOCK + 1, 3 * _cpu_kernel.BLOCK + 5]


@pytest.mark.parametrize("p", [-1.0, -0.5, -0.15, 0.1, 0.3, 0.5, 0.75, 1.0])
def test_float32_power_is_within_three_ulp_of_exact(kernel_build, p):
    """theta = -g/(g^2)^p through the C kernel, for |g| from 1e-18 to 1e18 (v = g^2 over 72
    decades, |p log2 v| up to 240) and p of either sign: within 3 ulp of the exact value computed
    in float64 from the same float32 v, on both builds. (A rounded y = p log2 v alone would
    cost ulp(y)/2, about 20 ulp at |y| = 100, which the foreach path does pay.)"""
    n = 3 * _cpu_kernel.BLOCK + 5  # blocks and a tail
    sign = torch.where(torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.5, -1, 1)
    g = torch.logspace(-18, 18, n, dtype=torch.float64).float() * sign
    got = one_step(g, p, fused=True)
    v = (g * g).double()
    err = ulps(got, -g.double() / v**p)
    assert err.numel() > n // 2
    assert err.max() <= 3.0, (kernel_build, p, err.max().item())


def test_special_second_moments_match_the_foreach_path(kernel_build):
    """v = 0 (p < 0: a zero step; p > 0: m/eps), subnormal, near-overflow and infinite second
    moments, and NaN: the C kernel gives what the foreach path gives (a few ulp where finite),
    in float32 and float64."""
    for dtype in (torch.float32, torch.float64):
        tiny = torch.finfo(dtype).tiny
        v = torch.tensor([0.0, tiny / 2**10, tiny / 3, tiny, 1e-30, 1.0, 1e30, math_inf(), 0.0],
                         dtype=dtype)  # fmt: skip
        m = torch.tensor([1.0, 2.0, -1.0, 1.0, 1e-20, 0.5, 3.0, 1.0, math_nan()], dtype=dtype)
        for p in (-0.5, -0.15, 0.25, 0.5, 1.5):
            for eps in (0.0, 1e-8):
                results = []
                for path in (dict(fused=True), dict(foreach=True)):
                    theta = torch.zeros_like(v, requires_grad=True)
                    opt = NSF([theta], lr=1.0, p=p, betas=(0.5, 0.5), eps=eps,
                              bias_correction=False, **path)  # fmt: skip
                    theta.grad = torch.zeros_like(v)
                    opt.step()  # creates the state: m = v = 0
                    opt.state[theta]["exp_avg"].copy_(m)
                    opt.state[theta]["exp_avg_sq"].copy_(v)
                    theta.grad = torch.zeros_like(v)
                    with torch.no_grad():
                        theta.zero_()
                    opt.step()  # m/2, v/2: exact
                    results.append(theta.detach().clone())
                fused, foreach = results
                assert torch.equal(fused.isnan(), foreach.isnan()), (dtype, p, eps, fused, foreach)
                assert torch.equal(fused.isinf(), foreach.isinf()), (dtype, p, eps, fused, foreach)
                both = torch.isfinite(foreach)
                torch.testing.assert_close(fused[both], foreach[both], rtol=1e-5, atol=0)


def math_inf() -> float:
    return float("inf")


def math_nan() -> float:
    return float("nan")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocks_and_tails_equal_the_foreach_path(kernel_build, dtype):
    """Tensors of 1, 15, 16, 17 elements and around the block size, one group, 12 steps with
    amsgrad and weight decay: float64 within 1e-12 of the foreach path, float32 within 1e-5."""
    gen = torch.Generator().manual_seed(0)
    starts = [torch.randn(n, generator=gen, dtype=torch.float64).to(dtype) for n in SIZES]
    runs = []
    for path in (dict(fused=True), dict(foreach=True)):
        params = [s.clone().requires_grad_() for s in starts]
        opt = NSF(params, lr=1e-2, p=-0.3, amsgrad=True, weight_decay=1e-3, **path)
        gen = torch.Generator().manual_seed(1)
        for _ in range(12):
            for q in params:
                q.grad = torch.randn(q.shape, generator=gen, dtype=torch.float64).to(dtype)
            opt.step()
        runs.append(params)
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("update_norm", [None, "rms_matched"])
def test_one_thread_and_two_threads_are_bitwise_identical(update_norm):
    """The threads take blocks in any order; every element's arithmetic is its own, and the
    rms_matched sums are added in block order: the result does not depend on the threads."""
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            gen = torch.Generator().manual_seed(0)
            params = [torch.randn(s, generator=gen).requires_grad_() for s in (5, 4 * 32768 + 3)]
            opt = NSF(params, lr=1e-2, p=0.2, update_norm=update_norm, fused=True)
            for _ in range(3):
                for q in params:
                    q.grad = torch.randn(q.shape, generator=gen)
                opt.step()
            runs.append([q.detach() for q in params])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_state_is_adams():
    """The fused step keeps exactly Adam's state: the same keys, shapes, dtypes and bytes."""
    sizes = []
    for opt_cls in (NSF, torch.optim.Adam):
        params = [torch.zeros(7, 3, requires_grad=True), torch.zeros(5, requires_grad=True)]
        opt = opt_cls(params, fused=True, amsgrad=True)
        for q in params:
            q.grad = torch.ones_like(q)
        opt.step()
        state = [
            (k, tuple(v.shape), v.dtype, v.nbytes) for q in params for k, v in opt.state[q].items()
        ]
        sizes.append(sorted(state, key=str))
    assert sizes[0] == sizes[1]


def test_the_kernel_is_built_once_then_loaded_from_the_cache(fresh_kernel, monkeypatch):
    """The first use compiles (about a second) into the cache directory; a later process (here:
    the module state reset) loads that file instead of compiling again."""
    fresh_kernel.library()
    first = fresh_kernel.build_info()
    assert first["cached"] is False and first["isa"] in ("avx512", "portable")
    monkeypatch.setattr(fresh_kernel, "_LIBRARY", None)
    calls = []
    monkeypatch.setattr(fresh_kernel, "_compile", lambda *a: calls.append(a) or "not called")
    fresh_kernel.library()
    again = fresh_kernel.build_info()
    assert again["cached"] is True and again["path"] == first["path"] and not calls


def test_without_a_compiler_the_kernel_says_why(fresh_kernel, monkeypatch):
    monkeypatch.setattr(fresh_kernel, "_compilers", lambda: [])
    with pytest.raises(fresh_kernel.KernelUnavailableError, match="no C compiler"):
        fresh_kernel.library()
    with pytest.raises(fresh_kernel.KernelUnavailableError):  # and keeps saying it
        fresh_kernel.library()


def test_without_the_c_kernel_fused_falls_back_to_torch_compile(fresh_kernel, monkeypatch):
    """No working C compiler for the kernel: a warning, then the compiled kernel, which equals
    the foreach path as before."""
    monkeypatch.setattr(fresh_kernel, "_compilers", lambda: [])
    monkeypatch.setattr(_fused, "_warned_fallback", False)
    theta = [torch.randn(6, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    clone = [t.detach().clone().requires_grad_() for t in theta]
    opt, ref = NSF(theta, p=-0.2, fused=True), NSF(clone, p=-0.2, foreach=True)
    with pytest.warns(UserWarning, match="torch.compile instead"):
        for step in range(5):
            for a, b in zip(theta, clone):
                a.grad = torch.full_like(a, 0.1 * (step + 1))
                b.grad = a.grad.clone()
            opt.step()
            ref.step()
    for a, b in zip(theta, clone):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def run_paths(**kw):
    torch.manual_seed(0)
    params = [torch.randn(4, 3, dtype=torch.float64, requires_grad=True),
              torch.randn(5, dtype=torch.float32, requires_grad=True)]  # fmt: skip
    opt = NSF(params, lr=1e-2, p=-0.25, amsgrad=True, **kw)
    for step in range(6):
        for q in params:
            q.grad = torch.full_like(q, 0.1).sin() * (step + 1)
        opt.step()
    return [q.detach() for q in params]


@pytest.mark.parametrize("path", [dict(foreach=True), dict(fused=True)], ids=str)
def test_without_torchs_grouping_the_python_grouping_steps_identically(path, monkeypatch):
    """``Optimizer._group_tensors_by_device_and_dtype`` is private: without it the same grouping
    in Python, with bit-identical results (two dtypes in one group)."""
    expected = run_paths(**path)
    monkeypatch.setattr(optim, "_TORCH_GROUPING", None)
    for a, b in zip(run_paths(**path), expected):
        assert torch.equal(a, b)


def test_without_foreach_ops_the_single_tensor_path_runs(monkeypatch):
    """The ``torch._foreach_*`` ops are private: where one is missing, the default (and even an
    explicit foreach=True) runs the single-tensor loop, which steps identically."""
    expected = run_paths(foreach=False)
    monkeypatch.setattr(optim, "_HAS_FOREACH", False)
    monkeypatch.setattr(optim, "_multi_tensor_nsf", lambda *a, **k: pytest.fail("foreach ran"))
    for kw in (dict(), dict(foreach=True)):
        for a, b in zip(run_paths(**kw), expected):
            assert torch.equal(a, b)


def test_compiled_kernel_without_private_inductor_and_fx_settings(monkeypatch):
    """The compiled kernel's private settings (inductor's cpp options, dynamo's duck sizing) are
    optional: without them it compiles with the defaults and still equals the foreach path."""
    monkeypatch.setattr(_fused, "_inductor_options", lambda: set())
    monkeypatch.setattr(_fused, "_no_duck_shapes", contextlib.nullcontext)
    monkeypatch.setattr(_fused, "_FUSED_KERNELS", {})
    a = run_paths(fused=True, fused_backend="compile", update_norm="rms_matched")
    b = run_paths(foreach=True, update_norm="rms_matched")
    for x, y in zip(a, b):
        rtol = 1e-12 if x.dtype == torch.float64 else 1e-5
        torch.testing.assert_close(x, y, rtol=rtol, atol=rtol)


def test_fused_backend_is_validated():
    with pytest.raises(ValueError, match="fused_backend"):
        NSF([torch.zeros(2, requires_grad=True)], fused=True, fused_backend="triton")
