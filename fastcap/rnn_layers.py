"""Recurrent, embedding, affine and loss layers of the CS231n captioning model.

Each public ``<layer>_forward`` validates its inputs, runs the shared
orchestration below (the large matrix products in BLAS: input projections
over all steps, dWh, the affine layers) and calls the active backend's
kernels (``fastcap._kernels``): the recurrence kernels own the whole time
loop (the Cython backend's compiled engine in float32, a BLAS loop
elsewhere), the others the elementwise work. Each ``<layer>_backward`` takes the upstream gradient and the
cache its forward returned. Caches are NamedTuples of plain arrays, identical
for every backend, so a forward under one backend feeds a backward under
another.

Shapes: N batch, T time, D input, H hidden, V vocabulary, W word vector.
Sequence layers work on a packed time-major layout (``Packing``): every
timestep is one contiguous block of rows for the kernels, and the model runs
each caption only up to its last scored word. The public outputs are (N, T, ...)
views of the packed arrays.
"""
from typing import NamedTuple

import numpy as np

from . import _backend, _validate_cache
from ._kernels.blas_recurrence import steps
from ._validate import Dims, as_float, as_indices, as_mask, like, same_dtype

__all__ = [
    "rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward",
    "lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward",
    "word_embedding_forward", "word_embedding_backward",
    "temporal_affine_forward", "temporal_affine_backward", "temporal_softmax_loss",
]  # fmt: skip


class RNNStepCache(NamedTuple):
    x: np.ndarray  # (N, D)
    prev_h: np.ndarray  # (N, H)
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)
    next_h: np.ndarray  # (N, H)


class LSTMStepCache(NamedTuple):
    x: np.ndarray  # (N, D)
    prev_h: np.ndarray  # (N, H)
    prev_c: np.ndarray  # (N, H)
    Wx: np.ndarray  # (D, 4H)
    Wh: np.ndarray  # (H, 4H)
    ifog: np.ndarray  # (N, 4H) activated gates
    next_c: np.ndarray  # (N, H)


class Packing(NamedTuple):
    """Time-major packed layout of a batch of sequences, as in PyTorch's PackedSequence.

    Sequences are sorted longest first, so at step t the ones still running
    are the first batch_sizes[t]; their rows are offsets[t] : offsets[t] +
    batch_sizes[t] of a packed (P, ...) array, P = offsets[-1]. A full batch
    (every sequence T steps) is plain time-major (T*N, ...).
    """

    batch_sizes: tuple  # (T,) non-increasing
    offsets: tuple  # (T + 1,)


def _packing(batch_sizes):
    offsets = [0]
    for n in batch_sizes:
        offsets.append(offsets[-1] + int(n))
    return Packing(tuple(int(n) for n in batch_sizes), tuple(offsets))


class RNNCore(NamedTuple):
    """What the backward pass of a packed vanilla-RNN recurrence needs."""

    h0: np.ndarray  # (N, H)
    Wh: np.ndarray  # (H, H)
    h: np.ndarray  # (P, H) packed hidden states
    packing: Packing


class LSTMCore(NamedTuple):
    """What the backward pass of a packed LSTM recurrence needs (c0 = 0)."""

    h0: np.ndarray  # (N, H)
    Wh: np.ndarray  # (H, 4H)
    ifog: np.ndarray  # (P, 4H) activated gates
    c: np.ndarray  # (P, H) cell states
    h: np.ndarray  # (P, H) hidden states
    packing: Packing


class RNNCache(NamedTuple):
    x: np.ndarray  # (P, D) packed inputs
    Wx: np.ndarray  # (D, H)
    core: RNNCore


class LSTMCache(NamedTuple):
    x: np.ndarray  # (P, D) packed inputs
    Wx: np.ndarray  # (D, 4H)
    core: LSTMCore


class WordProjection(NamedTuple):
    """Word embedding followed by a recurrent layer's input projection (the model's path)."""

    words: np.ndarray  # (U,) the distinct word indices of the batch, ascending
    inverse: np.ndarray  # (P,) intp: position in `words` of every packed word
    x: np.ndarray  # (U, W) embeddings of the distinct words
    Wx: np.ndarray  # (W, G)
    vocab_size: int  # V


