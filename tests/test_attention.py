"""AttentionCaptioningRNN against the NumPy reference of the model (fastcap.model.attention_reference,
itself checked against PyTorch autograd in test_attention_reference.py), on every backend.

* loss and every gradient: float64 to 1e-10, float32 within MODEL_TOL32 of float64, the
  bfloat16 mode within test_bf16's BF16_MODEL_TOL of float64 and close to the emulation;
* greedy captions and their attention weights, beam search (a beam of one is greedy),
  the step API;
* the same bits for 1, 2 and 3 threads;
* the API (parameters, defaults) and bad input, refused before any kernel runs.
"""
import numpy as np
import pytest

import fastcap
from fastcap import AttentionCaptioningRNN
from fastcap.gradient_check import rel_error
from fastcap.model import attention_reference as R
from fastcap.model.beam import beam_search
from fastcap.model.sequence import CELL_TYPES
from fastcap.runtime.compute import Compute

from conftest import require_backend
from parity import assert_same, scaled_error
from test_bf16 import BF16_MODEL_TOL

NULL, START, END = 0, 1, 2
V, D, W, H, A, L = 23, 10, 8, 16, 12, 7
WORDS = {"<NULL>": NULL, "<START>": START, "<END>": END, "<UNK>": 3, **{f"w{i}": i for i in range(4, V)}}
# float32 loss and gradients against float64: about 10x the worst scaled error over 8 seeds
# (9.3e-7, every backend, both cells).
MODEL_TOL32 = 1e-5
# The compiled backends' bfloat16 mode against the NumPy emulation: about 10x the worst over
# 24 draws (1e-3). The per-step attention's float32 exp and tanh differ from the emulation's
# in the last bit, enough to round an operand of a later product to the other side of a bf16
# step (2**-8 relative), carried through the steps; the kernels' BF16_CASES rows are the
# tight check.
MODEL_TOL_BF16 = 1e-2


def _model(cell="lstm", dtype=np.float64, reg=1.0, seed=0, **dims):
    sizes = {**dict(input_dim=D, wordvec_dim=W, hidden_dim=H, attention_dim=A), **dims}
    return AttentionCaptioningRNN(WORDS, **sizes, cell_type=cell, attention_reg=reg, dtype=dtype,
                                  rng=np.random.default_rng(seed))


def _batch(rng, N=6, T=9):
    """Features (N, L, D) and captions of different lengths: one with <NULL> inside (run,
    not scored), one with no scored word at all (it never runs, its cells still count in
    the penalty)."""
    a = rng.standard_normal((N, L, D))
    captions = rng.integers(4, V, (N, T))
    captions[:, 0] = START
    for i, length in enumerate(rng.integers(2, T, N)):
        captions[i, length] = END
        captions[i, length + 1:] = NULL
    captions[1, 2] = NULL
    captions[-1, 1:] = NULL
    return a, captions


def _perturbed(model, rng):
    model.params = {k: v + 0.1 * rng.standard_normal(v.shape).astype(v.dtype) for k, v in model.params.items()}
    return model


@pytest.mark.parametrize("cell", CELL_TYPES)
@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_loss_and_gradients_match_the_reference_in_float64(backend, cell, reg):
    rng = np.random.default_rng(2)
    model = _perturbed(_model(cell, reg=reg), rng)  # biases not 0
    a, captions = _batch(rng)
    want, want_grads = R.loss(model.params, a, captions, NULL, reg, cell)
    got, grads = model.loss(a, captions)
    assert abs(got - want) <= 1e-12 * abs(want)
    assert list(grads) == list(model.params) == list(R.PARAM_SHAPES)
    for k in want_grads:
        assert grads[k].dtype == np.float64 and grads[k].shape == model.params[k].shape, k
        assert rel_error(grads[k], want_grads[k]) <= 1e-10, k
    loss_only, none = model.loss(a, captions, grads=False)
    assert none is None and loss_only == got


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_float32_within_tolerance_of_float64(backend, cell):
    rng = np.random.default_rng(3)
    a, captions = _batch(rng)
    want, want_grads = R.loss(_model(cell).params, a, captions, NULL, 1.0, cell)
    got, grads = _model(cell, np.float32).loss(a.astype(np.float32), captions)
    assert abs(got - want) <= MODEL_TOL32 * abs(want)
    for k in want_grads:
        assert grads[k].dtype == np.float32, k
        assert scaled_error(grads[k], want_grads[k]) <= MODEL_TOL32, k


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_bf16_mode_against_float64_and_the_emulation(backend, bf16_anywhere, cell):
    rng = np.random.default_rng(4)
    a, captions = _batch(rng)
    model = _model(cell, np.float32)
    want, want_grads = R.loss(_model(cell).params, a, captions, NULL, 1.0, cell)
    got, grads = model.loss(a, captions)
    with fastcap.use_backend("numpy"):
        emulated, emulated_grads = model.loss(a, captions)
    with fastcap.use_precision("float32"):
        _, grads32 = model.loss(a, captions)
    assert got == pytest.approx(want, rel=1e-2)
    for k in want_grads:
        assert grads[k].dtype == np.float32, k  # gradients stay float32
        assert scaled_error(grads[k], want_grads[k]) <= BF16_MODEL_TOL, k
        assert scaled_error(grads[k], emulated_grads[k]) <= MODEL_TOL_BF16, k
    for k in ("Wh", "Wx", "W_dec", "W_beta", "W_enc", "W_proj"):  # every product ran in bf16
        assert not np.array_equal(grads[k], grads32[k]), k


