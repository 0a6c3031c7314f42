"""The kernel case table: arguments for every kernel of ``KERNELS``, for the parity tests and the kernel benchmarks.

``CASES`` maps each kernel name of ``fastcap._kernels.KERNELS`` to a ``Case``:
a function building its arguments from (rng, dtype, **dims), the indices of
the arguments the kernel writes (its contract's ``writes``), and
the float32 tolerance: the largest scaled error ``max|a - b| / max|b|``
allowed between a backend's float32 result and the float64 reference
(elementwise ``rel_error`` is meaningless in float32 where outputs cancel to
near zero). Each tolerance is at most about 10x the worst error the float32
*reference* showed over 8 seeds at the test shapes, and the float32 reference
must meet it too in the tests, so no tolerance is slack. A tolerance of None
marks a result that is backend-specific (``recurrent_pack``'s layout): it is
checked through the rows that take packed weights (``Pack``).

dims are N batch, T steps, H hidden, V vocabulary, W word vector (M = N*T
rows), and for the attention model D channels, L cells (default 49, ResNet's
7x7 grid, for the benchmarks) and A the attention size (default H). ``SHAPES`` are the test shapes: N = 1, T = 1, H not a multiple of 8,
the COCO vocabulary of 1004, masks with fully masked rows, sequences of
length 0. The benchmarks build the same arguments at the workload's dims and
pass ``captions`` ((N, T + 1) int, CS231n layout, ``<NULL>`` = 0): then the
words, targets, mask and sequence lengths are the captions' (as the model
derives them) instead of random draws.
"""
from typing import Callable, NamedTuple, Optional

import numpy as np

from . import KERNELS
from .case_args import (  # noqa: F401 (the builders, re-exported for the tests)
    rnn_cell_forward, rnn_cell_backward, lstm_cell_forward, lstm_cell_backward, Pack, PackB, PackM,
    Keep, rnn_recurrence_forward, rnn_recurrence_backward, lstm_recurrence_forward,
    lstm_recurrence_backward, recurrent_pack, pack_bf16, matmul_bf16, embedding_backward,
    softmax_loss, argmax_words, sample_words, pack_matrix, greedy_decode, sample_decode, Table,
    cider_df, cider_d, PackA, attention_step_forward, attention_step_backward, attention_pack,
    attention_recurrence_forward, attention_recurrence_backward, attention_greedy_decode,
    half_to_float, sgd_update, sgd_momentum_update, rmsprop_update, adam_update,
)

# Dimension sets each kernel is tested at.
SHAPES = [
    dict(N=1, T=1, D=3, H=5, V=7, W=4, L=1, A=2),  # one attention cell: alpha is 1
    dict(N=4, T=3, D=6, H=13, V=11, W=5, L=5, A=7),  # H not a multiple of 8
    dict(N=17, T=5, D=10, H=32, V=1004, W=16, L=9, A=12),  # COCO vocabulary
]


class Case(NamedTuple):
    build: Callable  # (rng, dtype, **dims) -> list of arguments
    written: tuple  # indices of the arguments the kernel writes (from its contract, KERNELS)
    tol32: Optional[float]  # float32 tolerance (see the module docstring); None: backend-specific


def _case(kernel, build, tol32):
    """kernel's case: the indices it writes come from its contract in KERNELS."""
    k = KERNELS[kernel]
    return Case(build, tuple(k.args.index(a) for a in k.writes), tol32)


