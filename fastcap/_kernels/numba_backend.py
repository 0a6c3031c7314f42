"""Numba backend: the kernel table compiled to machine code with ``numba.njit``.

Design
------
* Every kernel of ``fastcap._kernels.KERNELS`` with the same name and signature,
  for float32 and float64. Kernels trust their inputs (C-contiguous, one float
  dtype, indices in range): the public layers validated them.
* Lazy compilation: nothing is compiled at import; each kernel compiles on its
  first call for a given set of argument types (float32/float64, read-only or
  not). Compiled code is cached on disk (``cache=True``) so a second process
  loads it instead of recompiling. ``FASTCAP_NUMBA_CACHE=0`` turns the cache off;
  so does ``NUMBA_BOUNDSCHECK=1``, so that a bounds-checked run really compiles
  with bounds checks instead of reusing an unchecked cached build.
* The loops are written so that LLVM vectorizes them (AVX2: 8 float32 lanes).
  Three rules make that happen:
  - constants carry the array's dtype (``dtype.type(1)``), because a float64
    literal would silently promote float32 arithmetic to float64;
  - every inner loop touches few arrays: LLVM must prove at run time that the
    arrays it writes do not overlap the others, and it gives up vectorizing
    beyond about 8 such checks. So the LSTM cell does its row in two short
    loops (gates, then cell) instead of one wide one; the row stays in L1;
  - float32 exp/sigmoid/tanh are branch-free inline code (``_exp_neg32``), not
    calls to libm's scalar ``expf``/``tanhf``, which block vectorization (the
    LSTM cell ran 5x slower with them). They are within 1.5 float32 ulp of the
    exact values, as accurate as NumPy's. float64 keeps libm's ``exp``/``tanh``,
    so float64 results match the reference to rounding.
* ``error_model="numpy"``: a division by zero gives inf/nan as in NumPy instead
  of a Python exception check in every loop (which would block vectorization).
* GEMMs are not kernels: the shared orchestration runs them in NumPy/BLAS,
  as fast as calling BLAS from inside Numba, which would additionally need
  SciPy at run time.
* The attention model's recurrence (``attention_recurrence_*``) is the reference
  loop of ``fastcap/_kernels/attention_recurrence.py`` around this module's
  per-step attention and cell kernels, for the same reason as greedy decoding.
* Greedy decoding (``greedy_decode``) is the reference loop of
  ``fastcap/_kernels/greedy.py`` over this module's kernels, as the NumPy
  backend runs it: a step is three BLAS products, the recurrence's cell and an
  argmax, and a compiled loop would need BLAS from Numba (SciPy) for the products.
* Kernels are serial: Numba threads between the GEMMs of a recurrent step
  would compete with OpenBLAS's own threads on a small machine, so Numba's
  thread pool is never started (``fastcap.runtime.threads`` sets the BLAS threads).

Shapes: N batch, T time, D input, H hidden, V vocabulary, W word vector,
M = N*T flattened rows. LSTM gates are packed i, f, o, g along the 4H axis.
"""
import math
import sys

import numba
import numpy as np
from numba import types
from numba.extending import overload

from . import attention_recurrence, blas_recurrence, greedy
from ..runtime import env
from .bf16 import matmul_bf16, pack_bf16  # noqa: F401 (kernels: the bf16 mode's products, emulated)
from .numba_cider import cider_d, cider_df  # noqa: F401 (kernels: CIDEr-D)
from .numba_updates import (  # noqa: F401 (kernels: the update rules)
    adam_update, rmsprop_update, sgd_momentum_update, sgd_update)
from .numba_jit import CACHE, OPTIONS as _OPTIONS, jit as _jit
# The float32 exp polynomial may use FMA instructions (fastmath "contract" only:
# no reassociation, no assumptions about NaN or infinities); it is about 20%
# faster. The kernels themselves round every operation as NumPy does, since
# expressions like 1 - tanh(c)**2 or m*v - lr*dw can cancel, and a fused
# rounding would then show up in the float64 parity with the reference.
_MATH_OPTIONS = dict(_OPTIONS, fastmath={"contract"})