def _decoding_model(cell, dtype, seed=5):
    """A model whose scores are far apart (argmax flips no word in float32) and whose
    captions end at different steps."""
    model = _perturbed(_model(cell, dtype, seed=seed), np.random.default_rng(seed))
    model.params["W_vocab"] *= 8
    model.params["W_embed"] *= 40
    model.params["w_att"] *= 4  # peaked attention: the weights differ from cell to cell
    model.params["b_vocab"][END] += 2.0
    return model


@pytest.mark.parametrize("cell", CELL_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_greedy_captions_and_weights_match_the_reference(backend, cell, dtype):
    model = _decoding_model(cell, dtype)
    a = np.random.default_rng(6).standard_normal((12, L, D))
    params64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    want, want_alpha = R.greedy(params64, a.astype(dtype).astype(np.float64), START, END, NULL, 10, cell)
    captions, alpha = model.sample(a, max_length=10, return_attention=True)
    assert captions.dtype == np.int32 and alpha.dtype == dtype and alpha.shape == (12, 10, L)
    np.testing.assert_array_equal(captions, want)
    assert len(set((want != NULL).sum(axis=1))) > 2 and len(np.unique(want)) > 4  # not trivial
    assert scaled_error(alpha, want_alpha) <= (1e-12 if dtype == np.float64 else 1e-5)
    np.testing.assert_array_equal(model.sample(a, max_length=10), captions)


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_beam_of_one_is_greedy_and_the_step_api_is_the_sample_loop(backend, cell):
    model = _decoding_model(cell, np.float32)
    a = np.random.default_rng(7).standard_normal((5, L, D))
    greedy, alpha = model.sample(a, max_length=8, return_attention=True)
    np.testing.assert_array_equal(beam_search(model, a, beam_size=1, max_length=8), greedy)
    wider = beam_search(model, a, beam_size=3, max_length=8)
    assert wider.shape == greedy.shape and wider.dtype == np.int32
    state, words = model.initial_hidden(a), np.full(5, START)
    for t in range(3):
        scores, state = model.step(state, words)
        words = scores.argmax(axis=1)
        running = (greedy[:, :t] != END).all(axis=1)
        np.testing.assert_array_equal(words[running], greedy[running, t])
        assert scaled_error(state.alpha[running], alpha[running, t]) <= 1e-6
    kept = state.select(np.array([4, 0]))
    assert kept.rows == 2 and np.array_equal(kept.a, state.a[[4, 0]]) and np.array_equal(kept.alpha, state.alpha[[4, 0]])


def test_same_bits_for_any_thread_count(bf16_anywhere):
    require_backend("cython")
    rng = np.random.default_rng(8)
    a, captions = _batch(rng, N=30, T=12)
    results = []
    with fastcap.use_backend("cython"):
        previous = fastcap.get_num_threads()
        try:
            for precision in ("float32", "bfloat16"):
                with fastcap.use_precision(precision):
                    for model in (_model("lstm", np.float32), _model("rnn", np.float32)):
                        for n in (1, 2, 3):
                            fastcap.set_num_threads(n)
                            results.append((precision, n, model.loss(a, captions),
                                            model.sample(a[:7], max_length=8, return_attention=True)))
        finally:
            fastcap.set_num_threads(previous)
    for i in range(0, len(results), 3):
        for precision, n, got, sampled in results[i + 1:i + 3]:
            assert_same(got, results[i][2], 0.0, path=f"{precision} loss and grads at {n} threads")
            assert_same(sampled, results[i][3], 0.0, path=f"{precision} captions and weights at {n} threads")


def test_parameters_and_defaults():
    model = AttentionCaptioningRNN(WORDS, input_dim=D, wordvec_dim=W, hidden_dim=H)
    assert model.cell_type == "lstm" and model.dtype == np.float32 and model.attention_reg == 1.0
    sizes = dict(V=V, W=W, D=D, H=H, A=H, G=4 * H, E=W + D)  # attention_dim defaults to hidden_dim
    assert {k: v.shape for k, v in model.params.items()} == {
        k: tuple(sizes[d] for d in s) for k, s in R.PARAM_SHAPES.items()}
    assert all(v.dtype == np.float32 for v in model.params.values())
    assert fastcap.classifiers.AttentionCaptioningRNN is AttentionCaptioningRNN
    rnn = _model("rnn", np.float64, attention_dim=5)
    assert rnn.params["Wh"].shape == (H, H) and rnn.params["W_enc"].shape == (D, 5)
    # the draws of the reference's init_params, from the same generator
    want = R.init_params(V, D, W, H, A, "lstm", np.random.default_rng(0))
    assert_same(_model().params, want, 0.0)


def test_an_empty_batch_has_zero_loss_and_gradients(backend):
    model = _model()
    loss, grads = model.loss(np.zeros((0, L, D)), np.zeros((0, 5), int))
    assert loss == 0.0 and all(not g.any() for g in grads.values())


class _Tripwire:
    """Kernels that fail the test if any is reached: the input was not checked first."""

    name = "tripwire"

    def __getattr__(self, kernel):
        raise AssertionError(f"kernel {kernel} ran before the bad input was refused")


@pytest.fixture
def no_kernels(monkeypatch):
    import fastcap.classifiers.attention as attention_module
    import fastcap.classifiers.captioner as captioner_module

    for module in (attention_module, captioner_module):
        monkeypatch.setattr(module, "resolve", lambda: Compute(_Tripwire(), False))


def _replaced(model, **params):
    model.params = {**model.params, **params}
    return model


BAD = [
    ("pooled features", lambda m: m.loss(np.ones((3, D)), np.ones((3, 4), int)), ValueError,
     r"features must have shape \(N, L, D\).*got shape \(3, 10\): one pooled vector per image"),
    ("no cells", lambda m: m.sample(np.ones((3, 0, D))), ValueError, r"at least one cell .*\(3, 0, 10\)"),
    ("other channels", lambda m: m.sample(np.ones((3, L, D + 1))), ValueError, "D = 10"),
    ("string features", lambda m: m.sample(np.array([[["x"] * D] * L])), TypeError, "float array"),
    ("captions rows", lambda m: m.loss(np.ones((3, L, D)), np.ones((4, 5), int)), ValueError,
     r"one row per feature row \(N = 3\)"),
    ("one column", lambda m: m.loss(np.ones((3, L, D)), np.ones((3, 1), int)), ValueError, "at least 2 columns"),
    ("word index", lambda m: m.loss(np.ones((3, L, D)), np.full((3, 4), V)), ValueError, f"outside \\[0, {V}\\)"),
    ("Wx rows", lambda m: _replaced(m, Wx=np.zeros((W + D + 1, 4 * H))).loss(np.ones((1, L, D)), np.ones((1, 3), int)),
     ValueError, "params\\['Wx'\\] must have W \\+ D = 8 \\+ 10 rows"),
    ("w_att size", lambda m: _replaced(m, w_att=np.zeros(A + 1)).sample(np.ones((1, L, D))), ValueError,
     r"params\['w_att'\] must have shape \(A\) \(A = 12 from params\['W_enc'\].shape\[1\]\), got shape \(13,\)"),
    ("params dtype", lambda m: _replaced(m, W_dec=np.zeros((H, A), np.float32)).sample(np.ones((1, L, D))),
     TypeError, "model dtype float64"),
    ("penalty weight", lambda m: setattr(m, "attention_reg", -1) or m.loss(np.ones((1, L, D)), np.ones((1, 3), int)),
     ValueError, "attention_reg must be a finite number >= 0"),
    ("return_attention", lambda m: m.sample(np.ones((1, L, D)), return_attention="yes"), TypeError,
     "return_attention must be True or False"),
    ("max_length", lambda m: m.sample(np.ones((1, L, D)), max_length=-1), ValueError, "max_length"),
]


@pytest.mark.parametrize("what, call, error, match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_named_before_any_kernel_runs(no_kernels, what, call, error, match):
    with pytest.raises(error, match=match):
        call(_model())


def test_bad_construction_and_tampered_states_are_refused():
    for kwargs, match in [(dict(attention_dim=0), "attention_dim must be a positive integer"),
                          (dict(attention_reg=float("nan")), "attention_reg"),
                          (dict(cell_type="gru"), "cell_type must be one of")]:
        with pytest.raises(ValueError, match=match):
            AttentionCaptioningRNN(WORDS, D, W, H, **kwargs)
    model = _model()
    state = model.initial_hidden(np.ones((2, L, D)))
    pooled = fastcap.CaptioningRNN(WORDS, D, W, H, "lstm", np.float64).initial_hidden(np.ones((2, D)))
    with pytest.raises(TypeError, match="AttentionDecodeState"):
        model.step(pooled, np.ones(2, int))
    state.a = state.a[:, :, :3].copy()
    with pytest.raises(ValueError, match=r"AttentionDecodeState.a must have shape \(2, 7, 10\)"):
        model.step(state, np.ones(2, int))
    state.a = np.ones((2, 0, D))
    with pytest.raises(ValueError, match="L >= 1"):
        model.step(state, np.ones(2, int))


def test_a_grid_given_to_the_pooled_model_is_named():
    model = fastcap.CaptioningRNN(WORDS, D, W, H, "lstm", np.float64)
    with pytest.raises(ValueError, match=r"shape \(N, D\).*got shape \(2, 7, 10\): a grid of 7 cells per image"):
        model.sample(np.ones((2, L, D)))
