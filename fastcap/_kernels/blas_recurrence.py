"""The recurrence kernels written as a Python time loop around BLAS.

Every backend's ``*_recurrence_*`` kernels for the cases the compiled engine
does not take (the NumPy and Numba backends always; the Cython backend for
float64) call these loops with that backend's own cell kernels (``cells``, a
namespace with the table's ``*_cell_*`` kernels): per step one product with
the recurrent weights and one cell kernel call. They are
also the engine's parity reference.

Layout: see ``fastcap._kernels.KERNELS``. ``recurrent_pack`` is the identity
here (the loops use Wh itself), or in bf16 mode Wh rounded to bfloat16, and
then every step's product rounds its other operand too (``fastcap._kernels.bf16``).
"""
import numpy as np

from .bf16 import Bf16Weights, round_bf16


def recurrent_pack(Wh, gates, transpose, bf16=False):
    """The BLAS loops take Wh (H, G) as it is, or (bf16) rounded to bfloat16."""
    return Bf16Weights(Wh) if bf16 else Wh


def dot(a, Whp, out, transpose=False):
    """out = a @ Wh (or a @ Wh.T), with both operands rounded to bf16 for bf16 weights."""
    if isinstance(Whp, Bf16Weights):
        a, W = round_bf16(a), Whp.W
    else:
        W = Whp
    np.dot(a, W.T if transpose else W, out=out)


def steps(batch_sizes):
    """(t, n, rows of step t) for every step, in time order."""
    out, o = [], 0
    for t, n in enumerate(batch_sizes):
        n = int(n)
        out.append((t, n, slice(o, o + n)))
        o += n
    return out


def rnn_forward(cells, xw, h0, Wh, batch_sizes, h_out):
    hw = np.empty_like(h0)  # (N, H)
    prev = h0
    for _, n, rows in steps(batch_sizes):
        dot(prev[:n], Wh, hw[:n])
        cells.rnn_cell_forward(xw[rows], hw[:n], h_out[rows])
        prev = h_out[rows]


def rnn_backward(cells, dh, h0, Wh, h, batch_sizes, da_out, dh0_out):
    dsum = np.empty_like(h0)  # (N, H) gradient at h_t, both paths
    # dh0_out doubles as the gradient into h_{t-1} from step t; rows of
    # sequences not yet running stay 0.
    dh0_out[...] = 0
    for _, n, rows in reversed(steps(batch_sizes)):
        np.add(dh[rows], dh0_out[:n], out=dsum[:n])
        cells.rnn_cell_backward(dsum[:n], h[rows], da_out[rows])
        dot(da_out[rows], Wh, dh0_out[:n], transpose=True)


def lstm_forward(cells, xw, h0, c0, Wh, batch_sizes, ifog_out, c_out, h_out):
    hw = np.empty((h0.shape[0], 4 * h0.shape[1]), dtype=h0.dtype)  # (N, 4H)
    prev_h, prev_c = h0, c0
    for _, n, rows in steps(batch_sizes):
        dot(prev_h[:n], Wh, hw[:n])
        cells.lstm_cell_forward(xw[rows], hw[:n], prev_c[:n], ifog_out[rows], c_out[rows], h_out[rows])
        prev_h, prev_c = h_out[rows], c_out[rows]


def lstm_backward(cells, dh, c0, Wh, ifog, c, batch_sizes, da_out, dh0_out):
    dsum = np.empty_like(c0)  # (N, H)
    dh0_out[...] = 0
    # Gradients into c_{t-1} from step t: two buffers, swapped each step, so a
    # kernel's input and output never alias.
    dc_in, dc_out = np.zeros_like(c0), np.zeros_like(c0)
    all_steps = steps(batch_sizes)
    for t, n, rows in reversed(all_steps):
        np.add(dh[rows], dh0_out[:n], out=dsum[:n])
        c_prev = c0[:n] if t == 0 else c[all_steps[t - 1][2]][:n]
        cells.lstm_cell_backward(dsum[:n], dc_in[:n], ifog[rows], c_prev, c[rows], da_out[rows], dc_out[:n])
        dot(da_out[rows], Wh, dh0_out[:n], transpose=True)
        dc_in, dc_out = dc_out, dc_in


def kernels(cells):
    """The table's recurrence kernels of a backend whose recurrences are these loops around
    its own cell kernels (`cells`: the backend module): (recurrent_pack,
    rnn_recurrence_forward, rnn_recurrence_backward, lstm_recurrence_forward,
    lstm_recurrence_backward), each with the table's arguments."""

    def rnn_recurrence_forward(xw, h0, Whp, batch_sizes, h_out):
        rnn_forward(cells, xw, h0, Whp, batch_sizes, h_out)

    def rnn_recurrence_backward(dh, h0, WhTp, h, batch_sizes, da_out, dh0_out):
        rnn_backward(cells, dh, h0, WhTp, h, batch_sizes, da_out, dh0_out)

    def lstm_recurrence_forward(xw, h0, c0, Whp, batch_sizes, ifog_out, c_out, h_out):
        lstm_forward(cells, xw, h0, c0, Whp, batch_sizes, ifog_out, c_out, h_out)

    def lstm_recurrence_backward(dh, c0, WhTp, ifog, c, batch_sizes, da_out, dh0_out):
        lstm_backward(cells, dh, c0, WhTp, ifog, c, batch_sizes, da_out, dh0_out)

    return (recurrent_pack, rnn_recurrence_forward, rnn_recurrence_backward, lstm_recurrence_forward,
            lstm_recurrence_backward)
