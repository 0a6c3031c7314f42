"""Centered finite-difference gradients, as in CS231n, and the relative error."""
import numpy as np

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error"]


def rel_error(x, y):
    """max |x - y| / max(1e-8, |x| + |y|), elementwise then the maximum."""
    x, y = np.asarray(x), np.asarray(y)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _centered_differences(x, h, f_at, difference, verbose=False):
    """grad[i] = difference(f_at(x + h e_i), f_at(x - h e_i)) / 2h for every entry i of x,
    perturbing x in place and restoring each entry afterwards."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        pos = f_at(x)
        x[ix] = old - h
        neg = f_at(x)
        x[ix] = old
        grad[ix] = difference(pos, neg) / (2 * h)
        if verbose:
            print(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient(f, x, verbose=True, h=0.00001):
    """Gradient of the scalar function f at x, perturbing x in place one entry at a time.

    x is restored after each perturbation. Returns an array shaped like x.
    """
    return _centered_differences(x, h, f, lambda pos, neg: pos - neg, verbose)


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Gradient of sum(f(x) * df) at x, for an array-valued f; df is the upstream gradient."""
    # f may return a view of (or reuse) a buffer: copy before the next call.
    return _centered_differences(x, h, lambda x: np.array(f(x), copy=True),
                                 lambda pos, neg: np.sum((pos - neg) * df))
