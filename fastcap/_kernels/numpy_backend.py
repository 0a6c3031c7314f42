"""NumPy reference backend: the semantic ground truth for every other backend.

Vectorized, allocation-light NumPy, written to be read. Every kernel follows
the contract in ``fastcap/_kernels/__init__.py``; compiled backends are tested
against these functions.
"""
import sys
from collections import Counter
from typing import NamedTuple

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


def softmax_loss(x, y, mask, scale, weight, dx_out):
    # x, dx_out: (M, V); y: (M,) int64; mask: (M,) bool; weight: (M,) float64 or None.
    # Returns a Python float.
    M = x.shape[0]
    rows = np.arange(M)
    shifted = x - x.max(axis=1, keepdims=True)
    np.exp(shifted, out=dx_out)
    sums = dx_out.sum(axis=1, keepdims=True)
    log_prob_y = shifted[rows, y] - np.log(sums[:, 0])
    if weight is not None:
        log_prob_y = log_prob_y * weight
    loss = -float(np.sum(log_prob_y[mask], dtype=np.float64)) * scale
    dx_out /= sums
    dx_out[rows, y] -= 1.0
    dx_out *= dx_out.dtype.type(scale)
    if weight is not None:
        dx_out *= weight.astype(dx_out.dtype)[:, None]
    dx_out[~mask] = 0  # not a product with the mask: inf or NaN logits would leave NaN
    return loss


# ----------------------------------------------------------------------------
# greedy decoding


def argmax_words(scores, b_vocab, end, words_out):
    # scores: (N, V), b_vocab: (V,) -> words_out: (N,) intp, np.argmax's tie and NaN rules
    np.argmax(scores + b_vocab, axis=1, out=words_out)
    return int(np.count_nonzero(words_out == end))


def sample_words(scores, b_vocab, uniforms, end, words_out):
    # scores: (N, V), b_vocab: (V,), uniforms: (N,) float64 -> words_out: (N,) intp.
    # Inverse-distribution sampling in float64; rows without a finite max keep the argmax.
    s = scores + b_vocab  # in the array dtype, as the compiled loops add
    np.argmax(s, axis=1, out=words_out)
    top = s[np.arange(s.shape[0]), words_out].astype(np.float64)
    rows = np.flatnonzero(np.isfinite(top))
    if rows.size:
        e = np.exp(s[rows].astype(np.float64) - top[rows, None])
        running = np.cumsum(e, axis=1)  # sequential sums, as the compiled loops
        above = running > (uniforms[rows] * running[:, -1])[:, None]
        last = e.shape[1] - 1 - np.argmax(e[:, ::-1] > 0, axis=1)  # u * total rounded up to total
        words_out[rows] = np.where(above.any(axis=1), np.argmax(above, axis=1), last)
    return int(np.count_nonzero(words_out == end))


# ----------------------------------------------------------------------------
# CIDEr-D (fastcap.metrics.Cider), written as pycocoevalcap's CiderScorer defines it

SIGMA = 6.0  # CIDEr-D's length penalty


class CiderTable(NamedTuple):
    """cider_df's table: n-gram (a tuple of word ids) -> images with it in a reference; I."""

    df: dict
    images: int


def _ngrams(tokens, starts, c):
    """Counter of the n-grams (n = 1..4) of caption c: {tuple of word ids: count}."""
    words = tokens[starts[c]:starts[c + 1]].tolist()
    return Counter(tuple(words[i:i + n]) for n in range(1, 5) for i in range(len(words) - n + 1))


def cider_df(tokens, starts, images):
    df = Counter()
    for i in range(len(images) - 1):
        df.update(set().union(*(_ngrams(tokens, starts, c) for c in range(images[i], images[i + 1]))))
    return CiderTable(dict(df), len(images) - 1)


def _tfidf(counts, table):
    """A caption's n-gram counts -> ({n-gram: tf * idf}, norm per n (4,), its bigrams' count)."""
    ref_len = np.log(float(table.images))
    vec = {g: tf * (ref_len - np.log(max(1.0, table.df.get(g, 0)))) for g, tf in counts.items()}
    norm = np.zeros(4)
    for g, w in vec.items():
        norm[len(g) - 1] += w * w
    return vec, np.sqrt(norm), sum(tf for g, tf in counts.items() if len(g) == 2)


def cider_d(table, cand_tokens, cand_starts, ref_tokens, ref_starts, refs, scores_out):
    for k, (r0, r1) in enumerate(refs):
        vec, norm, length = _tfidf(_ngrams(cand_tokens, cand_starts, k), table)
        score = np.zeros(4)
        for r in range(r0, r1):
            ref, ref_norm, ref_length = _tfidf(_ngrams(ref_tokens, ref_starts, r), table)
            val = np.zeros(4)
            for g, w in vec.items():  # the candidate's weight clipped at the reference's
                val[len(g) - 1] += min(w, ref.get(g, 0.0)) * ref.get(g, 0.0)
            both = (norm != 0) & (ref_norm != 0)
            val[both] /= norm[both] * ref_norm[both]
            score += val * np.exp(-float(length - ref_length) ** 2 / (2 * SIGMA ** 2))
        scores_out[k] = np.mean(score) / (r1 - r0) * 10.0


# ----------------------------------------------------------------------------
# data


def half_to_float(raw, out):
    out[...] = raw.view(np.float16)
    # an infinity or a NaN: every exponent bit set (on the bits, 5x faster than isfinite on halves)
    bad = (raw & 0x7FFF).max(axis=1, initial=0) >= 0x7C00
    return int(np.argmax(bad)) if bad.any() else -1


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
pack_matrix, greedy_decode, sample_decode, attention_greedy_decode = greedy.kernels(sys.modules[__name__])
attention_pack, attention_recurrence_forward, attention_recurrence_backward = \
    attention_recurrence.kernels(sys.modules[__name__])
