"""Numba-specific tests: the public API under the numba backend against numpy.

The kernel-by-kernel parity lives in test_kernel_parity.py (it runs numba rows
automatically). Here: every public layer, the model and the optimizers give
the numpy backend's results for float64 to 1e-10, also for non-contiguous and
read-only inputs (which reach the kernels as separate, read-only
specializations); a short training run follows the same loss curve; the
float32 math helpers are accurate; importing compiles nothing; caching and
bounds checking are controlled as documented.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import fastcap  # noqa: E402
from fastcap import optim  # noqa: E402
from fastcap import rnn_layers as L  # noqa: E402
from fastcap.gradient_check import rel_error  # noqa: E402

if "numba" not in fastcap.available_backends():  # pragma: no cover
    pytest.skip("the numba backend does not load here", allow_module_level=True)

from fastcap._kernels import numba_backend as nb  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, T, D, H, V, W = 4, 5, 6, 7, 11, 3
VARIANTS = ["contiguous", "noncontiguous", "readonly"]


# ----------------------------------------------------------------------------
# helpers


def variant(a, kind):
    """`a` as a C-contiguous, a non-contiguous (every other element of a bigger
    array, or transposed storage) or a read-only array with the same values."""
    a = np.asarray(a)
    if kind == "contiguous" or a.ndim == 0:
        return a.copy()
    if kind == "noncontiguous":
        if a.ndim >= 2:
            return np.asfortranarray(a)
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        out = big[..., ::2]
        assert not out.flags.c_contiguous or a.size <= 1
        return out
    out = a.copy()
    out.setflags(write=False)
    return out


def under(backend, fn, *args, **kwargs):
    with fastcap.use_backend(backend):
        return fn(*args, **kwargs)


def assert_same(got, want, tol=1e-10, path="out"):
    """Recursively compare arrays / numbers / tuples / dicts with rel_error <= tol."""
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for k in want:
            assert_same(got[k], want[k], tol, f"{path}[{k!r}]")
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want), path
        for k, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, tol, f"{path}[{k}]")
    else:
        g, w = np.asarray(got), np.asarray(want)
        assert g.shape == w.shape and g.dtype == w.dtype, f"{path}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        if w.dtype.kind in "iub":
            np.testing.assert_array_equal(g, w, err_msg=path)
        elif w.size:
            err = rel_error(g, w)
            assert err <= tol, f"{path}: rel_error {err:.3g} > {tol:g}"


def both(fn, *args):
    """fn(*args) under numpy and under numba; returns (numba result, numpy result)."""
    return under("numba", fn, *args), under("numpy", fn, *args)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def randn(rng, *shape, scale=1.0):
    return scale * rng.standard_normal(shape)


def words(rng, *shape):
    return rng.integers(0, V, shape)


# ----------------------------------------------------------------------------
# public layers, float64, for contiguous / non-contiguous / read-only inputs


@pytest.mark.parametrize("kind", VARIANTS)
def test_rnn_step_layers(rng, kind):
    args = [variant(a, kind) for a in (randn(rng, N, D), randn(rng, N, H), randn(rng, D, H),
                                       randn(rng, H, H), randn(rng, H))]
    (h1, c1), (h2, c2) = both(L.rnn_step_forward, *args)
    assert_same(h1, h2)
    dnext = variant(randn(rng, N, H), kind)
    assert_same(under("numba", L.rnn_step_backward, dnext, c1),
                under("numpy", L.rnn_step_backward, dnext, c2))


@pytest.mark.parametrize("kind", VARIANTS)
def test_rnn_sequence_layers(rng, kind):
    args = [variant(a, kind) for a in (randn(rng, N, T, D), randn(rng, N, H), randn(rng, D, H),
                                       randn(rng, H, H), randn(rng, H))]
    (h1, c1), (h2, c2) = both(L.rnn_forward, *args)
    assert_same(h1, h2)
    dh = variant(randn(rng, N, T, H), kind)
    assert_same(under("numba", L.rnn_backward, dh, c1), under("numpy", L.rnn_backward, dh, c2))


@pytest.mark.parametrize("kind", VARIANTS)
def test_lstm_step_layers(rng, kind):
    args = [variant(a, kind) for a in (randn(rng, N, D), randn(rng, N, H), randn(rng, N, H),
                                       randn(rng, D, 4 * H), randn(rng, H, 4 * H), randn(rng, 4 * H))]
    (h1, cc1, c1), (h2, cc2, c2) = both(L.lstm_step_forward, *args)
    assert_same((h1, cc1), (h2, cc2))
    dh, dc = variant(randn(rng, N, H), kind), variant(randn(rng, N, H), kind)
    assert_same(under("numba", L.lstm_step_backward, dh, dc, c1),
                under("numpy", L.lstm_step_backward, dh, dc, c2))


@pytest.mark.parametrize("kind", VARIANTS)
def test_lstm_sequence_layers(rng, kind):
    # scale 3 saturates some gates
    args = [variant(a, kind) for a in (randn(rng, N, T, D, scale=3), randn(rng, N, H), randn(rng, D, 4 * H),
                                       randn(rng, H, 4 * H), randn(rng, 4 * H))]
    (h1, c1), (h2, c2) = both(L.lstm_forward, *args)
    assert_same(h1, h2)
    dh = variant(randn(rng, N, T, H), kind)
    assert_same(under("numba", L.lstm_backward, dh, c1), under("numpy", L.lstm_backward, dh, c2))


def test_caches_cross_backends(rng):
    """A numba forward's cache feeds a numpy backward and vice versa (one cache layout)."""
    args = (randn(rng, N, T, D), randn(rng, N, H), randn(rng, D, 4 * H), randn(rng, H, 4 * H), randn(rng, 4 * H))
    dh = randn(rng, N, T, H)
    _, c_nb = under("numba", L.lstm_forward, *args)
    _, c_np = under("numpy", L.lstm_forward, *args)
    want = under("numpy", L.lstm_backward, dh, c_np)
    assert_same(under("numpy", L.lstm_backward, dh, c_nb), want)
    assert_same(under("numba", L.lstm_backward, dh, c_np), want)


