"""Hostile inputs to the layers and the model, run in a child process.

``python -X faulthandler tests/hostile_cases.py BACKEND [GROUP...]`` runs every
case (and, in group ``properties``, the hypothesis properties of
``tests/hostile_properties.py``) under BACKEND and prints one JSON line per
case: ``{"case": name, "outcome": "error" | "ok", "type": ..., "message": ...}``.
A case that crashes the process (a segfault or abort in a compiled kernel)
leaves its ``start`` line as the last one, which is how the parent test
(``tests/test_hostile_inputs.py``) names it. The parent checks each outcome
against ``EXPECTED``.
"""
import json
import math
import sys

import numpy as np

import fastcap
from fastcap import CaptioningRNN
from fastcap.model import sequence as _sequence
from fastcap import rnn_layers as L

R = np.random.default_rng(0)


def _lstm_step(N=3, D=4, H=5, dtype=np.float64):
    x, h, c = R.standard_normal((N, D)), R.standard_normal((N, H)), R.standard_normal((N, H))
    Wx, Wh, b = R.standard_normal((D, 4 * H)), R.standard_normal((H, 4 * H)), R.standard_normal(4 * H)
    args = [a.astype(dtype) for a in (x, h, c, Wx, Wh, b)]
    nh, nc, cache = L.lstm_step_forward(*args)
    return np.ones_like(nh), np.ones_like(nc), cache


def _rnn_step(N=3, D=4, H=5):
    x, h = R.standard_normal((N, D)), R.standard_normal((N, H))
    Wx, Wh, b = R.standard_normal((D, H)), R.standard_normal((H, H)), R.standard_normal(H)
    nh, cache = L.rnn_step_forward(x, h, Wx, Wh, b)
    return np.ones_like(nh), cache


def _seq(cell, N=3, T=4, D=4, H=5):
    G = _sequence.CELLS[cell].gates * H
    x, h0 = R.standard_normal((N, T, D)), R.standard_normal((N, H))
    Wx, Wh, b = R.standard_normal((D, G)), R.standard_normal((H, G)), R.standard_normal(G)
    h, cache = (L.lstm_forward if cell == "lstm" else L.rnn_forward)(x, h0, Wx, Wh, b)
    return np.ones_like(h), cache


def _embed():
    x = np.array([[0, 1, 2]])
    W = R.standard_normal((4, 3))
    out, cache = L.word_embedding_forward(x, W)
    return np.ones_like(out), cache


def _vocab(**special):
    v = {"<NULL>": 0, "<END>": 1, "a": 2, "<START>": 3}
    v.update(special)
    return v


def _core(cache, **fields):
    return cache._replace(core=cache.core._replace(**fields))


