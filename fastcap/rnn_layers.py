"""The public layers of the CS231n captioning model: RNN, LSTM, word embedding, temporal affine and loss.

Each public ``<layer>_forward`` validates its inputs, resolves the backend and
precision once (``fastcap.runtime.compute``) and runs the shared orchestration
of ``fastcap.model.sequence`` (the large matrix products in BLAS, the reshaping
and the row gathers, once for every backend), which calls that backend's
kernels (``fastcap._kernels``): the recurrence kernels own
the whole time loop (the Cython backend's compiled engine in float32, a BLAS
loop elsewhere), the others the elementwise and scatter work. Each
``<layer>_backward`` takes the upstream gradient and the cache its forward
returned. Caches (``fastcap.model.caches``) are NamedTuples of plain arrays,
identical for every backend, so a forward under one backend feeds a backward
under another.

Shapes: N batch, T time, D input, H hidden, V vocabulary, W word vector.
Sequence layers work on a packed time-major layout (``fastcap.model.sequence.Packing``): every
timestep is one contiguous block of rows for the kernels, and the model runs
each caption only up to its last scored word. The public outputs are (N, T, ...)
views of the packed arrays.
"""
import functools

import numpy as np

from .model import caches, sequence
from .model.caches import AffineCache, EmbeddingCache, LSTMCache, LSTMStepCache, RNNCache, RNNStepCache
from .runtime.compute import resolve
from .model.validate import Dims, as_float, as_indices, as_mask, like, same_dtype

__all__ = [
    "rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward",
    "lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward",
    "word_embedding_forward", "word_embedding_backward",
    "temporal_affine_forward", "temporal_affine_backward", "temporal_softmax_loss",
]  # fmt: skip


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


def _check_seq_grad(dh, core):
    """dh (N, T, H) for the recurrence of a full batch -> packed (T*N, H)."""
    N, H, T = core.h0.shape[0], core.h0.shape[1], len(core.packing.batch_sizes)
    dh = like("dh", dh, np.empty((N, T, H), core.h.dtype), "h")
    return sequence.time_major(dh).reshape(T * N, H)


def _recurrent_forward(cell_type, cache_type, x, h0, Wx, Wh, b):
    """rnn_forward / lstm_forward: validate, project all steps at once, run the recurrence."""
    cell = sequence.CELLS[cell_type]
    x, h0, Wx, Wh, b = _check_cell_inputs(x, h0, Wx, Wh, b, gates=cell.gates, seq=True)
    compute = resolve()
    x_packed, packing = sequence.full(x)
    core = cell.forward(compute, sequence.affine(compute, x_packed, Wx, b), h0, Wh, packing)
    return sequence.unpack_full(core.h, core), cache_type(x_packed, Wx, core)


def _recurrent_backward(cell_type, dh, cache):
    """rnn_backward / lstm_backward of a validated cache -> dx (N, T, D), dh0, dWx, dWh, db."""
    compute = resolve()
    da, dh0, dWh = sequence.CELLS[cell_type].backward(compute, _check_seq_grad(dh, cache.core), cache.core)
    dx, dWx, db = sequence.affine_backward(compute, da, cache.x, cache.Wx)
    return sequence.unpack_full(dx, cache.core), dh0, dWx, dWh, db


