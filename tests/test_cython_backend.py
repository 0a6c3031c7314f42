"""What only the Cython backend has: threaded paths, its own math, const memoryviews, ISA builds, build switches, absence.

test_kernel_parity.py runs every kernel of the table through the cython rows
and test_public_parity.py the public API (layers, model, optimizers, a
training run) against numpy. Here:

* the threaded (OpenMP prange) code paths give the reference's results (the
  parity table is rerun with the threshold forced to 0);
* the backend's own tanh/sigmoid/exp are accurate to a few ulp;
* the kernels take read-only arrays (const memoryviews);
* the AVX2 build computes the baseline build's results bit for bit, and the
  backend loads it on a CPU that has AVX2 and FMA (FASTCAP_CYTHON_ISA forces);
* the extension's build switches are visible in BUILD_INFO, and a debug build
  (FASTCAP_CYTHON_DEBUG=1) raises IndexError where a normal one would corrupt
  memory;
* without the compiled module, fastcap imports and works, does not list
  'cython', and asking for it says how to build it.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastcap.runtime import backends as _backend
from fastcap._kernels.cases import CASES, SHAPES
from fastcap.runtime.names import BUILDS, ISA_CHOICES
from fastcap.gradient_check import rel_error

from conftest import REQUIRE_ALL
from parity import COMPARED, FMA_KERNELS, assert_same, run, scaled_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cy(cython_module):
    return cython_module


@pytest.fixture(scope="module")
def builds(cy):
    """{isa: module} of every build of the backend that this machine has and
    runs: the baseline and, on x86-64 CPUs that have them, AVX2 and AVX-512."""
    import importlib

    from fastcap._kernels import cython_backend as baseline

    if baseline.BUILD_INFO["native"]:
        pytest.skip("a -march=native build has no ISA variants")
    found = {"baseline": baseline}
    for isa, (module_name, predicate) in _backend._VARIANTS["cython"].items():
        if not getattr(baseline, predicate)():
            continue
        try:
            found[isa] = importlib.import_module(module_name)
        except ImportError as exc:
            # Built wherever the compiler targets x86-64 AVX2/AVX-512 (CI's does).
            if REQUIRE_ALL:
                pytest.fail(f"the {isa} build of the cython backend is missing in CI: {exc}")
    if len(found) == 1:
        pytest.skip("this CPU runs only the baseline build")
    return found


def test_threaded_paths_match_reference(cy):
    """Every parity case with the prange threshold at 0 (threads whenever the
    build has OpenMP): same results as the numpy reference."""
    ref = _backend.load("numpy")
    kernels = _backend.load("cython")
    previous = cy._set_parallel_min(0)
    try:
        for kernel in COMPARED:
            for dims in SHAPES:
                args = CASES[kernel].build(np.random.default_rng(11), np.float64, **dims)
                want = run(ref, kernel, args, CASES[kernel].written)
                assert_same(run(kernels, kernel, args, CASES[kernel].written), want,
                            0.0 if CASES[kernel].tol32 == 0.0 else 1e-10, path=f"{kernel} {dims}")
    finally:
        cy._set_parallel_min(previous)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-15), (np.float32, 5e-7)])
def test_tanh_sigmoid_exp_accuracy(cy, dtype, tol):
    """The backend's own exp/sigmoid/tanh (see the design comment of the .pyx)
    against long double, through the kernels that use them, from tiny to huge
    arguments: within a few ulp."""
    x = np.concatenate([np.linspace(-60, 60, 24001), np.linspace(-0.3, 0.3, 6001),
                        np.geomspace(1e-300, 1, 600), -np.geomspace(1e-300, 1, 600),
                        [-1e4, -800.0, -100.0, 100.0, 800.0, 1e4]]).astype(dtype)[None, :]
    exact = x.astype(np.longdouble)
    tiny = np.finfo(dtype).tiny

    def worst(got, want):
        normal = np.abs(want) > 1e3 * tiny  # below that, absolute error is what counts
        return float(np.max(np.abs(got - want)[normal] / np.abs(want)[normal]))

    h = np.empty_like(x)
    cy.rnn_cell_forward(x, np.zeros_like(x), h)
    assert worst(h, np.tanh(exact)) <= tol
    n = x.shape[1]
    ifog, c, hh = np.empty((1, 4 * n), dtype), np.empty_like(x), np.empty_like(x)
    cy.lstm_cell_forward(np.tile(x, 4), np.zeros((1, 4 * n), dtype), np.zeros_like(x), ifog, c, hh)
    assert worst(ifog[:, :n], 1 / (1 + np.exp(-exact))) <= tol
    # softmax of rows [min(x, 0), 0] is exp(x) / (1 + exp(x)) in column 0
    rows = np.stack([np.minimum(x[0], 0), np.zeros(n, dtype)], axis=1)
    dx = np.empty_like(rows)
    cy.softmax_loss(rows, np.ones(n, np.intp), np.ones(n, bool), 1.0, None, dx)
    e = np.exp(rows[:, 0].astype(np.longdouble))
    assert worst(dx[:, 0], e / (1 + e)) <= tol
    assert np.isfinite(h).all() and np.isfinite(ifog).all() and np.isfinite(dx).all()


# ----------------------------------------------------------------------------
# the build


def test_build_info(cy):
    info = dict(cy.BUILD_INFO)
    assert info.pop("isa") in (*BUILDS, "native")
    assert set(info) == {"debug", "native", "openmp"}
    assert all(isinstance(v, bool) for v in info.values())


def test_isa_builds_give_bitwise_equal_results(builds):
    """Every build computes every parity case, both dtypes, to the baseline's
    bits (no fused multiply-adds), except the float32 recurrences and decoding
    (FMA_KERNELS): the engine's tiles use FMA where the CPU has it, so there the AVX2 and AVX-512 builds (with or without BF16)
    agree bit for bit (same order of every sum) and the baseline within the
    row's tolerance."""
    baseline = builds["baseline"]
    assert {isa: m.BUILD_INFO["isa"] for isa, m in builds.items()} == {isa: isa for isa in builds}
    fma = [m for isa, m in builds.items() if isa != "baseline"]
    for kernel in COMPARED:
        build, written, tol = CASES[kernel]
        for dims in SHAPES:
            for dtype in (np.float32, np.float64):
                args = build(np.random.default_rng(3), dtype, **dims)
                engine = kernel in FMA_KERNELS and dtype == np.float32
                path = f"{kernel} {dims} {dtype.__name__}"
                want = run(fma[0] if engine else baseline, kernel, args, written)
                for other in (fma[1:] if engine else fma):
                    assert_same(run(other, kernel, args, written), want, 0.0, path=path)
                if engine:
                    assert_same(run(baseline, kernel, args, written), want, tol, scaled_error, path)