# kernel -> its case, keyed by kernel name (the order of KERNELS)
CASES = {
    "rnn_cell_forward": _case("rnn_cell_forward", rnn_cell_forward, 1e-6),
    "rnn_cell_backward": _case("rnn_cell_backward", rnn_cell_backward, 1e-6),
    "lstm_cell_forward": _case("lstm_cell_forward", lstm_cell_forward, 2e-6),
    "lstm_cell_backward": _case("lstm_cell_backward", lstm_cell_backward, 2e-6),
    "recurrent_pack": _case("recurrent_pack", recurrent_pack, None),
    "rnn_recurrence_forward": _case("rnn_recurrence_forward", rnn_recurrence_forward, 2e-6),
    "rnn_recurrence_backward": _case("rnn_recurrence_backward", rnn_recurrence_backward, 2e-6),
    "lstm_recurrence_forward": _case("lstm_recurrence_forward", lstm_recurrence_forward, 2e-6),
    "lstm_recurrence_backward": _case("lstm_recurrence_backward", lstm_recurrence_backward, 2e-6),
    "pack_bf16": _case("pack_bf16", pack_bf16, None),  # backend-specific: the packed matmul_bf16 row
    "matmul_bf16": _case("matmul_bf16", matmul_bf16, None),  # the bfloat16 mode: BF16_CASES
    "embedding_backward": _case("embedding_backward", embedding_backward, 2e-6),
    "softmax_loss": _case("softmax_loss", softmax_loss, 2e-6),
    "argmax_words": _case("argmax_words", argmax_words, 0.0),
    "sample_words": _case("sample_words", sample_words, 0.0),
    "pack_matrix": _case("pack_matrix", pack_matrix, None),  # backend-specific: the greedy_decode row
    "greedy_decode": _case("greedy_decode", greedy_decode, 2e-6),  # captions exact, the table rows 2e-6
    "sample_decode": _case("sample_decode", sample_decode, 2e-6),  # as greedy_decode
    "cider_df": _case("cider_df", cider_df, None),  # backend-specific: the cider_d row
    "cider_d": _case("cider_d", cider_d, 1e-12),  # float64 whatever the model's dtype
    # the attention model: about 10x the float32 reference's worst error over 8 seeds (the step 3.8e-7
    # and 2.7e-7, the recurrence 6e-7 and 2.6e-6, decoding 2.3e-7)
    "attention_step_forward": _case("attention_step_forward", attention_step_forward, 3e-6),
    "attention_step_backward": _case("attention_step_backward", attention_step_backward, 2.5e-6),
    "attention_pack": _case("attention_pack", attention_pack, None),  # backend-specific: the rows below
    "attention_recurrence_forward": _case("attention_recurrence_forward", attention_recurrence_forward, 6e-6),
    "attention_recurrence_backward": _case("attention_recurrence_backward", attention_recurrence_backward, 2.5e-5),
    "attention_greedy_decode": _case("attention_greedy_decode", attention_greedy_decode, 2e-6),  # captions exact
    "half_to_float": _case("half_to_float", half_to_float, 0.0),  # exact: a half is a float32
    "sgd_update": _case("sgd_update", sgd_update, 1e-6),
    "sgd_momentum_update": _case("sgd_momentum_update", sgd_momentum_update, 1e-6),
    "rmsprop_update": _case("rmsprop_update", rmsprop_update, 1e-6),
    "adam_update": _case("adam_update", adam_update, 1e-6),
}


def _bf16(build):
    """A recurrence case with its weights packed for the bfloat16 mode (float32)."""
    def bf16_build(rng, dtype, **dims):
        return [a._replace(bf16=True) if isinstance(a, (Pack, PackM, PackA)) else a
                for a in as_dtype(build(rng, np.float64, **dims), np.float32)]
    return bf16_build


def _transposed(build, which):
    """matmul_bf16's case with operand `which` (0: a, 1: b) a transposed view, as the
    gradient products pass them (x.T @ dout, dout @ w.T)."""
    def transposed_build(rng, dtype, **dims):
        args = build(rng, dtype, **dims)
        args[which] = np.ascontiguousarray(args[which].T).T
        return args
    return transposed_build


def _packed_b(build):
    """matmul_bf16's case with b packed once by pack_bf16 (decoding's W_vocab)."""
    def packed_build(rng, dtype, **dims):
        args = build(rng, dtype, **dims)
        args[1] = PackB(args[1])
        return args
    return packed_build


def _rnn(build):
    """A case of greedy_decode or of the attention model for a vanilla RNN."""
    def rnn_build(rng, dtype, **dims):
        return build(rng, dtype, gates=1, **dims)
    return rnn_build


# The attention model's rows for a vanilla RNN (the table's are an LSTM's): tests/test_attention_kernels.py
# runs them as the parity tests run CASES (tolerances: about 10x the float32 reference's worst error over
# 8 seeds, 6.6e-7, 4.2e-7, 2.3e-7), and BF16_CASES in the bfloat16 mode.
RNN_CASES = {
    "attention_recurrence_forward rnn": _case("attention_recurrence_forward", _rnn(attention_recurrence_forward), 6e-6),
    "attention_recurrence_backward rnn": _case("attention_recurrence_backward", _rnn(attention_recurrence_backward), 4e-6),
    "attention_greedy_decode rnn": _case("attention_greedy_decode", _rnn(attention_greedy_decode), 2e-6),
}


