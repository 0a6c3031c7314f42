"""The kernel case table: arguments for every kernel of ``KERNELS``, for the parity tests and the kernel benchmarks.

``CASES`` maps each kernel name of ``fastcap._kernels.KERNELS`` to a ``Case``:
a function building its arguments from (rng, dtype, **dims), the indices of
the arguments the kernel writes (its contract's ``writes``), and
the float32 tolerance: the largest scaled error ``max|a - b| / max|b|``
allowed between a backend's float32 result and the float64 reference
(elementwise ``rel_error`` is meaningless in float32 where outputs cancel to
near zero). Each tolerance is at most about 10x the worst error the float32
*reference* showed over 8 seeds at the test shapes, and the float32 reference
must meet it too in the tests, so no tolerance is slack. A tolerance of None
marks a result that is backend-specific (``recurrent_pack``'s layout): it is
checked through the rows that take packed weights (``Pack``).

dims are N batch, T steps, H hidden, V vocabulary, W word vector (M = N*T
rows), and for the attention model D channels, L cells (default 49, ResNet's
7x7 grid, for the benchmarks) and A the attention size (default H). ``SHAPES`` are the test shapes: N = 1, T = 1, H not a multiple of 8,
the COCO vocabulary of 1004, masks with fully masked rows, sequences of
length 0. The benchmarks build the same arguments at the workload's dims and
pass ``captions`` ((N, T + 1) int, CS231n layout, ``<NULL>`` = 0): then the
words, targets, mask and sequence lengths are the captions' (as the model
derives them) instead of random draws.
"""
from typing import Callable, NamedTuple, Optional

import numpy as np

from . import KERNELS

# Dimension sets each kernel is tested at.
SHAPES = [
    dict(N=1, T=1, D=3, H=5, V=7, W=4, L=1, A=2),  # one attention cell: alpha is 1
    dict(N=4, T=3, D=6, H=13, V=11, W=5, L=5, A=7),  # H not a multiple of 8
    dict(N=17, T=5, D=10, H=32, V=1004, W=16, L=9, A=12),  # COCO vocabulary
]


