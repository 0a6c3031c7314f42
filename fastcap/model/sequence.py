"""Packed sequences: the shared orchestration of the recurrent layers and the model, for every backend.

A batch of sequences is packed time-major (``Packing``, as PyTorch's
PackedSequence): every timestep is one contiguous block of rows, and each
sequence runs only up to its own length. This module runs, once for every
backend, what is not a kernel: the large matrix products in BLAS (input
projections over all steps, dWh, the vocabulary projection and its
gradients), the reshaping, and the row gathers (NumPy indexing, as fast as a
compiled gather loop: the embedding lookup and the per-word projection table).
It calls a backend's kernels (``fastcap._kernels``) for the recurrences and
the scatter-add: those of the ``Compute`` each function is handed (its first
argument, resolved once by the public entry point: ``fastcap.runtime.compute``),
never a global. Its functions that reach BLAS are ``threads.routed``: there, and
only there, OpenBLAS runs on the engine's thread pool (the user's own NumPy
products keep OpenBLAS's threads). Every matrix product goes through ``matmul``
(and the recurrences' packing takes the precision too), so the bfloat16 mode
reaches them all from one place. ``fastcap.rnn_layers`` (the public layers)
and ``fastcap.classifiers.rnn`` (the model) are built on it; inputs are
validated there, not here.

Shapes: N sequences, T steps, P packed rows (the sum of the batch sizes), D
input, H hidden, G = gates * H, V vocabulary, W word vector, U distinct words.
"""
from typing import Callable, NamedTuple

import numpy as np

from ..runtime import threads


class Packing(NamedTuple):
    """Time-major packed layout of a batch of sequences, as in PyTorch's PackedSequence.

    Sequences are sorted longest first, so at step t the ones still running
    are the first batch_sizes[t]; their rows are offsets[t] : offsets[t] +
    batch_sizes[t] of a packed (P, ...) array, P = offsets[-1]. A full batch
    (every sequence T steps) is plain time-major (T*N, ...).
    """

    batch_sizes: tuple  # (T,) non-increasing
    offsets: tuple  # (T + 1,)

    @classmethod
    def of(cls, batch_sizes):
        """The Packing of sequences of which batch_sizes[t] (non-increasing) run at step t."""
        offsets = [0]
        for n in batch_sizes:
            offsets.append(offsets[-1] + int(n))
        return cls(tuple(int(n) for n in batch_sizes), tuple(offsets))


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
    return time_major(x).reshape(T * N, D), Packing.of([N] * T)


def unpack_full(a_packed, core):
    """Packed (T*N, K) of a full batch -> (N, T, K) view."""
    T, N = len(core.packing.batch_sizes), core.h0.shape[0]
    return a_packed.reshape(T, N, a_packed.shape[1]).swapaxes(0, 1)


def _batch_sizes(packing):
    return np.asarray(packing.batch_sizes, dtype=np.intp)  # the kernels' index type


class Captions(NamedTuple):
    """A batch of captions (N, T) packed for a model's loss: the sequences sorted by the step
    after their last scored word, longest first (``order``), each running up to that step."""

    order: np.ndarray  # (N,) the sequences, longest first: row i of the packing is captions[order[i]]
    packing: Packing
    words: np.ndarray  # (P,) intp: the word fed at every packed row (captions[:, :-1])
    targets: np.ndarray  # (P,) intp: the word to predict (captions[:, 1:])
    scored: np.ndarray  # (P,) bool: the target is not <NULL>
    all_scored: bool  # every packed row is scored (unless <NULL> occurs inside a caption)
    rows: np.ndarray  # (P,) intp: the sorted sequence of every packed row (captions[order[rows]])


def pack_captions(captions, null):
    """captions (N, T) intp, T >= 2, <NULL> = null -> Captions. Padding after a caption's last
    scored word is never computed (about 28% of a real batch); the result equals scoring the
    full padded grid."""
    N, T = captions.shape
    words_in, words_out = captions[:, :-1], captions[:, 1:]
    scored = words_out != null  # (N, T-1)
    lengths = np.where(scored.any(axis=1), (T - 1) - np.argmax(scored[:, ::-1], axis=1), 0)
    order = np.argsort(-lengths, kind="stable")
    steps = int(lengths[order[0]]) if N else 0
    running = np.arange(steps)[:, None] < lengths[order][None, :]  # (steps, N) time-major
    scored = scored[order, :steps].T[running]
    return Captions(order, Packing.of(running.sum(axis=1)), words_in[order, :steps].T[running],
                    words_out[order, :steps].T[running], scored, bool(scored.all()),
                    np.broadcast_to(np.arange(N), running.shape)[running])


class WordsLoss(NamedTuple):
    """What the backward pass of ``words_loss`` needs."""

    dscores: np.ndarray  # (S, V) gradient at the scores of the S scored rows
    h_scored: np.ndarray  # (S, H)


