# The recurrence kernels of the Cython backend (included by cython_backend.pyx).
#
# float32 runs on the compiled recurrent engine (fastcap/_kernels/engine/,
# C): the whole packed time loop in C, register tiles over weights packed
# once per call (``recurrent_pack`` returns a ``PackedRecurrent``), the cell
# math fused into the tiles, hidden units split over the engine's threads.
# float64 (or the engine switched off) runs the shared BLAS loop
# (fastcap/_kernels/blas_recurrence.py) around this module's cell kernels:
# which path a call takes is decided by what ``recurrent_pack`` returned.
#
# Kernels trust the orchestration's validation, but these wrappers still check
# every size the C code indexes with (O(T) work per call) before it runs, so
# inconsistent arguments raise ValueError instead of reaching memory.
import types as _types

from libc.stdint cimport uint16_t

from fastcap._kernels import blas_recurrence as _blas_recurrence

cdef extern from "engine/engine.h" nogil:
    ctypedef struct fc_packed:
        float *data
        int kind, K, cols, units, krows, bf16, npanels
    enum:
        FC_PACK_GATES
        FC_PACK_PLAIN
        FC_PACK_TRANSPOSED
    int fc_pack(fc_packed *out, const float *Wh, int H, int G, int kind, int bf16, int nthreads)
    int fc_pack_matrix_bf16(fc_packed *out, const float *B, Py_ssize_t rs, Py_ssize_t cs, int K,
                            int N, int nthreads)
    int fc_pack_matrix_f32(fc_packed *out, const float *B, int K, int N, int nthreads)
    void fc_packed_free(fc_packed *p)
    int fc_gemm_bf16(const float *A, Py_ssize_t ars, Py_ssize_t acs, int M, const fc_packed *Bp,
                     float *C, Py_ssize_t ldc, int nthreads)
    const char *fc_engine_isa()
    int fc_engine_vector_width()
    int fc_engine_bf16_native()
    void fc_rnn_forward(const float *xw, const float *h0, const fc_packed *Wp,
                        const Py_ssize_t *offsets, int T, int N, float *h_out, uint16_t *ab,
                        int nthreads)
    void fc_rnn_backward(const float *dh, const fc_packed *WTp, const float *h,
                         const Py_ssize_t *offsets, int T, int N, float *da_out, float *dh0_out,
                         uint16_t *ab, int nthreads)
    void fc_lstm_forward(const float *xw, const float *h0, const float *c0, const fc_packed *Wp,
                         const Py_ssize_t *offsets, int T, int N, float *ifog_out, float *c_out,
                         float *h_out, uint16_t *ab, int nthreads)
    void fc_lstm_backward(const float *dh, const float *c0, const fc_packed *WTp,
                          const float *ifog, const float *c, const Py_ssize_t *offsets, int T,
                          int N, float *da_out, float *dh0_out, float *dc_work, uint16_t *ab,
                          int nthreads)

# bf16_native: the bfloat16 mode's tiles are the CPU's vdpbf16ps (the
# avx512bf16 build), not two FMAs per pair (every other build).
ENGINE_INFO = {"isa": fc_engine_isa().decode(), "vector_width": fc_engine_vector_width(),
               "bf16_native": bool(fc_engine_bf16_native())}

# This module's cell kernels, for the BLAS loop (float64, or the engine off).
_CELL_KERNELS = _types.SimpleNamespace(
    rnn_cell_forward=rnn_cell_forward, rnn_cell_backward=rnn_cell_backward,
    lstm_cell_forward=lstm_cell_forward, lstm_cell_backward=lstm_cell_backward)

from fastcap.runtime import env as _env

cdef bint _engine_on = _env.read("FASTCAP_ENGINE")  # checked when fastcap was imported


def engine_on():
    """Whether float32 recurrences run on the engine (see use_engine)."""
    return bool(_engine_on)


def use_engine(bint on):
    """Switch the float32 engine on or off (off: the BLAS loop); returns the previous setting.
    FASTCAP_ENGINE=off sets it off at import. For parity tests and benchmarks."""
    global _engine_on
    previous, _engine_on = _engine_on, on
    return previous


