"""The comparison every parity test makes: results of a backend against a reference.

``assert_same`` walks nested dicts / tuples / lists of arrays and numbers:
same keys, lengths and shapes, integers and booleans exactly equal, floats
finite and within ``tol`` by ``error`` (``rel_error``, the seeds' elementwise
measure, or ``scaled_error`` for float32 against float64; ``tol`` 0 means
bit for bit). ``run`` calls one kernel of the case table on copies of its
arguments and checks it wrote only the arguments it may write.
"""
import numpy as np

from fastcap._kernels.cases import CASES, bind
from fastcap.gradient_check import rel_error

# The kernels whose results are compared (recurrent_pack's is backend-specific:
# it is checked through the recurrence rows, which take packed weights).
COMPARED = [k for k, case in CASES.items() if case.tol32 is not None]
# The recurrences, greedy decoding and sampling: what the compiled engine runs (tests/test_engine.py).
# The attention model's run on the engine too (tests/test_attention_kernels.py tests them: their
# cases need the attention's sizes).
ENGINE_KERNELS = [k for k in CASES if k.startswith(("rnn_recurrence_", "lstm_recurrence_"))
                  or k in ("greedy_decode", "sample_decode")]
# What computes float32 with the engine's FMA tiles, whose bits the builds with FMA share and the
# baseline build (no FMA) does not: the engine's kernels, the attention model's included.
FMA_KERNELS = ENGINE_KERNELS + ["attention_recurrence_forward", "attention_recurrence_backward",
                                "attention_greedy_decode"]


def scaled_error(a, b):
    """max|a - b| / max|b|: the float32 measure (elementwise relative error is
    meaningless in float32 where outputs cancel to near zero)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)) if b.size else 0.0


def assert_same(got, want, tol=1e-10, error=rel_error, path="out", same_dtype=True):
    """got agrees with want (see the module docstring); with ``same_dtype``
    every array also has want's dtype, else only its kind (float32 against a
    float64 reference)."""
    if want is None:
        assert got is None, f"{path}: {got!r}, expected None"
    elif isinstance(want, dict):
        assert set(got) == set(want), path
        for k in want:
            assert_same(got[k], want[k], tol, error, f"{path}[{k!r}]", same_dtype)
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want), path
        for k, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, tol, error, f"{path}[{k}]", same_dtype)
    else:
        g, w = np.asarray(got), np.asarray(want)
        same = g.dtype == w.dtype if same_dtype else g.dtype.kind == w.dtype.kind
        assert g.shape == w.shape and same, f"{path}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        if w.dtype.kind in "biu" or tol == 0.0:
            np.testing.assert_array_equal(g, w, err_msg=path)
        elif w.size:
            assert np.isfinite(g).all(), f"{path}: not finite"
            err = error(g, w)
            assert err <= tol, f"{path}: error {err:.3g} > {tol:g}"


def run(kernels, kernel, args, written):
    """Call `kernel` of `kernels` on copies of the case's args -> (its return
    value, [the arguments it writes]); fails if it modified any other argument."""
    args = bind(kernels, args)
    before = [a.copy() if isinstance(a, np.ndarray) else None for a in args]
    ret = getattr(kernels, kernel)(*args)
    for i, (a, b) in enumerate(zip(args, before)):
        if b is not None and i not in written:
            np.testing.assert_array_equal(a, b, err_msg=f"{kernel} modified input argument {i}")
    return ret, [args[i] for i in written]