# ----------------------------------------------------------------------------
# scalar math, dispatched on dtype at compile time
#
# The stubs below are the float64 definitions, used as-is when Numba is
# disabled (NUMBA_DISABLE_JIT=1); under Numba, @overload picks the float32 or
# float64 implementation from the argument's type.

_F32 = np.float32
_LOG2E_32 = _F32(1.4426950408889634)
# ln 2 split in two so that k * _LN2_HI_32 is exact for the |k| <= 126 used here
# (Cody-Waite reduction): r = x - k ln2 keeps nearly all its bits.
_LN2_HI_32 = _F32(0.693359375)
_LN2_LO_32 = _F32(-2.1219444005469057e-4)
# Below ln(smallest normal float32) exp flushes to 0 (the next float32 down, so
# every normal result is still computed).
_EXP_MIN_32 = np.nextafter(_F32(math.log(np.finfo(np.float32).tiny)), _F32(-np.inf))
# Taylor coefficients 1/k! of exp(r) on |r| <= ln2/2: the r**8 remainder is < 8e-9 relative.
_E2, _E3, _E4 = _F32(1 / 2), _F32(1 / 6), _F32(1 / 24)
_E5, _E6, _E7 = _F32(1 / 120), _F32(1 / 720), _F32(1 / 5040)
# Taylor coefficients of tanh(x)/x - 1 in x**2, used for |x| < 0.25 where
# (1 - e)/(1 + e) would lose relative accuracy; the x**11 remainder is < 2e-8 relative.
_T3, _T5, _T7, _T9 = _F32(-1 / 3), _F32(2 / 15), _F32(-17 / 315), _F32(62 / 2835)
_TANH_SMALL_32 = _F32(0.25)


@numba.njit(**_MATH_OPTIONS)
def _exp_neg32(x):
    """exp(x) for float32 x <= 0, vectorizable (no calls, no branches). NaN -> NaN."""
    xc = _EXP_MIN_32 if x < _EXP_MIN_32 else x  # keeps NaN: the comparison is False
    k = np.floor(xc * _LOG2E_32 + _F32(0.5))  # exp(x) = 2**k * exp(r)
    r = (xc - k * _LN2_HI_32) - k * _LN2_LO_32
    p = _E7 * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + _F32(1.0)
    p = p * r + _F32(1.0)
    # 2**k built from its exponent bits; k is in [-126, 0] after the clamp.
    two_k = np.int32((np.int32(k) + np.int32(127)) << np.int32(23)).view(np.float32)
    return _F32(0.0) if x < _EXP_MIN_32 else p * two_k


def _exp(x):
    """exp(x) for x <= 0 (softmax and sigmoid only need that half)."""
    return math.exp(x)


def _sigmoid(x):
    """1/(1+exp(-x)) for x >= 0 and exp(x)/(1+exp(x)) for x < 0: never overflows."""
    e = math.exp(-abs(x))
    return (1.0 if x >= 0 else e) / (1.0 + e)


def _tanh(x):
    return math.tanh(x)


@overload(_exp, jit_options=_MATH_OPTIONS)
def _exp_overload(x):
    if x == types.float32:
        return lambda x: _exp_neg32(x)
    return lambda x: math.exp(x)


@overload(_sigmoid, jit_options=_MATH_OPTIONS)
def _sigmoid_overload(x):
    if x == types.float32:

        def sigmoid32(x):
            e = _exp_neg32(-abs(x))
            return (_F32(1.0) if x >= _F32(0.0) else e) / (_F32(1.0) + e)

        return sigmoid32

    def sigmoid64(x):
        e = math.exp(-abs(x))
        return (1.0 if x >= 0.0 else e) / (1.0 + e)

    return sigmoid64


@overload(_tanh, jit_options=_MATH_OPTIONS)
def _tanh_overload(x):
    if x == types.float32:

        def tanh32(x):
            ax = abs(x)
            e = _exp_neg32(_F32(-2.0) * ax)  # tanh|x| = (1 - e^{-2|x|}) / (1 + e^{-2|x|})
            big = (_F32(1.0) - e) / (_F32(1.0) + e)
            z = x * x
            small = ax + ax * z * (_T3 + z * (_T5 + z * (_T7 + z * _T9)))
            return math.copysign(small if ax < _TANH_SMALL_32 else big, x)

        return tanh32
    return lambda x: math.tanh(x)