cdef class PackedRecurrent:
    """Recurrent weights packed for the engine (made by recurrent_pack, read-only)."""
    cdef fc_packed p
    cdef readonly int H, G
    cdef readonly bint transpose, bf16

    def __dealloc__(self):
        fc_packed_free(&self.p)


_INT_MAX = 2 ** 31 - 1


def recurrent_pack(Wh,  # IN (H, G) float32 -> PackedRecurrent; float64 -> Wh (BLAS loop)
                   int gates,  # IN 1 (RNN) or 4 (LSTM)
                   bint transpose,  # IN pack Wh.T, for the backward product da @ Wh.T
                   bint bf16=False):  # IN pack as bf16 pairs (the bfloat16 mode)
    if Wh.dtype != np.float32 or not _engine_on:
        return _blas_recurrence.recurrent_pack(Wh, gates, transpose, bf16)
    cdef const float[:, ::1] w = Wh
    cdef Py_ssize_t H = w.shape[0], G = w.shape[1]
    if gates not in (1, 4) or G != gates * H or H < 1 or G > _INT_MAX:
        raise ValueError(f"recurrent_pack: Wh must have shape (H, {gates}*H) with 1 <= H, got {(H, G)}")
    cdef PackedRecurrent packed = PackedRecurrent.__new__(PackedRecurrent)
    cdef int kind = FC_PACK_TRANSPOSED if transpose else FC_PACK_GATES if gates == 4 else FC_PACK_PLAIN
    cdef int rc, nth = _engine_threads
    with nogil:
        rc = fc_pack(&packed.p, &w[0, 0], <int>H, <int>G, kind, bf16, nth)
    if rc != 0:
        raise MemoryError("recurrent_pack: out of memory packing the recurrent weights")
    packed.H, packed.G, packed.transpose, packed.bf16 = H, G, transpose, bf16
    return packed