def as_dtype(args, dtype):
    """args with every float array (and packed weight) cast to dtype."""
    def cast(a):
        if isinstance(a, Pack):
            return a._replace(Wh=a.Wh.astype(dtype))
        if isinstance(a, PackM):
            return a._replace(b=a.b.astype(dtype))
        if isinstance(a, PackA):
            return a._replace(**{k: getattr(a, k).astype(dtype) for k in ("Wh", "Wz", "W_dec", "W_beta")})
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            return a.astype(dtype)
        return a
    return [cast(a) for a in args]


def bind(kernels, args):
    """The arguments to call a kernel of `kernels` with: copies of the arrays,
    every Pack packed by that backend's recurrent_pack, every PackB and PackM by its pack_bf16 or
    pack_matrix, every PackA by its attention_pack, every Table by its cider_df."""
    return [kernels.recurrent_pack(a.Wh.copy(), a.gates, a.transpose, a.bf16) if isinstance(a, Pack)
            else kernels.attention_pack(*(w.copy() for w in a[:4]), a.transpose, a.bf16) if isinstance(a, PackA)
            else kernels.pack_bf16(a.b.copy()) if isinstance(a, PackB) or isinstance(a, PackM) and a.bf16
            else kernels.pack_matrix(a.b.copy()) if isinstance(a, PackM)
            else a.a.copy() if isinstance(a, Keep)
            else kernels.cider_df(a.tokens.copy(), a.starts.copy(), a.images.copy()) if isinstance(a, Table)
            else a.copy() if isinstance(a, np.ndarray) else a for a in args]


# The bfloat16 mode's kernels (float32 only), against the NumPy backend's
# emulation (fastcap._kernels.bf16), not against float64: bf16 rounding is
# the definition. matmul_bf16 differs from the emulation only in the order
# of its float32 sums; a recurrence can also round a hidden state to the
# other side of a bf16 step once its sums differ in the last bit (2**-8
# relative, carried into later steps: seen at H = 512, T = 16, not at SHAPES).
# Tolerances: about 10x the worst error over 8 seeds at SHAPES (matmul 1.5e-7,
# recurrences 3.1e-7, Cython and Numba).
BF16_CASES = {
    "matmul_bf16": _case("matmul_bf16", matmul_bf16, 1.5e-6),
    "matmul_bf16 a.T": _case("matmul_bf16", _transposed(matmul_bf16, 0), 1.5e-6),
    "matmul_bf16 b.T": _case("matmul_bf16", _transposed(matmul_bf16, 1), 1.5e-6),
    "matmul_bf16 packed b": _case("matmul_bf16", _packed_b(matmul_bf16), 1.5e-6),
    "rnn_recurrence_forward": _case("rnn_recurrence_forward", _bf16(rnn_recurrence_forward), 3e-6),
    "rnn_recurrence_backward": _case("rnn_recurrence_backward", _bf16(rnn_recurrence_backward), 3e-6),
    "lstm_recurrence_forward": _case("lstm_recurrence_forward", _bf16(lstm_recurrence_forward), 3e-6),
    "lstm_recurrence_backward": _case("lstm_recurrence_backward", _bf16(lstm_recurrence_backward), 3e-6),
    # captions exact; the table rows as matmul_bf16
    "greedy_decode": _case("greedy_decode", _bf16(greedy_decode), 1.5e-6),
    "greedy_decode rnn": _case("greedy_decode", _bf16(_rnn(greedy_decode)), 1.5e-6),
    "sample_decode": _case("sample_decode", _bf16(sample_decode), 1.5e-6),
    "sample_decode rnn": _case("sample_decode", _bf16(_rnn(sample_decode)), 1.5e-6),
    # the attention model: about 10x the worst error over 8 seeds (LSTM forward 6e-7, backward 2.1e-6,
    # decoding 4e-7; RNN 5e-7, 5e-6, 3.2e-7), its per-step attention in float32, whose exp and tanh
    # differ by backend in the last bit: enough to round a product's operand to the other bf16 side
    "attention_recurrence_forward": _case("attention_recurrence_forward", _bf16(attention_recurrence_forward), 6e-6),
    "attention_recurrence_backward": _case("attention_recurrence_backward", _bf16(attention_recurrence_backward), 2e-5),
    "attention_greedy_decode": _case("attention_greedy_decode", _bf16(attention_greedy_decode), 4e-6),
    **{name: RNN_CASES[name]._replace(build=_bf16(RNN_CASES[name].build), tol32=tol) for name, tol in (
        ("attention_recurrence_forward rnn", 5e-6), ("attention_recurrence_backward rnn", 5e-5),
        ("attention_greedy_decode rnn", 3e-6))},
}