# ----------------------------------------------------------------------------
# recurrent cells


@_jit
def rnn_cell_forward(xw, hw, h_out):
    # xw, hw, h_out: (N, H); h = tanh(xw + hw)
    N, H = h_out.shape
    for n in range(N):
        x, hh, h = xw[n], hw[n], h_out[n]
        for j in range(H):
            h[j] = _tanh(x[j] + hh[j])


@_jit
def rnn_cell_backward(dh, h, da_out):
    # dh, h, da_out: (N, H); d tanh(a)/da = 1 - tanh(a)**2
    N, H = h.shape
    one = h.dtype.type(1.0)
    for n in range(N):
        d, hh, da = dh[n], h[n], da_out[n]
        for j in range(H):
            da[j] = (one - hh[j] * hh[j]) * d[j]


@_jit
def lstm_cell_forward(xw, hw, c_prev, ifog_out, c_out, h_out):
    # xw, hw, ifog_out: (N, 4H); c_prev, c_out, h_out: (N, H)
    N, H = c_prev.shape
    for n in range(N):
        ax, ah, g = xw[n], hw[n], ifog_out[n]
        # gates: i, f, o = sigmoid(a), g = tanh(a)
        for j in range(3 * H):
            g[j] = _sigmoid(ax[j] + ah[j])
        for j in range(3 * H, 4 * H):
            g[j] = _tanh(ax[j] + ah[j])
        # cell and hidden state, from the gate row while it is still in L1
        cp, c, h = c_prev[n], c_out[n], h_out[n]
        for j in range(H):
            cj = g[H + j] * cp[j] + g[j] * g[3 * H + j]  # f*c_prev + i*g
            c[j] = cj
            h[j] = _tanh(cj) * g[2 * H + j]  # o*tanh(c)


@_jit
def lstm_cell_backward(dh, dc, ifog, c_prev, c, da_out, dc_prev_out):
    # dh, dc, c_prev, c, dc_prev_out: (N, H); ifog, da_out: (N, 4H)
    N, H = c.shape
    one = c.dtype.type(1.0)
    for n in range(N):
        d_h, d_c, g, cp, cc, da, dcp = dh[n], dc[n], ifog[n], c_prev[n], c[n], da_out[n], dc_prev_out[n]
        # Two loops, each writing two arrays and reading three, so each vectorizes.
        # 1) output gate, and the part of dc_total that comes through h = o*tanh(c)
        for j in range(H):
            tc, o, dhj = _tanh(cc[j]), g[2 * H + j], d_h[j]
            da[2 * H + j] = dhj * tc * o * (one - o)
            dcp[j] = dhj * o * (one - tc * tc)
        # 2) dc_total = dc + that; the input, forget and candidate gates; dc_prev
        for j in range(H):
            dct = d_c[j] + dcp[j]
            i, f, gg = g[j], g[H + j], g[3 * H + j]
            da[j] = dct * gg * i * (one - i)
            da[H + j] = dct * cp[j] * f * (one - f)
            da[3 * H + j] = dct * i * (one - gg * gg)
            dcp[j] = dct * f


# ----------------------------------------------------------------------------
# the attention model's step (fastcap._kernels.KERNELS): per row, the L scores (a tanh over
# A values and their dot with w_att), the softmax over L, the context (a sum over L of
# D-vectors) and the gate; the backward pass recomputes the tanh.


