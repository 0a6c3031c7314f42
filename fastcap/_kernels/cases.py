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
rows). ``SHAPES`` are the test shapes: N = 1, T = 1, H not a multiple of 8,
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
    dict(N=1, T=1, D=3, H=5, V=7, W=4),
    dict(N=4, T=3, D=6, H=13, V=11, W=5),  # H not a multiple of 8
    dict(N=17, T=5, D=10, H=32, V=1004, W=16),  # COCO vocabulary
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


class Keep(NamedTuple):
    """An argument whose dtype the contract fixes (float64 weights, uniforms and scores):
    ``as_dtype`` leaves it as it is, ``bind`` passes a copy of the array."""

    a: np.ndarray


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
    # a weight per row, of either sign, as self-critical training's advantages
    return [x, y, mask, 1.0 / N, Keep(rng.standard_normal(M)), _empty(dtype, M, V)]


def argmax_words(rng, dtype, N, V, **_):
    # Small integer scores (exact in every dtype) tie often: the lowest index must win.
    scores = rng.integers(-3, 4, (N, V)).astype(dtype)
    b_vocab = rng.integers(0, 2, V).astype(dtype)
    scores[-1, V // 2] = np.nan  # a NaN wins, as in np.argmax
    return [scores, b_vocab, 2 % V, np.full(N, -7, dtype=np.intp)]


def sample_words(rng, dtype, N, V, **_):
    """Scores spread over many words, so the draws differ from the argmax; the top of
    [0, 1) as a uniform; a suppressed word (b_vocab -inf: never drawn); a row with a NaN,
    which takes the argmax (the NaN's position)."""
    scores = _f(rng, dtype, N, V, scale=2)
    b_vocab = _f(rng, dtype, V)
    b_vocab[V // 3] = -np.inf
    uniforms = rng.random(N)
    uniforms[0] = np.nextafter(1.0, 0.0)
    scores[-1, V // 2] = np.nan
    return [scores, b_vocab, Keep(uniforms), 2 % V, np.full(N, -7, dtype=np.intp)]


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


def sample_decode(rng, dtype, N, T, H, V=300, W=16, gates=4, **_):
    """greedy_decode's case with W_vocab scaled down, so that the few words that can win
    share the mass and the draws vary, and a uniform per caption and step."""
    args = greedy_decode(rng, dtype, N, T, H, V, W, gates)
    args[6] = PackM(args[6].b / 6)
    return args[:13] + [Keep(rng.random((N, T))), args[13]]


class Table(NamedTuple):
    """cider_d's table: cider_df of these references by the backend under test (``bind``)."""

    tokens: np.ndarray
    starts: np.ndarray
    images: np.ndarray


def _caption_set(texts):
    """Captions (sequences of word ids) -> (tokens (T,) intp, starts (C+1,) intp)."""
    starts = np.zeros(len(texts) + 1, dtype=np.intp)
    starts[1:] = np.cumsum([len(t) for t in texts])
    tokens = np.concatenate([np.asarray(t, dtype=np.intp) for t in texts]) if texts else np.zeros(0, np.intp)
    return tokens, starts


def _cider_corpus(rng, N, captions):
    """N images, each with 1 to 5 references and a candidate: (candidates, references,
    images (N+1,) offsets). Drawn: 0 to 12 words of 9, so n-grams repeat within and across
    captions, and some candidates copy a reference. From the benchmark's captions (their
    words up to <END>): 5 references and a candidate per image, taken in turn."""
    if captions is None:
        def draw():
            return rng.integers(0, 9, rng.integers(0, 13))
        counts = rng.integers(1, 6, N)
        refs = [draw() for _ in range(counts.sum())]
        images = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
        cands = [refs[images[i]] if rng.random() < 0.2 else draw() for i in range(N)]
    else:
        texts = [row[1:][: np.argmax(np.append(row[1:], 2) == 2)] for row in captions]
        refs = [texts[(5 * i + j) % len(texts)] for i in range(N) for j in range(5)]
        images = np.arange(0, 5 * N + 1, 5, dtype=np.intp)
        cands = [texts[(7 * i + 3) % len(texts)] for i in range(N)]
    return cands, refs, images


def cider_df(rng, dtype, N, captions=None, **_):
    _, refs, images = _cider_corpus(rng, N, captions)
    return [*_caption_set(refs), images]


def cider_d(rng, dtype, N, captions=None, **_):
    cands, refs, images = _cider_corpus(rng, N, captions)
    ref_tokens, ref_starts = _caption_set(refs)
    ranges = np.ascontiguousarray(np.stack([images[:-1], images[1:]], axis=1))
    return [Table(ref_tokens, ref_starts, images), *_caption_set(cands), ref_tokens, ref_starts,
            ranges, Keep(np.full(N, np.nan))]


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
    "sample_words": _case("sample_words", sample_words, 0.0),
    "pack_matrix": _case("pack_matrix", pack_matrix, None),  # backend-specific: the greedy_decode row
    "greedy_decode": _case("greedy_decode", greedy_decode, 2e-6),  # captions exact, the table rows 2e-6
    "sample_decode": _case("sample_decode", sample_decode, 2e-6),  # as greedy_decode
    "cider_df": _case("cider_df", cider_df, None),  # backend-specific: the cider_d row
    "cider_d": _case("cider_d", cider_d, 1e-12),  # float64 whatever the model's dtype
    "sgd_update": _case("sgd_update", sgd_update, 1e-6),
    "sgd_momentum_update": _case("sgd_momentum_update", sgd_momentum_update, 1e-6),
    "rmsprop_update": _case("rmsprop_update", rmsprop_update, 1e-6),
    "adam_update": _case("adam_update", adam_update, 1e-6),
}


def _bf16(build):
    """A recurrence case with its weights packed for the bfloat16 mode (float32)."""
    def bf16_build(rng, dtype, **dims):
        return [a._replace(bf16=True) if isinstance(a, (Pack, PackM)) else a
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
    """greedy_decode's case for a vanilla RNN."""
    def rnn_build(rng, dtype, **dims):
        return build(rng, dtype, gates=1, **dims)
    return rnn_build


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
    "sample_decode": _case("sample_decode", _bf16(sample_decode), 1.5e-6),
    "sample_decode rnn": _case("sample_decode", _bf16(_rnn(sample_decode)), 1.5e-6),
}


def as_dtype(args, dtype):
    """args with every float array (and packed weight) cast to dtype."""
    def cast(a):
        if isinstance(a, Pack):
            return a._replace(Wh=a.Wh.astype(dtype))
        if isinstance(a, PackM):
            return a._replace(b=a.b.astype(dtype))
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            return a.astype(dtype)
        return a
    return [cast(a) for a in args]


def bind(kernels, args):
    """The arguments to call a kernel of `kernels` with: copies of the arrays,
    every Pack packed by that backend's recurrent_pack, every PackB and PackM by its pack_bf16 or
    pack_matrix, every Table by its cider_df."""
    return [kernels.recurrent_pack(a.Wh.copy(), a.gates, a.transpose, a.bf16) if isinstance(a, Pack)
            else kernels.pack_bf16(a.b.copy()) if isinstance(a, PackB) or isinstance(a, PackM) and a.bf16
            else kernels.pack_matrix(a.b.copy()) if isinstance(a, PackM)
            else a.a.copy() if isinstance(a, Keep)
            else kernels.cider_df(a.tokens.copy(), a.starts.copy(), a.images.copy()) if isinstance(a, Table)
            else a.copy() if isinstance(a, np.ndarray) else a for a in args]
