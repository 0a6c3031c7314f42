"""Bad input raises a clear error naming the argument, before any kernel runs;
empty batches behave sensibly."""
import numpy as np
import pytest

import fastcap
from fastcap import (
    CaptioningRNN, CaptioningSolver, TrainingDivergedError, adam, lstm_backward, lstm_forward,
    lstm_step_forward, rnn_forward, rnn_step_forward, temporal_affine_forward,
    temporal_softmax_loss, word_embedding_backward, word_embedding_forward,
)  # fmt: skip
from fastcap.runtime import backends as _backend

R = np.random.default_rng(0)
f64 = lambda *s: R.standard_normal(s)

# Caches made before any kernel is trapped.
with fastcap.use_backend("numpy"):
    LSTM_CACHE = lstm_forward(f64(2, 3, 4), f64(2, 5), f64(4, 20), f64(5, 20), f64(20))[1]
    RNN_CACHE = rnn_forward(f64(2, 3, 4), f64(2, 5), f64(4, 5), f64(5, 5), f64(5))[1]
    EMBED_CACHE = word_embedding_forward(np.array([[0, 1]]), f64(5, 3))[1]


@pytest.fixture
def no_kernels(monkeypatch):
    """Any kernel call fails the test: errors must come from validation first."""
    class Trap:
        name = "trap"

        def __getattr__(self, k):
            raise AssertionError(f"kernel {k} ran on invalid input")

    monkeypatch.setattr(_backend, "_active", Trap())


@pytest.mark.parametrize("call, exc, words", [
    # wrong shapes / mismatched dims between inputs and weights
    (lambda: rnn_forward(f64(2, 3, 4), f64(2, 5), f64(3, 5), f64(5, 5), f64(5)), ValueError, ["Wx", "D = 4"]),
    (lambda: rnn_forward(f64(2, 3, 4), f64(3, 5), f64(4, 5), f64(5, 5), f64(5)), ValueError, ["h0", "N = 2"]),
    (lambda: rnn_forward(f64(2, 3), f64(2, 5), f64(4, 5), f64(5, 5), f64(5)), ValueError, ["x", "3 dimensions"]),
    (lambda: lstm_forward(f64(2, 3, 4), f64(2, 5), f64(4, 5), f64(5, 5), f64(5)), ValueError, ["Wx", "20"]),
    (lambda: lstm_forward(f64(2, 3, 4), f64(2, 5), f64(4, 20), f64(5, 20), f64(5)), ValueError, ["b"]),
    (lambda: rnn_step_forward(f64(2, 4), f64(2, 5), f64(4, 5), f64(4, 5), f64(5)), ValueError, ["Wh", "H = 5"]),
    (lambda: lstm_step_forward(f64(2, 4), f64(2, 5), f64(2, 6), f64(4, 20), f64(5, 20), f64(20)), ValueError, ["prev_c"]),
    (lambda: temporal_affine_forward(f64(2, 3, 4), f64(5, 6), f64(6)), ValueError, ["w", "D = 4"]),
    # float dtypes that do not match each other; non-float data
    (lambda: rnn_forward(f64(2, 3, 4).astype(np.float32), f64(2, 5), f64(4, 5), f64(5, 5), f64(5)), TypeError, ["float32", "float64"]),
    (lambda: rnn_forward(np.ones((2, 3, 4), int), f64(2, 5), f64(4, 5), f64(5, 5), f64(5)), TypeError, ["x", "float32 or float64"]),
    # word indices outside [0, V), non-integer indices
    (lambda: word_embedding_forward(np.array([[0, 5]]), f64(5, 3)), ValueError, ["x", "5", "[0, 5)"]),
    (lambda: word_embedding_forward(np.array([[0, -1]]), f64(5, 3)), ValueError, ["x", "-1"]),
    (lambda: word_embedding_forward(np.array([[0.0, 1.0]]), f64(5, 3)), TypeError, ["x", "integer"]),
    (lambda: temporal_softmax_loss(f64(2, 3, 4), np.full((2, 3), 4), np.ones((2, 3), bool)), ValueError, ["y", "[0, 4)"]),
    # a mask of the wrong shape or kind
    (lambda: temporal_softmax_loss(f64(2, 3, 4), np.zeros((2, 3), int), np.ones((3, 2), bool)), ValueError, ["mask", "(2, 3)"]),
    (lambda: temporal_softmax_loss(f64(2, 3, 4), np.zeros((2, 3), int), np.full((2, 3), 0.5)), TypeError, ["mask", "boolean"]),
    (lambda: temporal_softmax_loss(f64(2, 3, 4), np.zeros((3, 2), int), np.ones((2, 3), bool)), ValueError, ["y", "(2, 3)"]),
    # upstream gradients that do not fit the cache; a cache from another layer
    (lambda: lstm_backward(f64(2, 3, 6), LSTM_CACHE), ValueError, ["dh", "(2, 3, 5)"]),
    (lambda: lstm_backward(f64(2, 3, 5), RNN_CACHE), TypeError, ["cache", "lstm_forward"]),
    (lambda: word_embedding_backward(f64(1, 3, 3), EMBED_CACHE), ValueError, ["dout", "N*T = 2"]),
    # update rules
    (lambda: adam(f64(3, 4), f64(4, 3)), ValueError, ["dw", "(3, 4)"]),
    (lambda: adam(f64(3, 4), f64(3, 4).astype(np.float32)), TypeError, ["dw", "float64"]),
])  # fmt: skip
def test_bad_input_names_argument(no_kernels, call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"


def _model(cell="lstm", dtype=np.float64):
    w2i = {"<NULL>": 0, "<START>": 1, "<END>": 2, "a": 3, "b": 4}
    return CaptioningRNN(w2i, input_dim=6, wordvec_dim=4, hidden_dim=5, cell_type=cell, dtype=dtype)


def test_model_rejects_bad_input(no_kernels):
    m = _model()
    with pytest.raises(ValueError, match="captions holds word index 7"):
        m.loss(f64(2, 6), np.array([[1, 7, 2], [1, 3, 2]]))
    with pytest.raises(ValueError, match="input_dim"):
        m.loss(f64(2, 5), np.array([[1, 3, 2], [1, 3, 2]]))
    with pytest.raises(ValueError, match="one row per feature row"):
        m.loss(f64(3, 6), np.array([[1, 3, 2], [1, 3, 2]]))
    with pytest.raises(ValueError, match="at least 2 columns"):
        m.loss(f64(2, 6), np.array([[1], [1]]))
    with pytest.raises(TypeError, match="captions must be an integer"):
        m.loss(f64(2, 6), np.ones((2, 3)))
    m.params["Wh"] = f64(5, 5)
    with pytest.raises(ValueError, match=r"params\['Wh'\]"):
        m.loss(f64(2, 6), np.array([[1, 3, 2], [1, 3, 2]]))
    with pytest.raises(ValueError, match="cell_type"):
        _model(cell="gru")
    with pytest.raises(ValueError, match="<START>"):
        CaptioningRNN({"<NULL>": 0, "x": 1}, input_dim=2).sample(f64(1, 2))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_solver_stops_on_non_finite_loss_naming_iteration():
    m = _model()
    data = {"train_captions": np.array([[1, 3, 4, 2]] * 4, np.int32), "train_image_idxs": np.arange(4),
            "train_features": f64(4, 6), "train_urls": np.array(["u"] * 4)}
    solver = CaptioningSolver(m, data, update_rule="sgd", optim_config={"learning_rate": 1e300},
                              batch_size=2, num_epochs=50, verbose=False)
    with pytest.raises(TrainingDivergedError, match=r"at iteration 2;"):
        solver.train()
    assert all(np.isfinite(solver.loss_history))
    with pytest.raises(ValueError, match="update_rule"):
        CaptioningSolver(m, data, update_rule="adagrad")
    with pytest.raises(ValueError, match="Unrecognized arguments 'lr'"):
        CaptioningSolver(m, data, lr=1)


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="numpy, numba, cython, auto"):
        fastcap.set_backend("torch")