@pytest.mark.parametrize("kind", VARIANTS)
def test_word_embedding(rng, kind):
    x = variant(rng.integers(0, 3, (N, T)), kind)  # few words: rows repeat in the backward
    Wt = variant(randn(rng, V, W), kind)
    (o1, c1), (o2, c2) = both(L.word_embedding_forward, x, Wt)
    assert_same(o1, o2)
    dout = variant(randn(rng, N, T, W), kind)
    assert_same(under("numba", L.word_embedding_backward, dout, c1),
                under("numpy", L.word_embedding_backward, dout, c2))


@pytest.mark.parametrize("kind", VARIANTS)
def test_temporal_affine(rng, kind):
    args = [variant(a, kind) for a in (randn(rng, N, T, D), randn(rng, D, V), randn(rng, V))]
    (o1, c1), (o2, c2) = both(L.temporal_affine_forward, *args)
    assert_same(o1, o2)
    dout = variant(randn(rng, N, T, V), kind)
    assert_same(under("numba", L.temporal_affine_backward, dout, c1),
                under("numpy", L.temporal_affine_backward, dout, c2))


@pytest.mark.parametrize("kind", VARIANTS)
def test_temporal_softmax_loss(rng, kind):
    mask = rng.random((N, T)) < 0.6
    mask[0] = False  # a fully masked caption
    args = [variant(a, kind) for a in (randn(rng, N, T, V, scale=4), words(rng, N, T), mask)]
    assert_same(*both(L.temporal_softmax_loss, *args))


