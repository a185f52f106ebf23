r"""The CPU kernel of the fused path (``NSF(fused=True)`` on float32 and float64 CPU tensors).

One call of a small C function updates every tensor of a parameter group: one OpenMP region, the
tensors cut into blocks of ``BLOCK`` elements that the threads take dynamically (a thread that
the machine delays leaves its blocks to the others), and within a block one pass over the memory
(theta, g, m, v read once, theta, m, v written once, as in torch's fused Adam). Every number that
may change between steps (p, lr, the betas, eps, the weight decay and the bias corrections)
is an argument of the call: a p schedule costs what a constant p costs and nothing is ever
recompiled.

The per-element math is the rule of paper Sec. 3.1, Eq. 3, with the bias corrections folded into
scalars as in ``nsf.optim._denominator`` (the book's chapter 01, "What the exponent costs per
step", and its reconstruction page, "Negligible cost"). v^p is 2^(p log2 v):

* float32 with AVX-512 (``__AVX512F__``): log2 from the exponent and mantissa instructions
  (``getexp``/``getmant``, exact on subnormals, 0 and inf) and a 32-entry table with a degree-4
  polynomial; 2^y from a 32-entry table, a degree-3 polynomial and ``scalef`` (correct overflow
  to inf and underflow through the subnormals to 0); p log2 v is formed as p e + p log2(mantissa),
  so the exponent e is never rounded into the logarithm. About 1-2 ulp from the exact v^p.
* float32 otherwise (AVX2, NEON, scalar): the same bit-level log2/exp2 polynomials as the
  compiled path (``nsf._fused._log2`` and ``_exp2``), auto-vectorised by the C compiler.
* float64: the C library's ``log2`` and ``exp2`` (correctly rounded to within an ulp, not
  vectorised).

The source is compiled on first use with the system C compiler (``$CC``, else ``cc``, ``gcc``,
``clang``) for the host CPU (``-march=native``, then ``-mcpu=native``, then no ISA flag; with
``-fopenmp``, else single-threaded), and the library is cached on disk, keyed by a hash of the
source, the flags, the compiler's version and the CPU's model and flags: a later process loads it
in milliseconds. The cache lives in ``$NSF_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/nsf``, else
``~/.cache/nsf`` (a per-user folder under the temporary directory where that cannot be made).
The OpenMP runtime is the one torch already loaded (``libgomp.so.1`` is resolved to torch's
copy), and the thread count is ``torch.get_num_threads()``.

Without a working compiler :func:`library` raises :class:`KernelUnavailableError`, and
``nsf._fused.fused_nsf`` falls back to the torch.compile kernel (tested).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["BLOCK", "KernelUnavailableError", "build_info", "library", "step"]

#: Elements per work item of the OpenMP loop (128 KiB of each float32 stream).
BLOCK = 32768


class KernelUnavailableError(RuntimeError):
    """The C kernel could not be built or loaded here (the reason is the message)."""


def _f32(x: float) -> str:
    """A C float literal that is exactly float32(x)."""
    return repr(struct.unpack("f", struct.pack("f", x))[0]) + "f"


def _tables() -> str:
    inv = [struct.unpack("f", struct.pack("f", 1.0 / (1.0 + (j + 0.5) / 32)))[0] for j in range(32)]
    rows = {
        # 1/c_j for c_j the centre of the j-th 32nd of [1, 2), and -log2 of that float exactly,
        # so that log2(m) = log2(1 + r) + LOG_C[j] with r = m*INV_C[j] - 1 holds without error.
        "NSF_INV_C": [_f32(x) for x in inv],
        "NSF_LOG_C": [_f32(-math.log2(x)) for x in inv],
        "NSF_EXP_T": [_f32(2.0 ** (j / 32)) for j in range(32)],  # 2^(j/32)
    }
    return "\n".join(
        f"static const float {name}[32] = {{{', '.join(vals)}}};" for name, vals in rows.items()
    )


_SOURCE_TEMPLATE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* The scalars of one call (see nsf._fused._fused_scalars). */
enum { S_SIGN, S_WD, S_W1, S_BETA2, S_W2, S_P, S_EPS_IN, S_EPS_OUT, S_DECAY, S_C, S_REF, S_NEG_LR };
#define NSF_BLOCK @BLOCK@

/* mode 0: the whole step. mode 1 (rms_matched, first pass): m, v (v_max) and the sums of u^2 and
   m^2. mode 2 (rms_matched, second pass): theta from the new m, v with u scaled by ratio. */

/* ---- float32, portable: the bit-level polynomials of nsf._fused._log2/_exp2 ---------------- */
static inline float f32_from_bits(int32_t i) { float f; memcpy(&f, &i, sizeof f); return f; }
static inline int32_t f32_bits(float f) { int32_t i; memcpy(&i, &f, sizeof i); return i; }

#if defined(FP_FAST_FMAF)
#define NSF_FMAF(a, b, c) fmaf(a, b, c)
#else
#define NSF_FMAF(a, b, c) ((a) * (b) + (c))
#endif

/* x^p for x >= 0 (or NaN) with p = ph + pl (the double p split into two floats): log2 x = e + l
   from the bits (subnormals scaled by 2^24 first) and a degree-8 polynomial for l in
   [-1/2, 1/2); y = p e + p l is rounded only to choose k = round(y), and the rest
   r = (p e - k) + p l is formed with the product p e exact, so that neither e nor y is rounded
   into the power (that would cost ulp(y)/2, 20 ulp at |y| = 100); 2^r by a degree-6
   polynomial; 2^k as two exponent-built factors, which rounds through the subnormals and
   overflows to inf like exp2. 0^p is 0 or inf, inf^p inf or 0, NaN stays NaN. */
static inline float nsf_powf(float x, float ph, float pl) {
    int tiny = x < 1.1754943508222875e-38f;
    int32_t bits = f32_bits(tiny ? x * 16777216.0f : x) - 0x3F3504F3;
    float e = (float)(bits >> 23) - (tiny ? 24.0f : 0.0f);
    float f = f32_from_bits((bits & 0x007FFFFF) + 0x3F3504F3) - 1.0f;
    float r = -0.14574462784752523f * f + 0.23689040855109622f;
    r = r * f - 0.25006899774904706f;
    r = r * f + 0.28670744902842654f;
    r = r * f - 0.360087219809637f;
    r = r * f + 0.48093944518285076f;
    r = r * f - 0.721357148813047f;
    r = r * f + 1.4426947724232895f;
    int ordinary = x > 0.0f && x < INFINITY;
    float es = ordinary ? e : (x == 0.0f ? -INFINITY : x); /* -inf at 0, inf at inf, NaN */
    float lp = NSF_FMAF(pl, e, ph * (ordinary ? f * r : 0.0f));
    float y = NSF_FMAF(ph, es, lp);
    y = y < -252.0f ? -252.0f : (y > 254.0f ? 254.0f : y);
    float k = (y + 12582912.0f) - 12582912.0f;
    float rr = NSF_FMAF(ph, es, -k) + lp;
    rr = rr < -1.0f ? -1.0f : (rr > 1.0f ? 1.0f : rr);
    float q = 1.535336188319500e-4f * rr + 1.339887440266574e-3f;
    q = q * rr + 9.618437357674640e-3f;
    q = q * rr + 5.550332471162809e-2f;
    q = q * rr + 2.402264791363012e-1f;
    q = q * rr + 6.931472028550421e-1f;
    int32_t ki = (int32_t)(k == k ? k : 0.0f);
    int32_t h = ki >> 1;
    float two_h = f32_from_bits((int32_t)((uint32_t)(h + 127) << 23));
    return (1.0f + rr * q) * (1.0f + (float)(ki - 2 * h)) * two_h * two_h;
}

/* float64: the C library's pow (0^p, inf^p and x^0 as IEEE pow has them). */
static inline double nsf_pow(double x, double ph, double pl) { (void)pl; return pow(x, ph); }

/* One block, for constant amsgrad and mode (the dispatcher below), so that the loop has no
   branches and vectorises. */
#define NSF_SPAN(T, SFX, POW)                                                                      \
    static inline __attribute__((always_inline)) void span_##SFX##_c(                             \
        T *restrict th, const T *restrict gr, T *restrict m, T *restrict v, T *restrict vm,        \
        int64_t lo, int64_t hi, const double *s, const int amsgrad, const int mode, double *sums,  \
        double ratio) {                                                                            \
        const T sign = (T)s[S_SIGN], wd = (T)s[S_WD], w1 = (T)s[S_W1], b2 = (T)s[S_BETA2];         \
        const T w2 = (T)s[S_W2], ein = (T)s[S_EPS_IN], eout = (T)s[S_EPS_OUT];                     \
        const T ph = (T)s[S_P], pl = (T)(s[S_P] - (double)ph);                                     \
        const T decay = (T)s[S_DECAY], c = (T)s[S_C], w1c = (T)(1.0 - s[S_W1]);                   \
        const T scale = (T)(ratio * s[S_NEG_LR]);                                                  \
        const int haswd = s[S_WD] != 0.0, lerplo = fabs(s[S_W1]) < 0.5, pzero = s[S_P] == 0.0;    \
        double su = 0.0, sm = 0.0;                                                                 \
        if (mode == 2) {                                                                           \
            const T *restrict vs = amsgrad ? vm : v;                                               \
            _Pragma("omp simd")                                                                    \
            for (int64_t i = lo; i < hi; ++i) {                                                    \
                T pw = pzero ? (T)1 : POW(vs[i] + ein, ph, pl);                                    \
                th[i] = th[i] * decay + (c * (m[i] / (pw + eout))) * scale;                        \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        _Pragma("omp simd reduction(+:su,sm)")                                                     \
        for (int64_t i = lo; i < hi; ++i) {                                                        \
            T t = th[i], g0 = sign * gr[i], g = haswd ? g0 + wd * t : g0;                          \
            T mi = m[i], d = g - mi;                                                               \
            T mn = lerplo ? mi + w1 * d : g - d * w1c;                                             \
            T vn = b2 * v[i] + w2 * g * g;                                                         \
            m[i] = mn;                                                                             \
            v[i] = vn;                                                                             \
            if (amsgrad) { T w = vm[i]; vn = w > vn ? w : vn; vm[i] = vn; }                        \
            T pw = pzero ? (T)1 : POW(vn + ein, ph, pl);                                           \
            T u = c * (mn / (pw + eout));                                                          \
            if (mode == 1) { su += (double)u * (double)u; sm += (double)mn * (double)mn; }         \
            else th[i] = t * decay + u;                                                            \
        }                                                                                          \
        if (mode == 1) { sums[0] = su; sums[1] = sm; }                                             \
    }                                                                                              \
    static void span_##SFX(T *th, const T *gr, T *m, T *v, T *vm, int64_t lo, int64_t hi,         \
                           const double *s, int amsgrad, int mode, double *sums, double ratio) {   \
        if (amsgrad) {                                                                             \
            if (mode == 0) span_##SFX##_c(th, gr, m, v, vm, lo, hi, s, 1, 0, sums, ratio);         \
            else if (mode == 1) span_##SFX##_c(th, gr, m, v, vm, lo, hi, s, 1, 1, sums, ratio);    \
            else span_##SFX##_c(th, gr, m, v, vm, lo, hi, s, 1, 2, sums, ratio);                   \
        } else {                                                                                   \
            if (mode == 0) span_##SFX##_c(th, gr, m, v, vm, lo, hi, s, 0, 0, sums, ratio);         \
            else if (mode == 1) span_##SFX##_c(th, gr, m, v, vm, lo, hi, s, 0, 1, sums, ratio);    \
            else span_##SFX##_c(th, gr, m, v, vm, lo, hi, s, 0, 2, sums, ratio);                   \
        }                                                                                          \
    }

NSF_SPAN(double, f64, nsf_pow)

#if defined(__AVX512F__)
/* ---- float32, AVX-512: exponent/mantissa instructions, two 32-entry tables, scalef ---------- */
@TABLES@

typedef struct { __m512 ilo, ihi, llo, lhi, tlo, thi; } nsf_tab;

/* x^p as nsf_powf, p = ph + pl: log2 x = e + l with e from getexp (exact, also on subnormals;
   -inf at 0, inf at inf) and l = log2 of the mantissa m in [1, 2) from a 32-entry table and a
   degree-4 polynomial in r = m/c_j - 1 (|r| < 1/64); y rounded to n, a multiple of 1/32, and
   r' = (p e - n) + p l with p e exact; 2^r' by a degree-3 polynomial times 2^frac(n) from a
   table, and 2^floor(n) by scalef (IEEE overflow to inf, underflow through the subnormals). */
static inline __m512 nsf_pow16(__m512 x, __m512 ph, __m512 pl, const nsf_tab *t) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = _mm512_getexp_ps(x);
    __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
    __m512i j = _mm512_srli_epi32(_mm512_castps_si512(m), 18); /* top 5 mantissa bits */
    __m512 r = _mm512_fmsub_ps(m, _mm512_permutex2var_ps(t->ilo, j, t->ihi), one);
    __m512 q = _mm512_fmadd_ps(r, _mm512_set1_ps(-0.36067376022224085f),
                               _mm512_set1_ps(0.48089834696298783f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(-0.7213475204444817f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.4426950408889634f));
    __m512 l = _mm512_fmadd_ps(r, q, _mm512_permutex2var_ps(t->llo, j, t->lhi));
    /* max/min return their second operand on NaN: NaN stays NaN through every clamp */
    __m512 ec = _mm512_min_ps(_mm512_set1_ps(200.0f), _mm512_max_ps(_mm512_set1_ps(-200.0f), e));
    __m512 lp = _mm512_fmadd_ps(pl, ec, _mm512_mul_ps(ph, l)); /* finite unless x is NaN */
    __m512 y = _mm512_fmadd_ps(ph, e, lp);
    y = _mm512_min_ps(_mm512_set1_ps(300.0f), _mm512_max_ps(_mm512_set1_ps(-300.0f), y));
    __m512 big = _mm512_add_ps(y, _mm512_set1_ps(393216.0f)); /* 1.5 * 2^18: ulp 1/32 */
    __m512 n = _mm512_sub_ps(big, _mm512_set1_ps(393216.0f));
    __m512 rr = _mm512_add_ps(_mm512_fmsub_ps(ph, e, n), lp);
    rr = _mm512_min_ps(one, _mm512_max_ps(_mm512_set1_ps(-1.0f), rr));
    __m512 tj = _mm512_permutex2var_ps(t->tlo, _mm512_castps_si512(big), t->thi); /* 2^frac(n) */
    __m512 qq = _mm512_fmadd_ps(rr, _mm512_set1_ps(0.05550410866482158f),
                                _mm512_set1_ps(0.2402265069591007f));
    qq = _mm512_fmadd_ps(qq, rr, _mm512_set1_ps(0.6931471805599453f));
    return _mm512_scalef_ps(_mm512_fmadd_ps(_mm512_mul_ps(rr, qq), tj, tj), n);
}

typedef struct {
    nsf_tab tab;
    __m512 sign, wd, w1, w1c, b2, w2, ph, pl, ein, eout, one, decay, c, scale;
    int haswd, lerplo, pzero;
} nsf_args16;

/* 16 elements from i; with full = 0 only the lanes of k (the tail: masked loads and stores,
   which on some CPUs cost more than plain ones, hence two versions). */
#define NSF_LD(k, full, ptr) ((full) ? _mm512_loadu_ps(ptr) : _mm512_maskz_loadu_ps(k, ptr))
#define NSF_ST(k, full, ptr, x) \
    do { if (full) _mm512_storeu_ps(ptr, x); else _mm512_mask_storeu_ps(ptr, k, x); } while (0)

static inline __attribute__((always_inline)) void nsf_vec16(
    float *th, const float *gr, float *m, float *v, float *vm, int64_t i, __mmask16 k,
    const int full, const nsf_args16 *a, int amsgrad, int mode, __m512d *su, __m512d *sm) {
    if (mode == 2) {
        __m512 vs = NSF_LD(k, full, (amsgrad ? vm : v) + i);
        __m512 pw = a->pzero ? a->one : nsf_pow16(_mm512_add_ps(vs, a->ein), a->ph, a->pl, &a->tab);
        __m512 u = _mm512_mul_ps(a->c, _mm512_div_ps(NSF_LD(k, full, m + i),
                                                     _mm512_add_ps(pw, a->eout)));
        __m512 t = NSF_LD(k, full, th + i);
        NSF_ST(k, full, th + i, _mm512_fmadd_ps(t, a->decay, _mm512_mul_ps(u, a->scale)));
        return;
    }
    __m512 t = NSF_LD(k, full, th + i);
    __m512 g = _mm512_mul_ps(a->sign, NSF_LD(k, full, gr + i));
    if (a->haswd) g = _mm512_fmadd_ps(a->wd, t, g);
    __m512 mi = NSF_LD(k, full, m + i), d = _mm512_sub_ps(g, mi);
    __m512 mn = a->lerplo ? _mm512_fmadd_ps(a->w1, d, mi) : _mm512_fnmadd_ps(d, a->w1c, g);
    __m512 vn = _mm512_fmadd_ps(_mm512_mul_ps(a->w2, g), g,
                                _mm512_mul_ps(a->b2, NSF_LD(k, full, v + i)));
    NSF_ST(k, full, m + i, mn);
    NSF_ST(k, full, v + i, vn);
    if (amsgrad) {
        vn = _mm512_max_ps(NSF_LD(k, full, vm + i), vn);
        NSF_ST(k, full, vm + i, vn);
    }
    __m512 pw = a->pzero ? a->one : nsf_pow16(_mm512_add_ps(vn, a->ein), a->ph, a->pl, &a->tab);
    __m512 u = _mm512_mul_ps(a->c, _mm512_div_ps(mn, _mm512_add_ps(pw, a->eout)));
    if (mode == 1) {
        u = _mm512_maskz_mov_ps(k, u);
        __m512 hi_u = _mm512_castpd_ps(_mm512_shuffle_f64x2(_mm512_castps_pd(u),
                                                            _mm512_castps_pd(u), 0xEE));
        __m512 hi_m = _mm512_castpd_ps(_mm512_shuffle_f64x2(_mm512_castps_pd(mn),
                                                            _mm512_castps_pd(mn), 0xEE));
        __m512d ul = _mm512_cvtps_pd(_mm512_castps512_ps256(u));
        __m512d uh = _mm512_cvtps_pd(_mm512_castps512_ps256(hi_u));
        __m512d ml = _mm512_cvtps_pd(_mm512_castps512_ps256(mn));
        __m512d mh = _mm512_cvtps_pd(_mm512_castps512_ps256(hi_m));
        *su = _mm512_fmadd_pd(ul, ul, _mm512_fmadd_pd(uh, uh, *su));
        *sm = _mm512_fmadd_pd(ml, ml, _mm512_fmadd_pd(mh, mh, *sm));
    } else {
        NSF_ST(k, full, th + i, _mm512_fmadd_ps(t, a->decay, u));
    }
}

static inline __attribute__((always_inline)) void span_f32_c(
    float *th, const float *gr, float *m, float *v, float *vm, int64_t lo, int64_t hi,
    const nsf_args16 *a, const int amsgrad, const int mode, double *sums) {
    __m512d su = _mm512_setzero_pd(), sm = _mm512_setzero_pd();
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16)
        nsf_vec16(th, gr, m, v, vm, i, (__mmask16)0xFFFF, 1, a, amsgrad, mode, &su, &sm);
    if (i < hi)
        nsf_vec16(th, gr, m, v, vm, i, (__mmask16)((1u << (hi - i)) - 1u), 0, a, amsgrad, mode,
                  &su, &sm);
    if (mode == 1) {
        sums[0] = _mm512_reduce_add_pd(su);
        sums[1] = _mm512_reduce_add_pd(sm);
    }
}

static void span_f32(float *th, const float *gr, float *m, float *v, float *vm, int64_t lo,
                     int64_t hi, const double *s, int amsgrad, int mode, double *sums,
                     double ratio) {
    const nsf_args16 a = {
        {_mm512_loadu_ps(NSF_INV_C), _mm512_loadu_ps(NSF_INV_C + 16), _mm512_loadu_ps(NSF_LOG_C),
         _mm512_loadu_ps(NSF_LOG_C + 16), _mm512_loadu_ps(NSF_EXP_T),
         _mm512_loadu_ps(NSF_EXP_T + 16)},
        _mm512_set1_ps((float)s[S_SIGN]), _mm512_set1_ps((float)s[S_WD]),
        _mm512_set1_ps((float)s[S_W1]), _mm512_set1_ps((float)(1.0 - s[S_W1])),
        _mm512_set1_ps((float)s[S_BETA2]), _mm512_set1_ps((float)s[S_W2]),
        _mm512_set1_ps((float)s[S_P]), _mm512_set1_ps((float)(s[S_P] - (double)(float)s[S_P])),
        _mm512_set1_ps((float)s[S_EPS_IN]),
        _mm512_set1_ps((float)s[S_EPS_OUT]), _mm512_set1_ps(1.0f),
        _mm512_set1_ps((float)s[S_DECAY]), _mm512_set1_ps((float)s[S_C]),
        _mm512_set1_ps((float)(ratio * s[S_NEG_LR])),
        s[S_WD] != 0.0, fabs(s[S_W1]) < 0.5, s[S_P] == 0.0};
    if (amsgrad) {
        if (mode == 0) span_f32_c(th, gr, m, v, vm, lo, hi, &a, 1, 0, sums);
        else if (mode == 1) span_f32_c(th, gr, m, v, vm, lo, hi, &a, 1, 1, sums);
        else span_f32_c(th, gr, m, v, vm, lo, hi, &a, 1, 2, sums);
    } else {
        if (mode == 0) span_f32_c(th, gr, m, v, vm, lo, hi, &a, 0, 0, sums);
        else if (mode == 1) span_f32_c(th, gr, m, v, vm, lo, hi, &a, 0, 1, sums);
        else span_f32_c(th, gr, m, v, vm, lo, hi, &a, 0, 2, sums);
    }
}
const char *nsf_kernel_isa(void) { return "avx512"; }
#else
NSF_SPAN(float, f32, nsf_powf)
const char *nsf_kernel_isa(void) { return "portable"; }
#endif

int nsf_kernel_openmp(void) {
#if defined(_OPENMP)
    return 1;
#else
    return 0;
#endif
}

/* The tensor of job j: the a with cum[a] <= j < cum[a + 1]. */
static inline int64_t nsf_job_tensor(const int64_t *cum, int64_t n, int64_t j) {
    int64_t a = 0, b = n;
    while (b - a > 1) {
        int64_t mid = a + (b - a) / 2;
        if (cum[mid] <= j) a = mid; else b = mid;
    }
    return a;
}

/* n tensors of numel[i] elements; ptrs holds n theta, n grad, n m, n v (and n v_max) addresses.
   Returns 0, or 1 when memory for the job table is short (nothing was updated then). */
#define NSF_ENTRY(T, SFX)                                                                          \
    int nsf_step_##SFX(int64_t n, const int64_t *numel, const int64_t *ptrs, const double *s,      \
                       int amsgrad, int rms, int nthreads) {                                       \
        int64_t *cum = malloc((size_t)(n + 1) * sizeof *cum);                                     \
        if (!cum) return 1;                                                                        \
        cum[0] = 0;                                                                                \
        for (int64_t i = 0; i < n; ++i)                                                            \
            cum[i + 1] = cum[i] + (numel[i] + NSF_BLOCK - 1) / NSF_BLOCK;                          \
        const int64_t jobs = cum[n];                                                               \
        double *sums = rms ? calloc((size_t)(2 * jobs + n + 1), sizeof *sums) : NULL;             \
        if (rms && !sums) { free(cum); return 1; }                                                 \
        double *ratio = rms ? sums + 2 * jobs : NULL;                                              \
        T **th = (T **)ptrs, **gr = (T **)(ptrs + n), **mm = (T **)(ptrs + 2 * n);                 \
        T **vv = (T **)(ptrs + 3 * n), **vx = amsgrad ? (T **)(ptrs + 4 * n) : NULL;               \
        (void)nthreads;                                                                            \
        _Pragma("omp parallel num_threads(nthreads) if(nthreads > 1 && jobs > 1)")                 \
        {                                                                                          \
            _Pragma("omp for schedule(dynamic, 1)")                                                \
            for (int64_t j = 0; j < jobs; ++j) {                                                   \
                int64_t a = nsf_job_tensor(cum, n, j), lo = (j - cum[a]) * NSF_BLOCK;              \
                int64_t hi = lo + NSF_BLOCK < numel[a] ? lo + NSF_BLOCK : numel[a];                \
                span_##SFX(th[a], gr[a], mm[a], vv[a], vx ? vx[a] : NULL, lo, hi, s, amsgrad,      \
                           rms ? 1 : 0, rms ? sums + 2 * j : NULL, 1.0);                           \
            }                                                                                      \
            if (rms) {                                                                             \
                /* per tensor, in job order (deterministic whatever thread ran which block) */     \
                _Pragma("omp single")                                                              \
                for (int64_t a = 0; a < n; ++a) {                                                  \
                    double su = 0.0, sm = 0.0;                                                     \
                    for (int64_t j = cum[a]; j < cum[a + 1]; ++j) {                                \
                        su += sums[2 * j];                                                         \
                        sm += sums[2 * j + 1];                                                     \
                    }                                                                              \
                    double norm = sqrt(su), target = sqrt(sm) * s[S_REF];                          \
                    ratio[a] = norm > 0.0 ? target / norm : 1.0;                                   \
                }                                                                                  \
                _Pragma("omp for schedule(dynamic, 1)")                                            \
                for (int64_t j = 0; j < jobs; ++j) {                                               \
                    int64_t a = nsf_job_tensor(cum, n, j), lo = (j - cum[a]) * NSF_BLOCK;          \
                    int64_t hi = lo + NSF_BLOCK < numel[a] ? lo + NSF_BLOCK : numel[a];            \
                    span_##SFX(th[a], gr[a], mm[a], vv[a], vx ? vx[a] : NULL, lo, hi, s, amsgrad,  \
                               2, NULL, ratio[a]);                                                 \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        free(cum);                                                                                 \
        free(sums);                                                                                \
        return 0;                                                                                  \
    }

NSF_ENTRY(float, f32)
NSF_ENTRY(double, f64)
"""