def words_loss(compute, h, captions, W_vocab, b_vocab, N, weights=None):
    """The softmax loss of the scored rows of the packed h (P, H) (captions: Captions), summed
    and divided by N (0 for N = 0) -> (loss, WordsLoss); weights (N,) float64: caption n's
    words count weights[n] times (self-critical training's advantages)."""
    h_scored = h if captions.all_scored else h[captions.scored]
    scores = affine(compute, h_scored, W_vocab, b_vocab)  # (S, V)
    dscores = np.empty_like(scores)
    y = captions.targets if captions.all_scored else captions.targets[captions.scored]
    row_weight = None
    if weights is not None:  # each packed row carries its caption's weight
        row_weight = weights[captions.order][captions.rows]
        row_weight = np.ascontiguousarray(row_weight if captions.all_scored else row_weight[captions.scored])
    loss = compute.kernels.softmax_loss(scores, y, np.ones(len(y), bool), 1.0 / N if N else 0.0, row_weight,
                                        dscores)
    return loss, WordsLoss(dscores, h_scored)


def words_loss_backward(compute, cache, captions, W_vocab):
    """WordsLoss -> dh (P, H) (0 on rows not scored), dW_vocab (H, V), db_vocab (V,)."""
    dh_scored, dW_vocab, db_vocab = affine_backward(compute, cache.dscores, cache.h_scored, W_vocab)
    if captions.all_scored:
        return dh_scored, dW_vocab, db_vocab
    dh = np.zeros((len(captions.scored), dh_scored.shape[1]), dtype=dh_scored.dtype)
    dh[captions.scored] = dh_scored
    return dh, dW_vocab, db_vocab


# ----------------------------------------------------------------------------
# the products around the recurrences (BLAS)


def _bf16(compute, *arrays):
    """Whether a product of these arrays runs in bf16: float32 operands in the bfloat16 mode."""
    return compute.bf16 and all(a.dtype == np.float32 for a in arrays)


@threads.routed  # fastcap's own BLAS calls run on the engine's pool
def matmul(compute, a, b, out=None):
    """a (M, K) @ b (K, N) -> (M, N): BLAS, or in the bfloat16 mode (float32 operands) the
    backend's bf16 product (operands rounded to bf16, float32 sums). b may be
    ``pack_operand(compute, b)``, made once for many products."""
    if isinstance(b, Operand):
        b = b.packed if b.packed is not None else b.b
    if not isinstance(b, np.ndarray) or _bf16(compute, a, b):
        if out is None:
            out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
        compute.kernels.matmul_bf16(a, b, out)
        return out
    return np.dot(a, b, out=out)


class Operand(NamedTuple):
    """A right-hand operand of many products (decoding's W_vocab and Wx): b (K, N) itself, and
    in the bfloat16 mode its bf16 packing by the backend that made it (None otherwise)."""

    b: np.ndarray
    packed: object


def pack_operand(compute, b):
    """b (K, N) -> Operand, packed now for the backend and precision of ``compute``."""
    return Operand(b, compute.kernels.pack_bf16(b) if _bf16(compute, b) else None)


def affine(compute, x, w, b):
    """x (M, D) @ w (D, K) (or an Operand) + b (K,) -> (M, K): input projections, the
    vocabulary projection."""
    out = matmul(compute, x, w)
    out += b
    return out


def affine_backward(compute, dout, x, w):
    """dout (M, K) of affine(x, w, b) -> dx (M, D), dw (D, K), db (K,)."""
    return matmul(compute, dout, w.T), matmul(compute, x.T, dout), dout.sum(axis=0)


def pack_recurrent(compute, Wh, gates, transpose):
    """Wh (H, G) packed by the backend for its recurrence kernels, in the precision mode."""
    return compute.kernels.recurrent_pack(Wh, gates, transpose, _bf16(compute, Wh))


def pack_attention(compute, Wh, Wz, W_dec, W_beta, transpose):
    """The attention model's step weights packed by the backend (``attention_pack``), in the
    precision mode: Wh (H, G), Wz (D, G) the context's rows of Wx, W_dec (H, A), W_beta (H, D)."""
    return compute.kernels.attention_pack(Wh, Wz, W_dec, W_beta, transpose, _bf16(compute, Wh))


def previous_hidden(h0, h, packing):
    """h_{t-1} (P, H) of every packed row (h0 at t = 0), from h0 (N, H) and the packed h (P, H):
    the left operand of the recurrent weight gradients, one GEMM over all steps."""
    h_prev = np.empty_like(h)
    for t, (n, start) in enumerate(zip(packing.batch_sizes, packing.offsets)):
        h_prev[start : start + n] = h0[:n] if t == 0 else h[packing.offsets[t - 1] :][:n]
    return h_prev


def recurrent_weight_grad(compute, core, da):
    """dWh (H, G) = sum over steps of h_{t-1}.T @ da_t, from the packed gate gradients da (P, G)."""
    return matmul(compute, previous_hidden(core.h0, core.h, core.packing).T, da)