def test_softmax_loss_propagates_nan(rng):
    """A NaN score in a scored row makes the loss NaN, as in numpy (the solver relies on it)."""
    x, y, mask = randn(rng, N, T, V), words(rng, N, T), np.ones((N, T), bool)
    x[1, 2, 3] = np.nan
    for dtype in (np.float32, np.float64):
        loss_nb, dx_nb = under("numba", L.temporal_softmax_loss, x.astype(dtype), y, mask)
        loss_np, dx_np = under("numpy", L.temporal_softmax_loss, x.astype(dtype), y, mask)
        assert np.isnan(loss_nb) and np.isnan(loss_np)
        np.testing.assert_array_equal(np.isnan(dx_nb), np.isnan(dx_np))


def test_empty_batches(rng):
    x = np.zeros((0, T, V))
    assert_same(*both(L.temporal_softmax_loss, x, np.zeros((0, T), int), np.zeros((0, T), bool)))
    assert_same(*both(lambda: L.word_embedding_forward(np.zeros((0, T), int), randn(rng, V, W))[0]))


# ----------------------------------------------------------------------------
# model and optimizers


WORDS = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(V - 4)]
WORD_TO_IDX = {w: i for i, w in enumerate(WORDS)}


def _model(cell, dtype=np.float64, input_dim=D, wordvec_dim=W, hidden_dim=H, word_to_idx=WORD_TO_IDX):
    return fastcap.CaptioningRNN(word_to_idx, input_dim=input_dim, wordvec_dim=wordvec_dim,
                                 hidden_dim=hidden_dim, cell_type=cell, dtype=dtype,
                                 rng=np.random.RandomState(3))


def _captions(rng, n, t, vocab):
    """<START> words <END> <NULL>...: random lengths, some captions full length."""
    caps = np.zeros((n, t), dtype=np.int32)
    caps[:, 0] = 1
    for i, length in enumerate(rng.integers(1, t, n)):
        caps[i, 1:length] = rng.integers(4, vocab, length - 1)
        caps[i, length] = 2
    return caps


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("kind", VARIANTS)
def test_model_loss_and_sample(rng, cell, kind):
    model = _model(cell)
    for k, p in model.params.items():
        model.params[k] = variant(p, kind)
    feats = variant(randn(rng, N, D), kind)
    caps = variant(_captions(rng, N, 8, V), kind)
    assert_same(*both(model.loss, feats, caps))
    # sample: integer captions must be identical
    assert_same(*both(model.sample, feats, 12))
    assert_same(*both(model.sample, feats[:1], 12))
    assert_same(*both(model.sample, feats, 0))


def test_sample_without_end_token(rng):
    """end = -1 (no <END> in the vocabulary): every caption runs to max_length."""
    w2i = {w: i for i, w in enumerate(WORDS) if w != "<END>"}
    w2i = {w: i for i, w in enumerate(w2i)}
    model = _model("lstm", word_to_idx=w2i)
    assert_same(*both(model.sample, randn(rng, N, D), 9))


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("kind", VARIANTS)
def test_update_rules(rng, rule, kind):
    w0, dws = randn(rng, 5, 7), [randn(rng, 5, 7) for _ in range(3)]
    results = {}
    for backend in ("numpy", "numba"):
        w, config = w0.copy(), {"learning_rate": 1e-2}
        for dw in dws:  # three steps, so the optimizer state is used
            w, config = under(backend, getattr(optim, rule), w, variant(dw, kind), config)
        results[backend] = (w, {k: v for k, v in config.items()})
    assert_same(results["numba"], results["numpy"])
    # and a 1-D parameter (a bias) under numba updates in place too
    b, cfg = np.zeros(4), {}
    b2, _ = under("numba", getattr(optim, rule), b, np.ones(4), cfg)
    assert b2 is b and np.all(b != 0)


def test_adam_float32_matches_numpy_float32(rng):
    w0, dw = randn(rng, 64, 33).astype(np.float32), randn(rng, 64, 33).astype(np.float32)
    out = {}
    for backend in ("numpy", "numba"):
        w, config = w0.copy(), {}
        for _ in range(5):
            w, config = under(backend, optim.adam, w, dw, config)
        out[backend] = w
    assert np.max(np.abs(out["numba"] - out["numpy"])) <= 1e-6 * np.max(np.abs(out["numpy"]))