def test_backend_loads_the_build_for_this_cpu(builds):
    best = next(isa for isa in BUILDS if isa in builds)  # BUILDS is best first
    assert _backend.load("cython").module is builds[best]
    code = "from fastcap.runtime import backends; print(backends.load('cython').module.BUILD_INFO['isa'])"
    for choice, isa in [(isa, isa) for isa in builds] + [("auto", best), ("", best)]:
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, _backend.ISA_ENV_VAR: choice}, timeout=300)
        assert out.returncode == 0 and out.stdout.split() == [isa], (choice, out.stderr)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, _backend.ISA_ENV_VAR: "sse9"}, timeout=300)
    assert out.returncode != 0 and f"FASTCAP_CYTHON_ISA='sse9': expected one of {', '.join(ISA_CHOICES)}" in out.stderr


def test_debug_build_checks_bounds(cy):
    """FASTCAP_CYTHON_DEBUG=1 builds check every memoryview index."""
    if not cy.BUILD_INFO["debug"]:
        pytest.skip("normal build (bounds checks off); rebuild with FASTCAP_CYTHON_DEBUG=1 to run this")
    with pytest.raises(IndexError):
        cy.rnn_cell_forward(np.ones((3, 3)), np.ones((3, 3)), np.empty((4, 3)))  # reads row 3 of 3


@pytest.mark.parametrize("call", [
    lambda cy: cy.argmax_words(np.ones((3, 4)), np.ones(4), -1, np.empty(2, dtype=np.intp)),  # row 2 of 2
    lambda cy: cy.argmax_words(np.ones((3, 4)), np.ones(3), -1, np.empty(3, dtype=np.intp)),
    lambda cy: cy.sample_words(np.ones((3, 4)), np.ones(4), np.full(2, 0.5), -1, np.empty(3, dtype=np.intp)),
    lambda cy: cy.softmax_loss(np.ones((3, 4)), np.zeros(3, np.intp), np.ones(3, bool), 1.0, np.ones(2),
                               np.empty((3, 4))),
    lambda cy: cy.softmax_loss(np.ones((3, 4)), np.array([0, 4, 1]), np.ones(3, bool), 1.0, None,
                               np.empty((3, 4))),  # a target past V
])
def test_row_kernels_refuse_sizes_and_targets_that_do_not_fit(cy, call):
    """The kernels that read rows through raw pointers check their sizes (every build)."""
    with pytest.raises(ValueError):
        call(cy)


