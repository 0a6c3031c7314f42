"""Beam search (fastcap.model.beam): a beam of one is greedy decoding, an exhaustive beam finds the most probable caption, bad arguments are named.

It needs no caption metrics, so it runs without pycocoevalcap (the CLI's
``fastcap sample --beam-size`` is tested in test_cli.py). Beam search on the
compiled engine against its BLAS path is in test_engine.py.
"""
import itertools

import numpy as np
import pytest

import fastcap
from fastcap import CaptioningRNN
from fastcap.model.beam import beam_search
from fastcap.model.sequence import CELL_TYPES


@pytest.mark.parametrize("cell", CELL_TYPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_beam_of_one_is_greedy(small_data, cell, dtype):
    model = CaptioningRNN(small_data["word_to_idx"], input_dim=20, wordvec_dim=8, hidden_dim=16,
                          cell_type=cell, dtype=dtype, rng=np.random.default_rng(1))
    model.params["W_vocab"] *= 4  # sharper, more varied word choices than at initialisation
    model.params["b_vocab"][2] = 1.0  # and some captions that end early
    with fastcap.use_backend("numpy"):
        feats = small_data["val_features"]
        greedy = model.sample(feats, max_length=14)
        beam = beam_search(model, feats, beam_size=1, max_length=14)
    assert beam.dtype == np.int32 and beam.shape == greedy.shape
    assert np.array_equal(beam, greedy)
    assert (greedy == 2).any() and len({tuple(r) for r in greedy}) > 3  # a non-trivial check


def _log_prob(model, feature, words, end):
    """Log-probability of a word sequence under the model, by the step layers."""
    from fastcap.rnn_layers import lstm_step_forward, rnn_step_forward

    P = model.params
    h = feature[None] @ P["W_proj"] + P["b_proj"]
    c = np.zeros_like(h)
    prev, total = model._start, 0.0
    for w in words:
        x = P["W_embed"][[prev]]
        if model.cell_type == "lstm":
            h, c, _ = lstm_step_forward(x, h, c, P["Wx"], P["Wh"], P["b"])
        else:
            h, _ = rnn_step_forward(x, h, P["Wx"], P["Wh"], P["b"])
        s = (h @ P["W_vocab"] + P["b_vocab"])[0].astype(np.float64)
        total += s[w] - s.max() - np.log(np.exp(s - s.max()).sum())
        prev = w
        if w == end:
            break
    return total


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_exhaustive_beam_finds_the_most_probable_caption(cell):
    words = ["<NULL>", "<START>", "<END>", "a", "b"]
    w2i = {w: i for i, w in enumerate(words)}
    model = CaptioningRNN(w2i, input_dim=6, wordvec_dim=4, hidden_dim=5, cell_type=cell,
                          dtype=np.float64, rng=np.random.default_rng(7))
    model.params["W_vocab"] *= 3
    feats = np.random.default_rng(0).standard_normal((6, 6))
    L = 3
    with fastcap.use_backend("numpy"):
        got = beam_search(model, feats, beam_size=len(words) ** L, max_length=L)
        for n, f in enumerate(feats):
            best, best_lp = None, -np.inf
            for seq in itertools.product(range(len(words)), repeat=L):
                if 2 in seq:  # stop at <END>; later positions are <NULL>
                    k = seq.index(2)
                    if any(s != 0 for s in seq[k + 1:]):
                        continue
                    seq = seq[: k + 1]
                lp = _log_prob(model, f, seq, end=2)
                if lp > best_lp + 1e-12:
                    best, best_lp = seq, lp
            expected = list(best) + [0] * (L - len(best))
            assert got[n].tolist() == expected, (n, got[n], expected)
            assert _log_prob(model, f, [w for w in got[n]][: len(best)], 2) == pytest.approx(best_lp)


@pytest.mark.parametrize("kw, err, match", [
    (dict(max_length=float("inf")), ValueError, "max_length"), (dict(max_length=None), TypeError, "max_length"),
    (dict(max_length=-1), ValueError, "max_length"), (dict(beam_size=0), ValueError, "beam_size"),
    (dict(beam_size=2.5), ValueError, "beam_size"), (dict(beam_size="3"), TypeError, "beam_size"),
])
def test_beam_search_arguments_are_named(small_data, kw, err, match):
    model = CaptioningRNN(small_data["word_to_idx"], input_dim=20, wordvec_dim=8, hidden_dim=8,
                          cell_type="lstm", rng=np.random.default_rng(1))
    with pytest.raises(err, match=match):
        beam_search(model, small_data["val_features"], **kw)


def test_beam_search_of_length_zero(small_data):
    model = CaptioningRNN(small_data["word_to_idx"], input_dim=20, wordvec_dim=8, hidden_dim=8,
                          cell_type="lstm", rng=np.random.default_rng(1))
    assert beam_search(model, small_data["val_features"][:3], beam_size=4, max_length=0).shape == (3, 0)
