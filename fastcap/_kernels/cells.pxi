# The cell kernels: one RNN or LSTM step's gate math, forward and backward, and the scalar
# nonlinearities they inline.
# Included by cython_backend.pyx (one module; the parts are split by concern).

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
