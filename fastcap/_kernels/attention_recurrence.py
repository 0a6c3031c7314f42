"""The attention model's recurrence written as a Python time loop around BLAS: the reference.

Every backend's ``attention_recurrence_*`` kernels (and ``attention_greedy_decode``, through
``fastcap._kernels.greedy``) are this loop over that backend's own per-step kernels
(``attention_step_forward`` / ``_backward`` and the cell kernels): per step two products,
h_{t-1} @ [W_dec | W_beta] for the attention and [h_{t-1}, z_t] @ [[Wh], [Wz]] for the
gates, and the elementwise work in between. It is also the parity reference of a compiled
engine that fuses the step (the contracts are in ``fastcap._kernels.KERNELS``).

``attention_pack`` here concatenates the weights of the two products (rounded to bfloat16
in the bf16 mode, where each product then rounds its other operand too:
``fastcap._kernels.bf16``); ``transpose`` changes nothing, the backward products read the
same matrices transposed. tanh(enc + h W_dec), (P, L, A) values over a batch, is never
stored: the backward pass recomputes it from hd = h W_dec, (P, A).

Shapes: N sequences, P packed rows, L cells, D channels, A attention, H hidden, G gates * H.
"""
from typing import NamedTuple

import numpy as np

from .bf16 import Bf16Weights
from .blas_recurrence import dot, steps


class AttentionWeights(NamedTuple):
    """The weights of a step's two products, as the BLAS loop takes them (arrays, or
    Bf16Weights in the bf16 mode)."""

    att: object  # [W_dec | W_beta] (H, A + D): h_{t-1} -> hab
    cell: object  # [[Wh], [Wz]] (H + D, G): [h_{t-1}, z_t] -> the gates' recurrent part


def attention_pack(Wh, Wz, W_dec, W_beta, transpose, bf16=False):
    """(Wh (H, G), Wz (D, G), W_dec (H, A), W_beta (H, D)) -> AttentionWeights."""
    att = np.concatenate([W_dec, W_beta], axis=1)
    cell = np.concatenate([Wh, Wz], axis=0)
    return AttentionWeights(Bf16Weights(att), Bf16Weights(cell)) if bf16 else AttentionWeights(att, cell)


def forward(k, xw, h0, c0, a, enc, Wp, b_beta, w_att, batch_sizes, ifog_out, c_out, h_out,
            alpha_out, z_out, beta_out, hd_out):
    """attention_recurrence_forward over the kernels of backend ``k`` (c0 None: a vanilla RNN)."""
    (N, H), D, A, G = h0.shape, a.shape[2], enc.shape[2], xw.shape[1]
    hab = np.empty((N, A + D), dtype=h0.dtype)  # h_{t-1} @ [W_dec | W_beta]
    hz = np.empty((N, H + D), dtype=h0.dtype)  # [h_{t-1}, z_t]
    pre = np.empty((N, G), dtype=h0.dtype)  # [h_{t-1}, z_t] @ [[Wh], [Wz]]
    prev_h, prev_c = h0, c0
    for _, n, rows in steps(batch_sizes):
        dot(prev_h[:n], Wp.att, hab[:n])
        hd_out[rows] = hab[:n, :A]
        k.attention_step_forward(a[:n], enc[:n], hab[:n], b_beta, w_att, alpha_out[rows],
                                 z_out[rows], beta_out[rows])
        hz[:n, :H] = prev_h[:n]
        hz[:n, H:] = z_out[rows]
        dot(hz[:n], Wp.cell, pre[:n])
        if c0 is None:
            k.rnn_cell_forward(xw[rows], pre[:n], h_out[rows])
        else:
            k.lstm_cell_forward(xw[rows], pre[:n], prev_c[:n], ifog_out[rows], c_out[rows], h_out[rows])
            prev_c = c_out[rows]
        prev_h = h_out[rows]


def backward(k, dh, dalpha, c0, a, enc, WTp, w_att, ifog, c, h, alpha, z, beta, hd, batch_sizes,
             da_out, datt_out, dwatt_out, denc_out, dh0_out):
    """attention_recurrence_backward over the kernels of backend ``k`` (c0 None: a vanilla RNN)."""
    (N, H), D = dh0_out.shape, a.shape[2]
    dsum = np.empty((N, H), dtype=dh.dtype)  # gradient at h_t, from the scores and step t + 1
    dhz = np.empty((N, H + D), dtype=dh.dtype)  # gradient at [h_{t-1}, z_t] through the gates
    dz = np.empty((N, D), dtype=dh.dtype)
    denc_out[...] = 0
    # dh0_out doubles as the gradient into h_{t-1} from step t; rows of sequences that
    # have not started yet (going backward) stay 0, and so do those of dc_in.
    dh0_out[...] = 0
    dc_in, dc_out = np.zeros_like(dsum), np.zeros_like(dsum)
    all_steps = steps(batch_sizes)
    for t, n, rows in reversed(all_steps):
        np.add(dh[rows], dh0_out[:n], out=dsum[:n])
        if c0 is None:
            k.rnn_cell_backward(dsum[:n], h[rows], da_out[rows])
        else:
            c_prev = c0[:n] if t == 0 else c[all_steps[t - 1][2]][:n]
            k.lstm_cell_backward(dsum[:n], dc_in[:n], ifog[rows], c_prev, c[rows], da_out[rows], dc_out[:n])
            dc_in, dc_out = dc_out, dc_in
        dot(da_out[rows], WTp.cell, dhz[:n], transpose=True)
        dz[:n] = dhz[:n, H:]
        k.attention_step_backward(dz[:n], dalpha[rows], a[:n], enc[:n], hd[rows], w_att, alpha[rows],
                                  z[rows], beta[rows], datt_out[rows], dwatt_out[rows], denc_out[:n])
        dot(datt_out[rows], WTp.att, dh0_out[:n], transpose=True)
        dh0_out[:n] += dhz[:n, :H]


def kernels(backend):
    """The table's attention kernels of a backend whose recurrence is this loop over its own
    per-step kernels (`backend`: a namespace with the table's attention_step_* and cell
    kernels): (attention_pack, attention_recurrence_forward, attention_recurrence_backward),
    each with the table's arguments."""

    def attention_recurrence_forward(xw, h0, c0, a, enc, Wp, b_beta, w_att, batch_sizes, ifog_out,
                                     c_out, h_out, alpha_out, z_out, beta_out, hd_out):
        forward(backend, xw, h0, c0, a, enc, Wp, b_beta, w_att, batch_sizes, ifog_out, c_out, h_out,
                alpha_out, z_out, beta_out, hd_out)

    def attention_recurrence_backward(dh, dalpha, c0, a, enc, WTp, w_att, ifog, c, h, alpha, z, beta,
                                      hd, batch_sizes, da_out, datt_out, dwatt_out, denc_out, dh0_out):
        backward(backend, dh, dalpha, c0, a, enc, WTp, w_att, ifog, c, h, alpha, z, beta, hd,
                 batch_sizes, da_out, datt_out, dwatt_out, denc_out, dh0_out)

    return attention_pack, attention_recurrence_forward, attention_recurrence_backward
