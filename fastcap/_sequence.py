"""Packed sequences: the shared orchestration of the recurrent layers and the model, for every backend.

A batch of sequences is packed time-major (``Packing``, as PyTorch's
PackedSequence): every timestep is one contiguous block of rows, and each
sequence runs only up to its own length. This module runs, once for every
backend, what is not a kernel: the large matrix products in BLAS (input
projections over all steps, dWh, the vocabulary projection and its
gradients), the reshaping, and the row gathers (NumPy indexing, as fast as a
compiled gather loop: the embedding lookup and the per-word projection table).
It calls the active backend's kernels (``fastcap._kernels``) for the
recurrences and the scatter-add. Its functions that reach BLAS are
``_threads.routed``: there, and only there, OpenBLAS runs on the engine's
thread pool (the user's own NumPy products keep OpenBLAS's threads). Every matrix product goes through ``matmul``
(and the recurrences' packing takes the precision too), so the bfloat16 mode
(``fastcap._precision``) reaches them all from one place. ``fastcap.rnn_layers`` (the public layers)
and ``fastcap.classifiers.rnn`` (the model) are built on it; inputs are
validated there, not here.

Shapes: N sequences, T steps, P packed rows (the sum of the batch sizes), D
input, H hidden, G = gates * H, V vocabulary, W word vector, U distinct words.
"""
from typing import Callable, NamedTuple

import numpy as np

from . import _backend, _precision, _threads


class Packing(NamedTuple):
    """Time-major packed layout of a batch of sequences, as in PyTorch's PackedSequence.

    Sequences are sorted longest first, so at step t the ones still running
    are the first batch_sizes[t]; their rows are offsets[t] : offsets[t] +
    batch_sizes[t] of a packed (P, ...) array, P = offsets[-1]. A full batch
    (every sequence T steps) is plain time-major (T*N, ...).
    """

    batch_sizes: tuple  # (T,) non-increasing
    offsets: tuple  # (T + 1,)


def packing(batch_sizes):
    """The Packing of sequences of which batch_sizes[t] (non-increasing) run at step t."""
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


class WordProjection(NamedTuple):
    """Word embedding followed by a recurrent layer's input projection (the model's path)."""

    words: np.ndarray  # (U,) the distinct word indices of the batch, ascending
    inverse: np.ndarray  # (P,) intp: position in `words` of every packed word
    x: np.ndarray  # (U, W) embeddings of the distinct words
    Wx: np.ndarray  # (W, G)
    vocab_size: int  # V


# ----------------------------------------------------------------------------
# layout


def time_major(a):
    """(N, T, ...) -> contiguous (T, N, ...)."""
    return np.ascontiguousarray(a.swapaxes(0, 1))


def full(x):
    """Packed view of a full (N, T, D) batch: every sequence runs all T steps -> (T*N, D), Packing."""
    N, T, D = x.shape
    return time_major(x).reshape(T * N, D), packing([N] * T)


def unpack_full(a_packed, core):
    """Packed (T*N, K) of a full batch -> (N, T, K) view."""
    T, N = len(core.packing.batch_sizes), core.h0.shape[0]
    return a_packed.reshape(T, N, a_packed.shape[1]).swapaxes(0, 1)


def _batch_sizes(packing):
    return np.asarray(packing.batch_sizes, dtype=np.intp)  # the kernels' index type


# ----------------------------------------------------------------------------
# the products around the recurrences (BLAS)


def bf16():
    """Whether float32 products made now run in bf16 (the precision mode; fastcap._precision)."""
    return _precision.bf16_products()


@_threads.routed  # fastcap's own BLAS calls run on the engine's pool
def matmul(a, b, out=None):
    """a (M, K) @ b (K, N) -> (M, N): BLAS, or in the bfloat16 mode (float32 operands) the
    active backend's bf16 product (operands rounded to bf16, float32 sums). b may be
    ``pack_matrix(b)``, made once for many products."""
    if isinstance(b, PackedMatrix):
        b = b.packed if b.packed is not None else b.b
    if not isinstance(b, np.ndarray) or (a.dtype == np.float32 and b.dtype == np.float32 and bf16()):
        if out is None:
            out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
        _backend.kernels().matmul_bf16(a, b, out)
        return out
    return np.dot(a, b, out=out)


class PackedMatrix(NamedTuple):
    """A right-hand operand of many products (decoding's W_vocab): b (K, N) itself, and in the
    bfloat16 mode its bf16 packing by the backend that made it (None in float32)."""

    b: np.ndarray
    packed: object


def pack_matrix(b):
    """b (K, N) -> PackedMatrix, packed now for the active backend and precision."""
    if b.dtype == np.float32 and bf16():
        return PackedMatrix(b, _backend.kernels().pack_bf16(b))
    return PackedMatrix(b, None)


def affine(x, w, b):
    """x (M, D) @ w (D, K) (or pack_matrix(w)) + b (K,) -> (M, K): input projections, the
    vocabulary projection."""
    out = matmul(x, w)
    out += b
    return out


def affine_backward(dout, x, w):
    """dout (M, K) of affine(x, w, b) -> dx (M, D), dw (D, K), db (K,)."""
    return matmul(dout, w.T), matmul(x.T, dout), dout.sum(axis=0)