# name -> a function that either raises or returns; EXPECTED says which.
CASES = {
    # item 1: special tokens outside the vocabulary (issue's reproduction first)
    "vocab_start_1e9": lambda: CaptioningRNN(
        {"<NULL>": 0, "<END>": 1, "a": 2, "<START>": 10**9}, 3, 4, 5, "rnn", np.float64
    ).sample(np.ones((1, 3))),
    "vocab_start_eq_V": lambda: CaptioningRNN(_vocab(**{"<START>": 4}), 3, 4, 5, "rnn", np.float64
                                              ).sample(np.ones((1, 3))),
    "vocab_negative": lambda: CaptioningRNN(_vocab(**{"<START>": -1}), 3, 4, 5, "lstm"),
    "vocab_duplicate": lambda: CaptioningRNN(_vocab(a=1), 3, 4, 5, "rnn"),
    "vocab_float_index": lambda: CaptioningRNN(_vocab(a=2.0), 3, 4, 5, "rnn"),
    "vocab_str_index": lambda: CaptioningRNN(_vocab(a="2"), 3, 4, 5, "rnn"),
    "vocab_none_index": lambda: CaptioningRNN(_vocab(a=None), 3, 4, 5, "rnn"),
    "vocab_bool_index": lambda: CaptioningRNN(_vocab(a=True), 3, 4, 5, "rnn"),
    "vocab_nonstr_word": lambda: CaptioningRNN({**_vocab(), 7: 4}, 3, 4, 5, "rnn"),
    "params_shrunk_vocab": lambda: _shrunk_vocab(),
    # item 2: tampered caches (the reproductions first)
    "lstm_step_prev_c_rows": lambda: (lambda dh, dc, c: L.lstm_step_backward(
        dh, dc, c._replace(prev_c=c.prev_c[:1].copy())))(*_lstm_step()),
    "lstm_step_next_c_wider": lambda: (lambda dh, dc, c: L.lstm_step_backward(
        dh, dc, c._replace(next_c=np.ones((3, 50)))))(*_lstm_step()),
    "lstm_step_ifog_narrow": lambda: (lambda dh, dc, c: L.lstm_step_backward(
        dh, dc, c._replace(ifog=c.ifog[:, :10].copy())))(*_lstm_step()),
    "lstm_step_ifog_view": lambda: (lambda dh, dc, c: L.lstm_step_backward(
        dh, dc, c._replace(ifog=c.ifog[:, :10])))(*_lstm_step()),
    "lstm_step_x_float32": lambda: (lambda dh, dc, c: L.lstm_step_backward(
        dh, dc, c._replace(x=c.x.astype(np.float32))))(*_lstm_step()),
    "lstm_step_not_array": lambda: (lambda dh, dc, c: L.lstm_step_backward(
        dh, dc, c._replace(prev_c=[[1.0] * 5] * 3)))(*_lstm_step()),
    "lstm_c_repeated": lambda: (lambda dh, c: L.lstm_backward(
        dh, _core(c, c=np.repeat(c.core.c, 2, axis=1))))(*_seq("lstm")),
    "lstm_c_narrowed": lambda: (lambda dh, c: L.lstm_backward(
        dh, _core(c, c=c.core.c[:, :2].copy())))(*_seq("lstm")),
    "lstm_h_rows": lambda: (lambda dh, c: L.lstm_backward(
        dh, _core(c, h=c.core.h[:5].copy())))(*_seq("lstm")),
    "lstm_packing_forged": lambda: (lambda dh, c: L.lstm_backward(
        dh, _core(c, packing=_sequence.Packing.of([3, 3, 3, 30]))))(*_seq("lstm")),
    "lstm_x_rows": lambda: (lambda dh, c: L.lstm_backward(
        dh, c._replace(x=c.x[:2].copy())))(*_seq("lstm")),
    "rnn_h_wider": lambda: (lambda dh, c: L.rnn_backward(
        dh, _core(c, h=np.ones((12, 9)))))(*_seq("rnn")),
    "rnn_h0_rows": lambda: (lambda dh, c: L.rnn_backward(
        dh, _core(c, h0=np.ones((7, 5)))))(*_seq("rnn")),
    "rnn_Wh_shape": lambda: (lambda dh, c: L.rnn_backward(
        dh, _core(c, Wh=np.ones((5, 2)))))(*_seq("rnn")),
    "rnn_step_next_h_rows": lambda: (lambda dh, c: L.rnn_step_backward(
        dh, c._replace(next_h=np.ones((1, 5)))))(*_rnn_step()),
    "rnn_step_Wx_shape": lambda: (lambda dh, c: L.rnn_step_backward(
        dh, c._replace(Wx=np.ones((4, 9)))))(*_rnn_step()),
    "embedding_idx_1e9": lambda: (lambda d, c: L.word_embedding_backward(
        d, c._replace(idx=np.array([0, 10**9, 2]))))(*_embed()),
    "embedding_idx_negative": lambda: (lambda d, c: L.word_embedding_backward(
        d, c._replace(idx=np.array([0, -1, 2]))))(*_embed()),
    "embedding_idx_int32": lambda: (lambda d, c: L.word_embedding_backward(
        d, c._replace(idx=np.array([0, 1, 2], np.int32))))(*_embed()),
    "embedding_idx_float": lambda: (lambda d, c: L.word_embedding_backward(
        d, c._replace(idx=np.array([0.0, 1.0, 2.0]))))(*_embed()),
    "embedding_vocab_size": lambda: (lambda d, c: L.word_embedding_backward(
        d, c._replace(vocab_size=-3)))(*_embed()),
    "affine_w_shape": lambda: _affine_tampered("w", np.ones((9, 2))),
    "affine_x_dtype": lambda: _affine_tampered("x", np.ones((2, 3, 4), np.float32)),
    # item 13: messages
    "prev_h_width": lambda: L.lstm_step_forward(np.ones((3, 4)), np.ones((3, 6)), np.ones((3, 6)),
                                                np.ones((4, 20)), np.ones((5, 20)), np.ones(20)),
    "rnn_h0_width": lambda: L.rnn_forward(np.ones((3, 2, 4)), np.ones((3, 6)), np.ones((4, 5)),
                                          np.ones((5, 5)), np.ones(5)),
    "sample_max_length_inf": lambda: _model().sample(np.ones((1, 3)), max_length=math.inf),
    "sample_max_length_nan": lambda: _model().sample(np.ones((1, 3)), max_length=math.nan),
    "sample_max_length_none": lambda: _model().sample(np.ones((1, 3)), max_length=None),
    "softmax_masked_nonfinite": lambda: _masked_nonfinite(),
    "embedding_width_0": lambda: (lambda out, c: L.word_embedding_backward(np.ones((1, 3, 0)), c))(
        *L.word_embedding_forward(np.array([[0, 1, 2]]), np.ones((4, 0)))),
    # the attention model: decoding states handed back tampered, features without cells
    "attention_state_enc_rows": lambda: _attention_step(enc=lambda s: s.enc[:1].copy()),
    "attention_state_a_cells": lambda: _attention_step(a=lambda s: s.a[:, :1].copy()),
    "attention_state_alpha_wider": lambda: _attention_step(alpha=lambda s: np.ones((2, 5))),
    "attention_state_a_float32": lambda: _attention_step(a=lambda s: s.a.astype(np.float32)),
    "attention_zero_cells": lambda: _attention_model().loss(np.ones((2, 0, 3)), np.ones((2, 4), int)),
    "attention_pooled_features": lambda: _attention_model().sample(np.ones((2, 3))),
    "attention_nonfinite_features": lambda: _attention_model().sample(np.full((2, 4, 3), np.nan)),
}


