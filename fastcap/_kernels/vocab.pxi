# The kernels over the vocabulary: the word embedding's scatter-add, the masked softmax
# cross-entropy, and greedy decoding's argmax.
# Included by cython_backend.pyx (one module; the parts are split by concern).

# ----------------------------------------------------------------------------
# word embedding backward (the forward lookup is NumPy indexing, see fastcap.model.sequence)


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
    const double *weight  # NULL: 1 for every row
    void *dx
    double *row_loss
    double scale
    Py_ssize_t M, V


cdef inline void _softmax_rows(const floating_t *x, floating_t *dx, const _Softmax *s,
                               Py_ssize_t m0, Py_ssize_t m1) noexcept nogil:
    cdef Py_ssize_t m, j, V = s.V
    cdef double w
    for m in range(m0, m1):
        if s.mask[m]:
            w = 1.0 if s.weight == NULL else s.weight[m]  # a product with 1.0 changes no bit
            s.row_loss[m] = w * _softmax_row(x + m * V, V, s.y[m], s.scale * w, dx + m * V)
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
                 const double[::1] weight,  # IN (M,) multiplies each row's loss and dx; None: 1
                 floating_t[:, ::1] dx_out):  # OUT (M, V) gradient; 0 on masked-out rows
    """Returns scale * sum over unmasked rows of weight[m] * -log softmax(x[m])[y[m]] (a float)."""
    cdef _Softmax s
    s.f64, s.M, s.V, s.scale = floating_t is double, x.shape[0], x.shape[1], scale
    # the rows are read through raw pointers: every per-row array must have M rows
    if (y.shape[0] != s.M or mask.shape[0] != s.M or dx_out.shape[0] != s.M
            or dx_out.shape[1] != s.V or (weight is not None and weight.shape[0] != s.M)):
        raise ValueError(f"softmax_loss: y, mask, weight and dx_out must have the {s.M} rows of x "
                         f"{(s.M, s.V)}")
    targets = np.asarray(y)
    if s.M and (targets.min() < 0 or targets.max() >= s.V):  # x[m, y[m]] is read, dx written
        raise ValueError(f"softmax_loss: y must hold word indices in [0, {s.V}), got "
                         f"{targets.min() if targets.min() < 0 else targets.max()}")
    if s.V == 0 or s.M == 0:
        return 0.0
    row_loss = np.empty(s.M, dtype=np.float64)
    cdef double[::1] rl = row_loss
    s.x, s.y, s.mask, s.dx, s.row_loss = &x[0, 0], &y[0], &mask[0], &dx_out[0, 0], &rl[0]
    s.weight = NULL
    if weight is not None:
        s.weight = &weight[0]
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
# decoding: the next word of every caption (engine/sample.h, which the engine's loop shares)

cdef extern from "engine/engine.h" nogil:
    Py_ssize_t fc_argmax_f(const float *s, const float *b, Py_ssize_t V)
    Py_ssize_t fc_argmax_d(const double *s, const double *b, Py_ssize_t V)
    Py_ssize_t fc_sample_f(const float *s, const float *b, Py_ssize_t V, double u, double *e)
    Py_ssize_t fc_sample_d(const double *s, const double *b, Py_ssize_t V, double u, double *e)


cdef _check_rows(str kernel, Py_ssize_t N, Py_ssize_t V, Py_ssize_t b, Py_ssize_t words, Py_ssize_t u):
    # the rows are read through raw pointers: every size must fit scores (N, V)
    if b != V or words != N or u != N or (N and not V):
        raise ValueError(f"{kernel}: b_vocab must have the V = {V} columns of scores (V >= 1), "
                         f"words_out and uniforms its N = {N} rows")


def argmax_words(const floating_t[:, ::1] scores,  # IN (N, V) h @ W_vocab
                 const floating_t[::1] b_vocab,  # IN (V,)
                 Py_ssize_t end,  # IN the word that ends a caption (-1: none)
                 Py_ssize_t[::1] words_out):  # OUT (N,) first argmax of scores + b_vocab
    # np.argmax's rules: the first maximum wins; a NaN wins at its first position.
    # Returns how many rows picked `end`.
    cdef Py_ssize_t N = scores.shape[0], V = scores.shape[1], n, best, ended = 0
    _check_rows("argmax_words", N, V, b_vocab.shape[0], words_out.shape[0], N)
    with nogil:
        for n in range(N):
            if floating_t is float:
                best = fc_argmax_f(&scores[n, 0], &b_vocab[0], V)
            else:
                best = fc_argmax_d(&scores[n, 0], &b_vocab[0], V)
            words_out[n] = best
            ended += best == end
    return ended


def sample_words(const floating_t[:, ::1] scores,  # IN (N, V) h @ W_vocab
                 const floating_t[::1] b_vocab,  # IN (V,)
                 const double[::1] uniforms,  # IN (N,) in [0, 1): the draw of each row
                 Py_ssize_t end,  # IN the word that ends a caption (-1: none)
                 Py_ssize_t[::1] words_out):  # OUT (N,) the word drawn from softmax(scores + b_vocab)
    # The inverse of each row's distribution at its uniform (engine/sample.h). Returns how
    # many rows picked `end`.
    cdef Py_ssize_t N = scores.shape[0], V = scores.shape[1], n, best, ended = 0
    _check_rows("sample_words", N, V, b_vocab.shape[0], words_out.shape[0], uniforms.shape[0])
    scratch = np.empty(max(V, 1), dtype=np.float64)
    cdef double[::1] e = scratch
    with nogil:
        for n in range(N):
            if floating_t is float:
                best = fc_sample_f(&scores[n, 0], &b_vocab[0], V, uniforms[n], &e[0])
            else:
                best = fc_sample_d(&scores[n, 0], &b_vocab[0], V, uniforms[n], &e[0])
            words_out[n] = best
            ended += best == end
    return ended