def embedding_grad(compute, dout, idx, vocab_size):
    """dout (M, W) gradients of the rows W[idx] gathered -> dW (V, W), summed per word (a kernel)."""
    dW = np.empty((vocab_size, dout.shape[1]), dtype=dout.dtype)
    compute.kernels.embedding_backward(dout, idx, dW)
    return dW


def word_projection(compute, idx, W_embed, Wx, b):
    """idx (P,) intp word indices -> xw (P, G) = W_embed[idx] @ Wx + b, WordProjection.

    A batch repeats words (100 captions of COCO-like text: ~1100 positions, ~300
    distinct words), so the projection runs on the distinct words only and is
    gathered per position; its backward sums the gate gradients per word first,
    then runs both gradient GEMMs on U rows instead of P.
    """
    words, inverse = np.unique(idx, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.intp, copy=False)  # the kernels' index type
    x = W_embed[words]  # (U, W)
    xw = affine(compute, x, Wx, b)[inverse]  # (P, G)
    return xw, WordProjection(words, inverse, x, Wx, W_embed.shape[0])


def word_projection_backward(compute, da, proj):
    """da (P, G) gate gradients -> dW_embed (V, W), dWx (W, G), db (G,)."""
    da_words = embedding_grad(compute, da, proj.inverse, proj.words.size)  # (U, G), summed per word
    dx, dWx, db = affine_backward(compute, da_words, proj.x, proj.Wx)
    dW_embed = np.zeros((proj.vocab_size, proj.x.shape[1]), dtype=da.dtype)
    dW_embed[proj.words] = dx
    return dW_embed, dWx, db


# ----------------------------------------------------------------------------
# the recurrences (kernels)


@threads.routed
def rnn_forward_packed(compute, xw, h0, Wh, packing):
    """Packed input projections xw (P, H) = x @ Wx + b, h0 (N, H) -> RNNCore (h: packed (P, H))."""
    h = np.empty_like(xw)
    compute.kernels.rnn_recurrence_forward(xw, h0, pack_recurrent(compute, Wh, 1, False),
                                           _batch_sizes(packing), h)
    return RNNCore(h0, Wh, h, packing)


@threads.routed
def rnn_backward_packed(compute, dh_packed, core):
    """Packed dh (P, H), RNNCore -> packed gate gradients da (P, H), dh0 (N, H), dWh (H, H)."""
    h0, Wh, h, packing = core
    da, dh0 = np.empty_like(h), np.empty_like(h0)
    compute.kernels.rnn_recurrence_backward(dh_packed, h0, pack_recurrent(compute, Wh, 1, True), h,
                                            _batch_sizes(packing), da, dh0)
    return da, dh0, recurrent_weight_grad(compute, core, da)


@threads.routed
def lstm_forward_packed(compute, xw, h0, Wh, packing):
    """Packed input projections xw (P, 4H) = x @ Wx + b, h0 (N, H) -> LSTMCore (c0 = 0)."""
    P, H = xw.shape[0], h0.shape[1]
    ifog = np.empty_like(xw)  # (P, 4H)
    c = np.empty((P, H), dtype=h0.dtype)
    h = np.empty((P, H), dtype=h0.dtype)
    compute.kernels.lstm_recurrence_forward(xw, h0, np.zeros_like(h0),
                                            pack_recurrent(compute, Wh, 4, False),
                                            _batch_sizes(packing), ifog, c, h)
    return LSTMCore(h0, Wh, ifog, c, h, packing)


@threads.routed
def lstm_backward_packed(compute, dh_packed, core):
    """Packed dh (P, H), LSTMCore -> packed gate gradients da (P, 4H), dh0 (N, H), dWh (H, 4H)."""
    h0, Wh, ifog, c, h, packing = core
    da, dh0 = np.empty_like(ifog), np.empty_like(h0)
    compute.kernels.lstm_recurrence_backward(dh_packed, np.zeros_like(h0),
                                             pack_recurrent(compute, Wh, 4, True), ifog, c,
                                             _batch_sizes(packing), da, dh0)
    return da, dh0, recurrent_weight_grad(compute, core, da)


class Cell(NamedTuple):
    """A recurrent cell: its gate count (G = gates * H) and packed forward and backward."""

    gates: int
    forward: Callable  # (compute, xw (P, G), h0 (N, H), Wh (H, G), Packing) -> core
    backward: Callable  # (compute, dh (P, H), core) -> da (P, G), dh0 (N, H), dWh (H, G)


CELLS = {"rnn": Cell(1, rnn_forward_packed, rnn_backward_packed),
         "lstm": Cell(4, lstm_forward_packed, lstm_backward_packed)}  # fmt: skip
"""The cell types of the layers and the model, by name."""
CELL_TYPES = tuple(CELLS)
