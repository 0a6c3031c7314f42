"""Hypothesis properties of the layers, the model and their caches under hostile input.

Run by ``tests/hostile_cases.py`` in a child process under one backend (so a
crash fails the test that names the property instead of killing pytest). Each
property draws valid inputs, then tampers with one of them (a field of a cache
replaced by an array of another shape, dtype or layout, indices out of range,
a vocabulary with bad indices) and asserts that the call either raises a
clear ValueError/TypeError, the same one the NumPy reference raises, or
returns what the NumPy reference returns.
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastcap
from fastcap import CaptioningRNN
from fastcap.model import sequence as _sequence
from fastcap import rnn_layers as L
from fastcap.model.sequence import CELL_TYPES

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
CLEAR = (ValueError, TypeError)


def _outcome(fn):
    try:
        return "ok", fn()
    except CLEAR as exc:
        return type(exc).__name__, str(exc)


def _flat(result):
    if isinstance(result, tuple):
        return [a for r in result for a in _flat(r)]
    return [np.asarray(result)]


def agrees_with_reference(fn):
    """fn() under the active backend: a clear error, or the NumPy reference's result."""
    kind, got = _outcome(fn)
    with fastcap.use_backend("numpy"):
        ref_kind, ref = _outcome(fn)
    assert kind == ref_kind, f"{kind}: {got!s:.300} but the reference gave {ref_kind}: {ref!s:.300}"
    if kind != "ok":
        assert got == ref, (got, ref)
        assert "cache" in got or any(w in got for w in ("must", "outside")), got
        return
    for a, b in zip(_flat(got), _flat(ref)):
        tol = 1e-4 if a.dtype == np.float32 else 1e-8
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, equal_nan=True)


# ---------------------------------------------------------------- strategies
dims = st.integers(1, 4)
float_dtypes = st.sampled_from([np.float64, np.float32])


@st.composite
def replacement(draw, like):
    """An array to put in place of ``like``: another shape, dtype or layout, or the same."""
    kind = draw(st.sampled_from(["shape", "dtype", "view", "same", "transpose", "list"]))
    shape = list(like.shape)
    if kind == "shape" and shape:
        axis = draw(st.integers(0, len(shape) - 1))
        shape[axis] = draw(st.integers(0, 2 * shape[axis] + 2))
        if draw(st.booleans()):
            shape.append(draw(st.integers(1, 3)))
    dtype = like.dtype
    if kind == "dtype":
        dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.complex128]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = rng.standard_normal(shape).astype(dtype)
    if kind == "view" and a.ndim == 2 and a.shape[1] > 1:
        a = np.repeat(a, 2, axis=1)[:, ::2]  # same shape, not contiguous
    if kind == "transpose" and a.ndim == 2:
        a = np.ascontiguousarray(a.T).T
    if kind == "list":
        return a.tolist()
    return a


def _rand(rng, dtype, *shape):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- properties
@SETTINGS
@given(N=dims, D=dims, H=dims, dtype=float_dtypes, seed=st.integers(0, 2**16), data=st.data())
def lstm_step_tampered(N, D, H, dtype, seed, data):
    r = np.random.default_rng(seed)
    nh, nc, cache = L.lstm_step_forward(_rand(r, dtype, N, D), _rand(r, dtype, N, H), _rand(r, dtype, N, H),
                                        _rand(r, dtype, D, 4 * H), _rand(r, dtype, H, 4 * H),
                                        _rand(r, dtype, 4 * H))
    field = data.draw(st.sampled_from(cache._fields))
    cache = cache._replace(**{field: data.draw(replacement(getattr(cache, field)))})
    agrees_with_reference(lambda: L.lstm_step_backward(np.ones_like(nh), np.ones_like(nc), cache))


@SETTINGS
@given(N=dims, D=dims, H=dims, seed=st.integers(0, 2**16), data=st.data())
def rnn_step_tampered(N, D, H, seed, data):
    r = np.random.default_rng(seed)
    nh, cache = L.rnn_step_forward(_rand(r, np.float64, N, D), _rand(r, np.float64, N, H),
                                   _rand(r, np.float64, D, H), _rand(r, np.float64, H, H),
                                   _rand(r, np.float64, H))
    field = data.draw(st.sampled_from(cache._fields))
    cache = cache._replace(**{field: data.draw(replacement(getattr(cache, field)))})
    dnext = data.draw(st.sampled_from(["ones", "tampered"]))
    d = np.ones_like(nh) if dnext == "ones" else data.draw(replacement(nh))
    agrees_with_reference(lambda: L.rnn_step_backward(d, cache))


@SETTINGS
@given(cell=st.sampled_from(CELL_TYPES), N=dims, T=dims, D=dims, H=dims,
       seed=st.integers(0, 2**16), data=st.data())
def sequence_cache_tampered(cell, N, T, D, H, seed, data):
    r = np.random.default_rng(seed)
    G = _sequence.CELLS[cell].gates * H
    forward, backward = (L.lstm_forward, L.lstm_backward) if cell == "lstm" else (L.rnn_forward, L.rnn_backward)
    h, cache = forward(_rand(r, np.float64, N, T, D), _rand(r, np.float64, N, H),
                       _rand(r, np.float64, D, G), _rand(r, np.float64, H, G), _rand(r, np.float64, G))
    where = data.draw(st.sampled_from(["x", "Wx"] + [f"core.{f}" for f in cache.core._fields]))
    if where == "core.packing":
        sizes = data.draw(st.lists(st.integers(0, N + 2), min_size=1, max_size=T + 2))
        cache = cache._replace(core=cache.core._replace(packing=_sequence.Packing.of(sizes)))
    elif where.startswith("core."):
        f = where[5:]
        cache = cache._replace(core=cache.core._replace(**{f: data.draw(replacement(getattr(cache.core, f)))}))
    else:
        cache = cache._replace(**{where: data.draw(replacement(getattr(cache, where)))})
    agrees_with_reference(lambda: backward(np.ones_like(h), cache))