# ----------------------------------------------------------------------------
# vanilla RNN


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One vanilla-RNN step, next_h = tanh(x @ Wx + prev_h @ Wh + b).

    x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,) -> next_h (N, H), cache.
    """
    x, prev_h, Wx, Wh, b = _check_cell_inputs(x, prev_h, Wx, Wh, b, gates=1, seq=False)
    next_h = np.empty_like(prev_h)
    compute = resolve()
    compute.kernels.rnn_cell_forward(sequence.affine(compute, x, Wx, b),
                                     sequence.matmul(compute, prev_h, Wh), next_h)
    return next_h, RNNStepCache(x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    """dnext_h (N, H), cache -> dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,)."""
    cache = caches.rnn_step(cache)
    dnext_h = like("dnext_h", dnext_h, cache.next_h, "next_h")
    da = np.empty_like(dnext_h)
    compute = resolve()
    compute.kernels.rnn_cell_backward(dnext_h, cache.next_h, da)
    mm = functools.partial(sequence.matmul, compute)
    return mm(da, cache.Wx.T), mm(da, cache.Wh.T), mm(cache.x.T, da), mm(cache.prev_h.T, da), da.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    """Vanilla RNN over a sequence.

    x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,) -> h (N, T, H), cache.
    """
    return _recurrent_forward("rnn", RNNCache, x, h0, Wx, Wh, b)


def rnn_backward(dh, cache):
    """dh (N, T, H) upstream gradient of every hidden state, cache ->
    dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,)."""
    return _recurrent_backward("rnn", dh, caches.rnn_seq(cache))


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
    compute = resolve()
    compute.kernels.lstm_cell_forward(sequence.affine(compute, x, Wx, b),
                                      sequence.matmul(compute, prev_h, Wh), prev_c, ifog, next_c, next_h)
    return next_h, next_c, LSTMStepCache(x, prev_h, prev_c, Wx, Wh, ifog, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """dnext_h (N, H), dnext_c (N, H), cache ->
    dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)."""
    cache = caches.lstm_step(cache)
    dnext_h = like("dnext_h", dnext_h, cache.next_c, "next_h")
    dnext_c = like("dnext_c", dnext_c, cache.next_c, "next_c")
    da = np.empty_like(cache.ifog)
    dprev_c = np.empty_like(cache.prev_c)
    compute = resolve()
    compute.kernels.lstm_cell_backward(dnext_h, dnext_c, cache.ifog, cache.prev_c, cache.next_c, da,
                                       dprev_c)
    mm = functools.partial(sequence.matmul, compute)
    dx, dprev_h = mm(da, cache.Wx.T), mm(da, cache.Wh.T)
    return dx, dprev_h, dprev_c, mm(cache.x.T, da), mm(cache.prev_h.T, da), da.sum(axis=0)


def lstm_forward(x, h0, Wx, Wh, b):
    """LSTM over a sequence, starting from c0 = 0.

    x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,) -> h (N, T, H), cache.
    """
    return _recurrent_forward("lstm", LSTMCache, x, h0, Wx, Wh, b)


def lstm_backward(dh, cache):
    """dh (N, T, H), cache -> dx (N, T, D), dh0 (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)."""
    return _recurrent_backward("lstm", dh, caches.lstm_seq(cache))


# ----------------------------------------------------------------------------
# word embedding


def word_embedding_forward(x, W):
    """x (N, T) integer word indices in [0, V), W (V, D) -> out (N, T, D), cache."""
    W = as_float("W", W, 2)
    x = as_indices("x", x, 2, W.shape[0])
    return W[x], EmbeddingCache(x.reshape(-1), W.shape[0], W.dtype)


def word_embedding_backward(dout, cache):
    """dout (N, T, D), cache -> dW (V, D), the rows of dout summed per word."""
    cache = caches.embedding(cache)
    dout = as_float("dout", dout, 3)
    if dout.shape[0] * dout.shape[1] != cache.idx.size:
        raise ValueError(
            f"dout must have shape (N, T, D) with N*T = {cache.idx.size} (the number of words "
            f"embedded), got shape {dout.shape}"
        )
    if dout.dtype != cache.dtype:
        raise TypeError(f"dout must have dtype {cache.dtype} (the dtype of W), got {dout.dtype}")
    return sequence.embedding_grad(resolve(), dout.reshape(cache.idx.size, dout.shape[2]), cache.idx,
                                   cache.vocab_size)


# ----------------------------------------------------------------------------
# temporal affine


def temporal_affine_forward(x, w, b):
    """x (N, T, D), w (D, M), b (M,) -> out (N, T, M) = x @ w + b, cache."""
    x, w, b = as_float("x", x, 3), as_float("w", w, 2), as_float("b", b, 1)
    dims = Dims()
    dims.match("x", x, ("N", "T", "D"))
    dims.match("w", w, ("D", "M"))
    dims.match("b", b, ("M",))
    same_dtype(x=x, w=w, b=b)
    N, T, D = x.shape
    out = sequence.affine(resolve(), x.reshape(N * T, D), w, b).reshape(N, T, w.shape[1])
    return out, AffineCache(x, w, b)


def temporal_affine_backward(dout, cache):
    """dout (N, T, M), cache -> dx (N, T, D), dw (D, M), db (M,)."""
    cache = caches.affine(cache)
    x, w, _ = cache
    N, T, D = x.shape
    dout = like("dout", dout, np.empty((N, T, w.shape[1]), dtype=w.dtype), "out")
    dx, dw, db = sequence.affine_backward(resolve(), dout.reshape(N * T, w.shape[1]),
                                          x.reshape(N * T, D), w)
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
    loss = resolve().kernels.softmax_loss(
        x.reshape(N * T, V), y.reshape(-1), mask.reshape(-1), scale, None, dx.reshape(N * T, V)
    )
    if verbose:
        print("dx_flat: ", (N * T, V))
    return loss, dx