# ----------------------------------------------------------------------------
# a short training run

SOLVER_V, SOLVER_D, SOLVER_W, SOLVER_H = 30, 16, 8, 12
# float32: the largest relative difference between the numba and numpy loss
# histories measured over 6 seeds of data, weights and minibatches, both cells,
# was 5e-8 (the GEMMs are the same; only the kernels' rounding differs, and
# float32 Adam does not amplify it in 50 steps). The bound leaves 10x.
FLOAT32_LOSS_TOL = 5e-7


def _solver_data():
    rng = np.random.default_rng(42)
    n_images, caps_per_image = 25, 2
    words = [f"w{i}" for i in range(SOLVER_V - 4)]
    word_to_idx = {w: i for i, w in enumerate(["<NULL>", "<START>", "<END>", "<UNK>"] + words)}
    n = n_images * caps_per_image
    # A learnable language: each caption counts up through the vocabulary from a
    # start word fixed by its image, so the loss falls quickly.
    caps = _captions(rng, n, 17, SOLVER_V)
    first = np.repeat(rng.integers(0, SOLVER_V - 4, n_images), caps_per_image)
    counting = 4 + (first[:, None] + np.arange(15)) % (SOLVER_V - 4)
    caps[:, 1:16] = np.where(caps[:, 1:16] >= 4, counting, caps[:, 1:16])
    return {
        "train_captions": caps,
        "train_image_idxs": np.repeat(np.arange(n_images, dtype=np.int32), caps_per_image),
        "train_features": rng.standard_normal((n_images, SOLVER_D)).astype(np.float32),
        "train_urls": np.array([f"img{i}" for i in range(n_images)]),
        "word_to_idx": word_to_idx,
        "idx_to_word": list(word_to_idx),
    }


def _train(backend, cell, dtype):
    data = _solver_data()
    model = fastcap.CaptioningRNN(data["word_to_idx"], input_dim=SOLVER_D, wordvec_dim=SOLVER_W,
                                  hidden_dim=SOLVER_H, cell_type=cell, dtype=dtype,
                                  rng=np.random.RandomState(1))
    solver = fastcap.CaptioningSolver(model, data, update_rule="adam",
                                      optim_config={"learning_rate": 1e-2}, lr_decay=0.95,
                                      batch_size=10, num_epochs=10, verbose=False,
                                      rng=np.random.RandomState(0))
    with fastcap.use_backend(backend):
        solver.train()
    return np.array(solver.loss_history)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_solver_loss_history(cell):
    for dtype, tol in ((np.float64, 1e-8), (np.float32, FLOAT32_LOSS_TOL)):
        hist_nb, hist_np = _train("numba", cell, dtype), _train("numpy", cell, dtype)
        assert len(hist_nb) == len(hist_np) == 50
        err = np.max(np.abs(hist_nb - hist_np) / np.abs(hist_np))
        assert err <= tol, f"{np.dtype(dtype)} loss histories differ by {err:.3g} > {tol:g}"
        assert hist_nb[-5:].mean() < 0.7 * hist_nb[:5].mean()  # it did train


# ----------------------------------------------------------------------------
# float32 math helpers


@numba.njit
def _apply_exp(x, out):
    for k in range(x.shape[0]):
        out[k] = nb._exp(x[k])


@numba.njit
def _apply_sigmoid(x, out):
    for k in range(x.shape[0]):
        out[k] = nb._sigmoid(x[k])


@numba.njit
def _apply_tanh(x, out):
    for k in range(x.shape[0]):
        out[k] = nb._tanh(x[k])


def _grid(lo, hi):
    x = np.concatenate([np.linspace(lo, hi, 200_001), -np.logspace(-30, 0, 1001), np.logspace(-30, 0, 1001),
                        [0.0, -0.0]])
    return x[(x >= lo) & (x <= hi)].astype(np.float32)


