"""The Numba backend's update rules (fastcap._kernels.KERNELS: sgd_update, sgd_momentum_update,
rmsprop_update, adam_update): one in-place pass over each flattened parameter."""
import math

from .numba_jit import jit

# update rules: one in-place pass over the flattened parameter
#
# The wrappers flatten (a view: parameters are C-contiguous), so each rule
# compiles once per dtype whatever the parameter's rank. Hyperparameters are
# cast to the parameter's dtype, as NumPy does with Python floats.


@jit
def _sgd(w, dw, lr):
    lr = w.dtype.type(lr)
    for k in range(w.shape[0]):
        w[k] -= lr * dw[k]


@jit
def _sgd_momentum(w, dw, velocity, lr, momentum):
    lr, mu = w.dtype.type(lr), w.dtype.type(momentum)
    for k in range(w.shape[0]):
        v = mu * velocity[k] - lr * dw[k]
        velocity[k] = v
        w[k] += v


@jit
def _rmsprop(w, dw, cache, lr, decay_rate, eps):
    t = w.dtype.type
    lr, rho, keep, eps = t(lr), t(decay_rate), t(1 - decay_rate), t(eps)
    for k in range(w.shape[0]):
        g = dw[k]
        s = cache[k] * rho + keep * g * g
        cache[k] = s
        w[k] -= lr * g / (math.sqrt(s) + eps)


@jit
def _adam(w, dw, m, v, alpha, beta1, beta2, eps):
    t = w.dtype.type
    alpha, b1, b2, eps = t(alpha), t(beta1), t(beta2), t(eps)
    c1, c2 = t(1 - beta1), t(1 - beta2)
    for k in range(w.shape[0]):
        g = dw[k]
        mk = m[k] * b1 + c1 * g
        vk = v[k] * b2 + c2 * (g * g)
        m[k], v[k] = mk, vk
        w[k] -= alpha * (mk / (math.sqrt(vk) + eps))


def _flat(a):
    return a.reshape(-1)


def sgd_update(w, dw, lr):
    _sgd(_flat(w), _flat(dw), lr)


def sgd_momentum_update(w, dw, velocity, lr, momentum):
    _sgd_momentum(_flat(w), _flat(dw), _flat(velocity), lr, momentum)


def rmsprop_update(w, dw, cache, lr, decay_rate, eps):
    _rmsprop(_flat(w), _flat(dw), _flat(cache), lr, decay_rate, eps)


def adam_update(w, dw, m, v, alpha, beta1, beta2, eps):
    _adam(_flat(w), _flat(dw), _flat(m), _flat(v), alpha, beta1, beta2, eps)


