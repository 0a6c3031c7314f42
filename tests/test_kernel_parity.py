"""Every kernel of every backend against the NumPy reference, driven by the case table fastcap._kernels.cases.

The table must have a case for every kernel of ``fastcap._kernels.KERNELS``
and for nothing else. float64 results of the compiled backends match the
reference to rel_error 1e-10 (argmax_words exactly); float32 results of every
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
    assert_same(got, want, 0.0 if kernel == "argmax_words" else 1e-10, path=kernel)


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
def test_recurrent_pack_leaves_its_input_alone(backend, dims):
    """recurrent_pack's result is backend-specific (the recurrence rows use it); it must not write Wh."""
    assert run(_backend.kernels(), "recurrent_pack", CASES["recurrent_pack"].build(
        np.random.default_rng(7), np.float64, **dims), ())[0] is not None
