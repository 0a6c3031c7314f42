# The update rules' kernels (sgd, sgd_momentum, rmsprop, adam), in place on the weights and
# the optimizer state.
# Included by cython_backend.pyx (one module; the parts are split by concern).

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
