"""Cython-specific tests: the public API under the cython backend against numpy.

test_kernel_parity.py already runs every kernel of the table through the
cython rows (float64 to 1e-10, float32 within each row's tolerance). Here:

* every public layer, the model (loss, gradients, sampling) and the update
  rules give numpy's float64 results to 1e-10, for C-contiguous,
  non-contiguous and read-only inputs;
* the threaded (OpenMP prange) code paths give the same results as the serial
  ones (the parity table is rerun with the threshold forced to 0);
* a 50-iteration CaptioningSolver run follows numpy's loss history;
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

import fastcap
from fastcap import _backend, optim
from fastcap import rnn_layers as L
from fastcap.gradient_check import rel_error

from kernel_cases import CASES, SHAPES, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRE_ALL = os.environ.get("CI", "").lower() in ("1", "true", "yes")
N, T, D, H, V, W = 4, 5, 6, 7, 11, 3
LAYOUTS = ["contiguous", "noncontiguous", "readonly"]

# Largest relative difference allowed between the cython and numpy float32 loss
# histories of test_solver_loss_history. Measured: 1.6e-7 over the 50
# iterations (float64: 6e-16). Both compute in float32, with different but
# equally accurate exp/tanh and summation orders; the gap grows slowly over
# the Adam steps, so the bound leaves a factor of ~6.
SOLVER_FLOAT32_RTOL = 1e-6


@pytest.fixture(scope="module")
def cy():
    """The compiled module; skipped (failed in CI) when it is not built."""
    if "cython" not in fastcap.available_backends():
        why = _backend.unavailable_reasons().get("cython")
        if REQUIRE_ALL:
            pytest.fail(f"the cython backend is unavailable in CI: {why}")
        pytest.skip(f"the cython backend is not built here: {why}")
    from fastcap._kernels import cython_backend

    return cython_backend


# ----------------------------------------------------------------------------
# helpers


def layout(a, kind):
    """The values of `a` as a C-contiguous, non-contiguous or read-only array."""
    a = np.array(a)
    if kind == "noncontiguous" and a.ndim:
        # every other element of a twice-as-long last axis: strided, not contiguous
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., 1::2] = a
        a = wide[..., 1::2]
        assert a.size <= 1 or not a.flags.c_contiguous
    elif kind == "readonly":
        a.setflags(write=False)
    return a


def on(backend, fn, *args, **kwargs):
    with fastcap.use_backend(backend):
        return fn(*args, **kwargs)


def assert_close(got, want, tol=1e-10, where="result"):
    """Nested tuples / dicts / arrays / numbers agree (rel_error <= tol; ints exactly)."""
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for k in want:
            assert_close(got[k], want[k], tol, f"{where}[{k!r}]")
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, tol, f"{where}[{i}]")
    elif isinstance(want, (np.ndarray, float, int, np.floating)):
        g, w = np.asarray(got), np.asarray(want)
        assert g.shape == w.shape and g.dtype == w.dtype, f"{where}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=where)
        elif w.size:
            err = rel_error(g, w)
            assert err <= tol, f"{where}: rel_error {err:.3g} > {tol:g}"


def both(fn, *args):
    """(cython result, numpy result) of fn(*args)."""
    return on("cython", fn, *args), on("numpy", fn, *args)


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


def randn(rng, *shape, scale=1.0):
    return scale * rng.standard_normal(shape)


# ----------------------------------------------------------------------------
# public layers, float64, three input layouts


@pytest.mark.parametrize("kind", LAYOUTS)
def test_rnn_layers(cy, rng, kind):
    step = [layout(a, kind) for a in (randn(rng, N, D), randn(rng, N, H), randn(rng, D, H),
                                      randn(rng, H, H), randn(rng, H))]
    (h_c, cache_c), (h_n, cache_n) = both(L.rnn_step_forward, *step)
    assert_close(h_c, h_n)
    dnext = layout(randn(rng, N, H), kind)
    assert_close(on("cython", L.rnn_step_backward, dnext, cache_c),
                 on("numpy", L.rnn_step_backward, dnext, cache_n))

    seq = [layout(a, kind) for a in (randn(rng, N, T, D), randn(rng, N, H), randn(rng, D, H),
                                     randn(rng, H, H), randn(rng, H))]
    (h_c, cache_c), (h_n, cache_n) = both(L.rnn_forward, *seq)
    assert_close(h_c, h_n)
    dh = layout(randn(rng, N, T, H), kind)
    assert_close(on("cython", L.rnn_backward, dh, cache_c), on("numpy", L.rnn_backward, dh, cache_n))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_lstm_layers(cy, rng, kind):
    # scale 3 on x saturates some gates
    step = [layout(a, kind) for a in (randn(rng, N, D, scale=3), randn(rng, N, H), randn(rng, N, H),
                                      randn(rng, D, 4 * H), randn(rng, H, 4 * H), randn(rng, 4 * H))]
    (h_c, c_c, cache_c), (h_n, c_n, cache_n) = both(L.lstm_step_forward, *step)
    assert_close((h_c, c_c), (h_n, c_n))
    dh, dc = layout(randn(rng, N, H), kind), layout(randn(rng, N, H), kind)
    assert_close(on("cython", L.lstm_step_backward, dh, dc, cache_c),
                 on("numpy", L.lstm_step_backward, dh, dc, cache_n))

    seq = [layout(a, kind) for a in (randn(rng, N, T, D, scale=3), randn(rng, N, H),
                                     randn(rng, D, 4 * H), randn(rng, H, 4 * H), randn(rng, 4 * H))]
    (h_c, cache_c), (h_n, cache_n) = both(L.lstm_forward, *seq)
    assert_close(h_c, h_n)
    dh = layout(randn(rng, N, T, H), kind)
    assert_close(on("cython", L.lstm_backward, dh, cache_c), on("numpy", L.lstm_backward, dh, cache_n))


def test_caches_cross_backends(cy, rng):
    """A cython forward's cache feeds a numpy backward and the other way round."""
    args = (randn(rng, N, T, D), randn(rng, N, H), randn(rng, D, 4 * H), randn(rng, H, 4 * H), randn(rng, 4 * H))
    dh = randn(rng, N, T, H)
    _, cache_c = on("cython", L.lstm_forward, *args)
    _, cache_n = on("numpy", L.lstm_forward, *args)
    want = on("numpy", L.lstm_backward, dh, cache_n)
    assert_close(on("numpy", L.lstm_backward, dh, cache_c), want)
    assert_close(on("cython", L.lstm_backward, dh, cache_n), want)


