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

import fastcap
from fastcap import CaptioningRNN
from fastcap.runtime import backends as _backend, precision as _precision
from fastcap import rnn_layers as L
from fastcap.model import decode
from fastcap.model.sequence import CELL_TYPES

from conftest import require_backend

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
        monkeypatch.setattr(decode, "_DIRECT_ROWS", rows)
        results.append(model.sample(features, max_length=14))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.parametrize("max_length", [0, 1])
def test_sample_short_lengths(backend, max_length):
    model = make_model("lstm")
    features = np.random.default_rng(2).standard_normal((4, D))
    got = model.sample(features, max_length=max_length)
    np.testing.assert_array_equal(got, reference_sample(model, features, max_length))


# ----------------------------------------------------------------------------
# the compiled decoding loop (the Cython backend's greedy_decode in float32 and
# bfloat16) against the reference loop (fastcap/_kernels/greedy.py on the NumPy
# backend), and its argument checks


def float32_model(cell, end_bias, seed=3):
    """A float32 model whose argmaxes are far from ties (so float32 and bf16 rounding
    cannot flip one) and whose captions end at different steps (end_bias on <END>)."""
    model = make_model(cell, seed=seed)
    model.params["b_vocab"][END] += end_bias
    model.params = {k: v.astype(np.float32) for k, v in model.params.items()}
    model.dtype = np.dtype(np.float32)
    return model


@pytest.fixture(params=["float32", "bfloat16"])
def precision(request, monkeypatch):
    """Each precision in turn; bfloat16 runs the compiled bf16 kernels on any CPU."""
    monkeypatch.setattr(_precision, "_emulate_anywhere", True)
    with fastcap.use_precision(request.param):
        yield request.param


@pytest.mark.parametrize("cell", CELL_TYPES)
@pytest.mark.parametrize("n", [1, 2, 5, 40])
@pytest.mark.parametrize("max_length", [1, 16])
def test_compiled_decoding_equals_the_reference(precision, cell, n, max_length):
    require_backend("cython")
    model = float32_model(cell, end_bias=1.5)
    features = np.random.default_rng(n).standard_normal((n, D)).astype(np.float32)
    with fastcap.use_backend("numpy"):
        want = model.sample(features, max_length=max_length)
    with fastcap.use_backend("cython"):
        assert model.initial_hidden(features).greedy_operands()[1] is not None
        got = model.sample(features, max_length=max_length)
    np.testing.assert_array_equal(got, want)
    if n == 40 and max_length == 16:  # captions really ended at different steps, and early
        lengths = (got != NULL).sum(axis=1)
        assert len(set(lengths)) >= 3 and lengths.min() < 8, lengths


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_compiled_decoding_runs_the_engine(cell):
    """The model hands the Cython backend engine-packed operands, so its greedy_decode runs
    in C: the same captions as its own reference loop, run on the same kernels."""
    require_backend("cython")
    from fastcap._kernels import greedy

    model = float32_model(cell, end_bias=1.0)
    features = np.random.default_rng(9).standard_normal((7, D)).astype(np.float32)
    with fastcap.use_backend("cython"):
        cy = _backend.load("cython").module
        state = model.initial_hidden(features)
        Whp, Wxp, Wvp = state.greedy_operands()
        assert isinstance(Whp, cy.PackedRecurrent) and isinstance(Wxp, cy.PackedPanels)
        got = model.sample(features, max_length=12)
        # the reference loop takes W_vocab and Wx as they are (BLAS), Wh packed for the engine
        P, c0 = model.params, state.c if state.lstm else None
        table, known = np.empty_like(state._table[0]), np.zeros_like(state._table[1])
        want = np.empty_like(got)
        greedy.greedy_decode(cy._DECODE_KERNELS, state.h, c0, P["W_embed"], P["Wx"], P["b"], Whp,
                             P["W_vocab"], P["b_vocab"], table, known, START, END, NULL, want)
    np.testing.assert_array_equal(got, want)


def _greedy_args(cell="lstm", N=3, L=5):
    """Valid arguments of the Cython greedy_decode (float32, engine packs)."""
    cy = _backend.load("cython")
    model = float32_model(cell, end_bias=1.0)
    with fastcap.use_backend("cython"):
        state = model.initial_hidden(np.ones((N, D), np.float32))
        Whp, Wxp, Wvp = state.greedy_operands()
    P = model.params
    args = dict(h0=state.h, c0=state.c if cell == "lstm" else None, W_embed=P["W_embed"], Wxp=Wxp,
                b=P["b"], Whp=Whp, W_vocabp=Wvp, b_vocab=P["b_vocab"], table=state._table[0],
                known=state._table[1], start=START, end=END, null=NULL,
                captions_out=np.full((N, L), -5, np.int32))
    return cy, args


V_ = len(WORDS)
BAD_GREEDY_ARGS = {
    "h0": [lambda a: np.ones((3, H + 1), np.float32), lambda a: a["h0"].astype(np.float64),
           lambda a: np.ones((3, 2 * H), np.float32)[:, ::2]],
    "c0": [lambda a: np.ones((3, H + 1), np.float32), lambda a: None],
    "W_embed": [lambda a: np.ones((V_ + 1, W), np.float32)],
    "Wxp": [lambda a: _backend.load("cython").pack_matrix(np.ones((W, 4 * H + 1), np.float32)),
            lambda a: _backend.load("cython").pack_bf16(np.ones((W, 4 * H), np.float32))],
    "b": [lambda a: np.ones(4 * H - 1, np.float32)],
    "W_vocabp": [lambda a: _backend.load("cython").pack_matrix(np.ones((H + 1, V_), np.float32))],
    "b_vocab": [lambda a: np.ones(V_ + 2, np.float32)],
    "table": [lambda a: np.ones((V_, 4 * H), np.float64), lambda a: np.ones((V_ - 1, 4 * H), np.float32)],
    "known": [lambda a: np.ones(V_, np.uint8), lambda a: np.ones(V_ + 1, bool)],
    "start": [lambda a: V_, lambda a: -1],
    "end": [lambda a: V_, lambda a: -2],
    "null": [lambda a: V_ + 3],
    "captions_out": [lambda a: np.full((3, 5), -5, np.int64), lambda a: np.full((4, 5), -5, np.int32)],
}


@pytest.mark.parametrize("name, k", [(name, k) for name, bad in BAD_GREEDY_ARGS.items()
                                     for k in range(len(bad))])
def test_compiled_decoding_rejects_bad_arguments_before_running(name, k):
    """Each bad argument raises ValueError naming it before the C loop runs: the outputs
    are untouched."""
    require_backend("cython")
    cy, args = _greedy_args()
    args[name] = BAD_GREEDY_ARGS[name][k](args)
    table, known = args["table"].copy(), args["known"].copy()
    with pytest.raises(ValueError, match=name):
        cy.greedy_decode(**args)
    assert (args["captions_out"] == -5).all()
    np.testing.assert_array_equal(args["known"], known)
    np.testing.assert_array_equal(args["table"], table)


def test_compiled_decoding_accepts_its_own_arguments():
    require_backend("cython")
    for cell in CELL_TYPES:
        cy, args = _greedy_args(cell)
        cy.greedy_decode(**args)
        assert ((args["captions_out"] >= 0) & (args["captions_out"] < V_)).all()