# ---------------------------------------------------------------------------- empty batches

def test_empty_batches(backend):
    H, D = 5, 4
    for fwd, bwd, G in ((rnn_forward, fastcap.rnn_backward, H), (lstm_forward, lstm_backward, 4 * H)):
        for N, T in ((0, 3), (2, 0)):
            h, cache = fwd(f64(N, T, D), f64(N, H), f64(D, G), f64(H, G), f64(G))
            assert h.shape == (N, T, H)
            dx, dh0, dWx, dWh, db = bwd(np.zeros((N, T, H)), cache)
            assert dx.shape == (N, T, D) and dh0.shape == (N, H)
            assert not dWx.any() and not dWh.any() and not db.any()
    loss, dx = temporal_softmax_loss(f64(0, 3, 4), np.zeros((0, 3), int), np.zeros((0, 3), bool))
    assert loss == 0.0 and dx.shape == (0, 3, 4)
    loss, dx = temporal_softmax_loss(f64(2, 3, 4), np.zeros((2, 3), int), np.zeros((2, 3), bool))
    assert loss == 0.0 and not dx.any()  # every step masked
    out, cache = word_embedding_forward(np.zeros((0, 3), int), f64(5, 2))
    assert out.shape == (0, 3, 2) and not word_embedding_backward(out, cache).any()
    m = _model()
    loss, grads = m.loss(f64(0, 6), np.zeros((0, 4), int))
    assert loss == 0.0 and all(not g.any() for g in grads.values())
    assert m.sample(f64(0, 6), max_length=7).shape == (0, 7)
