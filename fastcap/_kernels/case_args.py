"""The kernel case table's argument builders: for each kernel of ``KERNELS``, a function
building its arguments from (rng, dtype, **dims) (see fastcap._kernels.cases, the table), and
the markers of arguments the backend under test prepares itself (``Pack``, ``PackB``,
``PackM``, ``PackA``: weights it packs; ``Table``: a CIDEr-D table it makes; ``Keep``: an
array passed as it is)."""
from typing import NamedTuple

import numpy as np


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
def half_to_float(rng, dtype, N, D, **_):
    """Halves of every kind: normal, subnormal, zeros of both signs, the largest; row N // 2
    holds an infinity (the kernel names the first such row) and the last row a NaN."""
    raw = rng.integers(0, 1 << 16, (N, 3 * D), dtype=np.uint16)
    raw[(raw & 0x7C00) == 0x7C00] &= 0xBFFF  # no infinities or NaNs but those below
    raw[0, :6] = [0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0x3C00]
    if N > 1:
        raw[N // 2, D] = 0xFC00  # -inf
        raw[-1, 0] = 0x7E00  # NaN
    return [raw, _empty(dtype, N, 3 * D)]


def sgd_update(rng, dtype, H, **_):
    return [_f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), 0.1]


def sgd_momentum_update(rng, dtype, H, **_):
    return [_f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), 0.1, 0.9]


def rmsprop_update(rng, dtype, H, **_):
    return [_f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), np.abs(_f(rng, dtype, H, 4 * H)), 0.01, 0.99, 1e-8]


def adam_update(rng, dtype, H, **_):
    return [_f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H), _f(rng, dtype, H, 4 * H),
            np.abs(_f(rng, dtype, H, 4 * H)), 0.005, 0.9, 0.999, 1e-8]