def _model():
    return CaptioningRNN(_vocab(), 3, 4, 5, "rnn", np.float64, rng=np.random.default_rng(0))


def _attention_model():
    return fastcap.AttentionCaptioningRNN(_vocab(), 3, 4, 5, 6, "lstm", 1.0, np.float64,
                                          rng=np.random.default_rng(0))


def _attention_step(**tamper):
    """One step of the attention model from a state whose fields `tamper` replaces."""
    model = _attention_model()
    _, state = model.step(model.initial_hidden(np.ones((2, 4, 3))), np.array([3, 3]))
    for field, value in tamper.items():
        setattr(state, field, value(state))
    return model.step(state, np.array([3, 3]))


def _shrunk_vocab():
    # The vocabulary has 4 words (<START> = 3), the replaced parameters only 3.
    m = _model()
    m.params["W_embed"] = m.params["W_embed"][:3].copy()
    m.params["W_vocab"] = m.params["W_vocab"][:, :3].copy()
    m.params["b_vocab"] = m.params["b_vocab"][:3].copy()
    return m.sample(np.ones((1, 3)))


def _affine_tampered(field, value):
    x, w, b = R.standard_normal((2, 3, 4)), R.standard_normal((4, 6)), R.standard_normal(6)
    out, cache = L.temporal_affine_forward(x, w, b)
    return L.temporal_affine_backward(np.ones_like(out), cache._replace(**{field: value}))


def _masked_nonfinite():
    x = np.zeros((1, 3, 4))
    x[0, 1] = [np.inf, 0, 0, 0]
    x[0, 2] = [np.nan, 0, 0, 0]
    mask = np.array([[True, False, False]])
    _, dx = L.temporal_softmax_loss(x, np.zeros((1, 3), int), mask)
    if not (dx[0, 1:] == 0).all():
        raise AssertionError(f"masked-out rows of dx must be 0, got {dx[0, 1:].tolist()}")
    return "dx is 0 on masked-out rows"