@SETTINGS
@given(V=st.integers(1, 6), Wd=st.integers(0, 3), idx=st.lists(st.integers(-3, 9), min_size=1, max_size=8),
       idx_dtype=st.sampled_from([np.int64, np.int32, np.uint8, np.float64, bool]),
       vocab_size=st.integers(-1, 8), seed=st.integers(0, 2**16))
def embedding_cache_tampered(V, Wd, idx, idx_dtype, vocab_size, seed):
    r = np.random.default_rng(seed)
    x = r.integers(0, V, size=(1, len(idx)))
    out, cache = L.word_embedding_forward(x, _rand(r, np.float64, V, Wd))
    cache = cache._replace(idx=np.array(idx).astype(idx_dtype), vocab_size=vocab_size)
    agrees_with_reference(lambda: L.word_embedding_backward(np.ones_like(out), cache))


@SETTINGS
@given(N=dims, T=dims, D=dims, M=dims, seed=st.integers(0, 2**16), data=st.data())
def affine_cache_tampered(N, T, D, M, seed, data):
    r = np.random.default_rng(seed)
    out, cache = L.temporal_affine_forward(_rand(r, np.float64, N, T, D), _rand(r, np.float64, D, M),
                                           _rand(r, np.float64, M))
    field = data.draw(st.sampled_from(cache._fields))
    cache = cache._replace(**{field: data.draw(replacement(getattr(cache, field)))})
    agrees_with_reference(lambda: L.temporal_affine_backward(np.ones_like(out), cache))


@SETTINGS
@given(N=dims, D=dims, H=dims, seed=st.integers(0, 2**16), data=st.data())
def lstm_step_inputs(N, D, H, seed, data):
    r = np.random.default_rng(seed)
    args = [_rand(r, np.float64, *s) for s in ((N, D), (N, H), (N, H), (D, 4 * H), (H, 4 * H), (4 * H,))]
    i = data.draw(st.integers(0, 5))
    args[i] = data.draw(replacement(args[i]))
    agrees_with_reference(lambda: L.lstm_step_forward(*args))


@SETTINGS
@given(N=dims, T=dims, V=dims, seed=st.integers(0, 2**16),
       special=st.lists(st.sampled_from([0.0, np.inf, -np.inf, np.nan, 1e30, -1e30]), min_size=1, max_size=4),
       data=st.data())
def softmax_loss_extremes(N, T, V, seed, special, data):
    r = np.random.default_rng(seed)
    x = r.standard_normal((N, T, V))
    flat = x.reshape(-1)
    flat[r.integers(0, flat.size, size=len(special))] = special
    y = r.integers(0, V, size=(N, T))
    mask = r.random((N, T)) < 0.5
    loss, dx = L.temporal_softmax_loss(x, y, mask)
    assert (dx[~mask] == 0).all(), "masked-out rows of dx must be 0"
    finite = np.isfinite(x).all(axis=2) & (np.abs(x) < 1e29).all(axis=2)
    if finite[mask].all():
        with fastcap.use_backend("numpy"):
            ref_loss, ref_dx = L.temporal_softmax_loss(x, y, mask)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-8)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-8, atol=1e-12)


_WORD = st.text(st.characters(codec="ascii", categories=("L",)), min_size=1, max_size=3)
_INDEX = st.one_of(st.integers(-2, 8), st.integers(10**8, 10**12), st.floats(0, 5), st.none(),
                   st.text(max_size=2), st.booleans())


@SETTINGS
@given(words=st.dictionaries(_WORD, _INDEX, max_size=4),
       special=st.fixed_dictionaries({"<NULL>": _INDEX, "<START>": _INDEX, "<END>": _INDEX}),
       cell=st.sampled_from(CELL_TYPES),
       max_length=st.one_of(st.integers(-1, 5), st.floats(allow_nan=True), st.none()))
def model_vocabulary(words, special, cell, max_length):
    vocab = {**words, **special}
    try:
        model = CaptioningRNN(vocab, 3, 4, 5, cell, np.float64, rng=np.random.default_rng(0))
    except CLEAR as exc:
        assert "word_to_idx" in str(exc), str(exc)
        return
    V = len(vocab)
    assert all(0 <= vocab[t] < V for t in ("<NULL>", "<START>", "<END>"))
    assert len(set(vocab.values())) == V
    kind, caps = _outcome(lambda: model.sample(np.ones((2, 3)), max_length=max_length))
    if kind != "ok":
        assert "max_length" in caps, caps
        return
    assert caps.shape == (2, int(max_length)) and ((caps >= 0) & (caps < V)).all()
    with fastcap.use_backend("numpy"):
        np.testing.assert_array_equal(model.sample(np.ones((2, 3)), max_length=max_length), caps)


PROPERTIES = {f.__name__: f for f in (
    lstm_step_tampered, rnn_step_tampered, sequence_cache_tampered, embedding_cache_tampered,
    affine_cache_tampered, lstm_step_inputs, softmax_loss_extremes, model_vocabulary)}
