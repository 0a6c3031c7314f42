"""Every kernel of every backend against the NumPy reference, driven by kernel_cases.CASES."""
import numpy as np
import pytest

import fastcap
from fastcap import _backend
from fastcap._kernels import KERNEL_NAMES
from fastcap.gradient_check import rel_error

from kernel_cases import CASES, SHAPES, as_dtype, run

REF = _backend.load("numpy")


def scaled_error(a, b):
    """max|a - b| / max|b|: the float32 measure (see kernel_cases)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)) if b.size else 0.0


def _compare(name, got, want, tol, error=rel_error):
    (r1, outs1), (r2, outs2) = got, want
    if r2 is not None:
        err = error(np.float64(r1), np.float64(r2))
        assert err <= tol, f"{name}: return value {r1} vs {r2}, error {err:.3g} > {tol:g}"
    for k, (a, b) in enumerate(zip(outs1, outs2)):
        assert a.shape == b.shape and a.dtype.kind == b.dtype.kind, f"{name}: output {k} shape/kind"
        assert np.isfinite(a).all() if a.dtype.kind == "f" else True, f"{name}: output {k} not finite"
        if tol == 0.0:
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: output {k}")
        else:
            err = error(a, b)
            assert err <= tol, f"{name}: output {k} error {err:.3g} > {tol:g}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dims", SHAPES, ids=lambda d: "N{N}-T{T}-H{H}-V{V}".format(**d))
def test_float64_matches_reference(backend, case, dims):
    name, kernel, build, written, _ = case
    args = build(np.random.default_rng(7), np.float64, **dims)
    K = _backend.kernels()
    _compare(name, run(K, kernel, args, written), run(REF, kernel, args, written),
             0.0 if kernel == "argmax_words" else 1e-10)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dims", SHAPES, ids=lambda d: "N{N}-T{T}-H{H}-V{V}".format(**d))
def test_float32_within_documented_tolerance(backend, case, dims):
    """float32 results stay within the row's tolerance of the float64 reference,
    and the float32 reference meets the same bar (so the tolerance is not slack)."""
    name, kernel, build, written, tol = case
    args64 = build(np.random.default_rng(7), np.float64, **dims)
    args32 = as_dtype(args64, np.float32)
    want = run(REF, kernel, args64, written)
    _compare(name + " (float32 reference)", run(REF, kernel, args32, written), want, tol, scaled_error)
    _compare(name, run(_backend.kernels(), kernel, args32, written), want, tol, scaled_error)


def test_every_registered_backend_provides_every_kernel():
    for name in fastcap.available_backends():
        kernels = _backend.load(name)
        for k in KERNEL_NAMES:
            assert callable(getattr(kernels, k)), f"{name} lacks {k}"
