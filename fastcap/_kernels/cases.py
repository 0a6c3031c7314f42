"""The one table that drives the parity tests of every backend.

Each row of ``CASES`` names a kernel of ``fastcap._kernels.KERNELS``, a
function building its arguments from (rng, dtype, **dims), the indices of the
arguments the kernel writes (``*_out`` arrays and in-place state), and the
float32 tolerance: the largest scaled error ``max|a - b| / max|b|`` allowed
between a backend's float32 result and the float64 reference (elementwise
``rel_error`` is meaningless in float32 where outputs cancel to near zero).
Each tolerance is at most about 10x the worst error the float32 *reference*
showed over 8 seeds at these shapes, and the float32 reference must meet it
too in the tests, so no tolerance is slack.

Shapes cover N = 1, T = 1, H not a multiple of 8, the COCO vocabulary of 1004
and masks with fully masked rows.
"""
from typing import NamedTuple

import numpy as np

from fastcap._kernels import KERNEL_NAMES

# Dimension sets each kernel is tested at.
SHAPES = [
    dict(N=1, T=1, D=3, H=5, V=7, W=4),
    dict(N=4, T=3, D=6, H=13, V=11, W=5),  # H not a multiple of 8
    dict(N=17, T=5, D=10, H=32, V=1004, W=16),  # COCO vocabulary
]


