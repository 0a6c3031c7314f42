"""CaptioningRNN.sample against greedy decoding written step by step with the
public layers, under every backend.

The model's loop is faster than the obvious one: captions that ended leave
the batch, and with more than two captions running each word's input
projection is computed once per call and gathered afterwards. These tests pin
its results to the obvious loop, in float64 where rounding cannot flip an
argmax, at batch sizes on both sides of that switch.
"""
import numpy as np
import pytest

from fastcap import CaptioningRNN
from fastcap import rnn_layers as L
from fastcap.classifiers import rnn as rnn_model
from fastcap.model_config import CELL_TYPES

WORDS = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(26)]
NULL, START, END = 0, 1, 2
D, W, H = 9, 6, 10


def reference_sample(model, features, max_length):
    """Greedy decoding as the assignment writes it: every caption runs every
    step; words after a caption's first <END> are replaced by <NULL>."""
    P = model.params
    h = features @ P["W_proj"] + P["b_proj"]
    c = np.zeros_like(h)
    word = np.full(len(features), model._start)
    out = np.empty((len(features), max_length), dtype=np.int64)
    for t in range(max_length):
        x = P["W_embed"][word]
        if model.cell_type == "lstm":
            h, c, _ = L.lstm_step_forward(x, h, c, P["Wx"], P["Wh"], P["b"])
        else:
            h, _ = L.rnn_step_forward(x, h, P["Wx"], P["Wh"], P["b"])
        word = np.argmax(h @ P["W_vocab"] + P["b_vocab"], axis=1)
        out[:, t] = word
    if model._end is not None:
        ended = np.cumsum(out == model._end, axis=1) - (out == model._end) > 0
        out[ended] = NULL
    return out


def make_model(cell, words=WORDS, seed=3):
    model = CaptioningRNN({w: i for i, w in enumerate(words)}, input_dim=D, wordvec_dim=W,
                          hidden_dim=H, cell_type=cell, dtype=np.float64, rng=np.random.default_rng(seed))
    model.params["W_vocab"] *= 6  # varied words instead of one repeated word
    model.params["W_embed"] *= 50
    return model


@pytest.mark.parametrize("cell", CELL_TYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 40])
def test_sample_matches_step_by_step_greedy(backend, cell, n):
    model = make_model(cell)
    model.params["b_vocab"][END] += 1.5  # captions end, at different steps
    features = np.random.default_rng(n).standard_normal((n, D))
    got = model.sample(features, max_length=16)
    want = reference_sample(model, features, 16)
    assert got.dtype == np.int32 and got.shape == (n, 16)
    np.testing.assert_array_equal(got, want)
    if n == 40:  # the batch really exercised both paths and the early exits
        lengths = (got != NULL).sum(axis=1)
        assert len(set(lengths)) >= 3, "captions should end at different steps"
        assert len(np.unique(got)) > 5


def test_sample_without_end_token_runs_every_step(backend):
    words = [w for w in WORDS if w != "<END>"]
    model = make_model("lstm", words=words)
    features = np.random.default_rng(0).standard_normal((5, D))
    got = model.sample(features, max_length=12)
    np.testing.assert_array_equal(got, reference_sample(model, features, 12))
    # index 2 (<END> in a full vocabulary) is an ordinary word here: decoding goes on after it
    assert ((got == 2).any(axis=1) & (got[:, -1] != NULL)).any()


def test_direct_and_table_paths_agree(monkeypatch):
    """Both ways of projecting the fed words (directly, or once per word) give
    the same captions, whatever the batch size where one switches to the other."""
    model = make_model("rnn")
    model.params["b_vocab"][END] += 1.5
    features = np.random.default_rng(5).standard_normal((9, D))
    results = []
    for rows in (0, 4, 100):
        monkeypatch.setattr(rnn_model, "_DIRECT_ROWS", rows)
        results.append(model.sample(features, max_length=14))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.parametrize("max_length", [0, 1])
def test_sample_short_lengths(backend, max_length):
    model = make_model("lstm")
    features = np.random.default_rng(2).standard_normal((4, D))
    got = model.sample(features, max_length=max_length)
    np.testing.assert_array_equal(got, reference_sample(model, features, max_length))
