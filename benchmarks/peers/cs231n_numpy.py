"""Peer: the captioning model as a CS231n student writes it, in plain NumPy.

This is the "CS231n-style NumPy" peer: the straightforward
solution of the assignment, written for this benchmark. Sequence layers loop
over timesteps calling step functions (each step does its own small input
GEMM ``x_t @ Wx``), caches are lists of per-step tuples, the embedding
backward is ``np.add.at``, the scores are the full padded (N, T, V) array, the
softmax loss is the assignment's masked one, and the update rule is the
assignment's Adam (new arrays every step, bias correction folded into the step
size). Batch-major (N, T, ...) throughout, as in the notebooks.

Everything stays in the parameters' dtype (float32 here): where a student
would write ``np.zeros(shape)`` this writes ``np.zeros(shape, dtype)``, so the
comparison measures the code structure, not a float64 promotion.
"""
import math

import numpy as np


def sigmoid(x):
    # numerically stable for either sign
    pos = x >= 0
    z = np.exp(np.where(pos, -x, x))
    return np.where(pos, 1 / (1 + z), z / (1 + z))


# ----------------------------------------------------------------- vanilla RNN


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)
    cache = (x, prev_h, Wx, Wh, next_h)
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    dx = da.dot(Wx.T)
    dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da)
    dWh = prev_h.T.dot(da)
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=h0.dtype)
    caches = []
    prev_h = h0
    for t in range(T):
        prev_h, cache_t = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(cache_t)
    return h, caches


def rnn_backward(dh, caches):
    N, T, H = dh.shape
    x0, _, Wx, Wh, _ = caches[0]
    D = x0.shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx = np.zeros_like(Wx)
    dWh = np.zeros_like(Wh)
    db = np.zeros(H, dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx_t, dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev_h, caches[t])
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


# ------------------------------------------------------------------------ LSTM


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H : 2 * H])
    o = sigmoid(a[:, 2 * H : 3 * H])
    g = np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c)
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    di = dc * g
    df = dc * prev_c
    dg = dc * i
    dprev_c = dc * f
    da = np.hstack((di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)))
    dx = da.dot(Wx.T)
    dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da)
    dWh = prev_h.T.dot(da)
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=h0.dtype)
    prev_h, prev_c = h0, np.zeros_like(h0)
    caches = []
    for t in range(T):
        prev_h, prev_c, cache_t = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(cache_t)
    return h, caches


def lstm_backward(dh, caches):
    N, T, H = dh.shape
    x0, _, _, Wx, Wh = caches[0][:5]
    D = x0.shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx = np.zeros_like(Wx)
    dWh = np.zeros_like(Wh)
    db = np.zeros(4 * H, dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    dprev_c = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx_t, dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(
            dh[:, t, :] + dprev_h, dprev_c, caches[t]
        )
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


# ------------------------------------------------- embedding, affine, softmax


def word_embedding_forward(x, W):
    out = W[x]
    return out, (x, W)


def word_embedding_backward(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)
    return dW


def temporal_affine_forward(x, w, b):
    N, T, D = x.shape
    M = b.shape[0]
    out = x.reshape(N * T, D).dot(w).reshape(N, T, M) + b
    return out, (x, w, b, out)


def temporal_affine_backward(dout, cache):
    x, w, b, _ = cache
    N, T, D = x.shape
    M = b.shape[0]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    dw = dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).T
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_softmax_loss(x, y, mask):
    N, T, V = x.shape
    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    mask_flat = mask.reshape(N * T)
    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * np.log(probs[np.arange(N * T), y_flat])) / N
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N
    dx_flat *= mask_flat[:, None]
    return loss, dx_flat.reshape(N, T, V)


# ----------------------------------------------------------------------- model


class CaptioningRNN:
    """The assignment's CaptioningRNN, given its parameters (a dict of arrays)."""

    def __init__(self, params, cell_type, null=0, start=1, end=2):
        self.params = params
        self.cell_type = cell_type
        self._null, self._start, self._end = null, start, end

    def loss(self, features, captions):
        captions_in = captions[:, :-1]
        captions_out = captions[:, 1:]
        mask = captions_out != self._null
        p = self.params

        h0 = features.dot(p["W_proj"]) + p["b_proj"]
        x, embed_cache = word_embedding_forward(captions_in, p["W_embed"])
        if self.cell_type == "rnn":
            h, rnn_cache = rnn_forward(x, h0, p["Wx"], p["Wh"], p["b"])
        else:
            h, rnn_cache = lstm_forward(x, h0, p["Wx"], p["Wh"], p["b"])
        scores, affine_cache = temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask)

        grads = {}
        dh, grads["W_vocab"], grads["b_vocab"] = temporal_affine_backward(dscores, affine_cache)
        if self.cell_type == "rnn":
            dx, dh0, grads["Wx"], grads["Wh"], grads["b"] = rnn_backward(dh, rnn_cache)
        else:
            dx, dh0, grads["Wx"], grads["Wh"], grads["b"] = lstm_backward(dh, rnn_cache)
        grads["W_embed"] = word_embedding_backward(dx, embed_cache)
        grads["W_proj"] = features.T.dot(dh0)
        grads["b_proj"] = dh0.sum(axis=0)
        return loss, grads

    def sample(self, features, max_length=30):
        N = features.shape[0]
        p = self.params
        captions = self._null * np.ones((N, max_length), dtype=np.int32)
        prev_h = features.dot(p["W_proj"]) + p["b_proj"]
        prev_c = np.zeros_like(prev_h)
        word = self._start * np.ones(N, dtype=np.int32)
        for t in range(max_length):
            x = p["W_embed"][word]
            if self.cell_type == "rnn":
                prev_h, _ = rnn_step_forward(x, prev_h, p["Wx"], p["Wh"], p["b"])
            else:
                prev_h, prev_c, _ = lstm_step_forward(x, prev_h, prev_c, p["Wx"], p["Wh"], p["b"])
            scores = prev_h.dot(p["W_vocab"]) + p["b_vocab"]
            word = np.argmax(scores, axis=1)
            captions[:, t] = word
        return captions


def adam(w, dw, config=None):
    """The assignment's Adam: returns a new w; config holds m, v, t."""
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    lr, beta1, beta2, eps = (config[k] for k in ("learning_rate", "beta1", "beta2", "epsilon"))
    config["t"] += 1
    t = config["t"]
    config["m"] = beta1 * config["m"] + (1 - beta1) * dw
    config["v"] = beta2 * config["v"] + (1 - beta2) * dw**2
    alpha = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)  # a Python float keeps w float32
    next_w = w - alpha * config["m"] / (np.sqrt(config["v"]) + eps)
    return next_w, config


class Trainer:
    """One training step as the assignment's CaptioningSolver._step does it."""

    def __init__(self, params, cell_type, batches, learning_rate):
        self.model = CaptioningRNN({k: v.copy() for k, v in params.items()}, cell_type)
        self.batches = batches
        self.configs = {p: {"learning_rate": learning_rate} for p in params}
        self._i = 0

    def step(self):
        features, captions = self.batches[self._i % len(self.batches)]
        self._i += 1
        loss, grads = self.model.loss(features, captions)
        for p, w in self.model.params.items():
            self.model.params[p], self.configs[p] = adam(w, grads[p], self.configs[p])
        return loss
