"""The public API under each compiled backend against the numpy reference.

Kernel-by-kernel parity is test_kernel_parity.py. Here, through the public
functions: every layer, the captioning model (loss, gradients, sampling) and
the update rules give the numpy backend's float64 results to rel_error 1e-10
(integer outputs exactly), for C-contiguous, non-contiguous and read-only
inputs; caches cross backends; NaN scores and empty batches behave as in
numpy; float32 update rules and 50-iteration CaptioningSolver runs follow
numpy within the bounds documented below.
"""
import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastcap
from fastcap import optim
from fastcap import rnn_layers as L
from fastcap.model.sequence import CELL_TYPES
from fastcap.optim import UPDATE_RULES

from parity import assert_same

N, T, D, H, V, W = 4, 5, 6, 7, 11, 3
LAYOUTS = ["contiguous", "noncontiguous", "readonly"]
WORD_TO_IDX = {w: i for i, w in enumerate(["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(V - 4)])}


# ----------------------------------------------------------------------------
# helpers


def layout(a, kind):
    """The values of `a` as a C-contiguous, non-contiguous or read-only array."""
    a = np.array(a)  # always a copy
    if kind == "noncontiguous" and a.ndim:
        # Every other element of a Fortran-ordered, twice-as-long last axis: gapped
        # and transposed storage at once (both kinds of non-contiguous input),
        # so neither C- nor F-contiguous.
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype, order="F")
        wide[..., 1::2] = a
        a = wide[..., 1::2]
        assert a.size <= 1 or not (a.flags.c_contiguous or a.flags.f_contiguous)
    elif kind == "readonly":
        a.setflags(write=False)
    return a


def layouts(kind, *arrays):
    return [layout(a, kind) for a in arrays]


def under(backend, fn, *args):
    with fastcap.use_backend(backend):
        return fn(*args)


def both(backend, fn, *args):
    """(result under `backend`, result under numpy) of fn(*args)."""
    return under(backend, fn, *args), under("numpy", fn, *args)


def assert_layer(backend, forward, backward, args, *douts):
    """forward(*args) -> (*outputs, cache) and backward(*douts, cache) agree with numpy."""
    (*out1, cache1), (*out2, cache2) = both(backend, forward, *args)
    assert_same(out1, out2)
    assert_same(under(backend, backward, *douts, cache1), under("numpy", backward, *douts, cache2))


def randn(rng, *shape, scale=1.0):
    return scale * rng.standard_normal(shape)


def _captions(rng, n, t, vocab, shortest=1):
    """<START> words <END> <NULL>...: random lengths, some captions full length."""
    caps = np.zeros((n, t), dtype=np.int32)
    caps[:, 0] = 1
    for i, length in enumerate(rng.integers(shortest, t, n)):
        caps[i, 1:length] = rng.integers(4, vocab, length - 1)
        caps[i, length] = 2
    return caps


# ----------------------------------------------------------------------------
# public layers, float64, three input layouts


@pytest.mark.parametrize("kind", LAYOUTS)
def test_rnn_step_layers(compiled, rng, kind):
    args = layouts(kind, randn(rng, N, D), randn(rng, N, H), randn(rng, D, H), randn(rng, H, H), randn(rng, H))
    assert_layer(compiled, L.rnn_step_forward, L.rnn_step_backward, args, layout(randn(rng, N, H), kind))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_rnn_sequence_layers(compiled, rng, kind):
    args = layouts(kind, randn(rng, N, T, D), randn(rng, N, H), randn(rng, D, H), randn(rng, H, H), randn(rng, H))
    assert_layer(compiled, L.rnn_forward, L.rnn_backward, args, layout(randn(rng, N, T, H), kind))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_lstm_step_layers(compiled, rng, kind):
    # scale 3 on x saturates some gates
    args = layouts(kind, randn(rng, N, D, scale=3), randn(rng, N, H), randn(rng, N, H),
                   randn(rng, D, 4 * H), randn(rng, H, 4 * H), randn(rng, 4 * H))
    assert_layer(compiled, L.lstm_step_forward, L.lstm_step_backward, args,
                 *layouts(kind, randn(rng, N, H), randn(rng, N, H)))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_lstm_sequence_layers(compiled, rng, kind):
    args = layouts(kind, randn(rng, N, T, D, scale=3), randn(rng, N, H), randn(rng, D, 4 * H),
                   randn(rng, H, 4 * H), randn(rng, 4 * H))
    assert_layer(compiled, L.lstm_forward, L.lstm_backward, args, layout(randn(rng, N, T, H), kind))


def test_caches_cross_backends(compiled, rng):
    """A compiled forward's cache feeds a numpy backward and the other way round (one cache layout)."""
    args = (randn(rng, N, T, D), randn(rng, N, H), randn(rng, D, 4 * H), randn(rng, H, 4 * H), randn(rng, 4 * H))
    dh = randn(rng, N, T, H)
    _, cache_c = under(compiled, L.lstm_forward, *args)
    _, cache_n = under("numpy", L.lstm_forward, *args)
    want = under("numpy", L.lstm_backward, dh, cache_n)
    assert_same(under("numpy", L.lstm_backward, dh, cache_c), want)
    assert_same(under(compiled, L.lstm_backward, dh, cache_n), want)


@pytest.mark.parametrize("kind", LAYOUTS)
def test_word_embedding(compiled, rng, kind):
    # 3 words: rows repeat, so the backward's scatter-add must sum; V words: every row
    for n_words in (3, V):
        x, Wemb = layouts(kind, rng.integers(0, n_words, (N, T)), randn(rng, V, W))
        assert_layer(compiled, L.word_embedding_forward, L.word_embedding_backward, (x, Wemb),
                     layout(randn(rng, N, T, W), kind))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_temporal_affine(compiled, rng, kind):
    args = layouts(kind, randn(rng, N, T, D), randn(rng, D, V), randn(rng, V))
    assert_layer(compiled, L.temporal_affine_forward, L.temporal_affine_backward, args,
                 layout(randn(rng, N, T, V), kind))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_temporal_softmax_loss(compiled, rng, kind):
    mask = rng.random((N, T)) < 0.6
    mask[0] = False  # a fully masked caption
    args = layouts(kind, randn(rng, N, T, V, scale=4), rng.integers(0, V, (N, T)), mask)
    assert_same(*both(compiled, L.temporal_softmax_loss, *args))


def test_softmax_loss_propagates_nan(compiled, rng):
    """A NaN score in a scored row makes the loss NaN, as in numpy: a diverged model
    is reported, not hidden (the solver relies on it)."""
    x, y, mask = randn(rng, N, T, V), rng.integers(0, V, (N, T)), np.ones((N, T), bool)
    x[1, 2, 3] = np.nan
    for dtype in (np.float32, np.float64):
        (loss_c, dx_c), (loss_n, dx_n) = both(compiled, L.temporal_softmax_loss, x.astype(dtype), y, mask)
        assert np.isnan(loss_c) and np.isnan(loss_n)
        assert np.isnan(dx_c[1, 2]).all()
        np.testing.assert_array_equal(np.isnan(dx_c), np.isnan(dx_n))


def test_empty_batches(compiled, rng):
    empty = (np.zeros((0, T, V)), np.zeros((0, T), int), np.zeros((0, T), bool))
    (loss, dx), want = both(compiled, L.temporal_softmax_loss, *empty)
    assert loss == 0.0 and dx.shape == (0, T, V)
    assert_same((loss, dx), want)
    assert_same(*both(compiled, lambda: L.word_embedding_forward(np.zeros((0, T), int), randn(rng, V, W))[0]))


# ----------------------------------------------------------------------------
# model and optimizers


def _model(cell, word_to_idx=WORD_TO_IDX):
    return fastcap.CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell,
                                 dtype=np.float64, rng=np.random.RandomState(3))


@pytest.mark.parametrize("cell", CELL_TYPES)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_model_loss_grads_and_sample(compiled, rng, cell, kind):
    model = _model(cell)
    model.params = {k: layout(v, kind) for k, v in model.params.items()}
    features = layout(randn(rng, N, D), kind)
    # well-formed captions (padding after <END> is not scored), and random words
    # that put <NULL>, <START> and <END> anywhere after the first <START>
    noisy = rng.integers(0, V, (N, T + 2))
    noisy[:, 0] = 1
    noisy[1, 4:] = 0
    for captions in (_captions(rng, N, 8, V), noisy):
        assert_same(*both(compiled, model.loss, features, layout(captions, kind)))
    # sampling: greedy words must be identical (max_length past every <END>);
    # batch 1 takes the gemv path, max_length 0 gives empty captions
    assert_same(*both(compiled, model.sample, features, 12))
    assert_same(*both(compiled, model.sample, features[:1], 12))
    assert_same(*both(compiled, model.sample, layout(randn(rng, 1, D), kind), 7))
    assert_same(*both(compiled, model.sample, features, 0))


def test_sample_without_end_token(compiled, rng):
    """end = -1 (no <END> in the vocabulary): every caption runs to max_length."""
    words = [w for w in WORD_TO_IDX if w != "<END>"]
    model = _model("lstm", word_to_idx={w: i for i, w in enumerate(words)})
    assert_same(*both(compiled, model.sample, randn(rng, N, D), 9))


def assert_float32_close(got, want, tol=1e-6):
    """float32 results agree elementwise (|got - want| <= tol * max(1, |want|)) and
    as a whole (max |got - want| <= tol * max |want|): the same float32 arithmetic,
    up to contraction into fused multiply-adds (measured: <= 1.2e-7 either way,
    cython rmsprop; numba and the other rules bit-identical)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    diff = np.abs(got - want)
    assert np.all(diff <= tol * np.maximum(1.0, np.abs(want))), f"elementwise: {diff.max():.3g}"
    assert diff.max() <= tol * np.abs(want).max(), f"max difference {diff.max():.3g}"


@pytest.mark.parametrize("rule", UPDATE_RULES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", LAYOUTS)
def test_update_rules(compiled, rng, rule, dtype, kind):
    w0 = randn(rng, 5, 7).astype(dtype)
    grads = [layout(randn(rng, 5, 7).astype(dtype), kind) for _ in range(3)]
    results = {}
    for backend in (compiled, "numpy"):
        w, config = w0.copy(), {"learning_rate": 1e-2}
        for dw in grads:  # three steps, so the optimizer state is used
            w, config = under(backend, getattr(optim, rule), w, dw, config)
        results[backend] = (w, config)
    if dtype == np.float64:  # the weights and all of the state
        assert_same(results[compiled], results["numpy"])
    else:
        assert_float32_close(results[compiled][0], results["numpy"][0])
    # a 1-D parameter (a bias) is updated in place too
    b = np.zeros(4, dtype)
    b2, _ = under(compiled, getattr(optim, rule), b, np.ones(4, dtype), {})
    assert b2 is b and np.all(b != 0)


STATE_KEYS = {"sgd": (), "sgd_momentum": ("velocity",), "rmsprop": ("cache",),
              "adam": ("m", "v")}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=st.sampled_from(UPDATE_RULES), dtype=st.sampled_from([np.float32, np.float64]),
       kinds=st.lists(st.sampled_from(["readonly", "noncontiguous", "contiguous", "mmap"]),
                      min_size=3, max_size=3),
       scalars_as=st.sampled_from(["python", "numpy", "0-d read-only"]))
def test_update_rules_take_optimizer_state_in_any_layout(backend, tmp_path_factory, rule, dtype,
                                                         kinds, scalars_as):
    """Optimizer state handed back read-only (arrays of a .npz or .npy opened read-only) or in
    another layout is copied into the config, as read-only weights are, and hyperparameters
    given as NumPy scalars or read-only 0-d arrays are taken as the numbers they hold: the
    same update as with writable state and Python numbers, and the caller's read-only arrays
    are left as they were."""
    r = np.random.default_rng(len(rule))
    w0, dw = randn(r, 5, 7).astype(dtype), randn(r, 5, 7).astype(dtype)
    state = {k: np.abs(randn(r, 5, 7)).astype(dtype) for k in STATE_KEYS[rule]}
    given_state = {}
    for (k, a), kind in zip(state.items(), kinds):
        if kind == "mmap":  # what np.load(mmap_mode="r") hands back
            path = tmp_path_factory.mktemp("state") / f"{k}.npy"
            np.save(path, a)
            given_state[k] = np.load(path, mmap_mode="r")
        else:
            given_state[k] = layout(a, kind)
    scalars = {"learning_rate": 1e-2, "t": 3} if rule == "adam" else {"learning_rate": 1e-2}
    given_scalars = {k: v if scalars_as == "python" else np.array(v) if scalars_as == "numpy"
                     else layout(np.array(v), "readonly") for k, v in scalars.items()}
    if scalars_as == "numpy":
        given_scalars = {k: v[()] for k, v in given_scalars.items()}  # NumPy scalars
    w, config = getattr(optim, rule)(layout(w0, kinds[-1]), dw, {**given_scalars, **given_state})
    want_w, want = getattr(optim, rule)(w0.copy(), dw,
                                        {**scalars, **{k: a.copy() for k, a in state.items()}})
    assert_same((w, {k: config[k] for k in state}), (want_w, {k: want[k] for k in state}))
    for (k, a), kind in zip(state.items(), kinds):
        if kind in ("readonly", "mmap"):
            assert np.array_equal(given_state[k], a)  # not written through


def test_adam_float32_matches_numpy_float32(compiled, rng):
    """Five float32 Adam steps on a larger weight with the default learning rate."""
    w0, dw = randn(rng, 64, 33).astype(np.float32), randn(rng, 64, 33).astype(np.float32)
    out = {}
    for backend in (compiled, "numpy"):
        w, config = w0.copy(), {}
        for _ in range(5):
            w, config = under(backend, optim.adam, w, dw, config)
        out[backend] = w
    assert_float32_close(out[compiled], out["numpy"])


# ----------------------------------------------------------------------------
# a short training run

SOLVER_V, SOLVER_D, SOLVER_W, SOLVER_H = 30, 16, 8, 12
# Two 50-iteration Adam runs:
# "counting": a learnable language (each caption counts up through the vocabulary
#   from a start word fixed by its image), lr 1e-2 decayed 0.95 per epoch;
# "random": random captions and image indices, lr 3e-2 (float32 drifts more).
# shortest: fewest caption words + 1; trains: the last 5 losses must average
# below this fraction of the first 5.
SOLVER_RUNS = {
    "counting": dict(seed=42, n_images=25, t=17, shortest=1, model_seed=1, lr=1e-2, lr_decay=0.95, trains=0.7),
    "random": dict(seed=5, n_images=20, t=9, shortest=2, model_seed=0, lr=3e-2, lr_decay=1.0, trains=0.8),
}
# Largest relative difference allowed between a compiled backend's and numpy's
# float32 loss histories. Measured, both backends, both cells: "counting" 2.6e-8,
# "random" 2.2e-7 (lstm; the larger steps let the rounding gap grow). The GEMMs
# are the same; only the kernels' rounding (exp/tanh, summation order, FMA)
# differs. float64: 8.5e-16 against a bound of 1e-8. The bound leaves a factor
# of ~5 over the worst measured here, for CPUs whose BLAS kernels round differently.
FLOAT32_LOSS_RTOL = 1e-6


def _solver_data(run):
    cfg = SOLVER_RUNS[run]
    rng = np.random.default_rng(cfg["seed"])
    n_images, n = cfg["n_images"], 50
    caps = _captions(rng, n, cfg["t"], SOLVER_V, cfg["shortest"])
    if run == "counting":  # two captions per image
        image_idxs = np.repeat(np.arange(n_images, dtype=np.int32), n // n_images)
        first = rng.integers(0, SOLVER_V - 4, n_images)[image_idxs]
        counting = 4 + (first[:, None] + np.arange(15)) % (SOLVER_V - 4)
        caps[:, 1:16] = np.where(caps[:, 1:16] >= 4, counting, caps[:, 1:16])
    else:
        image_idxs = rng.integers(0, n_images, n).astype(np.int32)
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(SOLVER_V - 4)]
    return {
        "train_captions": caps,
        "train_image_idxs": image_idxs,
        "train_features": rng.standard_normal((n_images, SOLVER_D)).astype(np.float32),
        "train_urls": np.array([f"img{i}.jpg" for i in range(n_images)]),
        "word_to_idx": {w: i for i, w in enumerate(words)},
        "idx_to_word": words,
    }


@functools.cache  # numpy's histories serve both compiled backends
def _train(backend, run, cell, dtype):
    cfg, data = SOLVER_RUNS[run], _solver_data(run)
    model = fastcap.CaptioningRNN(data["word_to_idx"], input_dim=SOLVER_D, wordvec_dim=SOLVER_W,
                                  hidden_dim=SOLVER_H, cell_type=cell, dtype=dtype,
                                  rng=np.random.RandomState(cfg["model_seed"]))
    solver = fastcap.CaptioningSolver(model, data, update_rule="adam", optim_config={"learning_rate": cfg["lr"]},
                                      lr_decay=cfg["lr_decay"], batch_size=10, num_epochs=10, verbose=False,
                                      rng=np.random.RandomState(0))
    with fastcap.use_backend(backend):
        solver.train()
    history = np.array(solver.loss_history)
    history.setflags(write=False)
    return history


@pytest.mark.parametrize("run", list(SOLVER_RUNS))
@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_solver_loss_history(compiled, run, cell, dtype):
    got, want = _train(compiled, run, cell, dtype), _train("numpy", run, cell, dtype)
    assert len(got) == len(want) == 50
    err = np.max(np.abs(got - want) / np.abs(want))
    tol = 1e-8 if dtype == np.float64 else FLOAT32_LOSS_RTOL
    assert err <= tol, f"{np.dtype(dtype)} loss histories differ by {err:.3g} > {tol:g}"
    for history in (got, want):  # it did train
        assert history[-5:].mean() < SOLVER_RUNS[run]["trains"] * history[:5].mean()