class EmbeddingCache(NamedTuple):
    idx: np.ndarray  # (N*T,) intp word indices, flattened
    vocab_size: int  # V
    dtype: np.dtype  # dtype of W


class AffineCache(NamedTuple):
    x: np.ndarray  # (N, T, D)
    w: np.ndarray  # (D, M)
    b: np.ndarray  # (M,)


def _check_cell_inputs(x, prev_h, Wx, Wh, b, gates, seq):
    """Validate (x, h, Wx, Wh, b) of an RNN (gates=1) or LSTM (gates=4) layer."""
    x = as_float("x", x, 3 if seq else 2)
    prev_h = as_float("h0" if seq else "prev_h", prev_h, 2)
    Wx, Wh, b = as_float("Wx", Wx, 2), as_float("Wh", Wh, 2), as_float("b", b, 1)
    dims = Dims()
    dims.match("x", x, ("N", "T", "D") if seq else ("N", "D"))
    if Wh.shape[1] == gates * Wh.shape[0] == Wx.shape[1] == b.shape[0]:
        # The weights agree with each other: a hidden state of another width is what is wrong.
        dims.match("Wh", Wh, ("H", "G"))
    dims.match("h0" if seq else "prev_h", prev_h, ("N", "H"))
    G = gates * dims["H"]
    dims.match("Wx", Wx, ("D", G))
    dims.match("Wh", Wh, ("H", G))
    dims.match("b", b, (G,))
    same_dtype(x=x, **{"h0" if seq else "prev_h": prev_h}, Wx=Wx, Wh=Wh, b=b)
    return x, prev_h, Wx, Wh, b


def _time_major(a):
    # (N, T, ...) -> contiguous (T, N, ...)
    return np.ascontiguousarray(a.swapaxes(0, 1))


def _input_projection(x, Wx, b):
    # One GEMM for all timesteps: (P, D) @ (D, G) + b -> (P, G)
    xw = np.dot(x, Wx)
    xw += b
    return xw


def _batch_sizes(packing):
    return np.asarray(packing.batch_sizes, dtype=np.intp)


def _recurrent_weight_grad(core, da):
    """dWh (H, G) = sum over steps of h_{t-1}.T @ da_t, from the packed gate gradients da (P, G)."""
    h0, h, packing = core.h0, core.h, core.packing
    # h_{t-1} of every packed row (h0 at t = 0), so dWh is one GEMM over all steps.
    h_prev = np.empty_like(h)
    for t, n, rows in steps(packing.batch_sizes):
        h_prev[rows] = h0[:n] if t == 0 else h[packing.offsets[t - 1] :][:n]
    return h_prev.T @ da


def _input_grads(da, x, Wx):
    """dx (P, D), dWx (D, G), db (G,) of the input projection x @ Wx + b."""
    return da @ Wx.T, x.T @ da, da.sum(axis=0)


def _word_projection(idx, W_embed, Wx, b):
    """idx (P,) intp word indices -> xw (P, G) = W_embed[idx] @ Wx + b, WordProjection.

    A batch repeats words (100 captions of COCO-like text: ~1100 positions, ~300
    distinct words), so the projection runs on the distinct words only and is
    gathered per position; its backward sums the gate gradients per word first,
    then runs both gradient GEMMs on U rows instead of P.
    """
    words, inverse = np.unique(idx, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.intp, copy=False)  # the kernels' index type
    x = _embed(words, W_embed)  # (U, W)
    xw = _embed(inverse, _input_projection(x, Wx, b))  # (P, G)
    return xw, WordProjection(words, inverse, x, Wx, W_embed.shape[0])


def _word_projection_backward(da, proj):
    """da (P, G) gate gradients -> dW_embed (V, W), dWx (W, G), db (G,)."""
    da_words = _embed_backward(da, proj.inverse, proj.words.size)  # (U, G), summed per word
    dW_embed = np.zeros((proj.vocab_size, proj.x.shape[1]), dtype=da.dtype)
    dW_embed[proj.words] = da_words @ proj.Wx.T
    return dW_embed, proj.x.T @ da_words, da_words.sum(axis=0)