#: The C source of the kernel (a function of nothing but this module).
SOURCE = _SOURCE_TEMPLATE.replace("@BLOCK@", str(BLOCK)).replace("@TABLES@", _tables())

_BASE_FLAGS = ["-O3", "-std=gnu11", "-shared", "-fPIC", "-ffp-contract=fast", "-fno-math-errno",
               "-fno-trapping-math"]  # fmt: skip
_ISA_FLAGS = (["-march=native"], ["-mcpu=native"], [])
_OMP_FLAGS = (["-fopenmp"], [])

_LIBRARY: ctypes.CDLL | None = None
_FAILURE: str | None = None
_BUILD: dict[str, object] = {}


def _compilers() -> list[str]:
    names = [os.environ["CC"]] if os.environ.get("CC") else []
    names += ["cc", "gcc", "clang"]
    return [path for name in names if (path := shutil.which(name))]


def _cpu_id() -> str:
    """The CPU's model and feature flags (what -march=native compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    keep = {}
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features", "CPU part") and key not in keep:
            keep[key] = value.strip()
    return repr((platform.machine(), platform.processor(), sorted(keep.items())))


def cache_dir() -> Path:
    """Where built kernels are kept (see the module docstring); a per-user folder under the
    temporary directory where that one cannot be created."""
    if os.environ.get("NSF_KERNEL_CACHE"):
        path = Path(os.environ["NSF_KERNEL_CACHE"])
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nsf"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        path = Path(tempfile.gettempdir()) / f"nsf_kernels_{uid}"
    return path


def _version(compiler: str) -> str:
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def _build() -> ctypes.CDLL:
    start = time.perf_counter()
    errors = []
    cpu = _cpu_id()
    folder = cache_dir()
    for compiler in _compilers():
        version = _version(compiler)
        for isa in _ISA_FLAGS:
            for omp in _OMP_FLAGS:
                flags = [*_BASE_FLAGS, *isa, *omp]
                key = hashlib.sha256(repr((SOURCE, compiler, version, flags, cpu)).encode())
                path = folder / f"nsf_kernel_{key.hexdigest()[:20]}.so"
                cached = path.exists()
                if not cached:
                    err = _compile(compiler, flags, path)
                    if err:
                        errors.append(f"{Path(compiler).name} {' '.join(isa + omp)}: {err}")
                        continue
                try:
                    lib = ctypes.CDLL(str(path))
                except OSError as exc:
                    errors.append(f"loading {path}: {exc}")
                    continue
                lib.nsf_kernel_isa.restype = ctypes.c_char_p
                _BUILD.update(compiler=compiler, version=version, flags=flags, path=str(path),
                              cached=cached, seconds=time.perf_counter() - start,
                              isa=lib.nsf_kernel_isa().decode(),
                              openmp=bool(lib.nsf_kernel_openmp()))  # fmt: skip
                args = [ctypes.c_int64, *[ctypes.c_void_p] * 3, *[ctypes.c_int] * 3]
                for name in ("nsf_step_f32", "nsf_step_f64"):
                    getattr(lib, name).argtypes = args
                    getattr(lib, name).restype = ctypes.c_int
                return lib
    if not errors:
        errors.append("no C compiler found ($CC, cc, gcc, clang)")
    raise KernelUnavailableError("the NSF CPU kernel could not be built: " + "; ".join(errors[-3:]))


def _compile(compiler: str, flags: list[str], path: Path) -> str | None:
    """Compile SOURCE into ``path`` (atomically: concurrent processes may race); the error text
    or None."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            src, out = Path(tmp) / "nsf_kernel.c", Path(tmp) / path.name
            src.write_text(SOURCE)
            run = subprocess.run([compiler, *flags, str(src), "-o", str(out), "-lm"],
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
            if run.returncode != 0:
                return (run.stderr.strip().splitlines() or ["failed"])[-1][:200]
            os.replace(out, path)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)[:200]
    return None