@pytest.mark.parametrize("kind", LAYOUTS)
def test_embedding_affine_softmax_layers(cy, rng, kind):
    x = layout(rng.integers(0, V, (N, T)), kind)
    Wemb = layout(randn(rng, V, W), kind)
    (out_c, cache_c), (out_n, cache_n) = both(L.word_embedding_forward, x, Wemb)
    assert_close(out_c, out_n)
    dout = layout(randn(rng, N, T, W), kind)
    assert_close(on("cython", L.word_embedding_backward, dout, cache_c),
                 on("numpy", L.word_embedding_backward, dout, cache_n))

    xa, w, b = (layout(a, kind) for a in (randn(rng, N, T, D), randn(rng, D, V), randn(rng, V)))
    (out_c, cache_c), (out_n, cache_n) = both(L.temporal_affine_forward, xa, w, b)
    assert_close(out_c, out_n)
    dout = layout(randn(rng, N, T, V), kind)
    assert_close(on("cython", L.temporal_affine_backward, dout, cache_c),
                 on("numpy", L.temporal_affine_backward, dout, cache_n))

    scores = layout(randn(rng, N, T, V, scale=3), kind)
    y = layout(rng.integers(0, V, (N, T)), kind)
    mask = layout(rng.random((N, T)) < 0.7, kind)
    assert_close(*both(L.temporal_softmax_loss, scores, y, mask))


def test_softmax_loss_nan_and_empty(cy, rng):
    scores = randn(rng, N, T, V)
    scores[1, 2, 3] = np.nan
    loss, dx = on("cython", L.temporal_softmax_loss, scores, rng.integers(0, V, (N, T)), np.ones((N, T), bool))
    assert np.isnan(loss) and np.isnan(dx[1, 2]).all()  # a diverged model is reported, not hidden
    loss, dx = on("cython", L.temporal_softmax_loss, np.zeros((0, T, V)), np.zeros((0, T), int),
                  np.zeros((0, T), bool))
    assert loss == 0.0 and dx.shape == (0, T, V)


def _vocab(n_words):
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(n_words - 4)]
    return {w: i for i, w in enumerate(words)}


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("kind", LAYOUTS)
def test_model_loss_grads_and_sample(cy, rng, cell, kind):
    model = fastcap.CaptioningRNN(_vocab(V), input_dim=D, wordvec_dim=W, hidden_dim=H,
                                  cell_type=cell, dtype=np.float64, rng=np.random.RandomState(3))
    model.params = {k: layout(v, kind) for k, v in model.params.items()}
    features = layout(randn(rng, N, D), kind)
    captions = rng.integers(0, V, (N, T + 2))
    captions[:, 0] = 1
    captions[1, 4:] = 0  # a short caption: padding is not scored
    captions = layout(captions, kind)
    assert_close(*both(model.loss, features, captions))
    # sampling: greedy words must agree exactly (max_length past every <END>)
    assert_close(*both(model.sample, features, 12))
    assert_close(*both(model.sample, randn(rng, 1, D), 7))  # batch 1 takes the gemv path


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["contiguous", "readonly"])
def test_update_rules(cy, rng, rule, dtype, kind):
    w0 = randn(rng, V, W).astype(dtype)
    grads = [layout(randn(rng, V, W).astype(dtype), kind) for _ in range(3)]
    results = {}
    for backend in ("cython", "numpy"):
        w, config = w0.copy(), {"learning_rate": 1e-2}
        with fastcap.use_backend(backend):
            for dw in grads:
                w, config = getattr(optim, rule)(w, dw, config)
        results[backend] = (w, {k: v for k, v in config.items() if isinstance(v, np.ndarray)})
    if dtype == np.float64:
        assert_close(results["cython"], results["numpy"])
    else:  # float32: same float32 arithmetic, up to contraction into fused multiply-adds
        for got, want in zip(results["cython"][0].ravel(), results["numpy"][0].ravel()):
            assert abs(got - want) <= 1e-6 * max(1.0, abs(want))