def test_kernels_accept_read_only_arrays(cy, rng):
    """Typed memoryviews refuse read-only buffers unless declared const: call a kernel directly."""
    x = rng.standard_normal((6, 11))
    x.setflags(write=False)
    y = np.arange(6, dtype=np.intp) % 11
    y.setflags(write=False)
    mask = np.ones(6, bool)
    mask.setflags(write=False)
    dx_c, dx_n = np.empty_like(x), np.empty_like(x)
    loss_c = cy.softmax_loss(x, y, mask, 0.5, None, dx_c)
    loss_n = _backend.load("numpy").softmax_loss(x, y, mask, 0.5, None, dx_n)
    assert rel_error(loss_c, loss_n) <= 1e-10 and rel_error(dx_c, dx_n) <= 1e-10


# ----------------------------------------------------------------------------
# absent gracefully: a copy of the package without the compiled module


def _run_without_extension(tmp_path, code, **env):
    shutil.copytree(os.path.join(REPO, "fastcap"), tmp_path / "fastcap",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    environ = {k: v for k, v in os.environ.items() if k != "FASTCAP_BACKEND"}
    environ.update(PYTHONPATH=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, env=environ, timeout=300)


def test_missing_extension_is_reported_not_fatal(tmp_path):
    r = _run_without_extension(tmp_path, """
        import numpy as np
        import fastcap
        assert fastcap.__file__.startswith(%r), fastcap.__file__
        assert "cython" not in fastcap.available_backends(), fastcap.available_backends()
        assert fastcap.get_backend() in ("numba", "numpy"), fastcap.get_backend()
        try:
            fastcap.set_backend("cython")
        except fastcap.BackendUnavailableError as exc:
            print("MESSAGE:", exc)
        else:
            raise SystemExit("set_backend('cython') did not raise")
        # and everything else works
        loss, dx = fastcap.temporal_softmax_loss(np.zeros((2, 3, 4)), np.zeros((2, 3), int), np.ones((2, 3), bool))
        assert abs(loss - 3 * np.log(4)) < 1e-12
    """ % str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    message = r.stdout.split("MESSAGE:", 1)[1]
    assert "not built" in message and "pip install" in message and "compiler" in message, message


def test_missing_extension_with_environment_variable_fails_at_import(tmp_path):
    r = _run_without_extension(tmp_path, "import fastcap", FASTCAP_BACKEND="cython")
    assert r.returncode != 0
    assert "BackendUnavailableError" in r.stderr and "not built" in r.stderr and "pip install" in r.stderr, r.stderr


def test_vector_math_scalar_and_vector_forms_agree_bit_for_bit(builds):
    """exp, sigmoid and tanh of engine/vecmath.h: the scalar forms (the Cython cell
    kernels) and the vector forms (the engine's fused cells) give the same bits on every
    build, over every binade, the series' edge at 1/8, the exp clamp, +-0, +-inf and NaN."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(4000) * 2.0 ** e for e in range(-30, 10, 2)]
                       + [np.array([0.0, -0.0, 0.125, -0.125, np.nextafter(0.125, 0), 43.5, -43.5, 87.0,
                                    -87.0, -88.0, 1e30, -1e30, np.inf, -np.inf, np.nan])]).astype(np.float32)
    for isa, m in builds.items():
        scalar, vector = m._vecmath_forms(x, False), m._vecmath_forms(x, True)
        both_nan = np.isnan(scalar) & np.isnan(vector)  # a NaN's payload means nothing
        np.testing.assert_array_equal(np.where(both_nan, 0, scalar).view(np.uint32),
                                      np.where(both_nan, 0, vector).view(np.uint32), err_msg=isa)
        assert np.signbit(scalar[2][x == 0]).tolist() == np.signbit(x[x == 0]).tolist()  # tanh(-0) = -0
