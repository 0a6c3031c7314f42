"""The compiled recurrent engine (the Cython backend in float32): thread-count independence, the model on it, its argument checks.

test_kernel_parity.py checks the four recurrence kernels of the engine against
the reference in float32 (and test_cython_backend.py the baseline build's
engine against the vector builds'). Here:

* results are bit-identical for any thread count (each output element is
  computed by one thread, in a fixed order);
* the model's loss and every gradient, greedy decoding and beam search on the
  engine equal the same backend's BLAS path (the engine switched off) within
  float32 rounding, and the float64 reference within the float32 tolerance;
* the engine is what runs: float32 weights are packed for it, float64 ones
  are not (they take the BLAS loop);
* inconsistent arguments raise ValueError before the C code runs.
"""
import numpy as np
import pytest

import fastcap
from fastcap import CaptioningRNN
from fastcap.runtime import backends as _backend
from fastcap._kernels.cases import CASES
from fastcap.model.beam import beam_search
from fastcap.model.sequence import CELL_TYPES

from parity import ENGINE_KERNELS, assert_same, run, scaled_error

# Shapes where the hidden units split unevenly over the threads and the row
# tiles leave remainders (H not a multiple of any vector width).
THREAD_SHAPES = [dict(N=13, T=7, H=100), dict(N=1, T=3, H=5), dict(N=30, T=4, H=37)]


@pytest.fixture
def cy(cython_module):
    previous = cython_module.get_num_threads()
    yield cython_module
    cython_module.set_num_threads(previous)


@pytest.fixture
def engine_off(cy):
    def off():
        previous = cy.use_engine(False)
        return lambda: cy.use_engine(previous)
    return off


@pytest.mark.parametrize("kernel", ENGINE_KERNELS)
def test_results_do_not_depend_on_thread_count(cy, kernel):
    build, written, _ = CASES[kernel]
    for dims in THREAD_SHAPES:
        args = build(np.random.default_rng(5), np.float32, **dims)
        results = []
        for threads in (1, 2, 3, 7):
            cy.set_num_threads(threads)
            results.append(run(cy, kernel, args, written)[1])
            assert cy.last_engine_threads() >= min(threads, 2)  # the pool really ran threads
        for other in results[1:]:
            assert_same(other, results[0], 0.0, path=f"{kernel} {dims}")