@_jit
def attention_step_forward(a, enc, hab, b_beta, w_att, alpha_out, z_out, beta_out):
    # a (N, L, D), enc (N, L, A), hab (N, A+D) = h @ [W_dec | W_beta]; alpha_out (N, L), z_out, beta_out (N, D)
    N, L, D = a.shape
    A = enc.shape[2]
    zero = a.dtype.type(0.0)
    s_row = np.empty(A, dtype=a.dtype)  # tanh(enc + hd) of one cell
    for n in range(N):
        al, hd = alpha_out[n], hab[n]
        for l in range(L):
            e = enc[n, l]
            for j in range(A):  # a loop of its own: it vectorizes, the sum below does not
                s_row[j] = _tanh(e[j] + hd[j])
            s = zero
            for j in range(A):
                s += s_row[j] * w_att[j]
            al[l] = s
        mx = _row_max(al)
        for l in range(L):
            al[l] = _exp(al[l] - mx)
        total = _row_sum(al)
        for l in range(L):
            al[l] /= total
        z, beta = z_out[n], beta_out[n]
        z[:] = zero
        for l in range(L):
            w, row = al[l], a[n, l]
            for d in range(D):
                z[d] += w * row[d]
        for d in range(D):
            b = _sigmoid(hd[A + d] + b_beta[d])
            beta[d] = b
            z[d] *= b


@_jit
def attention_step_backward(dz, dalpha, a, enc, hd, w_att, alpha, z, beta, datt_out, dwatt_out, denc):
    # dz (N, D), dalpha (N, L), hd (N, A); datt_out (N, A+D), dwatt_out (N, A); denc (N, L, A) += dS
    N, L, D = a.shape
    A = enc.shape[2]
    zero, one = a.dtype.type(0.0), a.dtype.type(1.0)
    dal = np.empty(L, dtype=a.dtype)  # the gradient at alpha of one row
    for n in range(N):
        dzn, bn, zn, dt, dw = dz[n], beta[n], z[n], datt_out[n], dwatt_out[n]
        for d in range(D):  # the gate: z * (1 - beta) = context * beta * (1 - beta)
            dt[A + d] = dzn[d] * zn[d] * (one - bn[d])
        weighted = zero  # sum_l alpha * dal, for the softmax's backward
        for l in range(L):
            row, s = a[n, l], zero
            for d in range(D):
                s += dzn[d] * bn[d] * row[d]
            dal[l] = s + dalpha[n, l]
            weighted += alpha[n, l] * dal[l]
        dt[:A] = zero
        dw[:] = zero
        hn = hd[n]
        for l in range(L):
            de = alpha[n, l] * (dal[l] - weighted)  # at the score of cell l
            e, de_enc = enc[n, l], denc[n, l]
            for j in range(A):
                s = _tanh(e[j] + hn[j])
                dw[j] += de * s
                ds = de * w_att[j] * (one - s * s)
                dt[j] += ds
                de_enc[j] += ds


# ----------------------------------------------------------------------------
# word embedding backward


# A half of exponent bits e and mantissa m is (1024 + m) * 2**(e - 25), or m * 2**-24 below the
# normals (e = 0): both exact in float32 and float64. e = 31: an infinity (m = 0) or a NaN.
_HALF_SCALE = np.array([2.0 ** (max(e, 1) - 25) for e in range(31)])


@_jit
def half_to_float(raw, out):
    first = -1
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            h = np.int64(raw[i, j])
            e, m = (h >> 10) & 0x1F, h & 0x3FF
            if e == 31:
                v = math.inf if m == 0 else math.nan
                if first < 0:
                    first = i
            else:
                v = (m + (1024 if e else 0)) * _HALF_SCALE[e]
            out[i, j] = -v if h & 0x8000 else v
    return first


@_jit
def embedding_backward(dout, idx, dW_out):
    # dout: (M, W); idx: (M,) int64; dW_out: (V, W); scatter-add of rows, in order
    dW_out[:] = 0
    M, Wd = dout.shape
    for m in range(M):
        src, dst = dout[m], dW_out[idx[m]]
        for k in range(Wd):
            dst[k] += src[k]


# ----------------------------------------------------------------------------
# masked softmax cross-entropy


@_jit
def _row_max(a):
    # Four running maxima break the compare-select dependency chain (LLVM does
    # not vectorize a float max without fastmath, which would drop NaN handling).
    n = a.shape[0]
    m0 = m1 = m2 = m3 = a[0]
    n4 = n - n % 4
    for v in range(0, n4, 4):
        m0 = a[v] if a[v] > m0 else m0
        m1 = a[v + 1] if a[v + 1] > m1 else m1
        m2 = a[v + 2] if a[v + 2] > m2 else m2
        m3 = a[v + 3] if a[v + 3] > m3 else m3
    for v in range(n4, n):
        m0 = a[v] if a[v] > m0 else m0
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