def _full(x):
    """Packed view of a full (N, T, D) batch: every sequence runs all T steps."""
    N, T, D = x.shape
    return _time_major(x).reshape(T * N, D), _packing([N] * T)


def _check_seq_grad(dh, core):
    """dh (N, T, H) for the recurrence of a full batch -> packed (T*N, H)."""
    N, H, T = core.h0.shape[0], core.h0.shape[1], len(core.packing.batch_sizes)
    dh = like("dh", dh, np.empty((N, T, H), core.h.dtype), "h")
    return _time_major(dh).reshape(T * N, H)


def _unpack_full(a_packed, core):
    # packed (T*N, K) of a full batch -> (N, T, K) view
    T, N = len(core.packing.batch_sizes), core.h0.shape[0]
    return a_packed.reshape(T, N, a_packed.shape[1]).swapaxes(0, 1)


# ----------------------------------------------------------------------------
# vanilla RNN


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One vanilla-RNN step, next_h = tanh(x @ Wx + prev_h @ Wh + b).

    x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,) -> next_h (N, H), cache.
    """
    x, prev_h, Wx, Wh, b = _check_cell_inputs(x, prev_h, Wx, Wh, b, gates=1, seq=False)
    next_h = np.empty_like(prev_h)
    _backend.kernels().rnn_cell_forward(x @ Wx + b, prev_h @ Wh, next_h)
    return next_h, RNNStepCache(x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    """dnext_h (N, H), cache -> dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,)."""
    cache = _validate_cache.rnn_step(cache)
    dnext_h = like("dnext_h", dnext_h, cache.next_h, "next_h")
    da = np.empty_like(dnext_h)
    _backend.kernels().rnn_cell_backward(dnext_h, cache.next_h, da)
    return da @ cache.Wx.T, da @ cache.Wh.T, cache.x.T @ da, cache.prev_h.T @ da, da.sum(axis=0)


def _rnn_forward_packed(xw, h0, Wh, packing):
    """Core: packed input projections xw (P, H) = x @ Wx + b, h0 (N, H) -> RNNCore (h: packed (P, H))."""
    K = _backend.kernels()
    h = np.empty_like(xw)
    K.rnn_recurrence_forward(xw, h0, K.recurrent_pack(Wh, 1, False), _batch_sizes(packing), h)
    return RNNCore(h0, Wh, h, packing)


def _rnn_backward_packed(dh_packed, core):
    """Core: packed dh (P, H), RNNCore -> packed gate gradients da (P, H), dh0 (N, H), dWh (H, H)."""
    K = _backend.kernels()
    h0, Wh, h, packing = core
    da, dh0 = np.empty_like(h), np.empty_like(h0)
    K.rnn_recurrence_backward(dh_packed, h0, K.recurrent_pack(Wh, 1, True), h,
                              _batch_sizes(packing), da, dh0)
    return da, dh0, _recurrent_weight_grad(core, da)


def rnn_forward(x, h0, Wx, Wh, b):
    """Vanilla RNN over a sequence.

    x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,) -> h (N, T, H), cache.
    """
    x, h0, Wx, Wh, b = _check_cell_inputs(x, h0, Wx, Wh, b, gates=1, seq=True)
    x_packed, packing = _full(x)
    core = _rnn_forward_packed(_input_projection(x_packed, Wx, b), h0, Wh, packing)
    return _unpack_full(core.h, core), RNNCache(x_packed, Wx, core)


def rnn_backward(dh, cache):
    """dh (N, T, H) upstream gradient of every hidden state, cache ->
    dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,)."""
    cache = _validate_cache.rnn_seq(cache)
    da, dh0, dWh = _rnn_backward_packed(_check_seq_grad(dh, cache.core), cache.core)
    dx, dWx, db = _input_grads(da, cache.x, cache.Wx)
    return _unpack_full(dx, cache.core), dh0, dWx, dWh, db


# ----------------------------------------------------------------------------
# LSTM


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step with gates packed i, f, o, g.

    x (N, D), prev_h (N, H), prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,)
    -> next_h (N, H), next_c (N, H), cache.
    """
    x, prev_h, Wx, Wh, b = _check_cell_inputs(x, prev_h, Wx, Wh, b, gates=4, seq=False)
    prev_c = as_float("prev_c", prev_c, 2)
    if prev_c.shape != prev_h.shape:
        raise ValueError(f"prev_c must have shape {prev_h.shape} (the shape of prev_h), got {prev_c.shape}")
    same_dtype(prev_h=prev_h, prev_c=prev_c)
    N, H = prev_h.shape
    ifog = np.empty((N, 4 * H), dtype=x.dtype)
    next_c, next_h = np.empty_like(prev_c), np.empty_like(prev_h)
    _backend.kernels().lstm_cell_forward(x @ Wx + b, prev_h @ Wh, prev_c, ifog, next_c, next_h)
    return next_h, next_c, LSTMStepCache(x, prev_h, prev_c, Wx, Wh, ifog, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """dnext_h (N, H), dnext_c (N, H), cache ->
    dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)."""
    cache = _validate_cache.lstm_step(cache)
    dnext_h = like("dnext_h", dnext_h, cache.next_c, "next_h")
    dnext_c = like("dnext_c", dnext_c, cache.next_c, "next_c")
    da = np.empty_like(cache.ifog)
    dprev_c = np.empty_like(cache.prev_c)
    _backend.kernels().lstm_cell_backward(
        dnext_h, dnext_c, cache.ifog, cache.prev_c, cache.next_c, da, dprev_c
    )
    dx, dprev_h = da @ cache.Wx.T, da @ cache.Wh.T
    return dx, dprev_h, dprev_c, cache.x.T @ da, cache.prev_h.T @ da, da.sum(axis=0)


def _lstm_forward_packed(xw, h0, Wh, packing, c0=None):
    """Core: packed input projections xw (P, 4H) = x @ Wx + b, h0 (N, H), c0 (N, H; default 0) -> LSTMCore."""
    K = _backend.kernels()
    P, H = xw.shape[0], h0.shape[1]
    ifog = np.empty_like(xw)  # (P, 4H)
    c = np.empty((P, H), dtype=h0.dtype)
    h = np.empty((P, H), dtype=h0.dtype)
    c0 = np.zeros_like(h0) if c0 is None else c0
    K.lstm_recurrence_forward(xw, h0, c0, K.recurrent_pack(Wh, 4, False), _batch_sizes(packing), ifog, c, h)
    return LSTMCore(h0, Wh, ifog, c, h, packing)


def _lstm_backward_packed(dh_packed, core):
    """Core: packed dh (P, H), LSTMCore -> packed gate gradients da (P, 4H), dh0 (N, H), dWh (H, 4H)."""
    K = _backend.kernels()
    h0, Wh, ifog, c, h, packing = core
    da, dh0 = np.empty_like(ifog), np.empty_like(h0)
    K.lstm_recurrence_backward(dh_packed, np.zeros_like(h0), K.recurrent_pack(Wh, 4, True), ifog, c,
                               _batch_sizes(packing), da, dh0)
    return da, dh0, _recurrent_weight_grad(core, da)


def lstm_forward(x, h0, Wx, Wh, b):
    """LSTM over a sequence, starting from c0 = 0.

    x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,) -> h (N, T, H), cache.
    """
    x, h0, Wx, Wh, b = _check_cell_inputs(x, h0, Wx, Wh, b, gates=4, seq=True)
    x_packed, packing = _full(x)
    core = _lstm_forward_packed(_input_projection(x_packed, Wx, b), h0, Wh, packing)
    return _unpack_full(core.h, core), LSTMCache(x_packed, Wx, core)


def lstm_backward(dh, cache):
    """dh (N, T, H), cache -> dx (N, T, D), dh0 (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)."""
    cache = _validate_cache.lstm_seq(cache)
    da, dh0, dWh = _lstm_backward_packed(_check_seq_grad(dh, cache.core), cache.core)
    dx, dWx, db = _input_grads(da, cache.x, cache.Wx)
    return _unpack_full(dx, cache.core), dh0, dWx, dWh, db


# ----------------------------------------------------------------------------
# word embedding


def _embed(idx, W):
    # idx: any-shape intp, W (V, W) -> out idx.shape + (W,)
    out = np.empty((idx.size, W.shape[1]), dtype=W.dtype)
    _backend.kernels().embedding_forward(idx.reshape(-1), W, out)
    return out.reshape(idx.shape + (W.shape[1],))


def _embed_backward(dout2d, idx, vocab_size):
    dW = np.empty((vocab_size, dout2d.shape[1]), dtype=dout2d.dtype)
    _backend.kernels().embedding_backward(dout2d, idx, dW)
    return dW


def word_embedding_forward(x, W):
    """x (N, T) integer word indices in [0, V), W (V, D) -> out (N, T, D), cache."""
    W = as_float("W", W, 2)
    x = as_indices("x", x, 2, W.shape[0])
    return _embed(x, W), EmbeddingCache(x.reshape(-1), W.shape[0], W.dtype)


def word_embedding_backward(dout, cache):
    """dout (N, T, D), cache -> dW (V, D), the rows of dout summed per word."""
    cache = _validate_cache.embedding(cache)
    dout = as_float("dout", dout, 3)
    if dout.shape[0] * dout.shape[1] != cache.idx.size:
        raise ValueError(
            f"dout must have shape (N, T, D) with N*T = {cache.idx.size} (the number of words "
            f"embedded), got shape {dout.shape}"
        )
    if dout.dtype != cache.dtype:
        raise TypeError(f"dout must have dtype {cache.dtype} (the dtype of W), got {dout.dtype}")
    return _embed_backward(dout.reshape(cache.idx.size, dout.shape[2]), cache.idx, cache.vocab_size)


# ----------------------------------------------------------------------------
# temporal affine


def _affine(x2d, w, b):
    out = np.empty((x2d.shape[0], w.shape[1]), dtype=w.dtype)
    _backend.kernels().affine_forward(x2d, w, b, out)
    return out


def _affine_backward(dout2d, x2d, w):
    dx = np.empty_like(x2d)
    dw, db = np.empty_like(w), np.empty(w.shape[1], dtype=w.dtype)
    _backend.kernels().affine_backward(dout2d, x2d, w, dx, dw, db)
    return dx, dw, db


def temporal_affine_forward(x, w, b):
    """x (N, T, D), w (D, M), b (M,) -> out (N, T, M) = x @ w + b, cache."""
    x, w, b = as_float("x", x, 3), as_float("w", w, 2), as_float("b", b, 1)
    dims = Dims()
    dims.match("x", x, ("N", "T", "D"))
    dims.match("w", w, ("D", "M"))
    dims.match("b", b, ("M",))
    same_dtype(x=x, w=w, b=b)
    N, T, D = x.shape
    out = _affine(x.reshape(N * T, D), w, b).reshape(N, T, w.shape[1])
    return out, AffineCache(x, w, b)


def temporal_affine_backward(dout, cache):
    """dout (N, T, M), cache -> dx (N, T, D), dw (D, M), db (M,)."""
    cache = _validate_cache.affine(cache)
    x, w, _ = cache
    N, T, D = x.shape
    dout = like("dout", dout, np.empty((N, T, w.shape[1]), dtype=w.dtype), "out")
    dx, dw, db = _affine_backward(dout.reshape(N * T, w.shape[1]), x.reshape(N * T, D), w)
    return dx.reshape(N, T, D), dw, db


# ----------------------------------------------------------------------------
# masked temporal softmax loss


def temporal_softmax_loss(x, y, mask, verbose=False):
    """Softmax cross-entropy summed over unmasked timesteps, averaged over N.

    x (N, T, V) scores, y (N, T) integer targets in [0, V), mask (N, T) bool
    (False where the target is padding) -> loss (float), dx (N, T, V).
    An empty batch (N = 0) has loss 0.0.
    """
    x = as_float("x", x, 3)
    N, T, V = x.shape
    y = as_indices("y", y, 2, V)
    if y.shape != (N, T):
        raise ValueError(f"y must have shape (N, T) = {(N, T)} (from x.shape), got shape {y.shape}")
    mask = as_mask("mask", mask, (N, T))
    dx = np.empty_like(x)
    scale = 1.0 / N if N else 0.0
    loss = _backend.kernels().softmax_loss(
        x.reshape(N * T, V), y.reshape(-1), mask.reshape(-1), scale, dx.reshape(N * T, V)
    )
    if verbose:
        print("dx_flat: ", (N * T, V))
    return loss, dx