cdef uint16_t *_bf16_scratch(PackedRecurrent W, Py_ssize_t rows, Py_ssize_t cols, list keep):
    """A zeroed (rows, cols rounded up to even) uint16 buffer for the bf16 copies of the
    tiles' A operands (NULL for float32 weights); `keep` holds it for the call."""
    if not W.bf16:
        return NULL
    buf = np.zeros((rows, (cols + 1) // 2 * 2), dtype=np.uint16)
    keep.append(buf)
    cdef uint16_t[:, ::1] b = buf
    return &b[0, 0] if buf.size else NULL


cdef object _offsets(const Py_ssize_t[::1] batch_sizes, Py_ssize_t N, Py_ssize_t P):
    """(T + 1,) intp row offsets of the steps, after checking that the batch
    sizes are a valid packing of P rows of N sequences."""
    cdef Py_ssize_t T = batch_sizes.shape[0], t, n, prev = N
    offsets = np.empty(T + 1, dtype=np.intp)
    cdef Py_ssize_t[::1] off = offsets
    off[0] = 0
    for t in range(T):
        n = batch_sizes[t]
        if n < 0 or n > prev:
            raise ValueError(f"batch_sizes must be non-increasing in [0, N = {N}], got {np.asarray(batch_sizes)}")
        prev = n
        off[t + 1] = off[t] + n
    if off[T] != P or T > _INT_MAX or N > _INT_MAX:
        raise ValueError(f"batch_sizes sum to {off[T]} but the packed arrays have {P} rows")
    return offsets


cdef inline const float *_p(const float[:, ::1] a) noexcept nogil:
    return NULL if a.shape[0] == 0 or a.shape[1] == 0 else &a[0, 0]


cdef inline float *_w(float[:, ::1] a) noexcept nogil:
    return NULL if a.shape[0] == 0 or a.shape[1] == 0 else &a[0, 0]


cdef _check(str what, tuple got, tuple want):
    if got != want:
        raise ValueError(f"{what} must have shape {want}, got {got}")


cdef PackedRecurrent _packed_for(object Whp, Py_ssize_t H, Py_ssize_t G, bint transpose):
    cdef PackedRecurrent W = Whp
    if W.H != H or W.G != G or W.transpose != transpose:
        raise ValueError(f"packed weights are for H = {W.H}, G = {W.G}, transpose = {W.transpose}; "
                         f"this call needs H = {H}, G = {G}, transpose = {transpose}")
    return W


def rnn_recurrence_forward(xw, h0, Whp, batch_sizes, h_out):
    if not isinstance(Whp, PackedRecurrent):
        return _blas_recurrence.rnn_forward(_CELL_KERNELS, xw, h0, Whp, batch_sizes, h_out)
    cdef const float[:, ::1] xw_ = xw   # IN (P, H) x @ Wx + b
    cdef const float[:, ::1] h0_ = h0   # IN (N, H)
    cdef float[:, ::1] h_ = h_out       # OUT (P, H)
    cdef Py_ssize_t N = h0_.shape[0], H = h0_.shape[1], P = xw_.shape[0]
    cdef PackedRecurrent W = _packed_for(Whp, H, H, False)
    _check("xw", (xw_.shape[0], xw_.shape[1]), (P, H))
    _check("h_out", (h_.shape[0], h_.shape[1]), (P, H))
    cdef Py_ssize_t[::1] off = _offsets(batch_sizes, N, P)
    cdef int T = <int>(off.shape[0] - 1), nth = _engine_threads
    keep = []
    cdef uint16_t *ab = _bf16_scratch(W, N + P, H, keep)
    with nogil:
        fc_rnn_forward(_p(xw_), _p(h0_), &W.p, &off[0], T, <int>N, _w(h_), ab, nth)


def rnn_recurrence_backward(dh, h0, WhTp, h, batch_sizes, da_out, dh0_out):
    if not isinstance(WhTp, PackedRecurrent):
        return _blas_recurrence.rnn_backward(_CELL_KERNELS, dh, h0, WhTp, h, batch_sizes, da_out, dh0_out)
    cdef const float[:, ::1] dh_ = dh   # IN (P, H) gradient arriving at every h_t
    cdef const float[:, ::1] h0_ = h0   # IN (N, H)
    cdef const float[:, ::1] h_ = h     # IN (P, H)
    cdef float[:, ::1] da_ = da_out     # OUT (P, H)
    cdef float[:, ::1] dh0_ = dh0_out   # OUT (N, H)
    cdef Py_ssize_t N = h0_.shape[0], H = h0_.shape[1], P = h_.shape[0]
    cdef PackedRecurrent W = _packed_for(WhTp, H, H, True)
    for name, a in (("dh", dh_), ("h", h_), ("da_out", da_)):
        _check(name, (a.shape[0], a.shape[1]), (P, H))
    _check("dh0_out", (dh0_.shape[0], dh0_.shape[1]), (N, H))
    cdef Py_ssize_t[::1] off = _offsets(batch_sizes, N, P)
    cdef int T = <int>(off.shape[0] - 1), nth = _engine_threads
    keep = []
    cdef uint16_t *ab = _bf16_scratch(W, P, H, keep)
    with nogil:
        fc_rnn_backward(_p(dh_), &W.p, _p(h_), &off[0], T, <int>N, _w(da_), _w(dh0_), ab, nth)


def lstm_recurrence_forward(xw, h0, c0, Whp, batch_sizes, ifog_out, c_out, h_out):
    if not isinstance(Whp, PackedRecurrent):
        return _blas_recurrence.lstm_forward(_CELL_KERNELS, xw, h0, c0, Whp, batch_sizes, ifog_out, c_out, h_out)
    cdef const float[:, ::1] xw_ = xw       # IN (P, 4H) x @ Wx + b
    cdef const float[:, ::1] h0_ = h0       # IN (N, H)
    cdef const float[:, ::1] c0_ = c0       # IN (N, H)
    cdef float[:, ::1] ifog_ = ifog_out     # OUT (P, 4H) activated gates
    cdef float[:, ::1] c_ = c_out           # OUT (P, H)
    cdef float[:, ::1] h_ = h_out           # OUT (P, H)
    cdef Py_ssize_t N = h0_.shape[0], H = h0_.shape[1], P = xw_.shape[0]
    cdef PackedRecurrent W = _packed_for(Whp, H, 4 * H, False)
    _check("c0", (c0_.shape[0], c0_.shape[1]), (N, H))
    _check("xw", (xw_.shape[0], xw_.shape[1]), (P, 4 * H))
    _check("ifog_out", (ifog_.shape[0], ifog_.shape[1]), (P, 4 * H))
    _check("c_out", (c_.shape[0], c_.shape[1]), (P, H))
    _check("h_out", (h_.shape[0], h_.shape[1]), (P, H))
    cdef Py_ssize_t[::1] off = _offsets(batch_sizes, N, P)
    cdef int T = <int>(off.shape[0] - 1), nth = _engine_threads
    keep = []
    cdef uint16_t *ab = _bf16_scratch(W, N + P, H, keep)
    with nogil:
        fc_lstm_forward(_p(xw_), _p(h0_), _p(c0_), &W.p, &off[0], T, <int>N, _w(ifog_), _w(c_), _w(h_),
                        ab, nth)


def lstm_recurrence_backward(dh, c0, WhTp, ifog, c, batch_sizes, da_out, dh0_out):
    if not isinstance(WhTp, PackedRecurrent):
        return _blas_recurrence.lstm_backward(_CELL_KERNELS, dh, c0, WhTp, ifog, c, batch_sizes, da_out, dh0_out)
    cdef const float[:, ::1] dh_ = dh       # IN (P, H) gradient arriving at every h_t
    cdef const float[:, ::1] c0_ = c0       # IN (N, H)
    cdef const float[:, ::1] ifog_ = ifog   # IN (P, 4H)
    cdef const float[:, ::1] c_ = c         # IN (P, H)
    cdef float[:, ::1] da_ = da_out         # OUT (P, 4H)
    cdef float[:, ::1] dh0_ = dh0_out       # OUT (N, H)
    cdef Py_ssize_t N = c0_.shape[0], H = c0_.shape[1], P = c_.shape[0]
    cdef PackedRecurrent W = _packed_for(WhTp, H, 4 * H, True)
    _check("dh", (dh_.shape[0], dh_.shape[1]), (P, H))
    _check("ifog", (ifog_.shape[0], ifog_.shape[1]), (P, 4 * H))
    _check("da_out", (da_.shape[0], da_.shape[1]), (P, 4 * H))
    _check("dh0_out", (dh0_.shape[0], dh0_.shape[1]), (N, H))
    cdef Py_ssize_t[::1] off = _offsets(batch_sizes, N, P)
    cdef int T = <int>(off.shape[0] - 1), nth = _engine_threads
    dc_work = np.zeros((N, H), dtype=np.float32)
    cdef float[:, ::1] dc_ = dc_work
    keep = []
    cdef uint16_t *ab = _bf16_scratch(W, P, 4 * H, keep)
    with nogil:
        fc_lstm_backward(_p(dh_), _p(c0_), &W.p, _p(ifog_), _p(c_), &off[0], T, <int>N,
                         _w(da_), _w(dh0_), _w(dc_), ab, nth)


cdef class PackedPanels:
    """A matrix operand (K, N) packed into the engine's panels: bf16 for matmul_bf16 and
    greedy_decode (made by pack_bf16), or float32 for greedy_decode (made by pack_matrix).
    (fastcap.model.sequence.Operand is another thing: a matrix with its packing, if any.)"""
    cdef fc_packed p
    cdef readonly tuple shape

    def __dealloc__(self):
        fc_packed_free(&self.p)


cdef _strides(const float[:, :] a, str name):
    """a's strides in floats (the engine indexes floats)."""
    if a.strides[0] % 4 or a.strides[1] % 4:
        raise ValueError(f"{name}: strides {a.strides} are not whole floats")
    return a.strides[0] // 4, a.strides[1] // 4


def pack_bf16(b):  # IN (K, N) float32, any strides -> PackedPanels
    if not fc_amx_status().decided:  # a pack precedes the compiled decoding loop's products too
        _amx_auto()
    cdef const float[:, :] b_ = b
    cdef Py_ssize_t K = b_.shape[0], N = b_.shape[1], rs, cs
    if K > _INT_MAX or N > _INT_MAX:
        raise ValueError(f"pack_bf16: dimensions above {_INT_MAX}: {(K, N)}")
    rs, cs = _strides(b_, "pack_bf16: b")
    cdef PackedPanels packed = PackedPanels.__new__(PackedPanels)
    packed.shape = (K, N)
    cdef int rc = 0, nth = _engine_threads
    cdef const float *src = &b_[0, 0] if K and N else NULL
    with nogil:
        rc = fc_pack_matrix_bf16(&packed.p, src, rs, cs, <int>K, <int>N, nth)
    if rc != 0:
        raise MemoryError(f"pack_bf16: out of memory packing a ({K}, {N}) matrix")
    return packed


# --- AMX: the bf16 GEMM on tiles (engine/amx.h) ---------------------------
# The engine decides (engine/amx_policy.c) and keeps the decision; this layer
# reads FASTCAP_AMX for it, maps its reason codes to messages, and warns.
cdef extern from "engine/engine.h" nogil:
    enum:
        FC_AMX_OFF
        FC_AMX_TILES
        FC_AMX_EMULATED
        FC_AMX_NOT_ASKED
        FC_AMX_GRANTED
        FC_AMX_NO_CPU
        FC_AMX_NO_XCR0
        FC_AMX_OS_REFUSED
        FC_AMX_NO_CODE
        FC_AMX_CHECK_FAILED
        FC_AMX_SWITCHED_OFF
    ctypedef struct fc_amx_decision:
        int decided, reason, candidate
    int fc_amx_enable()
    int fc_amx_mode()
    int fc_amx_decide(int allowed, int nthreads, int *decided_now)
    int fc_amx_try(int granted, int candidate, int nthreads)
    int fc_amx_use(int mode)
    fc_amx_decision fc_amx_status()

# Modes of fc_gemm_bf16, indexed by FC_AMX_OFF, _TILES, _EMULATED: off (vector
# tiles), tiles (the CPU's AMX), emulated (the same tile program on emulated
# tiles: tests, on any CPU).
AMX_MODES = ("off", "tiles", "emulated")
# Why the bf16 GEMM does not run on AMX tiles, by the engine's reason code.
_AMX_REASONS = {
    FC_AMX_NOT_ASKED: "not asked yet (the first bf16 product asks)",
    FC_AMX_NO_CPU: "the CPU has no amx_bf16",
    FC_AMX_NO_XCR0: "the OS does not save the AMX tile state (XCR0)",
    FC_AMX_OS_REFUSED: "the OS refused the tile state (arch_prctl ARCH_REQ_XCOMP_PERM)",
    FC_AMX_NO_CODE: "this build has no AMX code (only the avx512bf16 build has)",
    FC_AMX_SWITCHED_OFF: "FASTCAP_AMX=off",
}


cdef _amx_why_not(int reason, int candidate):
    """The message for a reason code (None: the tiles were granted)."""
    if reason == FC_AMX_GRANTED:
        return None
    if reason == FC_AMX_CHECK_FAILED:
        return f"the {AMX_MODES[candidate]} AMX tiles failed fastcap's check against the vector tiles"
    return _AMX_REASONS.get(reason, f"fc_amx_enable() = {reason}")


cdef _amx_warn(int reason, int candidate):
    """Warn where the CPU has AMX but the OS or the check refused it (no AMX: nothing to say)."""
    if reason == FC_AMX_OS_REFUSED or reason == FC_AMX_CHECK_FAILED:
        import warnings
        warnings.warn(f"fastcap: {_amx_why_not(reason, candidate)}; bf16 products run on vdpbf16ps "
                      "instead", RuntimeWarning, stacklevel=4)


def amx_status():
    """(mode, why AMX tiles are not used or None): the path of the bf16 GEMM's larger products."""
    cdef int mode = fc_amx_mode()
    cdef fc_amx_decision d = fc_amx_status()
    return AMX_MODES[mode], (None if mode == FC_AMX_TILES else _amx_why_not(d.reason, d.candidate))


def amx_decide():
    """amx_status() after deciding, if not yet, as the first bf16 product would (it may ask
    the OS for the tile state): for reports, in the bfloat16 mode only."""
    if not fc_amx_status().decided:
        _amx_auto()
    return amx_status()


def amx_use(str mode):
    """Set the bf16 GEMM's tiles ('off', 'tiles' or 'emulated'); returns the previous mode.
    'tiles' needs an AMX CPU whose OS grants the tile state; for tests and benchmarks."""
    if mode not in AMX_MODES:
        raise ValueError(f"amx_use: mode must be one of {', '.join(AMX_MODES)}, got {mode!r}")
    previous = AMX_MODES[fc_amx_mode()]
    if fc_amx_use(AMX_MODES.index(mode)) != 0:
        why = (_amx_why_not(fc_amx_enable(), FC_AMX_TILES) or "") if mode == "tiles" \
            else "this build's panels are too narrow"
        raise RuntimeError(f"amx_use: cannot use mode {mode!r}: {why}")
    return previous


cdef _amx_auto():
    """Decide once, at the first bf16 product, whether it runs on AMX tiles: the engine asks
    the OS for the tile state then (it changes the process, so never at import) and checks
    the tiles; FASTCAP_AMX=off says no first."""
    cdef int allowed = _env.read("FASTCAP_AMX"), nth = _engine_threads, now = 0, reason
    with nogil:
        reason = fc_amx_decide(allowed, nth, &now)
    if now:
        _amx_warn(reason, FC_AMX_TILES)


def _amx_decide(int code, str candidate):
    """Use the tiles `candidate` if fc_amx_enable() answered `code` = 0 and they pass the
    engine's check against the vector tiles on a small product; else keep the vector tiles,
    saying why (a warning where the CPU has AMX but the OS or the check refused it). Tests
    call it with the emulated tiles."""
    cdef int tiles = AMX_MODES.index(candidate), nth = _engine_threads, reason
    with nogil:
        reason = fc_amx_try(code, tiles, nth)
    _amx_warn(reason, tiles)


def matmul_bf16(a,  # IN (M, K) float32, any strides
                b,  # IN (K, N) float32, any strides, or pack_bf16(b)
                out):  # OUT (M, N) float32 C-contiguous: bf16(a) @ bf16(b), float32 sums
    cdef const float[:, :] a_ = a
    cdef float[:, ::1] o_ = out
    cdef PackedPanels bp = b if isinstance(b, PackedPanels) else pack_bf16(b)
    if not bp.p.bf16:
        raise ValueError("matmul_bf16: b is packed as float32 panels (pack_matrix, for greedy_decode), "
                         "not by pack_bf16")
    cdef Py_ssize_t M = a_.shape[0], K = a_.shape[1], N = o_.shape[1], ars, acs
    _check("b", bp.shape, (K, N))
    _check("out", (o_.shape[0], o_.shape[1]), (M, N))
    if M > _INT_MAX:
        raise ValueError(f"matmul_bf16: dimensions above {_INT_MAX}: {(M, K, N)}")
    if M == 0 or N == 0:
        return
    if K == 0:
        out[...] = 0
        return
    if not fc_amx_status().decided:
        _amx_auto()
    _gemm_bf16(a_, bp, o_)


cdef _gemm_bf16(const float[:, :] a_, PackedPanels bp, float[:, ::1] o_):
    """o_ = bf16(a_) @ bp, shapes checked by the caller (M, K, N >= 1)."""
    cdef Py_ssize_t M = a_.shape[0], K = a_.shape[1], N = o_.shape[1], ars, acs
    ars, acs = _strides(a_, "matmul_bf16: a")
    cdef int rc, nth = _engine_threads
    with nogil:
        rc = fc_gemm_bf16(&a_[0, 0], ars, acs, <int>M, &bp.p, &o_[0, 0], o_.shape[1], nth)
    if rc != 0:
        raise MemoryError(f"matmul_bf16: out of memory for a ({M}, {K}) @ ({K}, {N}) product")