def library() -> ctypes.CDLL:
    """The loaded kernel library, built (or found in the cache) on the first call of the
    process; raises :class:`KernelUnavailableError` (then and on every later call) if it
    cannot be."""
    global _LIBRARY, _FAILURE
    if _LIBRARY is None:
        if _FAILURE is not None:
            raise KernelUnavailableError(_FAILURE)
        try:
            _LIBRARY = _build()
        except KernelUnavailableError as exc:
            _FAILURE = str(exc)
            raise
    return _LIBRARY


def build_info() -> dict[str, object]:
    """How the library of this process was obtained: compiler, flags, path, ``cached`` (found on
    disk rather than compiled), ``seconds`` (to build or load it), ``isa``, ``openmp``. Empty
    before the first :func:`library` call."""
    return dict(_BUILD)


def step(
    dtype: torch.dtype,
    tensors: Sequence[Sequence[Tensor]],
    scalars: Sequence[float],
    *,
    amsgrad: bool,
    rms: bool,
) -> None:
    """One NSF step of ``tensors`` = (params, grads, m, v[, v_max]): contiguous CPU tensors of
    ``dtype`` (float32 or float64) of matching sizes, which this does not check. ``scalars`` are
    the 12 numbers of ``nsf._fused._fused_scalars`` (with rms_matched's last two, else zeros)."""
    lib = library()
    fn = lib.nsf_step_f32 if dtype == torch.float32 else lib.nsf_step_f64
    n = len(tensors[0])
    ptrs = (ctypes.c_int64 * (len(tensors) * n))(*[t.data_ptr() for ts in tensors for t in ts])
    numel = (ctypes.c_int64 * n)(*[t.numel() for t in tensors[0]])
    values = (ctypes.c_double * 12)(*scalars)
    if fn(n, numel, ptrs, values, int(amsgrad), int(rms), torch.get_num_threads()) != 0:
        raise MemoryError("the NSF CPU kernel could not allocate its job table")