def pack(Wh, gates, transpose):
    """Wh (H, G) packed by the active backend for its recurrence kernels, in the precision mode."""
    return _backend.kernels().recurrent_pack(Wh, gates, transpose, Wh.dtype == np.float32 and bf16())


def recurrent_weight_grad(core, da):
    """dWh (H, G) = sum over steps of h_{t-1}.T @ da_t, from the packed gate gradients da (P, G)."""
    h0, h, packing = core.h0, core.h, core.packing
    # h_{t-1} of every packed row (h0 at t = 0), so dWh is one GEMM over all steps.
    h_prev = np.empty_like(h)
    for t, (n, start) in enumerate(zip(packing.batch_sizes, packing.offsets)):
        h_prev[start : start + n] = h0[:n] if t == 0 else h[packing.offsets[t - 1] :][:n]
    return matmul(h_prev.T, da)


def embedding_grad(dout, idx, vocab_size):
    """dout (M, W) gradients of the rows W[idx] gathered -> dW (V, W), summed per word (a kernel)."""
    dW = np.empty((vocab_size, dout.shape[1]), dtype=dout.dtype)
    _backend.kernels().embedding_backward(dout, idx, dW)
    return dW


def word_projection(idx, W_embed, Wx, b):
    """idx (P,) intp word indices -> xw (P, G) = W_embed[idx] @ Wx + b, WordProjection.

    A batch repeats words (100 captions of COCO-like text: ~1100 positions, ~300
    distinct words), so the projection runs on the distinct words only and is
    gathered per position; its backward sums the gate gradients per word first,
    then runs both gradient GEMMs on U rows instead of P.
    """
    words, inverse = np.unique(idx, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.intp, copy=False)  # the kernels' index type
    x = W_embed[words]  # (U, W)
    xw = affine(x, Wx, b)[inverse]  # (P, G)
    return xw, WordProjection(words, inverse, x, Wx, W_embed.shape[0])


def word_projection_backward(da, proj):
    """da (P, G) gate gradients -> dW_embed (V, W), dWx (W, G), db (G,)."""
    da_words = embedding_grad(da, proj.inverse, proj.words.size)  # (U, G), summed per word
    dx, dWx, db = affine_backward(da_words, proj.x, proj.Wx)
    dW_embed = np.zeros((proj.vocab_size, proj.x.shape[1]), dtype=da.dtype)
    dW_embed[proj.words] = dx
    return dW_embed, dWx, db


# ----------------------------------------------------------------------------
# the recurrences (kernels)


@_threads.routed
def rnn_forward_packed(xw, h0, Wh, packing):
    """Packed input projections xw (P, H) = x @ Wx + b, h0 (N, H) -> RNNCore (h: packed (P, H))."""
    kernels = _backend.kernels()
    h = np.empty_like(xw)
    kernels.rnn_recurrence_forward(xw, h0, pack(Wh, 1, False), _batch_sizes(packing), h)
    return RNNCore(h0, Wh, h, packing)


@_threads.routed
def rnn_backward_packed(dh_packed, core):
    """Packed dh (P, H), RNNCore -> packed gate gradients da (P, H), dh0 (N, H), dWh (H, H)."""
    kernels = _backend.kernels()
    h0, Wh, h, packing = core
    da, dh0 = np.empty_like(h), np.empty_like(h0)
    kernels.rnn_recurrence_backward(dh_packed, h0, pack(Wh, 1, True), h,
                              _batch_sizes(packing), da, dh0)
    return da, dh0, recurrent_weight_grad(core, da)


@_threads.routed
def lstm_forward_packed(xw, h0, Wh, packing):
    """Packed input projections xw (P, 4H) = x @ Wx + b, h0 (N, H) -> LSTMCore (c0 = 0)."""
    kernels = _backend.kernels()
    P, H = xw.shape[0], h0.shape[1]
    ifog = np.empty_like(xw)  # (P, 4H)
    c = np.empty((P, H), dtype=h0.dtype)
    h = np.empty((P, H), dtype=h0.dtype)
    kernels.lstm_recurrence_forward(xw, h0, np.zeros_like(h0), pack(Wh, 4, False),
                              _batch_sizes(packing), ifog, c, h)
    return LSTMCore(h0, Wh, ifog, c, h, packing)


@_threads.routed
def lstm_backward_packed(dh_packed, core):
    """Packed dh (P, H), LSTMCore -> packed gate gradients da (P, 4H), dh0 (N, H), dWh (H, 4H)."""
    kernels = _backend.kernels()
    h0, Wh, ifog, c, h, packing = core
    da, dh0 = np.empty_like(ifog), np.empty_like(h0)
    kernels.lstm_recurrence_backward(dh_packed, np.zeros_like(h0), pack(Wh, 4, True), ifog, c,
                               _batch_sizes(packing), da, dh0)
    return da, dh0, recurrent_weight_grad(core, da)


class Cell(NamedTuple):
    """A recurrent cell: its gate count (G = gates * H) and packed forward and backward."""

    gates: int
    forward: Callable  # (xw (P, G), h0 (N, H), Wh (H, G), Packing) -> core
    backward: Callable  # (dh (P, H), core) -> da (P, G), dh0 (N, H), dWh (H, G)


CELLS = {"rnn": Cell(1, rnn_forward_packed, rnn_backward_packed),
         "lstm": Cell(4, lstm_forward_packed, lstm_backward_packed)}  # fmt: skip
"""The cell types of the layers and the model, by name."""