def _f(rng, dtype, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _empty(dtype, *shape):
    # Garbage-filled on purpose: kernels must overwrite every *_out element.
    return np.full(shape, np.nan, dtype=dtype)


def _time_major(captions, columns):
    # (N, T+1) captions -> (M,) intp words of `columns` (inputs [:-1] or targets [1:]), step after step
    return np.ascontiguousarray(captions[:, columns].T.reshape(-1)).astype(np.intp)


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
    (``recurrent_pack`` output is backend-specific, so ``bind`` packs it)."""

    Wh: np.ndarray
    gates: int
    transpose: bool
    bf16: bool = False


class PackB(NamedTuple):
    """A matmul_bf16 operand packed by the backend under test (``pack_bf16``; ``bind`` packs it)."""

    b: np.ndarray


class PackM(NamedTuple):
    """A greedy_decode operand packed by the backend under test: pack_matrix(b), or in the
    bfloat16 mode pack_bf16(b) (``bind`` packs it)."""

    b: np.ndarray
    bf16: bool = False


def _batch_sizes(rng, N, T, captions):
    """(T,) intp: how many sequences run at each step, longest first. From
    captions: each runs to its last scored word, as the model packs them.
    Else lengths in [0, T], one of length T: uneven steps and (at N > 1)
    sequences of length 0."""
    if captions is not None:
        scored = captions[:, 1:] != 0
        lengths = np.where(scored.any(axis=1), T - np.argmax(scored[:, ::-1], axis=1), 0)
    else:
        lengths = np.sort(rng.integers(0, T + 1, N))[::-1]
        lengths[0] = T
    return np.array([(lengths > t).sum() for t in range(lengths.max())], dtype=np.intp)


def _recurrence(rng, dtype, N, T, H, gates, backward, captions=None):
    bs = _batch_sizes(rng, N, T, captions)
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


def rnn_recurrence_forward(rng, dtype, N, T, H, captions=None, **_):
    return _recurrence(rng, dtype, N, T, H, 1, False, captions)


def rnn_recurrence_backward(rng, dtype, N, T, H, captions=None, **_):
    return _recurrence(rng, dtype, N, T, H, 1, True, captions)


def lstm_recurrence_forward(rng, dtype, N, T, H, captions=None, **_):
    return _recurrence(rng, dtype, N, T, H, 4, False, captions)


def lstm_recurrence_backward(rng, dtype, N, T, H, captions=None, **_):
    return _recurrence(rng, dtype, N, T, H, 4, True, captions)


def recurrent_pack(rng, dtype, H, **_):
    # the LSTM's Wh for the backward product: the largest packing a step makes
    return [_f(rng, dtype, H, 4 * H, scale=1 / np.sqrt(H)), 4, True]


def pack_bf16(rng, dtype, H, V, **_):
    # W_vocab, as decoding packs it
    return [_f(rng, np.float32, H, V)]


def matmul_bf16(rng, dtype, N, T, H, V, **_):
    # the vocabulary projection's shape, (N*T, H) @ (H, V); bf16 products are float32 only
    return [_f(rng, np.float32, N * T, H), _f(rng, np.float32, H, V), _empty(np.float32, N * T, V)]


def embedding_backward(rng, dtype, N, T, V, W, captions=None, **_):
    if captions is None:
        idx = rng.integers(0, min(V, 3), N * T).astype(np.intp)  # many repeats: the scatter-add must sum
    else:
        idx = _time_major(captions, slice(0, -1))
    return [_f(rng, dtype, N * T, W), idx, _empty(dtype, V, W)]


def softmax_loss(rng, dtype, N, T, V, captions=None, **_):
    M = N * T
    x = _f(rng, dtype, M, V, scale=3)
    if captions is None:
        y = rng.integers(0, V, M).astype(np.intp)
        mask = rng.random(M) < 0.7
        mask[: max(1, M // 4)] = False  # fully masked rows
    else:
        y = _time_major(captions, slice(1, None))
        mask = y != 0
    return [x, y, mask, 1.0 / N, _empty(dtype, M, V)]


def argmax_words(rng, dtype, N, V, **_):
    # Small integer scores (exact in every dtype) tie often: the lowest index must win.
    scores = rng.integers(-3, 4, (N, V)).astype(dtype)
    b_vocab = rng.integers(0, 2, V).astype(dtype)
    scores[-1, V // 2] = np.nan  # a NaN wins, as in np.argmax
    return [scores, b_vocab, 2 % V, np.full(N, -7, dtype=np.intp)]


def pack_matrix(rng, dtype, H, V, **_):
    # W_vocab, as decoding packs it
    return [_f(rng, dtype, H, V)]


def greedy_decode(rng, dtype, N, T, H, V=300, W=16, gates=4, **_):
    """An LSTM (gates=4) or vanilla RNN (gates=1) decoding N captions of T words.

    Only a few words can win (the others' b_vocab is -30) and the scores are
    scaled far apart, so float32 and bf16 rounding flip no argmax: the
    captions must be equal, not close. <END> (word 2 % V) is among them, so
    captions end at different steps. A few table rows are filled already
    (known), as the model's precompute_inputs leaves them. V and W default for
    the engine's thread tests, whose shapes give only N, T and H.
    """
    G = gates * H
    start, end, null = 1 % V, 2 % V, 0
    W_embed = _f(rng, dtype, V, W)
    Wx = _f(rng, dtype, W, G, scale=1 / np.sqrt(W))
    b = _f(rng, dtype, G, scale=0.1)
    Wh = Pack(_f(rng, dtype, H, G, scale=1 / np.sqrt(H)), gates, False)
    W_vocab = _f(rng, dtype, H, V, scale=12 / np.sqrt(H))
    b_vocab = np.full(V, -30.0, dtype=dtype)
    b_vocab[rng.choice(V, min(V, 6), replace=False)] = 0
    b_vocab[end] = 0
    known = np.zeros(V, dtype=bool)
    known[rng.choice(V, min(V, 3), replace=False)] = True
    table = np.zeros((V, G), dtype=dtype)
    table[known] = W_embed[known] @ Wx + b
    h0 = _f(rng, dtype, N, H)
    c0 = _f(rng, dtype, N, H) if gates == 4 else None
    return [h0, c0, W_embed, PackM(Wx), b, Wh, PackM(W_vocab), b_vocab, table, known, start, end,
            null, np.full((N, T), -7, dtype=np.int32)]


class PackA(NamedTuple):
    """The attention model's step weights packed by the backend under test
    (``attention_pack``; ``bind`` packs them)."""

    Wh: np.ndarray
    Wz: np.ndarray
    W_dec: np.ndarray
    W_beta: np.ndarray
    transpose: bool
    bf16: bool = False


def _attention_weights(rng, dtype, D, H, A, gates, transpose):
    G = gates * H
    return PackA(_f(rng, dtype, H, G, scale=1 / np.sqrt(H)), _f(rng, dtype, D, G, scale=1 / np.sqrt(D)),
                 _f(rng, dtype, H, A, scale=1 / np.sqrt(H)), _f(rng, dtype, H, D, scale=1 / np.sqrt(H)),
                 transpose)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def attention_step_forward(rng, dtype, N, D, H, L=49, A=None, **_):
    # enc at scale 2 saturates some of the tanh; w_att at scale 1 makes some softmax rows peaked
    A = H if A is None else A
    return [_f(rng, dtype, N, L, D), _f(rng, dtype, N, L, A, scale=2), _f(rng, dtype, N, A + D),
            _f(rng, dtype, D, scale=0.5), _f(rng, dtype, A), _empty(dtype, N, L), _empty(dtype, N, D),
            _empty(dtype, N, D)]


def _attention_state(rng, dtype, P, L, D):
    """alpha (P, L), z (P, D), beta (P, D) as a forward pass leaves them."""
    alpha = _softmax(rng.standard_normal((P, L)) * 2)
    beta = _sigmoid(rng.standard_normal((P, D)))
    return [a.astype(dtype) for a in (alpha, beta * rng.standard_normal((P, D)), beta)]


def attention_step_backward(rng, dtype, N, D, H, L=49, A=None, **_):
    A = H if A is None else A
    alpha, z, beta = _attention_state(rng, dtype, N, L, D)
    return [_f(rng, dtype, N, D), _f(rng, dtype, N, L, scale=0.3), _f(rng, dtype, N, L, D),
            _f(rng, dtype, N, L, A, scale=2), _f(rng, dtype, N, A), _f(rng, dtype, A), alpha, z, beta,
            _empty(dtype, N, A + D), _empty(dtype, N, A), _f(rng, dtype, N, L, A)]


def attention_pack(rng, dtype, D, H, L=49, A=None, **_):
    return list(_attention_weights(rng, dtype, D, H, H if A is None else A, 4, True))[:5]


def _attention_recurrence(rng, dtype, N, T, D, H, L, A, gates, backward, captions):
    A = H if A is None else A
    bs = _batch_sizes(rng, N, T, captions)
    P, G, lstm = int(bs.sum()), gates * H, gates == 4
    Wp = _attention_weights(rng, dtype, D, H, A, gates, backward)
    a, enc, w_att = _f(rng, dtype, N, L, D), _f(rng, dtype, N, L, A), _f(rng, dtype, A)
    c0 = _f(rng, dtype, N, H) if lstm else None
    if not backward:
        return [_f(rng, dtype, P, G, scale=2), _f(rng, dtype, N, H), c0, a, enc, Wp,
                _f(rng, dtype, D, scale=0.5), w_att, bs] + [
                    _empty(dtype, P, G) if lstm else None, _empty(dtype, P, H) if lstm else None,
                    _empty(dtype, P, H), _empty(dtype, P, L), _empty(dtype, P, D),
                    _empty(dtype, P, D), _empty(dtype, P, A)]
    ifog = lstm_cell_backward(rng, dtype, P, H)[2] if lstm else None
    c = _f(rng, dtype, P, H) if lstm else None
    return [_f(rng, dtype, P, H), _f(rng, dtype, P, L, scale=0.3), c0, a, enc, Wp, w_att, ifog, c,
            np.tanh(_f(rng, dtype, P, H)), *_attention_state(rng, dtype, P, L, D),
            _f(rng, dtype, P, A), bs, _empty(dtype, P, G), _empty(dtype, P, A + D),
            _empty(dtype, P, A), _empty(dtype, N, L, A), _empty(dtype, N, H)]


def attention_recurrence_forward(rng, dtype, N, T, D, H, L=49, A=None, captions=None, gates=4, **_):
    return _attention_recurrence(rng, dtype, N, T, D, H, L, A, gates, False, captions)


def attention_recurrence_backward(rng, dtype, N, T, D, H, L=49, A=None, captions=None, gates=4, **_):
    return _attention_recurrence(rng, dtype, N, T, D, H, L, A, gates, True, captions)


def attention_greedy_decode(rng, dtype, N, T, D, H, L=49, A=None, V=300, W=16, gates=4, **_):
    """greedy_decode's case (its words well separated: captions equal, not close) for the
    attention model, with its features and step weights; alpha_out garbage-filled."""
    A = H if A is None else A
    args = greedy_decode(rng, dtype, N, T, H, V=V, W=W, gates=gates)
    h0, c0, W_embed, Wxp, b, _, W_vocabp, b_vocab, table, known, start, end, null, captions = args
    Wp = _attention_weights(rng, dtype, D, H, A, gates, False)
    return [h0, c0, _f(rng, dtype, N, L, D), _f(rng, dtype, N, L, A), W_embed, Wxp, b, Wp,
            _f(rng, dtype, D, scale=0.5), _f(rng, dtype, A), W_vocabp, b_vocab, table, known, start,
            end, null, captions, _empty(dtype, N, T, L)]


# The update rules run on an (H, 4H) array: the LSTM's Wh, the largest recurrent parameter.
def sgd_update(rng, dtype, H, **_):
    return [_f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), 0.1]


def sgd_momentum_update(rng, dtype, H, **_):
    return [_f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), 0.1, 0.9]


def rmsprop_update(rng, dtype, H, **_):
    return [_f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), np.abs(_f(rng, dtype, H, 4 * H)), 0.01, 0.99, 1e-8]


def adam_update(rng, dtype, H, **_):
    return [_f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H),
            np.abs(_f(rng, dtype, H, 4 * H)), 0.005, 0.9, 0.999, 1e-8]


class Case(NamedTuple):
    build: Callable  # (rng, dtype, **dims) -> list of arguments
    written: tuple  # indices of the arguments the kernel writes (from its contract, KERNELS)
    tol32: Optional[float]  # float32 tolerance (see the module docstring); None: backend-specific


def _case(kernel, build, tol32):
    """kernel's case: the indices it writes come from its contract in KERNELS."""
    k = KERNELS[kernel]
    return Case(build, tuple(k.args.index(a) for a in k.writes), tol32)


# kernel -> its case, keyed by kernel name (the order of KERNELS)
CASES = {
    "rnn_cell_forward": _case("rnn_cell_forward", rnn_cell_forward, 1e-6),
    "rnn_cell_backward": _case("rnn_cell_backward", rnn_cell_backward, 1e-6),
    "lstm_cell_forward": _case("lstm_cell_forward", lstm_cell_forward, 2e-6),
    "lstm_cell_backward": _case("lstm_cell_backward", lstm_cell_backward, 2e-6),
    "recurrent_pack": _case("recurrent_pack", recurrent_pack, None),
    "rnn_recurrence_forward": _case("rnn_recurrence_forward", rnn_recurrence_forward, 2e-6),
    "rnn_recurrence_backward": _case("rnn_recurrence_backward", rnn_recurrence_backward, 2e-6),
    "lstm_recurrence_forward": _case("lstm_recurrence_forward", lstm_recurrence_forward, 2e-6),
    "lstm_recurrence_backward": _case("lstm_recurrence_backward", lstm_recurrence_backward, 2e-6),
    "pack_bf16": _case("pack_bf16", pack_bf16, None),  # backend-specific: the packed matmul_bf16 row
    "matmul_bf16": _case("matmul_bf16", matmul_bf16, None),  # the bfloat16 mode: BF16_CASES
    "embedding_backward": _case("embedding_backward", embedding_backward, 2e-6),
    "softmax_loss": _case("softmax_loss", softmax_loss, 2e-6),
    "argmax_words": _case("argmax_words", argmax_words, 0.0),
    "pack_matrix": _case("pack_matrix", pack_matrix, None),  # backend-specific: the greedy_decode row
    "greedy_decode": _case("greedy_decode", greedy_decode, 2e-6),  # captions exact, the table rows 2e-6
    # the attention model: about 10x the float32 reference's worst error over 8 seeds (the step 3.8e-7
    # and 2.7e-7, the recurrence 6e-7 and 2.6e-6, decoding 2.3e-7)
    "attention_step_forward": _case("attention_step_forward", attention_step_forward, 3e-6),
    "attention_step_backward": _case("attention_step_backward", attention_step_backward, 2.5e-6),
    "attention_pack": _case("attention_pack", attention_pack, None),  # backend-specific: the rows below
    "attention_recurrence_forward": _case("attention_recurrence_forward", attention_recurrence_forward, 6e-6),
    "attention_recurrence_backward": _case("attention_recurrence_backward", attention_recurrence_backward, 2.5e-5),
    "attention_greedy_decode": _case("attention_greedy_decode", attention_greedy_decode, 2e-6),  # captions exact
    "sgd_update": _case("sgd_update", sgd_update, 1e-6),
    "sgd_momentum_update": _case("sgd_momentum_update", sgd_momentum_update, 1e-6),
    "rmsprop_update": _case("rmsprop_update", rmsprop_update, 1e-6),
    "adam_update": _case("adam_update", adam_update, 1e-6),
}


def _bf16(build):
    """A recurrence case with its weights packed for the bfloat16 mode (float32)."""
    def bf16_build(rng, dtype, **dims):
        return [a._replace(bf16=True) if isinstance(a, (Pack, PackM, PackA)) else a
                for a in as_dtype(build(rng, np.float64, **dims), np.float32)]
    return bf16_build


def _transposed(build, which):
    """matmul_bf16's case with operand `which` (0: a, 1: b) a transposed view, as the
    gradient products pass them (x.T @ dout, dout @ w.T)."""
    def transposed_build(rng, dtype, **dims):
        args = build(rng, dtype, **dims)
        args[which] = np.ascontiguousarray(args[which].T).T
        return args
    return transposed_build


def _packed_b(build):
    """matmul_bf16's case with b packed once by pack_bf16 (decoding's W_vocab)."""
    def packed_build(rng, dtype, **dims):
        args = build(rng, dtype, **dims)
        args[1] = PackB(args[1])
        return args
    return packed_build


def _rnn(build):
    """A case of greedy_decode or of the attention model for a vanilla RNN."""
    def rnn_build(rng, dtype, **dims):
        return build(rng, dtype, gates=1, **dims)
    return rnn_build


# The attention model's rows for a vanilla RNN (the table's are an LSTM's): tests/test_attention_kernels.py
# runs them as the parity tests run CASES (tolerances: about 10x the float32 reference's worst error over
# 8 seeds, 6.6e-7, 4.2e-7, 2.3e-7), and BF16_CASES in the bfloat16 mode.
RNN_CASES = {
    "attention_recurrence_forward rnn": _case("attention_recurrence_forward", _rnn(attention_recurrence_forward), 6e-6),
    "attention_recurrence_backward rnn": _case("attention_recurrence_backward", _rnn(attention_recurrence_backward), 4e-6),
    "attention_greedy_decode rnn": _case("attention_greedy_decode", _rnn(attention_greedy_decode), 2e-6),
}


def as_dtype(args, dtype):
    """args with every float array (and packed weight) cast to dtype."""
    def cast(a):
        if isinstance(a, Pack):
            return a._replace(Wh=a.Wh.astype(dtype))
        if isinstance(a, PackM):
            return a._replace(b=a.b.astype(dtype))
        if isinstance(a, PackA):
            return a._replace(**{k: getattr(a, k).astype(dtype) for k in ("Wh", "Wz", "W_dec", "W_beta")})
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            return a.astype(dtype)
        return a
    return [cast(a) for a in args]


def bind(kernels, args):
    """The arguments to call a kernel of `kernels` with: copies of the arrays,
    every Pack packed by that backend's recurrent_pack, every PackB and PackM by its pack_bf16 or
    pack_matrix, every PackA by its attention_pack."""
    return [kernels.recurrent_pack(a.Wh.copy(), a.gates, a.transpose, a.bf16) if isinstance(a, Pack)
            else kernels.attention_pack(*(w.copy() for w in a[:4]), a.transpose, a.bf16) if isinstance(a, PackA)
            else kernels.pack_bf16(a.b.copy()) if isinstance(a, PackB) or isinstance(a, PackM) and a.bf16
            else kernels.pack_matrix(a.b.copy()) if isinstance(a, PackM)
            else a.copy() if isinstance(a, np.ndarray) else a for a in args]

# The bfloat16 mode's kernels (float32 only), against the NumPy backend's
# emulation (fastcap._kernels.bf16), not against float64: bf16 rounding is
# the definition. matmul_bf16 differs from the emulation only in the order
# of its float32 sums; a recurrence can also round a hidden state to the
# other side of a bf16 step once its sums differ in the last bit (2**-8
# relative, carried into later steps: seen at H = 512, T = 16, not at SHAPES).
# Tolerances: about 10x the worst error over 8 seeds at SHAPES (matmul 1.5e-7,
# recurrences 3.1e-7, Cython and Numba).
BF16_CASES = {
    "matmul_bf16": _case("matmul_bf16", matmul_bf16, 1.5e-6),
    "matmul_bf16 a.T": _case("matmul_bf16", _transposed(matmul_bf16, 0), 1.5e-6),
    "matmul_bf16 b.T": _case("matmul_bf16", _transposed(matmul_bf16, 1), 1.5e-6),
    "matmul_bf16 packed b": _case("matmul_bf16", _packed_b(matmul_bf16), 1.5e-6),
    "rnn_recurrence_forward": _case("rnn_recurrence_forward", _bf16(rnn_recurrence_forward), 3e-6),
    "rnn_recurrence_backward": _case("rnn_recurrence_backward", _bf16(rnn_recurrence_backward), 3e-6),
    "lstm_recurrence_forward": _case("lstm_recurrence_forward", _bf16(lstm_recurrence_forward), 3e-6),
    "lstm_recurrence_backward": _case("lstm_recurrence_backward", _bf16(lstm_recurrence_backward), 3e-6),
    # captions exact; the table rows as matmul_bf16
    "greedy_decode": _case("greedy_decode", _bf16(greedy_decode), 1.5e-6),
    "greedy_decode rnn": _case("greedy_decode", _bf16(_rnn(greedy_decode)), 1.5e-6),
    # the attention model: about 10x the worst error over 8 seeds (LSTM forward 6e-7, backward 2.1e-6,
    # decoding 4e-7; RNN 5e-7, 5e-6, 3.2e-7), its per-step attention in float32, whose exp and tanh
    # differ by backend in the last bit: enough to round a product's operand to the other bf16 side
    "attention_recurrence_forward": _case("attention_recurrence_forward", _bf16(attention_recurrence_forward), 6e-6),
    "attention_recurrence_backward": _case("attention_recurrence_backward", _bf16(attention_recurrence_backward), 2e-5),
    "attention_greedy_decode": _case("attention_greedy_decode", _bf16(attention_greedy_decode), 4e-6),
    **{name: RNN_CASES[name]._replace(build=_bf16(RNN_CASES[name].build), tol32=tol) for name, tol in (
        ("attention_recurrence_forward rnn", 5e-6), ("attention_recurrence_backward rnn", 5e-5),
        ("attention_greedy_decode rnn", 3e-6))},
}
