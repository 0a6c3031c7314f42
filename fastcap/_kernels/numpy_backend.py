"""NumPy reference backend: the semantic ground truth for every other backend.

Vectorized, allocation-light NumPy, written to be read. Every kernel follows
the contract in ``fastcap/_kernels/__init__.py``; compiled backends are tested
against these functions.
"""
import sys

import numpy as np

from . import attention_recurrence, blas_recurrence, greedy
from .bf16 import matmul_bf16, pack_bf16  # noqa: F401 (kernels: the bf16 mode's products, emulated)


def _sigmoid(a, out):
    # Stable for any sign of a: exp only ever sees -|a|.
    e = np.exp(-np.abs(a))
    np.divide(np.where(a >= 0, 1.0, e), 1.0 + e, out=out)
    return out


# ----------------------------------------------------------------------------
# recurrent cells


def rnn_cell_forward(xw, hw, h_out):
    # xw, hw, h_out: (N, H)
    np.add(xw, hw, out=h_out)
    np.tanh(h_out, out=h_out)


def rnn_cell_backward(dh, h, da_out):
    # dh, h, da_out: (N, H); d tanh(a) / da = 1 - tanh(a)**2
    np.multiply(h, h, out=da_out)
    np.subtract(1.0, da_out, out=da_out)
    da_out *= dh


def lstm_cell_forward(xw, hw, c_prev, ifog_out, c_out, h_out):
    # xw, hw, ifog_out: (N, 4H); c_prev, c_out, h_out: (N, H)
    H = c_prev.shape[1]
    np.add(xw, hw, out=ifog_out)
    _sigmoid(ifog_out[:, : 3 * H], out=ifog_out[:, : 3 * H])
    np.tanh(ifog_out[:, 3 * H :], out=ifog_out[:, 3 * H :])
    i, f, o, g = (ifog_out[:, k * H : (k + 1) * H] for k in range(4))
    np.multiply(f, c_prev, out=c_out)
    c_out += i * g
    np.tanh(c_out, out=h_out)
    h_out *= o


def lstm_cell_backward(dh, dc, ifog, c_prev, c, da_out, dc_prev_out):
    # dh, dc, c_prev, c, dc_prev_out: (N, H); ifog, da_out: (N, 4H)
    H = c.shape[1]
    i, f, o, g = (ifog[:, k * H : (k + 1) * H] for k in range(4))
    tanh_c = np.tanh(c)
    dc_total = dc + dh * o * (1.0 - tanh_c * tanh_c)
    np.multiply(dc_total, f, out=dc_prev_out)
    da_out[:, 0 * H : 1 * H] = dc_total * g * i * (1.0 - i)
    da_out[:, 1 * H : 2 * H] = dc_total * c_prev * f * (1.0 - f)
    da_out[:, 2 * H : 3 * H] = dh * tanh_c * o * (1.0 - o)
    da_out[:, 3 * H : 4 * H] = dc_total * i * (1.0 - g * g)


# ----------------------------------------------------------------------------
# the attention model's step (fastcap._kernels.KERNELS)


def attention_step_forward(a, enc, hab, b_beta, w_att, alpha_out, z_out, beta_out):
    # a (N, L, D), enc (N, L, A), hab (N, A+D) = h @ [W_dec | W_beta]; alpha_out (N, L), z_out, beta_out (N, D)
    A = enc.shape[2]
    e = np.tanh(enc + hab[:, None, :A]) @ w_att  # (N, L) the scores
    e -= e.max(axis=1, keepdims=True)
    np.exp(e, out=alpha_out)
    alpha_out /= alpha_out.sum(axis=1, keepdims=True)
    _sigmoid(hab[:, A:] + b_beta, out=beta_out)
    np.multiply(beta_out, np.einsum("nl,nld->nd", alpha_out, a), out=z_out)  # the gated context


def attention_step_backward(dz, dalpha, a, enc, hd, w_att, alpha, z, beta, datt_out, dwatt_out, denc):
    # dz (N, D), dalpha (N, L), hd (N, A); datt_out (N, A+D), dwatt_out (N, A); denc (N, L, A) += dS
    A = enc.shape[2]
    datt_out[:, A:] = dz * z * (1.0 - beta)  # z * (1 - beta) = context * beta * (1 - beta)
    dal = np.einsum("nd,nld->nl", dz * beta, a) + dalpha  # gradient at alpha
    de = alpha * (dal - (alpha * dal).sum(axis=1, keepdims=True))  # at the scores, through softmax
    S = np.tanh(enc + hd[:, None, :])  # recomputed: never stored over the steps
    np.einsum("nl,nla->na", de, S, out=dwatt_out)
    dS = de[:, :, None] * w_att * (1.0 - S * S)  # at enc + hd
    datt_out[:, :A] = dS.sum(axis=1)
    denc += dS


# ----------------------------------------------------------------------------
# word embedding backward


def embedding_backward(dout, idx, dW_out):
    # dout: (M, W); idx: (M,) int64; dW_out: (V, W)
    dW_out.fill(0)
    np.add.at(dW_out, idx, dout)


# ----------------------------------------------------------------------------
# masked softmax cross-entropy


def softmax_loss(x, y, mask, scale, dx_out):
    # x, dx_out: (M, V); y: (M,) int64; mask: (M,) bool. Returns a Python float.
    M = x.shape[0]
    rows = np.arange(M)
    shifted = x - x.max(axis=1, keepdims=True)
    np.exp(shifted, out=dx_out)
    sums = dx_out.sum(axis=1, keepdims=True)
    log_prob_y = shifted[rows, y] - np.log(sums[:, 0])
    loss = -float(np.sum(log_prob_y[mask], dtype=np.float64)) * scale
    dx_out /= sums
    dx_out[rows, y] -= 1.0
    dx_out *= dx_out.dtype.type(scale)
    dx_out[~mask] = 0  # not a product with the mask: inf or NaN logits would leave NaN
    return loss


# ----------------------------------------------------------------------------
# greedy decoding


def argmax_words(scores, b_vocab, end, words_out):
    # scores: (N, V), b_vocab: (V,) -> words_out: (N,) intp, np.argmax's tie and NaN rules
    np.argmax(scores + b_vocab, axis=1, out=words_out)
    return int(np.count_nonzero(words_out == end))


# ----------------------------------------------------------------------------
# update rules (in place)


def sgd_update(w, dw, lr):
    w -= lr * dw


def sgd_momentum_update(w, dw, velocity, lr, momentum):
    velocity *= momentum
    velocity -= lr * dw
    w += velocity


def rmsprop_update(w, dw, cache, lr, decay_rate, eps):
    cache *= decay_rate
    cache += (1 - decay_rate) * dw * dw
    w -= lr * dw / (np.sqrt(cache) + eps)


def adam_update(w, dw, m, v, alpha, beta1, beta2, eps):
    m *= beta1
    m += (1 - beta1) * dw
    v *= beta2
    v += (1 - beta2) * (dw * dw)
    w -= alpha * (m / (np.sqrt(v) + eps))


# ----------------------------------------------------------------------------
# recurrences and greedy decoding: the shared Python loops (blas_recurrence, greedy)
# around this module's cell, argmax and bf16 product kernels

(recurrent_pack, rnn_recurrence_forward, rnn_recurrence_backward, lstm_recurrence_forward,
 lstm_recurrence_backward) = blas_recurrence.kernels(sys.modules[__name__])
pack_matrix, greedy_decode, attention_greedy_decode = greedy.kernels(sys.modules[__name__])
attention_pack, attention_recurrence_forward, attention_recurrence_backward = \
    attention_recurrence.kernels(sys.modules[__name__])