# case -> (exception type name, words its message must contain), or "ok".
_CACHE = ("cache",)
EXPECTED = {
    "vocab_start_1e9": ("ValueError", ("word_to_idx", "<START>", "1000000000")),
    "vocab_start_eq_V": ("ValueError", ("word_to_idx", "<START>", "[0, 4)")),
    "vocab_negative": ("ValueError", ("word_to_idx", "<START>", "-1")),
    "vocab_duplicate": ("ValueError", ("word_to_idx", "'a'", "'<END>'", "1")),
    "vocab_float_index": ("TypeError", ("word_to_idx", "'a'", "integer")),
    "vocab_str_index": ("TypeError", ("word_to_idx", "'a'", "integer")),
    "vocab_none_index": ("TypeError", ("word_to_idx", "'a'", "integer")),
    "vocab_bool_index": ("TypeError", ("word_to_idx", "'a'", "integer")),
    "vocab_nonstr_word": ("TypeError", ("word_to_idx", "7", "str")),
    "params_shrunk_vocab": ("ValueError", ("<START>", "3", "W_embed")),
    "lstm_step_prev_c_rows": ("ValueError", ("cache.prev_c",)),
    "lstm_step_next_c_wider": ("ValueError", ("cache.next_c",)),
    "lstm_step_ifog_narrow": ("ValueError", ("cache.ifog",)),
    "lstm_step_ifog_view": ("ValueError", ("cache.ifog",)),
    "lstm_step_x_float32": ("TypeError", ("cache.x", "float64")),
    "lstm_step_not_array": ("TypeError", ("cache.prev_c",)),
    "lstm_c_repeated": ("ValueError", ("cache.core.c",)),
    "lstm_c_narrowed": ("ValueError", ("cache.core.c",)),
    "lstm_h_rows": ("ValueError", ("cache.core.h",)),
    "lstm_packing_forged": ("ValueError", ("cache.core.packing",)),
    "lstm_x_rows": ("ValueError", ("cache.x",)),
    "rnn_h_wider": ("ValueError", ("cache.core.h",)),
    "rnn_h0_rows": ("ValueError", ("cache.core",)),
    "rnn_Wh_shape": ("ValueError", ("cache.core.Wh",)),
    "rnn_step_next_h_rows": ("ValueError", ("cache.",)),
    "rnn_step_Wx_shape": ("ValueError", ("cache.Wx",)),
    "embedding_idx_1e9": ("ValueError", ("cache.idx", "1000000000", "[0, 4)")),
    "embedding_idx_negative": ("ValueError", ("cache.idx", "-1")),
    "embedding_idx_int32": "ok",
    "embedding_idx_float": ("TypeError", ("cache.idx",)),
    "embedding_vocab_size": ("ValueError", ("cache.vocab_size",)),
    "affine_w_shape": ("ValueError", ("cache.w",)),
    "affine_x_dtype": ("TypeError", ("cache.x",)),
    "prev_h_width": ("ValueError", ("prev_h", "H = 5")),
    "rnn_h0_width": ("ValueError", ("h0", "H = 5")),
    "sample_max_length_inf": ("ValueError", ("max_length", "inf")),
    "sample_max_length_nan": ("ValueError", ("max_length", "nan")),
    "sample_max_length_none": ("TypeError", ("max_length", "None")),
    "softmax_masked_nonfinite": "ok",
    "embedding_width_0": "ok",
    "attention_state_enc_rows": ("ValueError", ("AttentionDecodeState.enc", "(2, 4, 6)")),
    "attention_state_a_cells": ("ValueError", ("AttentionDecodeState.enc", "(2, 1, 6)")),
    "attention_state_alpha_wider": ("ValueError", ("AttentionDecodeState.alpha", "(2, 4)")),
    "attention_state_a_float32": ("ValueError", ("AttentionDecodeState", "float64")),
    "attention_zero_cells": ("ValueError", ("features", "at least one cell")),
    "attention_pooled_features": ("ValueError", ("features", "(N, L, D)", "pooled")),
    "attention_nonfinite_features": "ok",
}
assert set(EXPECTED) == set(CASES)


def _emit(**record):
    print(json.dumps(record), flush=True)


def run_cases(names):
    for name in names:
        _emit(case=name, outcome="start")
        try:
            CASES[name]()
        except Exception as exc:  # noqa: BLE001 - the parent judges the type
            _emit(case=name, outcome="error", type=type(exc).__name__, message=str(exc))
        else:
            _emit(case=name, outcome="ok")


def main(argv):
    backend, groups = argv[0], argv[1:] or ["cases", "properties"]
    fastcap.set_backend(backend)
    if "cases" in groups:
        run_cases(list(CASES))
    if "properties" in groups:
        import hostile_properties

        for name, prop in hostile_properties.PROPERTIES.items():
            _emit(case=name, outcome="start")
            try:
                prop()
            except Exception as exc:  # noqa: BLE001 - a falsified property
                _emit(case=name, outcome="error", type=type(exc).__name__, message=str(exc)[-4000:])
            else:
                _emit(case=name, outcome="ok")
    _emit(case="<end>", outcome="ok")


if __name__ == "__main__":
    main(sys.argv[1:])
