# The Cython backend: every kernel of the table in ``fastcap/_kernels/__init__.py``,
# compiled, for float32 and float64 through the fused type ``floating_t``.
#
# Design
# ======
#
# * Calling convention. Each kernel is a ``def`` function with the table's name
#   and positional signature; the shared orchestration (``fastcap.model.sequence``,
#   the model, ``fastcap.optim``) calls it directly. Array arguments are typed
#   C-contiguous memoryviews (``[:, ::1]``); inputs are ``const`` so read-only
#   arrays are accepted, ``*_out`` arguments are written in full and never read
#   first. Arguments are marked ``# IN`` / ``# OUT`` / ``# IN/OUT`` (updated in
#   place). The fused ``def`` picks the float32 or float64 specialization from
#   the first array's dtype (about a microsecond per call).
# * Four builds of this file (``BUILDS`` in fastcap/runtime/names.py):
#   ``cython_backend`` for the compiler's default target (SSE2 on x86-64,
#   which has no FMA to contract into), ``cython_backend_avx2`` (``-mavx2
#   -mfma``), ``cython_backend_avx512`` (AVX-512 F/VL/BW/DQ) and
#   ``cython_backend_avx512bf16`` (plus AVX512-BF16), the last three with
#   ``-ffp-contract=off``; fastcap.runtime.backends loads the best one the CPU runs.
#   Same bits out of every kernel but the float32 recurrences (no
#   contraction), wider vectors. ``BUILD_INFO["isa"]`` says which it is.
# * The recurrences (recurrence_engine.pxi): float32 runs on the compiled
#   recurrent engine in fastcap/_kernels/engine/ (C), float64 on the shared
#   BLAS time loop around the cell kernels below.
# * Greedy decoding and sampling (decode_engine.pxi): float32 and bf16 run the
#   whole word loop in C (fastcap/_kernels/engine/decode.c), one call per
#   decoding, over weights packed once for it (``pack_matrix``, ``pack_bf16``,
#   ``recurrent_pack``); float64 runs the reference loop
#   (fastcap/_kernels/greedy.py) on this module's kernels.
# * CIDEr-D (cider.pxi): the document frequencies and the scores in C
#   (fastcap/_kernels/engine/cider.c), candidates split over the pool.
# * The attention model: float32 and bf16 run its whole time loop, forward and backward,
#   and its greedy decoding on the engine (attention_engine.pxi,
#   fastcap/_kernels/engine/attention.h); float64 runs the reference loops
#   (fastcap/_kernels/attention_recurrence.py, fastcap/_kernels/greedy.py) around the
#   per-step attention kernels of attention.pxi.
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
#   (fastcap.model.sequence) runs them once, through NumPy's BLAS and indexing; only
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
    /* The build's name in fastcap/runtime/names.py BUILDS (setup.py defines it), so a new
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
    "isa": None,  # set below: the build's name in names.BUILDS, or "native"
    "openmp": bool(FASTCAP_OPENMP),  # compiled with OpenMP (prange can run threads)
}

# Parallel loops (prange) run threads only above this many elements of work
# (rows times row length). Default: never (see "Threads" above).
cdef Py_ssize_t _PARALLEL_MIN = 1 << 62


def cpu_has_avx2_fma():
    """Whether this CPU and OS run AVX2 and FMA instructions (the
    cython_backend_avx2 build); fastcap.runtime.backends asks before loading it."""
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
# the kernels, by concern

include "cells.pxi"
include "vocab.pxi"
include "cider.pxi"
include "updates.pxi"
include "halves.pxi"


# ----------------------------------------------------------------------------
# recurrences and greedy decoding: the compiled engine (float32) or the BLAS loops

include "recurrence_engine.pxi"
include "decode_engine.pxi"
include "attention.pxi"
include "attention_engine.pxi"

BUILD_INFO["isa"] = "native" if FASTCAP_NATIVE_BUILD else (FASTCAP_BUILD_ISA.decode() or ENGINE_INFO["isa"])