def _f(rng, dtype, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _empty(dtype, *shape):
    # Garbage-filled on purpose: kernels must overwrite every *_out element.
    return np.full(shape, np.nan, dtype=dtype)


def _mask(rng, M):
    mask = rng.random(M) < 0.7
    mask[: max(1, M // 4)] = False  # fully masked rows
    return mask


def rnn_cell_forward(rng, dtype, N, H, **_):
    return [_f(rng, dtype, N, H), _f(rng, dtype, N, H), _empty(dtype, N, H)]


def rnn_cell_backward(rng, dtype, N, H, **_):
    return [_f(rng, dtype, N, H), np.tanh(_f(rng, dtype, N, H)), _empty(dtype, N, H)]


def lstm_cell_forward(rng, dtype, N, H, **_):
    # scale 4 reaches saturated gates, where a careless sigmoid overflows
    return [_f(rng, dtype, N, 4 * H, scale=4), _f(rng, dtype, N, 4 * H), _f(rng, dtype, N, H),
            _empty(dtype, N, 4 * H), _empty(dtype, N, H), _empty(dtype, N, H)]


def lstm_cell_backward(rng, dtype, N, H, **_):
    ifog = np.concatenate([1 / (1 + np.exp(-_f(rng, np.float64, N, 3 * H))),
                           np.tanh(_f(rng, np.float64, N, H))], axis=1).astype(dtype)
    return [_f(rng, dtype, N, H), _f(rng, dtype, N, H), ifog, _f(rng, dtype, N, H),
            _f(rng, dtype, N, H), _empty(dtype, N, 4 * H), _empty(dtype, N, H)]


class Pack(NamedTuple):
    """An argument that is recurrent weights packed by the backend under test
    (``recurrent_pack`` output is backend-specific, so ``run`` packs it)."""

    Wh: np.ndarray
    gates: int
    transpose: bool


def _batch_sizes(rng, N, T):
    # Sequence lengths in [0, T], longest first, one of length T: uneven steps
    # and (at N > 1) sequences of length 0.
    lengths = np.sort(rng.integers(0, T + 1, N))[::-1]
    lengths[0] = T
    return np.array([(lengths > t).sum() for t in range(T)], dtype=np.intp)


def _recurrence(rng, dtype, N, T, H, gates, backward):
    bs = _batch_sizes(rng, N, T)
    P, G = int(bs.sum()), gates * H
    Wh = Pack(_f(rng, dtype, H, G, scale=1 / np.sqrt(H)), gates, backward)
    h0 = _f(rng, dtype, N, H)
    if not backward:
        xw = _f(rng, dtype, P, G, scale=2)
        if gates == 1:
            return [xw, h0, Wh, bs, _empty(dtype, P, H)]
        return [xw, h0, _f(rng, dtype, N, H), Wh, bs, _empty(dtype, P, G), _empty(dtype, P, H),
                _empty(dtype, P, H)]
    dh = _f(rng, dtype, P, H)
    if gates == 1:
        return [dh, h0, Wh, np.tanh(_f(rng, dtype, P, H)), bs, _empty(dtype, P, H), _empty(dtype, N, H)]
    ifog = lstm_cell_backward(rng, dtype, P, H)[2]
    return [dh, _f(rng, dtype, N, H), Wh, ifog, _f(rng, dtype, P, H), bs, _empty(dtype, P, G),
            _empty(dtype, N, H)]


def rnn_recurrence_forward(rng, dtype, N, T, H, **_):
    return _recurrence(rng, dtype, N, T, H, 1, False)


def rnn_recurrence_backward(rng, dtype, N, T, H, **_):
    return _recurrence(rng, dtype, N, T, H, 1, True)


def lstm_recurrence_forward(rng, dtype, N, T, H, **_):
    return _recurrence(rng, dtype, N, T, H, 4, False)


def lstm_recurrence_backward(rng, dtype, N, T, H, **_):
    return _recurrence(rng, dtype, N, T, H, 4, True)


def embedding_forward(rng, dtype, N, T, V, W, **_):
    return [rng.integers(0, V, N * T).astype(np.intp), _f(rng, dtype, V, W), _empty(dtype, N * T, W)]


def embedding_backward(rng, dtype, N, T, V, W, **_):
    idx = rng.integers(0, min(V, 3), N * T).astype(np.intp)  # many repeats: the scatter-add must sum
    return [_f(rng, dtype, N * T, W), idx, _empty(dtype, V, W)]


def affine_forward(rng, dtype, N, T, H, V, **_):
    return [_f(rng, dtype, N * T, H), _f(rng, dtype, H, V), _f(rng, dtype, V), _empty(dtype, N * T, V)]


def affine_backward(rng, dtype, N, T, H, V, **_):
    return [_f(rng, dtype, N * T, V), _f(rng, dtype, N * T, H), _f(rng, dtype, H, V),
            _empty(dtype, N * T, H), _empty(dtype, H, V), _empty(dtype, V)]


def softmax_loss(rng, dtype, N, T, V, **_):
    M = N * T
    return [_f(rng, dtype, M, V, scale=3), rng.integers(0, V, M).astype(np.intp), _mask(rng, M),
            1.0 / N, _empty(dtype, M, V)]


def argmax_words(rng, dtype, N, T, V, **_):
    M = N * T
    # Small integer scores (exact in every dtype) tie often: the lowest index must win.
    scores = rng.integers(-3, 4, (M, V)).astype(dtype)
    b_vocab = rng.integers(0, 2, V).astype(dtype)
    scores[-1, V // 2] = np.nan  # a NaN wins, as in np.argmax
    return [scores, b_vocab, 2 % V, np.full(M, -7, dtype=np.intp)]


def sgd_update(rng, dtype, V, W, **_):
    return [_f(rng, dtype, V, W), _f(rng, dtype, V, W), 0.1]


def sgd_momentum_update(rng, dtype, V, W, **_):
    return [_f(rng, dtype, V, W), _f(rng, dtype, V, W), _f(rng, dtype, V, W), 0.1, 0.9]


def rmsprop_update(rng, dtype, V, W, **_):
    return [_f(rng, dtype, V, W), _f(rng, dtype, V, W), np.abs(_f(rng, dtype, V, W)), 0.01, 0.99, 1e-8]


def adam_update(rng, dtype, V, W, **_):
    return [_f(rng, dtype, V, W), _f(rng, dtype, V, W), _f(rng, dtype, V, W),
            np.abs(_f(rng, dtype, V, W)), 0.005, 0.9, 0.999, 1e-8]


# (case name, kernel, argument builder, indices of written arguments, float32 tolerance)
CASES = [
    ("rnn_cell_forward", "rnn_cell_forward", rnn_cell_forward, (2,), 1e-6),
    ("rnn_cell_backward", "rnn_cell_backward", rnn_cell_backward, (2,), 1e-6),
    ("lstm_cell_forward", "lstm_cell_forward", lstm_cell_forward, (3, 4, 5), 2e-6),
    ("lstm_cell_backward", "lstm_cell_backward", lstm_cell_backward, (5, 6), 2e-6),
    ("rnn_recurrence_forward", "rnn_recurrence_forward", rnn_recurrence_forward, (4,), 2e-6),
    ("rnn_recurrence_backward", "rnn_recurrence_backward", rnn_recurrence_backward, (5, 6), 2e-6),
    ("lstm_recurrence_forward", "lstm_recurrence_forward", lstm_recurrence_forward, (5, 6, 7), 2e-6),
    ("lstm_recurrence_backward", "lstm_recurrence_backward", lstm_recurrence_backward, (6, 7), 2e-6),
    ("embedding_forward", "embedding_forward", embedding_forward, (2,), 1e-7),
    ("embedding_backward", "embedding_backward", embedding_backward, (2,), 2e-6),
    ("affine_forward", "affine_forward", affine_forward, (3,), 3e-6),
    ("affine_backward", "affine_backward", affine_backward, (3, 4, 5), 6e-6),
    ("softmax_loss", "softmax_loss", softmax_loss, (4,), 2e-6),
    ("argmax_words", "argmax_words", argmax_words, (3,), 0.0),
    ("sgd_update", "sgd_update", sgd_update, (0,), 1e-6),
    ("sgd_momentum_update", "sgd_momentum_update", sgd_momentum_update, (0, 2), 1e-6),
    ("rmsprop_update", "rmsprop_update", rmsprop_update, (0, 2), 1e-6),
    ("adam_update", "adam_update", adam_update, (0, 2, 3), 1e-6),
]

# Kernels exercised through the rows of others (see Pack).
COVERED_BY_OTHERS = {"recurrent_pack"}
assert {c[1] for c in CASES} | COVERED_BY_OTHERS == set(KERNEL_NAMES), "every kernel needs a row in CASES"

# The recurrence rows: what the compiled engine runs (tests/test_engine.py).
ENGINE_KERNELS = {c[1] for c in CASES if "_recurrence_" in c[1]}


def as_dtype(args, dtype):
    """args with every float array (and packed weight) cast to dtype."""
    def cast(a):
        if isinstance(a, Pack):
            return a._replace(Wh=a.Wh.astype(dtype))
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            return a.astype(dtype)
        return a
    return [cast(a) for a in args]


def run(kernels, kernel, args, written):
    """Call a kernel on copies of args; return its return value and written arrays."""
    args = [kernels.recurrent_pack(a.Wh.copy(), a.gates, a.transpose) if isinstance(a, Pack)
            else a.copy() if isinstance(a, np.ndarray) else a for a in args]
    before = [a.copy() if isinstance(a, np.ndarray) else None for a in args]
    ret = getattr(kernels, kernel)(*args)
    for i, (a, b) in enumerate(zip(args, before)):
        if b is not None and i not in written:
            np.testing.assert_array_equal(a, b, err_msg=f"{kernel} modified input argument {i}")
    return ret, [args[i] for i in written]