@pytest.mark.parametrize("kernel", ["sgd_update", "sgd_momentum_update", "rmsprop_update",
                                    "adam_update", "embedding_backward", "softmax_loss"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooled_kernels_do_not_depend_on_thread_count(cy, kernel, dtype):
    """The update rules and the embedding scatter-add split large arrays over
    the pool: same bits for 1, 2 and 3 threads, and the reference's values."""
    build, written, _ = CASES[kernel]
    # V x W large enough to split (the pool's grain is 32768 elements per thread)
    dims = dict(N=300, T=10, V=3001, W=64, H=300)
    args = build(np.random.default_rng(9), dtype, **dims)
    if kernel == "embedding_backward":
        args[1] = np.random.default_rng(1).integers(0, 3001, 3000).astype(np.intp)
    results = []
    for threads in (1, 2, 3):
        cy.set_num_threads(threads)
        results.append(run(cy, kernel, args, written))
        assert cy.last_engine_threads() == threads or threads == 1
    for other in results[1:]:
        assert_same(other, results[0], 0.0, path=kernel)
    want = run(_backend.load("numpy"), kernel, args, written)
    assert_same(results[0], want, 1e-12 if dtype == np.float64 else 1e-5, scaled_error, kernel)


def _words(V):
    return {w: i for i, w in enumerate(["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(V - 4)])}


def _model(cell, dtype, seed=0, V=60, H=70):
    return CaptioningRNN(_words(V), input_dim=20, wordvec_dim=24, hidden_dim=H, cell_type=cell,
                         dtype=dtype, rng=np.random.default_rng(seed))


def _batch(rng, N=23, T=13, V=60):
    captions = rng.integers(3, V, (N, T))
    captions[:, 0] = 1
    lengths = rng.integers(2, T + 1, N)
    for n, L in enumerate(lengths):
        captions[n, L - 1] = 2
        captions[n, L:] = 0
    return rng.standard_normal((N, 20)), captions


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_model_loss_and_gradients_on_the_engine(cy, engine_off, cell):
    features, captions = _batch(np.random.default_rng(1))
    m32, m64 = _model(cell, np.float32), _model(cell, np.float64)
    with fastcap.use_backend("cython"):
        K = _backend.kernels()
        assert isinstance(K.recurrent_pack(m32.params["Wh"], m32.params["Wh"].shape[1] // 70, False),
                          cy.PackedRecurrent)
        assert K.recurrent_pack(m64.params["Wh"], 1, False) is m64.params["Wh"]
        loss_e, grads_e = m32.loss(features, captions)
        restore = engine_off()
        try:
            loss_b, grads_b = m32.loss(features, captions)
        finally:
            restore()
    with fastcap.use_backend("numpy"):
        loss_ref, grads_ref = m64.loss(features, captions)
    assert abs(loss_e - loss_b) <= 1e-5 * abs(loss_b)
    assert abs(loss_e - loss_ref) <= 1e-5 * abs(loss_ref)
    for k in grads_ref:
        assert grads_e[k].dtype == np.float32
        assert scaled_error(grads_e[k], grads_b[k]) <= 1e-5, k
        # as close to float64 as the float32 BLAS path is, give or take rounding
        assert scaled_error(grads_e[k], grads_ref[k]) <= 2 * scaled_error(grads_b[k], grads_ref[k]) + 1e-6, k


@pytest.mark.parametrize("cell", CELL_TYPES)
@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_decoding_on_the_engine_equals_the_blas_path(cy, engine_off, cell, n):
    """Greedy words (and beam search) in float32 on the engine equal the BLAS
    path's: the model's scores are well separated, so rounding cannot flip an argmax."""
    model = _model(cell, np.float32, seed=4)
    model.params["W_vocab"] *= 8
    model.params["W_embed"] *= 40
    model.params["b_vocab"][2] += 2.0  # captions end, at different steps
    features = np.random.default_rng(n).standard_normal((n, 20))
    with fastcap.use_backend("cython"):
        got = model.sample(features, max_length=20)
        beam = beam_search(model, features, beam_size=3, max_length=12)
        restore = engine_off()
        try:
            want = model.sample(features, max_length=20)
            beam_want = beam_search(model, features, beam_size=3, max_length=12)
        finally:
            restore()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(beam, beam_want)
    if n == 40:  # varied words and lengths, not one repeated word
        assert len(np.unique(got)) > 4 and len(set((got != 0).sum(axis=1))) > 2


def test_step_api_is_the_sample_loop(cy):
    """model.initial_hidden + model.step reproduce model.sample's first words."""
    model = _model("lstm", np.float32, seed=2)
    model.params["W_vocab"] *= 8
    features = np.random.default_rng(0).standard_normal((6, 20))
    with fastcap.use_backend("cython"):
        state = model.initial_hidden(features)
        words = np.full(6, model.start_token)
        out = []
        for _ in range(4):
            scores, state = model.step(state, words)
            assert scores.shape == (6, 60) and scores.dtype == np.float32
            words = scores.argmax(axis=1)
            out.append(words)
        sample = model.sample(features, max_length=4)
    ended = np.cumsum(np.stack(out, 1) == 2, axis=1) - (np.stack(out, 1) == 2) > 0
    np.testing.assert_array_equal(np.where(ended, 0, np.stack(out, 1)), sample)
    with pytest.raises(ValueError, match="one index per state row"):
        model.step(state, np.array([1, 2]))
    # a state handed back tampered is refused before any kernel runs
    state.h = state.h[:, :10].copy()
    with pytest.raises(ValueError, match="DecodeState.h must have shape"):
        model.step(state, np.ones(6, int))
    with pytest.raises(TypeError, match="DecodeState"):
        model.step({"h": 1}, np.ones(6, int))


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_a_decode_state_follows_a_backend_switch(cy, cell):
    """A state made under one backend steps on under another: the weights are packed
    again for it (the engine's packing is not the BLAS loop's), with the same words."""
    model = _model(cell, np.float32, seed=3)
    model.params["W_vocab"] *= 8
    features = np.random.default_rng(1).standard_normal((5, 20))
    words = np.full(5, model.start_token)
    with fastcap.use_backend("cython"):
        scores, state = model.step(model.initial_hidden(features), words)
        words = scores.argmax(axis=1)
        _, on_engine = model.step(state, words)
    with fastcap.use_backend("numpy"):
        _, on_blas = model.step(state, words)
    np.testing.assert_allclose(on_blas.h, on_engine.h, rtol=0, atol=1e-5)


def _lstm_args(N=4, T=3, H=9):
    bs = np.array([4, 3, 1], dtype=np.intp)[:T]
    P = int(bs.sum())
    f = np.float32
    return dict(xw=np.zeros((P, 4 * H), f), h0=np.zeros((N, H), f), c0=np.zeros((N, H), f),
                bs=bs, ifog=np.empty((P, 4 * H), f), c=np.empty((P, H), f), h=np.empty((P, H), f))


@pytest.mark.parametrize("bad, match", [
    (dict(bs=np.array([3, 4, 1], dtype=np.intp)), "non-increasing"),
    (dict(bs=np.array([5, 2, 1], dtype=np.intp)), "non-increasing"),
    (dict(bs=np.array([4, -3, 7], dtype=np.intp)), "non-increasing"),
    (dict(bs=np.array([4, 3, 0], dtype=np.intp)), "sum to 7"),
    (dict(h=np.empty((8, 10), np.float32)), "h_out must have shape"),
    (dict(c0=np.zeros((3, 9), np.float32)), "c0 must have shape"),
    (dict(ifog=np.empty((8, 35), np.float32)), "ifog_out must have shape"),
])
def test_engine_rejects_inconsistent_arguments(cy, bad, match):
    a = {**_lstm_args(), **bad}
    Wp = cy.recurrent_pack(np.zeros((9, 36), np.float32), 4, False)
    with pytest.raises(ValueError, match=match):
        cy.lstm_recurrence_forward(a["xw"], a["h0"], a["c0"], Wp, a["bs"], a["ifog"], a["c"], a["h"])


def test_engine_rejects_weights_packed_for_another_call(cy):
    a = _lstm_args()
    for Wp in (cy.recurrent_pack(np.zeros((9, 36), np.float32), 4, True),  # backward's packing
               cy.recurrent_pack(np.zeros((8, 32), np.float32), 4, False)):  # another H
        with pytest.raises(ValueError, match="packed weights are for"):
            cy.lstm_recurrence_forward(a["xw"], a["h0"], a["c0"], Wp, a["bs"], a["ifog"], a["c"], a["h"])
    with pytest.raises(ValueError, match="recurrent_pack: Wh must have shape"):
        cy.recurrent_pack(np.zeros((9, 30), np.float32), 4, False)