@pytest.mark.parametrize(
    "name, apply, exact, lo, hi",
    [("exp", _apply_exp, np.exp, -100.0, 0.0),
     ("sigmoid", _apply_sigmoid, lambda x: 1 / (1 + np.exp(-x)), -100.0, 100.0),
     ("tanh", _apply_tanh, np.tanh, -100.0, 100.0)],
)
def test_float32_math_accuracy(name, apply, exact, lo, hi):
    """The vectorizable float32 exp/sigmoid/tanh are within a few ulp of float64
    (measured: exp 0.8, sigmoid 1.5, tanh 1.3 eps; NumPy's float32 ufuncs 0.9 - 1.7)."""
    x = _grid(lo, hi)
    got = np.empty_like(x)
    apply(x, got)
    want = exact(x.astype(np.float64))
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    rel = np.abs(got[normal] - want[normal]) / np.abs(want[normal])
    assert rel.max() <= 3 * np.finfo(np.float32).eps, f"{name}: max relative error {rel.max():.3g}"
    # below float32's normal range the helpers may flush to zero
    assert np.all(np.abs(got[~normal]) <= np.finfo(np.float32).tiny)
    # special values
    special = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    if name == "exp":
        special = special[[0, 2]]  # exp is only used for x <= 0
    out = np.empty_like(special)
    apply(special, out)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out, exact(special.astype(np.float64)).astype(np.float32))


# ----------------------------------------------------------------------------
# compilation, caching, bounds checking


def _run(code, **env):
    full_env = {**os.environ, **env}
    for k, v in env.items():
        if v is None:
            full_env.pop(k)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=full_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def test_import_compiles_nothing():
    lines = _run("""
        import fastcap, fastcap._threads
        from numba.core.dispatcher import Dispatcher
        from fastcap._kernels import numba_backend as nb
        assert fastcap.get_backend() == "numba"
        dispatchers = {k: v for k, v in vars(nb).items() if isinstance(v, Dispatcher)}
        print(len(dispatchers), sum(len(d.signatures) for d in dispatchers.values()))
        import numpy as np
        a = np.ones((2, 3))
        nb.rnn_cell_forward(a, a, np.empty_like(a))  # compiles (or loads) exactly this one
        print(sum(len(d.signatures) for d in dispatchers.values()))
    """, FASTCAP_BACKEND="numba")
    n_dispatchers, before = map(int, lines[0].split())
    assert n_dispatchers >= 14 and before == 0
    assert int(lines[1]) == 1


@pytest.mark.parametrize("env, cached", [
    ({"FASTCAP_NUMBA_CACHE": None, "NUMBA_BOUNDSCHECK": None}, True),
    ({"FASTCAP_NUMBA_CACHE": "0", "NUMBA_BOUNDSCHECK": None}, False),
    ({"FASTCAP_NUMBA_CACHE": "1", "NUMBA_BOUNDSCHECK": "1"}, False),
])
def test_cache_switches(env, cached):
    out = _run("""
        from fastcap._kernels import numba_backend as nb
        print(nb.CACHE, nb.rnn_cell_forward._cache.__class__.__name__)
    """, **env)
    flag, cache_class = out[0].split()
    assert flag == str(cached)
    assert (cache_class == "NullCache") != cached


def test_boundscheck_env_compiles_bounds_checks():
    """With NUMBA_BOUNDSCHECK=1 a kernel given an out-of-range index raises instead of reading
    past the array (so the parity suite under that variable really checks bounds)."""
    out = _run("""
        import numpy as np
        from fastcap._kernels import numba_backend as nb
        try:
            nb.embedding_forward(np.array([3]), np.ones((3, 2)), np.empty((1, 2)))
        except IndexError:
            print("IndexError")
    """, NUMBA_BOUNDSCHECK="1")
    assert out == ["IndexError"]
