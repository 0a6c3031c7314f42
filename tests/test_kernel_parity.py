"""Every kernel of every backend against the NumPy reference, driven by the case table fastcap._kernels.cases.

The table must have a case for every kernel of ``fastcap._kernels.KERNELS``
and for nothing else. float64 results of the compiled backends match the
reference to rel_error 1e-10 (the rows exact in float32 exactly); float32 results of every
backend, the reference's own included, stay within the case's tolerance of
the float64 reference.
"""
import numpy as np
import pytest

from fastcap.runtime import backends as _backend
from fastcap._kernels import KERNEL_NAMES
from fastcap._kernels.cases import CASES, SHAPES, as_dtype

from parity import COMPARED, assert_same, run, scaled_error

REF = _backend.load("numpy")
DIMS_IDS = lambda d: "N{N}-T{T}-H{H}-V{V}".format(**d)  # noqa: E731


def test_every_kernel_has_a_case():
    assert list(CASES) == list(KERNEL_NAMES), "fastcap._kernels.cases.CASES must have one row per kernel, in order"


@pytest.mark.parametrize("kernel", COMPARED)
@pytest.mark.parametrize("dims", SHAPES, ids=DIMS_IDS)
def test_float64_matches_reference(compiled, kernel, dims):
    args = CASES[kernel].build(np.random.default_rng(7), np.float64, **dims)
    want = run(REF, kernel, args, CASES[kernel].written)
    got = run(_backend.kernels(), kernel, args, CASES[kernel].written)
    # rows exact in float32 are exact in float64 too (argmax_words, half_to_float's inf and NaN)
    assert_same(got, want, 0.0 if CASES[kernel].tol32 == 0.0 else 1e-10, path=kernel)


@pytest.mark.parametrize("kernel", COMPARED)
@pytest.mark.parametrize("dims", SHAPES, ids=DIMS_IDS)
def test_float32_within_documented_tolerance(backend, kernel, dims):
    """float32 results stay within the row's tolerance of the float64 reference,
    and the float32 reference meets the same bar (so the tolerance is not slack)."""
    case = CASES[kernel]
    args64 = case.build(np.random.default_rng(7), np.float64, **dims)
    args32 = as_dtype(args64, np.float32)
    want = run(REF, kernel, args64, case.written)
    got = run(_backend.kernels(), kernel, args32, case.written)  # the reference too, as backend numpy
    assert_same(got, want, case.tol32, scaled_error, f"{kernel} ({backend})", same_dtype=False)


@pytest.mark.parametrize("dims", SHAPES, ids=DIMS_IDS)
@pytest.mark.parametrize("gates, transpose", [(1, False), (1, True), (4, False), (4, True)])
def test_recurrent_pack_leaves_its_input_alone(backend, dims, gates, transpose):
    """recurrent_pack's result is backend-specific, so the parity rows cannot compare it: it
    must leave Wh as it was, bit for bit, and what it returns must drive the recurrence to the
    reference's result."""
    kernels = _backend.kernels()
    rng = np.random.default_rng(7)
    H, N, T = dims["H"], dims["N"], dims["T"]
    for dtype in (np.float64, np.float32):
        Wh = (rng.standard_normal((H, gates * H)) / np.sqrt(H)).astype(dtype)
        kept = Wh.copy()
        packed = kernels.recurrent_pack(Wh, gates, transpose, False)
        assert Wh.tobytes() == kept.tobytes()
        if transpose:
            continue  # the backward form: the recurrence rows of the parity table use it
        xw = rng.standard_normal((N * T, gates * H)).astype(dtype)
        h0 = rng.standard_normal((N, H)).astype(dtype)
        h = np.empty((N * T, H), dtype)
        batch = np.full(T, N, np.intp)
        if gates == 1:
            kernels.rnn_recurrence_forward(xw, h0, packed, batch, h)
        else:
            kernels.lstm_recurrence_forward(xw, h0, np.zeros_like(h0), packed, batch,
                                            np.empty_like(xw), np.empty_like(h), h)
        want = _recurrence(xw, h0, kept, gates, N, T)
        assert scaled_error(h, want) <= (1e-12 if dtype == np.float64 else 2e-6)


def _recurrence(xw, h0, Wh, gates, N, T):
    """h (N*T, H) of a full batch, written out in float64 independently of every backend."""
    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    h, c, out = h0.astype(np.float64), np.zeros(h0.shape), []
    for t in range(T):
        a = xw[t * N:(t + 1) * N] + h @ Wh.astype(np.float64)
        if gates == 1:
            h = np.tanh(a)
        else:
            i, f, o, g = np.split(a, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.concatenate(out)
