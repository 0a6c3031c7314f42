"""Multinomial sampling (CaptioningRNN.sample_multinomial, the sample_words / sample_decode
kernels) and the per-caption weights of the loss, what self-critical training is made of.

* The same seed gives the same captions on every backend, in every precision, and for
  any thread count; an image's samples depend on its key, not on the batch it is in.
* The draws follow the model's distribution (frequencies against the softmax).
* ``loss(weights=w)`` is the weighted sum of the captions' own losses, its gradients the
  weighted sum of theirs.
"""
import numpy as np
import pytest

import fastcap
from fastcap import CaptioningRNN
from fastcap.model.decode import counter_uniforms
from fastcap.runtime import backends as _backend

from conftest import BACKENDS, require_backend

WORDS = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(26)]
END = 2
D, W, H = 9, 6, 10


def make_model(cell, dtype=np.float64, seed=3):
    model = CaptioningRNN({w: i for i, w in enumerate(WORDS)}, input_dim=D, wordvec_dim=W,
                          hidden_dim=H, cell_type=cell, dtype=dtype, rng=np.random.default_rng(seed))
    model.params["W_vocab"] *= 2  # spread over a few words: draws differ from the argmax
    model.params["b_vocab"][END] += 1.0  # captions end, at different steps
    return model


def features(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, D))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_seed_same_captions_on_every_backend_and_thread_count(cell, dtype):
    model, f = make_model(cell, dtype), features(40)
    results, previous = {}, fastcap.get_num_threads()
    try:
        for name in BACKENDS:
            require_backend(name)
            with fastcap.use_backend(name):
                for threads in (1, 2, 3):
                    fastcap.set_num_threads(threads)
                    results[name, threads] = model.sample_multinomial(f, 4, 12, seed=(7, 1))
    finally:
        fastcap.set_num_threads(previous)
    first = next(iter(results.values()))
    assert first.shape == (40, 4, 12) and first.dtype == np.int32
    for key, got in results.items():
        np.testing.assert_array_equal(got, first, err_msg=str(key))
    # really sampled: the samples of an image differ, and captions end at different steps
    assert (first[:, 0] != first[:, 1]).any(axis=1).mean() > 0.5
    assert len(set((first != 0).sum(axis=2).ravel())) >= 3
    assert not np.array_equal(first, model.sample_multinomial(f, 4, 12, seed=(7, 2)))


def test_bfloat16_mode_samples_alike_on_the_compiled_backends():
    model, f = make_model("lstm", np.float32), features(30)
    with fastcap.use_precision("bfloat16"):
        got = {}
        for name in BACKENDS:
            require_backend(name)
            with fastcap.use_backend(name):
                got[name] = model.sample_multinomial(f, 3, 10, seed=5)
    for name, c in got.items():
        np.testing.assert_array_equal(c, got["numpy"], err_msg=name)


def test_an_image_samples_by_its_key_whatever_its_batch(backend):
    model, f = make_model("lstm"), features(5)
    whole = model.sample_multinomial(f, 3, 10, seed=11, keys=[50, 51, 52, 53, 54])
    alone = model.sample_multinomial(f[3:4], 3, 10, seed=11, keys=[53])
    np.testing.assert_array_equal(whole[3], alone[0])
    other = model.sample_multinomial(f[3:4], 3, 10, seed=11, keys=[54])
    assert not np.array_equal(other[0], alone[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_draws_follow_the_softmax(backend, dtype):
    """40,000 draws from one row of known scores: every word's frequency within 5 standard
    errors of its probability, a suppressed word never drawn."""
    kernels = _backend.kernels()
    V, n = 12, 40000
    scores = np.tile(np.linspace(-2, 1.5, V), (n, 1)).astype(dtype)
    b_vocab = np.zeros(V, dtype)
    b_vocab[4] = -np.inf
    p = np.exp(scores[0].astype(np.float64) + b_vocab)
    p /= p.sum()
    words = np.empty(n, np.intp)
    u = counter_uniforms(3, np.arange(n), 1, 1).reshape(n)
    ended = kernels.sample_words(scores, b_vocab, u, 7, words)
    freq = np.bincount(words, minlength=V) / n
    assert freq[4] == 0 and ended == np.count_nonzero(words == 7)
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12), (freq, p)


def test_counter_uniforms_are_uniform_and_keyed():
    u = counter_uniforms((1, 2), np.arange(500), 4, 30)
    assert u.shape == (500, 4, 30) and u.dtype == np.float64
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    # neighbouring counters are uncorrelated
    assert abs(np.corrcoef(u[:, :, :-1].ravel(), u[:, :, 1:].ravel())[0, 1]) < 0.02
    np.testing.assert_array_equal(u[7:9], counter_uniforms((1, 2), [7, 8], 4, 30))
    assert not np.array_equal(u, counter_uniforms((1, 3), np.arange(500), 4, 30))


@pytest.mark.parametrize("call, words", [
    (lambda m, f: m.sample_multinomial(f, 0), ["num_samples", ">= 1"]),
    (lambda m, f: m.sample_multinomial(f, 2, seed=-1), ["seed"]),
    (lambda m, f: m.sample_multinomial(f, 2, keys=[1, 2]), ["keys", "3"]),
    (lambda m, f: m.sample_multinomial(f, 2, keys=[1, -2, 3]), ["keys", "non-negative"]),
])
def test_bad_sampling_arguments_are_named(call, words):
    with pytest.raises((ValueError, TypeError)) as info:
        call(make_model("rnn"), features(3))
    for w in words:
        assert w in str(info.value)


# ---------------------------------------------------------------- weights of the loss


def _batch(rng, N=7, T=9):
    captions = rng.integers(3, len(WORDS), (N, T))
    captions[:, 0] = 1
    for n, L in enumerate(rng.integers(2, T + 1, N)):
        captions[n, L - 1] = END
        captions[n, L:] = 0
    return features(N, 4), captions


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_weighted_loss_is_the_weighted_sum_of_the_captions_losses(backend, cell):
    model = make_model(cell)
    f, captions = _batch(np.random.default_rng(2))
    N = len(captions)
    w = np.random.default_rng(3).standard_normal(N)  # advantages: either sign
    loss, grads = model.loss(f, captions, weights=w)
    want_loss, want = 0.0, {k: np.zeros_like(v) for k, v in model.params.items()}
    for n in range(N):
        l_n, g_n = model.loss(f[n:n + 1], captions[n:n + 1])
        want_loss += w[n] * l_n / N
        for k in want:
            want[k] += w[n] * g_n[k] / N
    assert abs(loss - want_loss) <= 1e-10 * max(1.0, abs(want_loss))
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-8, atol=1e-11, err_msg=k)


def test_unit_weights_change_no_bit(backend):
    model = make_model("lstm", np.float32)
    f, captions = _batch(np.random.default_rng(5))
    loss, grads = model.loss(f, captions)
    loss1, grads1 = model.loss(f, captions, weights=np.ones(len(captions)))
    assert loss == loss1
    for k in grads:
        assert grads[k].tobytes() == grads1[k].tobytes(), k


@pytest.mark.parametrize("weights, words", [
    (np.ones(3), ["weights", "(7,)"]),
    (np.array([1.0, np.nan, 1, 1, 1, 1, 1]), ["weights", "finite", "caption 1"]),
    (np.array(["a"] * 7), ["weights", "numbers"]),
])
def test_bad_weights_are_named(weights, words):
    f, captions = _batch(np.random.default_rng(2))
    with pytest.raises((ValueError, TypeError)) as info:
        make_model("rnn").loss(f, captions, weights=weights)
    for w in words:
        assert w in str(info.value)
