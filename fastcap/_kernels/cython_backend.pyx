# The Cython backend: every kernel of the table in ``fastcap/_kernels/__init__.py``,
# compiled, for float32 and float64 through the fused type ``floating_t``.
#
# Design
# ======
#
# * Calling convention. Each kernel is a ``def`` function with the table's name
#   and positional signature; the shared orchestration (``fastcap._sequence``,
#   the model, ``fastcap.optim``) calls it directly. Array arguments are typed
#   C-contiguous memoryviews (``[:, ::1]``); inputs are ``const`` so read-only
#   arrays are accepted, ``*_out`` arguments are written in full and never read
#   first. Arguments are marked ``# IN`` / ``# OUT`` / ``# IN/OUT`` (updated in
#   place). The fused ``def`` picks the float32 or float64 specialization from
#   the first array's dtype (about a microsecond per call).
# * Four builds of this file (fastcap/_kernels/cython_builds.py):
#   ``cython_backend`` for the compiler's default target (SSE2 on x86-64,
#   which has no FMA to contract into), ``cython_backend_avx2`` (``-mavx2
#   -mfma``), ``cython_backend_avx512`` (AVX-512 F/VL/BW/DQ) and
#   ``cython_backend_avx512bf16`` (plus AVX512-BF16), the last three with
#   ``-ffp-contract=off``; fastcap._backend loads the best one the CPU runs.
#   Same bits out of every kernel but the float32 recurrences (no
#   contraction), wider vectors. ``BUILD_INFO["isa"]`` says which it is.
# * The recurrences (recurrence_engine.pxi): float32 runs on the compiled
#   recurrent engine in fastcap/_kernels/engine/ (C), float64 on the shared
#   BLAS time loop around the cell kernels below.
# * Greedy decoding (decode_engine.pxi): float32 and bf16 run the whole word
#   loop in C (fastcap/_kernels/engine/decode.c), one call per decoding, over
#   weights packed once for it (``pack_matrix``, ``pack_bf16``,
#   ``recurrent_pack``); float64 runs the reference loop (fastcap/_kernels/greedy.py)
#   on this module's kernels.
# * Kernels trust their inputs (the public layers validated shapes, dtypes and
#   index ranges). ``setup.py`` compiles with boundscheck, wraparound and
#   initializedcheck off; ``FASTCAP_CYTHON_DEBUG=1`` at build time turns them
#   back on, so a kernel that reads or writes out of bounds raises IndexError
#   instead of corrupting memory. ``BUILD_INFO`` says which build is loaded.
# * Arithmetic. Every elementwise loop runs without the GIL over whole rows, so
#   the C compiler vectorizes it. float64 computes in double; float32 computes
#   in float (the reference's float32 does the same), except that loss sums
#   accumulate in double.
# * exp, sigmoid, tanh. The libm scalar calls are slow here (glibc's tanhf is
#   ~30 ns) and block vectorization, so they are short branch-free functions
#   in fastcap/_kernels/engine/vecmath.h, the one header of the compiled
#   code's vector math: the scalar forms (float and double) are inlined into
#   the loops below, the vector forms into the engine's cells, and the two
#   give the same bits (``_vecmath_forms``, tested). See the header for the
#   algorithms and their measured accuracy.
# * Large GEMMs and row gathers are not kernels: the shared orchestration
#   (fastcap._sequence) runs them once, through NumPy's BLAS and indexing; only
#   the per-step recurrent products are the engine's own register tiles, over
#   weights packed once per call. (scipy.linalg.cython_blas would avoid a
#   Python call, a few microseconds, but it is a second OpenBLAS with its own
#   thread pool: alternating two pools makes their spinning worker threads
#   fight over the cores, which cost far more on 2 cores.)
# * Threads: one pool (pool.pxi, fastcap/_kernels/engine/pool.c) runs the
#   engine, the update rules, the embedding scatter-add and the softmax loss
#   over fastcap.set_num_threads threads, each output element written by one
#   thread in a fixed order (results do not depend on the thread count). Not
#   OpenMP: libgomp's idle threads spin after each parallel region while
#   OpenBLAS needs the same cores for the next GEMM (measured earlier on 2
#   cores: a training step 2-7x slower); the pool's workers sleep ~20 us
#   after a task. The cell kernels' ``prange`` loops (OpenMP, when compiled
#   in) stay off unless ``_set_parallel_min`` lowers their threshold: they
#   run inside the BLAS time loop only (float64), between small GEMMs.
from cython.parallel cimport prange
from libc.math cimport log, sqrt, sqrtf