@numba.njit(cache=CACHE, error_model="numpy", fastmath={"reassoc"})
def _row_sum(a):
    # reassoc: lets LLVM keep 8-lane partial sums (as accurate as NumPy's pairwise sum)
    s = a.dtype.type(0.0)
    for v in range(a.shape[0]):
        s += a[v]
    return s


@_jit
def _softmax_loss(x, y, mask, scale, weight, dx_out):
    # x, dx_out: (M, V); y: (M,) int64; mask: (M,) bool; weight: (M,) float64 -> loss (float)
    M, V = x.shape
    one = x.dtype.type(1.0)
    total = 0.0  # float64, as the reference sums its per-row terms
    for m in range(M):
        d = dx_out[m]
        if not mask[m]:
            d[:] = 0
            continue
        sc = x.dtype.type(scale * weight[m])
        row = x[m]
        mx = _row_max(row)
        for v in range(V):
            d[v] = _exp(row[v] - mx)
        s = _row_sum(d)
        total += weight[m] * ((row[y[m]] - mx) - math.log(s))  # log softmax(x)[y], in the array dtype
        r = one / s
        rs = r * sc
        e_y = d[y[m]]
        for v in range(V):
            d[v] *= rs
        d[y[m]] = (e_y * r - one) * sc
    return -total * scale


def softmax_loss(x, y, mask, scale, weight, dx_out):
    # weight None: 1 for every row (a product with 1.0 changes no bit)
    return _softmax_loss(x, y, mask, scale, np.ones(x.shape[0]) if weight is None else weight, dx_out)


# ----------------------------------------------------------------------------
# greedy decoding


@_jit
def _argmax_row(row, b_vocab):
    # The first argmax of row + b_vocab (a NaN wins at its first position, as in np.argmax)
    # and its value.
    best, top = 0, row[0] + b_vocab[0]
    if top == top:
        for v in range(1, row.shape[0]):
            s = row[v] + b_vocab[v]
            if s > top:
                best, top = v, s
            elif s != s:
                return v, s
    return best, top


@_jit
def argmax_words(scores, b_vocab, end, words_out):
    # scores: (N, V), b_vocab: (V,) -> words_out: (N,) the first argmax of each
    # row of scores + b_vocab; returns how many rows picked `end`.
    ended = 0
    for n in range(scores.shape[0]):
        best, _ = _argmax_row(scores[n], b_vocab)
        words_out[n] = best
        ended += best == end
    return ended


@_jit
def sample_words(scores, b_vocab, uniforms, end, words_out):
    # scores: (N, V), b_vocab: (V,), uniforms: (N,) float64 -> words_out: (N,): the word
    # where the running sum of exp(s - max s) (float64, in order) first exceeds u * total.
    N, V = scores.shape
    e = np.empty(V)  # float64
    ended = 0
    for n in range(N):
        row = scores[n]
        best, top = _argmax_row(row, b_vocab)
        if math.isfinite(top):  # else the argmax, as the reference
            t = np.float64(top)
            total = 0.0
            for v in range(V):
                e[v] = math.exp(np.float64(row[v] + b_vocab[v]) - t)
                total += e[v]
            target, running, last = uniforms[n] * total, 0.0, best
            for v in range(V):
                running += e[v]
                if e[v] > 0:
                    last = v
                if running > target:
                    break
            best = v if running > target else last
        words_out[n] = best
        ended += best == end
    return ended


# ----------------------------------------------------------------------------
# recurrences and greedy decoding: the shared Python loops (blas_recurrence, greedy)
# around this module's cell, argmax and bf16 product kernels

(recurrent_pack, rnn_recurrence_forward, rnn_recurrence_backward, lstm_recurrence_forward,
 lstm_recurrence_backward) = blas_recurrence.kernels(sys.modules[__name__])
pack_matrix, greedy_decode, sample_decode, attention_greedy_decode = greedy.kernels(sys.modules[__name__])
attention_pack, attention_recurrence_forward, attention_recurrence_backward = \
    attention_recurrence.kernels(sys.modules[__name__])