def test_threaded_paths_match_reference(cy):
    """Every parity case with the prange threshold at 0 (threads whenever the
    build has OpenMP): same results as the numpy reference."""
    ref = _backend.load("numpy")
    kernels = _backend.load("cython")
    previous = cy._set_parallel_min(0)
    try:
        for name, kernel, build, written, _ in CASES:
            for dims in SHAPES:
                args = build(np.random.default_rng(11), np.float64, **dims)
                (r1, outs1), (r2, outs2) = run(kernels, kernel, args, written), run(ref, kernel, args, written)
                tol = 0.0 if kernel == "argmax_words" else 1e-10
                if r2 is not None:
                    assert rel_error(r1, r2) <= 1e-10, name
                for a, b in zip(outs1, outs2):
                    assert (np.array_equal(a, b) if tol == 0.0 else rel_error(a, b) <= tol), (name, dims)
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
    cy.softmax_loss(rows, np.ones(n, np.intp), np.ones(n, bool), 1.0, dx)
    e = np.exp(rows[:, 0].astype(np.longdouble))
    assert worst(dx[:, 0], e / (1 + e)) <= tol
    assert np.isfinite(h).all() and np.isfinite(ifog).all() and np.isfinite(dx).all()


# ----------------------------------------------------------------------------
# a short training run


def _solver_data(rng, n_train=50, n_images=20, T=9, V=30, D=16):
    captions = np.zeros((n_train, T), np.int32)  # <NULL> padding
    captions[:, 0] = 1  # <START>
    for i, k in enumerate(rng.integers(2, T, n_train)):  # k - 1 words, then <END>
        captions[i, 1:k] = rng.integers(4, V, k - 1)
        captions[i, k] = 2
    return {
        "train_captions": captions,
        "train_image_idxs": rng.integers(0, n_images, n_train).astype(np.int32),
        "train_features": rng.standard_normal((n_images, D)).astype(np.float32),
        "train_urls": np.array([f"img{i}.jpg" for i in range(n_images)]),
        "word_to_idx": _vocab(V),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_solver_loss_history(cy, dtype):
    """50 Adam iterations of a small LSTM captioner: the same loss curve as numpy."""
    data = _solver_data(np.random.default_rng(5))
    history = {}
    for backend in ("cython", "numpy"):
        with fastcap.use_backend(backend):
            model = fastcap.CaptioningRNN(data["word_to_idx"], input_dim=16, wordvec_dim=8, hidden_dim=12,
                                          cell_type="lstm", dtype=dtype, rng=np.random.RandomState(0))
            solver = fastcap.CaptioningSolver(model, data, update_rule="adam",
                                              optim_config={"learning_rate": 3e-2}, batch_size=10,
                                              num_epochs=10, verbose=False, rng=np.random.RandomState(0))
            solver.train()
            history[backend] = np.array(solver.loss_history)
    got, want = history["cython"], history["numpy"]
    assert len(got) == len(want) == 50
    assert want[-5:].mean() < 0.8 * want[:5].mean()  # it does learn
    err = np.max(np.abs(got - want) / np.abs(want))
    print(f"{np.dtype(dtype).name}: max relative difference of the loss histories {err:.3g}")
    assert err <= (1e-8 if dtype == np.float64 else SOLVER_FLOAT32_RTOL), f"relative error {err:.3g}"


# ----------------------------------------------------------------------------
# the build


def test_build_info(cy):
    assert set(cy.BUILD_INFO) == {"debug", "native", "openmp"}
    assert all(isinstance(v, bool) for v in cy.BUILD_INFO.values())


def test_debug_build_checks_bounds(cy):
    """FASTCAP_CYTHON_DEBUG=1 builds check every memoryview index."""
    if not cy.BUILD_INFO["debug"]:
        pytest.skip("normal build (bounds checks off); rebuild with FASTCAP_CYTHON_DEBUG=1 to run this")
    Wemb = np.ones((5, 3))
    with pytest.raises(IndexError):
        cy.embedding_forward(np.array([0, 7], dtype=np.intp), Wemb, np.empty((2, 3)))  # row 7 of 5
    with pytest.raises(IndexError):
        cy.rnn_cell_forward(np.ones((3, 3)), np.ones((3, 3)), np.empty((4, 3)))  # reads row 3 of 3


def test_kernels_accept_read_only_arrays(cy, rng):
    x = randn(rng, 6, V)
    x.setflags(write=False)
    y = np.arange(6, dtype=np.intp) % V
    y.setflags(write=False)
    mask = np.ones(6, bool)
    mask.setflags(write=False)
    dx_c, dx_n = np.empty_like(x), np.empty_like(x)
    loss_c = cy.softmax_loss(x, y, mask, 0.5, dx_c)
    loss_n = _backend.load("numpy").softmax_loss(x, y, mask, 0.5, dx_n)
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
