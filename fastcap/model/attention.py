"""The attention model's loss and gradients over a packed batch: the orchestration, once for every backend.

The model is fastcap.model.attention_reference's (Show, Attend and Tell's soft attention);
this module runs it as ``fastcap.model.sequence`` runs the CaptioningRNN: the captions packed
by length (padding never computed), the large products as one GEMM per batch through
``sequence.matmul`` (so the bfloat16 mode reaches them), and the backend's kernels for the
recurrence (``attention_recurrence_forward`` / ``_backward``: the whole time loop, the
per-step attention inside it). The GEMMs: h0 = mean_L(a) @ W_proj + b_proj, enc = a @ W_enc
+ b_enc over all N*L cells, the word inputs W_embed[words] @ Wx[:W] + b per distinct word,
the scores of the scored rows; backward, the weight gradients over all steps from the
per-row gradients the recurrence kernel returns: [dWh; dWx[W:]] from [h_{t-1}, z_t] and
the gate gradients, [dW_dec | dW_beta] from h_{t-1} and the gradients at
h_{t-1} @ [W_dec | W_beta], dW_enc = a^T denc.

The attention penalty, attention_reg * sum_n sum_l (1 - sum_{t scored} alpha_t[n, l])**2 / N,
is summed here from the weights the kernel returns, and its gradient enters the kernel's
backward pass as ``dalpha``.

Shapes: N images, L cells, D channels, A attention, H hidden, G = gates * H, W word vector,
V vocabulary, P packed rows.
"""
from typing import NamedTuple

import numpy as np

from ..runtime import threads
from . import sequence


class AttentionCore(NamedTuple):
    """What the backward pass needs of the forward (packed rows; sequences sorted)."""

    a: np.ndarray  # (N, L, D) the features, sorted as the sequences
    pooled: np.ndarray  # (N, D) mean over L
    enc: np.ndarray  # (N, L, A)
    h0: np.ndarray  # (N, H)
    ifog: object  # (P, G) LSTM gates, None for an RNN
    c: object  # (P, H) LSTM cell states, None for an RNN
    h: np.ndarray  # (P, H)
    alpha: np.ndarray  # (P, L)
    z: np.ndarray  # (P, D) the gated context
    beta: np.ndarray  # (P, D)
    hd: np.ndarray  # (P, A) h_{t-1} @ W_dec
    alpha_sum: np.ndarray  # (N, L) sum of alpha over each sequence's scored steps


def _steps(packing):
    """(n, rows) of every step of a Packing."""
    return [(n, slice(o, o + n)) for n, o in zip(packing.batch_sizes, packing.offsets)]


def encode(compute, params, a):
    """features a (N, L, D) -> (pooled (N, D), h0 (N, H), enc (N, L, A)): the products of
    an image, once per image, as GEMMs (W_proj and W_enc arrays or sequence.Operands)."""
    N, L, D = a.shape
    pooled = a.mean(axis=1)
    h0 = sequence.affine(compute, pooled, params["W_proj"], params["b_proj"])
    enc = sequence.affine(compute, a.reshape(N * L, D), params["W_enc"], params["b_enc"])
    return pooled, h0, enc.reshape(N, L, enc.shape[1])


def split_wx(params):
    """(Wx[:W] the word vector's rows, Wx[W:] the context's): C-contiguous views."""
    W = params["W_embed"].shape[1]
    return params["Wx"][:W], params["Wx"][W:]