import numpy as np

ctypedef fused floating_t:
    float
    double

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    #ifndef FASTCAP_DEBUG_BUILD
    #define FASTCAP_DEBUG_BUILD 0
    #endif
    #ifndef FASTCAP_NATIVE_BUILD
    #define FASTCAP_NATIVE_BUILD 0
    #endif
    /* The build's name in cython_builds.py (setup.py defines it), so a new
       build needs no name in the C; "" for a build made otherwise. */
    #ifndef FASTCAP_BUILD_ISA
    #define FASTCAP_BUILD_ISA ""
    #endif

    /* Whether this CPU (and OS) can run the AVX2 + FMA build of this module. */
    static int fastcap_cpu_has_avx2_fma(void)
    {
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 0;
    #endif
    }

    /* Whether this CPU (and OS) can run the AVX-512 build (F, VL, BW, DQ). */
    static int fastcap_cpu_has_avx512(void)
    {
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return fastcap_cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512dq");
    #else
        return 0;
    #endif
    }
    /* Whether this CPU (and OS) can run the AVX-512 + AVX512-BF16 build. */
    static int fastcap_cpu_has_avx512_bf16(void)
    {
    #if (defined(__GNUC__) && __GNUC__ >= 12 || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return fastcap_cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
    #else
        return 0;
    #endif
    }
    #ifdef _OPENMP
    #define FASTCAP_OPENMP 1
    #else
    #define FASTCAP_OPENMP 0
    #endif

    /* exp, sigmoid and tanh: the one header of the compiled code's vector math */
    #include "engine/vecmath.h"

    /* x (n) through the scalar (vector = 0) or the vector forms: exp(-|x|),
       sigmoid(x), tanh(x), for the test that they agree bit for bit. */
    static void fastcap_vecmath_forms(const float *x, ptrdiff_t n, int vector, float *ex,
                                      float *sig, float *th)
    {
        for (ptrdiff_t i = 0; i < n; i += vector ? FC_VW : 1) {
            if (!vector) {
                ex[i] = fc_exp_nonpos_f(x[i] >= 0.0f ? -x[i] : x[i]);
                sig[i] = fc_sigmoid_f(x[i]);
                th[i] = fc_tanh_f(x[i]);
                continue;
            }
            int k = n - i < FC_VW ? (int)(n - i) : FC_VW;
            vf v = vf_load_n(x + i, k);
            vf_store_n(ex + i, vf_exp_nonpos(vf_neg_abs(v)), k);
            vf_store_n(sig + i, vf_sigmoid(v), k);
            vf_store_n(th + i, vf_tanh(v), k);
        }
    }
    """
    float _exp_nonpos_f "fc_exp_nonpos_f"(float x) noexcept nogil
    double _exp_nonpos_d "fc_exp_nonpos_d"(double x) noexcept nogil
    void fastcap_vecmath_forms(const float *x, Py_ssize_t n, int vector, float *ex, float *sig,
                               float *th) noexcept nogil
    float _sigmoid_f "fc_sigmoid_f"(float x) noexcept nogil
    double _sigmoid_d "fc_sigmoid_d"(double x) noexcept nogil
    float _tanh_f "fc_tanh_f"(float x) noexcept nogil
    double _tanh_d "fc_tanh_d"(double x) noexcept nogil
    int FASTCAP_DEBUG_BUILD
    int FASTCAP_NATIVE_BUILD
    const char *FASTCAP_BUILD_ISA
    int FASTCAP_OPENMP
    int fastcap_cpu_has_avx2_fma() noexcept nogil
    int fastcap_cpu_has_avx512() noexcept nogil
    int fastcap_cpu_has_avx512_bf16() noexcept nogil

include "pool.pxi"

BUILD_INFO = {
    "debug": bool(FASTCAP_DEBUG_BUILD),  # boundscheck/wraparound/initializedcheck on
    "native": bool(FASTCAP_NATIVE_BUILD),  # -march=native: for the build machine's CPU only
    "isa": None,  # set below: the build's name in cython_builds.py, or "native"
    "openmp": bool(FASTCAP_OPENMP),  # compiled with OpenMP (prange can run threads)
}

# Parallel loops (prange) run threads only above this many elements of work
# (rows times row length). Default: never (see "Threads" above).
cdef Py_ssize_t _PARALLEL_MIN = 1 << 62


def cpu_has_avx2_fma():
    """Whether this CPU and OS run AVX2 and FMA instructions (the
    cython_backend_avx2 build); fastcap._backend asks before loading it."""
    return bool(fastcap_cpu_has_avx2_fma())


def cpu_has_avx512():
    """Whether this CPU and OS run AVX-512 F/VL/BW/DQ (the cython_backend_avx512 build)."""
    return bool(fastcap_cpu_has_avx512())


def cpu_has_avx512_bf16():
    """Whether this CPU and OS run AVX-512 and AVX512-BF16 (vdpbf16ps: the
    cython_backend_avx512bf16 build, and the bfloat16 mode's native path)."""
    return bool(fastcap_cpu_has_avx512_bf16())


def _vecmath_forms(x, bint vector):
    """(exp(-|x|), sigmoid(x), tanh(x)) of float32 x by vecmath.h's scalar or vector
    forms (for the test that they give the same bits)."""
    cdef const float[::1] x_ = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty((3, x_.shape[0]), dtype=np.float32)
    cdef float[:, ::1] o = out
    if x_.shape[0]:
        fastcap_vecmath_forms(&x_[0], x_.shape[0], vector, &o[0, 0], &o[1, 0], &o[2, 0])
    return out


def _set_parallel_min(Py_ssize_t n):
    """Set the prange threshold (elements of work); returns the previous one.
    For tests (to run the threaded paths on small inputs) and benchmarks."""
    global _PARALLEL_MIN
    previous, _PARALLEL_MIN = _PARALLEL_MIN, n
    return previous


# ----------------------------------------------------------------------------
# scalar math (inlined into the vectorized loops)

cdef inline floating_t _exp_nonpos(floating_t x) noexcept nogil:
    if floating_t is float:
        return _exp_nonpos_f(x)
    else:
        return _exp_nonpos_d(x)


cdef inline floating_t _sigmoid(floating_t x) noexcept nogil:
    if floating_t is float:
        return _sigmoid_f(x)
    else:
        return _sigmoid_d(x)


cdef inline floating_t _tanh(floating_t x) noexcept nogil:
    if floating_t is float:
        return _tanh_f(x)
    else:
        return _tanh_d(x)


# ----------------------------------------------------------------------------
# recurrent cells


def rnn_cell_forward(const floating_t[:, ::1] xw,  # IN (N, H) x @ Wx + b
                     const floating_t[:, ::1] hw,  # IN (N, H) prev_h @ Wh
                     floating_t[:, ::1] h_out):  # OUT (N, H) tanh(xw + hw)
    cdef Py_ssize_t N = h_out.shape[0], H = h_out.shape[1], n, j
    with nogil:
        for n in prange(N, schedule="static", use_threads_if=N * H >= _PARALLEL_MIN):
            for j in range(H):
                h_out[n, j] = _tanh(xw[n, j] + hw[n, j])


def rnn_cell_backward(const floating_t[:, ::1] dh,  # IN (N, H) gradient at h
                      const floating_t[:, ::1] h,  # IN (N, H) h = tanh(a)
                      floating_t[:, ::1] da_out):  # OUT (N, H) dh * (1 - h**2)
    cdef Py_ssize_t N = h.shape[0], H = h.shape[1], n, j
    cdef floating_t one = 1
    with nogil:
        for n in prange(N, schedule="static", use_threads_if=N * H >= _PARALLEL_MIN):
            for j in range(H):
                da_out[n, j] = (one - h[n, j] * h[n, j]) * dh[n, j]


# The LSTM row helpers split the work into several loops over the row, each
# touching few arrays: the compiler vectorizes a loop only after checking at
# run time that its output does not overlap its inputs, and gives up when a
# loop has too many pairs to check (gcc's limit is 10). The extra passes run
# over a row that is in L1 cache.

cdef inline void _lstm_forward_row(const floating_t[:, ::1] xw, const floating_t[:, ::1] hw,
                                   const floating_t[:, ::1] c_prev, floating_t[:, ::1] ifog,
                                   floating_t[:, ::1] c_out, floating_t[:, ::1] h_out,
                                   Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t H = c_prev.shape[1], j
    for j in range(3 * H):
        ifog[n, j] = _sigmoid(xw[n, j] + hw[n, j])
    for j in range(3 * H, 4 * H):
        ifog[n, j] = _tanh(xw[n, j] + hw[n, j])
    for j in range(H):  # c = f * c_prev + i * g
        c_out[n, j] = ifog[n, H + j] * c_prev[n, j] + ifog[n, j] * ifog[n, 3 * H + j]
    for j in range(H):  # h = o * tanh(c)
        h_out[n, j] = ifog[n, 2 * H + j] * _tanh(c_out[n, j])


cdef inline void _lstm_backward_row(const floating_t[:, ::1] dh, const floating_t[:, ::1] dc,
                                    const floating_t[:, ::1] ifog, const floating_t[:, ::1] c_prev,
                                    const floating_t[:, ::1] c, floating_t[:, ::1] da,
                                    floating_t[:, ::1] dc_prev, Py_ssize_t n) noexcept nogil:
    # da[n, 2H:3H] holds tanh(c) and dc_prev[n] the total gradient at c until
    # the loops that overwrite them.
    cdef Py_ssize_t H = c.shape[1], j
    cdef floating_t one = 1, i, f, o, g, tc, dct
    for j in range(H):
        da[n, 2 * H + j] = _tanh(c[n, j])
    for j in range(H):
        tc = da[n, 2 * H + j]
        o = ifog[n, 2 * H + j]
        dc_prev[n, j] = dc[n, j] + dh[n, j] * o * (one - tc * tc)  # dc_total
        da[n, 2 * H + j] = dh[n, j] * tc * o * (one - o)  # do
    for j in range(H):
        dct = dc_prev[n, j]
        i = ifog[n, j]
        g = ifog[n, 3 * H + j]
        da[n, j] = dct * g * i * (one - i)  # di
        da[n, 3 * H + j] = dct * i * (one - g * g)  # dg
    for j in range(H):
        dct = dc_prev[n, j]
        f = ifog[n, H + j]
        da[n, H + j] = dct * c_prev[n, j] * f * (one - f)  # df
        dc_prev[n, j] = dct * f


def lstm_cell_forward(const floating_t[:, ::1] xw,  # IN (N, 4H) x @ Wx + b
                      const floating_t[:, ::1] hw,  # IN (N, 4H) prev_h @ Wh
                      const floating_t[:, ::1] c_prev,  # IN (N, H)
                      floating_t[:, ::1] ifog_out,  # OUT (N, 4H) activated gates i, f, o, g
                      floating_t[:, ::1] c_out,  # OUT (N, H) f*c_prev + i*g
                      floating_t[:, ::1] h_out):  # OUT (N, H) o*tanh(c)
    cdef Py_ssize_t N = c_prev.shape[0], H = c_prev.shape[1], n
    with nogil:
        for n in prange(N, schedule="static", use_threads_if=N * H >= _PARALLEL_MIN):
            _lstm_forward_row(xw, hw, c_prev, ifog_out, c_out, h_out, n)


def lstm_cell_backward(const floating_t[:, ::1] dh,  # IN (N, H) gradient at h
                       const floating_t[:, ::1] dc,  # IN (N, H) gradient at c from step t+1
                       const floating_t[:, ::1] ifog,  # IN (N, 4H) activated gates
                       const floating_t[:, ::1] c_prev,  # IN (N, H)
                       const floating_t[:, ::1] c,  # IN (N, H)
                       floating_t[:, ::1] da_out,  # OUT (N, 4H) gradient at the pre-activations
                       floating_t[:, ::1] dc_prev_out):  # OUT (N, H) gradient at c_prev
    cdef Py_ssize_t N = c.shape[0], H = c.shape[1], n
    with nogil:
        for n in prange(N, schedule="static", use_threads_if=N * H >= _PARALLEL_MIN):
            _lstm_backward_row(dh, dc, ifog, c_prev, c, da_out, dc_prev_out, n)


# ----------------------------------------------------------------------------
# word embedding backward (the forward lookup is NumPy indexing, see fastcap._sequence)


cdef struct _Scatter:
    bint f64
    const void *dout
    const Py_ssize_t *idx
    void *dW
    Py_ssize_t M, D, V


cdef inline void _scatter_rows(const floating_t *dout, const Py_ssize_t *idx, floating_t *dW,
                               const _Scatter *s, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # Rows [lo, hi) of dW: zeroed, then every dout row whose index falls in
    # them added, in order m = 0, 1, ... (as np.add.at does).
    cdef Py_ssize_t m, j, row, D = s.D
    for row in range(lo * D, hi * D):
        dW[row] = 0
    for m in range(s.M):
        row = idx[m]
        if lo <= row < hi:
            for j in range(D):
                dW[row * D + j] += dout[m * D + j]


cdef void _scatter_task(void *ctx, int tid, int nth) noexcept nogil:
    cdef const _Scatter *s = <const _Scatter *>ctx
    cdef Py_ssize_t lo, hi
    _split(s.V, tid, nth, 1, &lo, &hi)
    if s.f64:
        _scatter_rows(<const double *>s.dout, s.idx, <double *>s.dW, s, lo, hi)
    else:
        _scatter_rows(<const float *>s.dout, s.idx, <float *>s.dW, s, lo, hi)


def embedding_backward(const floating_t[:, ::1] dout,  # IN (M, W) gradient at the embedded rows
                       const Py_ssize_t[::1] idx,  # IN (M,) word indices in [0, V)
                       floating_t[:, ::1] dW_out):  # OUT (V, W) scatter-add of dout rows at idx
    # With threads, thread p owns the vocabulary rows [lo_p, hi_p) and scans
    # all of idx, so no two threads write one row and every row's sum keeps
    # the order m = 0, 1, ...: the same bits for any thread count.
    cdef _Scatter s
    s.f64, s.M, s.D, s.V = floating_t is double, dout.shape[0], dout.shape[1], dW_out.shape[0]
    if s.V == 0 or s.D == 0:
        return
    s.dout = &dout[0, 0] if s.M else NULL
    s.idx = &idx[0] if s.M else NULL
    s.dW = &dW_out[0, 0]
    cdef int nth = _threads_for(min(s.M * s.D, s.V * s.D), _GRAIN)
    with nogil:
        if nth > 1:
            fc_pool_run(_scatter_task, &s, nth)
        else:
            _scatter_task(&s, 0, 1)


# ----------------------------------------------------------------------------
# masked softmax cross-entropy


cdef double _softmax_row(const floating_t *x, Py_ssize_t V, Py_ssize_t y, double scale,
                         floating_t *dx) noexcept nogil:
    """-log softmax(x)[y] of one row x (V,); writes scale * (softmax(x) - onehot(y)) to dx (V,)."""
    cdef Py_ssize_t j, k, V8 = V - V % 8
    cdef floating_t mx8[8]
    cdef double s8[8]
    cdef floating_t mx, v, p_scale, py
    cdef double total
    # pass 1 over x: the row max, in 8 independent lanes (no single dependency chain)
    for k in range(8):
        mx8[k] = x[0]
    for j in range(0, V8, 8):
        for k in range(8):
            v = x[j + k]
            mx8[k] = v if v > mx8[k] else mx8[k]
    mx = x[0]
    for k in range(8):
        mx = mx8[k] if mx8[k] > mx else mx
    for j in range(V8, V):
        mx = x[j] if x[j] > mx else mx
    # pass 2 over x: e = exp(x - max) into dx (the row stays in L1 from here)
    for j in range(V):
        dx[j] = _exp_nonpos(x[j] - mx)
    # the sum of e, in double, 8 lanes
    for k in range(8):
        s8[k] = 0
    for j in range(0, V8, 8):
        for k in range(8):
            s8[k] += dx[j + k]
    total = 0
    for k in range(8):
        total += s8[k]
    for j in range(V8, V):
        total += dx[j]
    # dx = scale * e / sum; the target's entry is (p_y - 1) * scale
    py = <floating_t>(dx[y] / total)
    p_scale = <floating_t>(scale / total)
    for j in range(V):
        dx[j] *= p_scale
    dx[y] = (py - <floating_t>1) * <floating_t>scale
    return log(total) - (x[y] - mx)


# Rows are split over the pool in blocks of _LOSS_BLOCK rows. Each row's loss
# goes to row_loss[m], and the rows are summed after, in row order, in double:
# the loss (like dx) has the same bits for any thread count, and the bits of
# one sequential sum (a numerical gradient of it, as the seeds' gradient
# check takes, differences two such sums).
cdef enum:
    _LOSS_BLOCK = 32


cdef struct _Softmax:
    bint f64
    const void *x
    const Py_ssize_t *y
    const unsigned char *mask
    void *dx
    double *row_loss
    double scale
    Py_ssize_t M, V


cdef inline void _softmax_rows(const floating_t *x, floating_t *dx, const _Softmax *s,
                               Py_ssize_t m0, Py_ssize_t m1) noexcept nogil:
    cdef Py_ssize_t m, j, V = s.V
    for m in range(m0, m1):
        if s.mask[m]:
            s.row_loss[m] = _softmax_row(x + m * V, V, s.y[m], s.scale, dx + m * V)
        else:
            s.row_loss[m] = 0
            for j in range(V):
                dx[m * V + j] = 0


cdef void _softmax_task(void *ctx, int tid, int nth) noexcept nogil:
    cdef const _Softmax *s = <const _Softmax *>ctx
    cdef Py_ssize_t m0, m1
    _split(s.M, tid, nth, _LOSS_BLOCK, &m0, &m1)
    if s.f64:
        _softmax_rows(<const double *>s.x, <double *>s.dx, s, m0, m1)
    else:
        _softmax_rows(<const float *>s.x, <float *>s.dx, s, m0, m1)


def softmax_loss(const floating_t[:, ::1] x,  # IN (M, V) scores
                 const Py_ssize_t[::1] y,  # IN (M,) targets in [0, V)
                 const unsigned char[::1] mask,  # IN (M,) bool: score this row
                 double scale,  # IN multiplies the loss and dx (1/N)
                 floating_t[:, ::1] dx_out):  # OUT (M, V) gradient; 0 on masked-out rows
    """Returns scale * sum over unmasked rows of -log softmax(x[m])[y[m]] (a float)."""
    cdef _Softmax s
    s.f64, s.M, s.V, s.scale = floating_t is double, x.shape[0], x.shape[1], scale
    if s.V == 0 or s.M == 0:
        return 0.0
    row_loss = np.empty(s.M, dtype=np.float64)
    cdef double[::1] rl = row_loss
    s.x, s.y, s.mask, s.dx, s.row_loss = &x[0, 0], &y[0], &mask[0], &dx_out[0, 0], &rl[0]
    cdef int nth = _threads_for(s.M * s.V, _GRAIN)
    cdef double loss = 0
    cdef Py_ssize_t m
    with nogil:
        if nth > 1:
            fc_pool_run(_softmax_task, &s, nth)
        else:
            _softmax_task(&s, 0, 1)
        for m in range(s.M):
            loss += rl[m]
    return loss * scale


# ----------------------------------------------------------------------------
# greedy decoding: the next word of every caption


def argmax_words(const floating_t[:, ::1] scores,  # IN (N, V) h @ W_vocab
                 const floating_t[::1] b_vocab,  # IN (V,)
                 Py_ssize_t end,  # IN the word that ends a caption (-1: none)
                 Py_ssize_t[::1] words_out):  # OUT (N,) first argmax of scores + b_vocab
    # np.argmax's rules: the first maximum wins; a NaN wins at its first position.
    # Returns how many rows picked `end`.
    cdef Py_ssize_t N = scores.shape[0], V = scores.shape[1], n, j, best, ended = 0
    cdef floating_t s, top
    with nogil:
        for n in range(N):
            best = 0
            top = scores[n, 0] + b_vocab[0]
            if top == top:
                for j in range(1, V):
                    s = scores[n, j] + b_vocab[j]
                    if s > top:
                        top = s
                        best = j
                    elif s != s:
                        best = j
                        break
            words_out[n] = best
            ended += best == end
    return ended


# ----------------------------------------------------------------------------
# update rules, in place on w and on the optimizer state. The public kernels
# take arrays of any shape (C-contiguous, so reshape(-1) is a view) and run a
# flat loop. Constants are rounded to the array's dtype first, as NumPy does
# with a Python float.


# Large arrays are split over the thread pool (pool.pxi) in contiguous
# chunks; every element is updated by one thread with the same arithmetic, so
# the results do not depend on the thread count.

cdef enum:
    _SGD, _MOMENTUM, _RMSPROP, _ADAM

cdef struct _Update:
    int rule
    bint f64
    void *w
    const void *dw
    void *s1  # velocity | cache | m
    void *s2  # v
    double a, b, c, d  # the rule's constants, in its signature's order
    Py_ssize_t size


cdef inline void _update_span(floating_t *w, const floating_t *dw, floating_t *s1, floating_t *s2,
                              const _Update *u, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t n
    cdef floating_t a = <floating_t>u.a, b = <floating_t>u.b, c = <floating_t>u.c, d = <floating_t>u.d
    cdef floating_t k1, k2, g, x, y
    if u.rule == _SGD:  # a = lr
        for n in range(lo, hi):
            w[n] -= a * dw[n]
    elif u.rule == _MOMENTUM:  # a = lr, b = momentum
        for n in range(lo, hi):
            x = b * s1[n] - a * dw[n]
            s1[n] = x
            w[n] += x
    elif u.rule == _RMSPROP:  # a = lr, b = decay_rate, c = eps
        k1 = <floating_t>(1 - u.b)
        for n in range(lo, hi):
            g = dw[n]
            x = b * s1[n] + k1 * (g * g)
            s1[n] = x
            if floating_t is float:
                w[n] -= a * g / (sqrtf(x) + c)
            else:
                w[n] -= a * g / (sqrt(x) + c)
    else:  # _ADAM: a = alpha, b = beta1, c = beta2, d = eps
        k1 = <floating_t>(1 - u.b)
        k2 = <floating_t>(1 - u.c)
        for n in range(lo, hi):
            g = dw[n]
            x = b * s1[n] + k1 * g
            y = c * s2[n] + k2 * (g * g)
            s1[n] = x
            s2[n] = y
            if floating_t is float:
                w[n] -= a * (x / (sqrtf(y) + d))
            else:
                w[n] -= a * (x / (sqrt(y) + d))


cdef void _update_task(void *ctx, int tid, int nth) noexcept nogil:
    cdef const _Update *u = <const _Update *>ctx
    cdef Py_ssize_t lo, hi
    _split(u.size, tid, nth, 16, &lo, &hi)
    if u.f64:
        _update_span(<double *>u.w, <const double *>u.dw, <double *>u.s1, <double *>u.s2, u, lo, hi)
    else:
        _update_span(<float *>u.w, <const float *>u.dw, <float *>u.s1, <float *>u.s2, u, lo, hi)


def _update(int rule, floating_t[::1] w, const floating_t[::1] dw, floating_t[::1] s1,
            floating_t[::1] s2, double a, double b, double c, double d):
    cdef _Update u
    u.rule, u.f64, u.size = rule, floating_t is double, w.shape[0]
    if u.size == 0:
        return
    u.w, u.dw, u.s1, u.s2 = &w[0], &dw[0], &s1[0], &s2[0]
    u.a, u.b, u.c, u.d = a, b, c, d
    cdef int nth = _threads_for(u.size, _GRAIN)
    with nogil:
        if nth > 1:
            fc_pool_run(_update_task, &u, nth)
        else:
            _update_task(&u, 0, 1)


def sgd_update(w,  # IN/OUT any shape: w -= lr * dw
               dw,  # IN like w
               lr):  # IN learning rate
    f = w.reshape(-1)
    _update(_SGD, f, dw.reshape(-1), f, f, lr, 0, 0, 0)


def sgd_momentum_update(w,  # IN/OUT any shape: w += velocity
                        dw,  # IN like w
                        velocity,  # IN/OUT like w: momentum * velocity - lr * dw
                        lr,  # IN learning rate
                        momentum):  # IN
    f = w.reshape(-1)
    _update(_MOMENTUM, f, dw.reshape(-1), velocity.reshape(-1), f, lr, momentum, 0, 0)


def rmsprop_update(w,  # IN/OUT any shape: w -= lr * dw / (sqrt(cache) + eps)
                   dw,  # IN like w
                   cache,  # IN/OUT like w: decay * cache + (1 - decay) * dw**2
                   lr,  # IN learning rate
                   decay_rate,  # IN
                   eps):  # IN
    f = w.reshape(-1)
    _update(_RMSPROP, f, dw.reshape(-1), cache.reshape(-1), f, lr, decay_rate, eps, 0)


def adam_update(w,  # IN/OUT any shape: w -= alpha * m / (sqrt(v) + eps)
                dw,  # IN like w
                m,  # IN/OUT like w: beta1 * m + (1 - beta1) * dw
                v,  # IN/OUT like w: beta2 * v + (1 - beta2) * dw**2
                alpha,  # IN lr * sqrt(1 - beta2**t) / (1 - beta1**t), the bias correction folded in
                beta1,  # IN
                beta2,  # IN
                eps):  # IN
    _update(_ADAM, w.reshape(-1), dw.reshape(-1), m.reshape(-1), v.reshape(-1), alpha, beta1, beta2, eps)


# ----------------------------------------------------------------------------
# recurrences and greedy decoding: the compiled engine (float32) or the BLAS loops

include "recurrence_engine.pxi"
include "decode_engine.pxi"

BUILD_INFO["isa"] = "native" if FASTCAP_NATIVE_BUILD else (FASTCAP_BUILD_ISA.decode() or ENGINE_INFO["isa"])