@threads.routed
def forward(compute, params, lstm, a, captions):
    """a (N, L, D) sorted as captions (sequence.Captions) -> AttentionCore, the word projection."""
    N, L, D = a.shape
    H, A = params["Wh"].shape[0], params["W_enc"].shape[1]
    P, dtype = len(captions.words), a.dtype
    pooled, h0, enc = encode(compute, params, a)
    Wx_words, Wz = split_wx(params)
    xw, projection = sequence.word_projection(compute, captions.words, params["W_embed"], Wx_words,
                                              params["b"])  # (P, G)
    Wp = sequence.pack_attention(compute, params["Wh"], Wz, params["W_dec"], params["W_beta"], False)
    ifog, c = (np.empty_like(xw), np.empty((P, H), dtype)) if lstm else (None, None)
    h, alpha, z, beta, hd = (np.empty((P, k), dtype) for k in (H, L, D, D, A))
    compute.kernels.attention_recurrence_forward(
        xw, h0, np.zeros_like(h0) if lstm else None, a, enc, Wp, params["b_beta"], params["w_att"],
        np.asarray(captions.packing.batch_sizes, dtype=np.intp), ifog, c, h, alpha, z, beta, hd)
    alpha_sum = np.zeros((N, L), dtype)
    for n, rows in _steps(captions.packing):  # in time order, as the reference sums
        alpha_sum[:n] += alpha[rows] * captions.scored[rows, None]
    return AttentionCore(a, pooled, enc, h0, ifog, c, h, alpha, z, beta, hd, alpha_sum), projection


def penalty(core, attention_reg, N):
    """The attention penalty's share of the loss (a float)."""
    if not N:
        return 0.0
    return attention_reg * float(np.sum((1 - core.alpha_sum.astype(np.float64)) ** 2)) / N


@threads.routed
def backward(compute, params, lstm, core, captions, projection, dh, attention_reg):
    """dh (P, H) the gradient at every h_t from the scores -> the gradients of every parameter
    the recurrence reaches (all but W_vocab and b_vocab)."""
    N, L, D = core.a.shape
    H, A = params["Wh"].shape[0], params["W_enc"].shape[1]
    P, G = dh.shape[0], params["Wh"].shape[1]
    dtype = dh.dtype
    dalpha = np.empty((P, L), dtype)  # the penalty's gradient at every alpha_t
    scale = 2 * attention_reg / N if N else 0.0
    for n, rows in _steps(captions.packing):
        np.multiply(scale * (core.alpha_sum[:n] - 1), captions.scored[rows, None], out=dalpha[rows])
    _, Wz = split_wx(params)
    WTp = sequence.pack_attention(compute, params["Wh"], Wz, params["W_dec"], params["W_beta"], True)
    da, datt, dwatt = np.empty((P, G), dtype), np.empty((P, A + D), dtype), np.empty((P, A), dtype)
    denc, dh0 = np.empty_like(core.enc), np.empty_like(core.h0)
    compute.kernels.attention_recurrence_backward(
        dh, dalpha, np.zeros_like(core.h0) if lstm else None, core.a, core.enc, WTp, params["w_att"],
        core.ifog, core.c, core.h, core.alpha, core.z, core.beta, core.hd,
        np.asarray(captions.packing.batch_sizes, dtype=np.intp), da, datt, dwatt, denc, dh0)

    grads = {}
    h_prev = sequence.previous_hidden(core.h0, core.h, captions.packing)
    grads["Wh"] = sequence.matmul(compute, h_prev.T, da)
    grads["W_embed"], dWx_words, grads["b"] = sequence.word_projection_backward(compute, da, projection)
    grads["Wx"] = np.concatenate([dWx_words, sequence.matmul(compute, core.z.T, da)])
    dWatt = sequence.matmul(compute, h_prev.T, datt)  # (H, A + D): [dW_dec | dW_beta]
    grads["W_dec"], grads["W_beta"] = np.ascontiguousarray(dWatt[:, :A]), np.ascontiguousarray(dWatt[:, A:])
    grads["b_beta"] = datt[:, A:].sum(axis=0)
    grads["w_att"] = dwatt.sum(axis=0)
    grads["W_enc"] = sequence.matmul(compute, core.a.reshape(N * L, D).T, denc.reshape(N * L, A))
    grads["b_enc"] = denc.reshape(N * L, A).sum(axis=0)
    grads["W_proj"] = sequence.matmul(compute, core.pooled.T, dh0)
    grads["b_proj"] = dh0.sum(axis=0)
    return grads
