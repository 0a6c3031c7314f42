"""The caches of the public layers (``fastcap.rnn_layers``), and the checks of a cache handed
back to a ``*_backward`` layer.

Caches are NamedTuples of plain arrays, one layout for every backend, so a
forward under one backend feeds a backward under another.

A cache is user data like any other argument: it can be built by hand, sliced,
replaced field by field (``cache._replace(...)``) or come from a different
forward. The compiled kernels index its arrays without bounds checks, so every
field a kernel or a shared loop reads is checked here, before any kernel
runs: that it is an ndarray of the expected dtype (one float dtype for the
whole cache; intp for indices), C-contiguous, with a shape consistent with the
other fields (shape symbols bound by ``Dims``, which names the field each size
came from), and that index fields lie in range. Each check is O(1) except the
O(P) min/max of an index array, so the cost does not show in a training step.

Each function takes the cache (and returns it, possibly with an index array
converted to intp); the upstream gradient is checked against the validated
cache by the layer itself.
"""
from typing import NamedTuple

import numpy as np

from .sequence import LSTMCore, RNNCore
from .validate import FLOAT_DTYPES, Dims, cache_of

__all__ = ["RNNStepCache", "LSTMStepCache", "RNNCache", "LSTMCache", "EmbeddingCache", "AffineCache",
           "rnn_step", "lstm_step", "rnn_seq", "lstm_seq", "embedding", "affine"]


class RNNStepCache(NamedTuple):
    x: np.ndarray  # (N, D)
    prev_h: np.ndarray  # (N, H)
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)
    next_h: np.ndarray  # (N, H)


class LSTMStepCache(NamedTuple):
    x: np.ndarray  # (N, D)
    prev_h: np.ndarray  # (N, H)
    prev_c: np.ndarray  # (N, H)
    Wx: np.ndarray  # (D, 4H)
    Wh: np.ndarray  # (H, 4H)
    ifog: np.ndarray  # (N, 4H) activated gates
    next_c: np.ndarray  # (N, H)


class RNNCache(NamedTuple):
    x: np.ndarray  # (P, D) packed inputs
    Wx: np.ndarray  # (D, H)
    core: RNNCore


class LSTMCache(NamedTuple):
    x: np.ndarray  # (P, D) packed inputs
    Wx: np.ndarray  # (D, 4H)
    core: LSTMCore


class EmbeddingCache(NamedTuple):
    idx: np.ndarray  # (N*T,) intp word indices, flattened
    vocab_size: int  # V
    dtype: np.dtype  # dtype of W


class AffineCache(NamedTuple):
    x: np.ndarray  # (N, T, D)
    w: np.ndarray  # (D, M)
    b: np.ndarray  # (M,)


def _arrays(prefix, cache, specs, dims):
    """Check each ``field: shape spec`` of ``cache`` (float, C-contiguous, one dtype)."""
    dtypes = {}
    for field, spec in specs.items():
        name = f"{prefix}.{field}"
        a = getattr(cache, field)
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array (as the forward returned it), got "
                            f"{type(a).__name__}")
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be a float32 or float64 array, got dtype {a.dtype}")
        dims.match(name, a, spec)
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous (as the forward returned it), got a "
                             f"strided view with strides {a.strides}")
        dtypes[name] = a.dtype
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}={d}" for n, d in dtypes.items())
        raise TypeError(f"the cache's arrays must share one dtype, got {listed}")


def _gates(name, dims, gates):
    if dims["G"] != gates * dims["H"]:
        raise ValueError(f"{name} must have {gates}*H = {gates * dims['H']} columns "
                         f"(H = {dims['H']} from {dims.source['H']}), got {dims['G']}")


def rnn_step(cache):

    cache = cache_of("cache", cache, RNNStepCache, "rnn_step_forward")
    dims = Dims()
    _arrays("cache", cache, {"x": ("N", "D"), "prev_h": ("N", "H"), "Wx": ("D", "H"),
                             "Wh": ("H", "H"), "next_h": ("N", "H")}, dims)
    return cache


def lstm_step(cache):

    cache = cache_of("cache", cache, LSTMStepCache, "lstm_step_forward")
    dims = Dims()
    _arrays("cache", cache, {"x": ("N", "D"), "prev_h": ("N", "H"), "Wx": ("D", "G"),
                             "Wh": ("H", "G"), "prev_c": ("N", "H"), "ifog": ("N", "G"),
                             "next_c": ("N", "H")}, dims)
    _gates("cache.Wx", dims, 4)
    return cache


def _packing(name, packing, N):
    """A full batch's Packing: T steps of N rows each, offsets 0, N, ..., T*N. Returns P = T*N."""
    try:
        batch_sizes, offsets = (tuple(packing.batch_sizes), tuple(packing.offsets))
    except (AttributeError, TypeError):
        raise TypeError(f"{name} must be the Packing the forward returned, got "
                        f"{type(packing).__name__}") from None
    T = len(batch_sizes)
    ints = all(isinstance(n, (int, np.integer)) and not isinstance(n, bool)
               for n in batch_sizes + offsets)
    if not ints or batch_sizes != (N,) * T or offsets != tuple(N * t for t in range(T + 1)):
        raise ValueError(f"{name} must describe a full batch of N = {N} sequences (N from "
                         f"cache.core.h0; batch_sizes all {N}, offsets 0, {N}, ...), got "
                         f"batch_sizes {batch_sizes[:10]} and offsets {offsets[:10]}")
    return T * N


def _seq(cache, cls, producer, gates, core_fields):
    cache = cache_of("cache", cache, cls, producer)
    core = cache.core
    expected_core = {"rnn_forward": "RNNCore", "lstm_forward": "LSTMCore"}[producer]
    if type(core).__name__ != expected_core or not hasattr(core, "_fields"):
        raise TypeError(f"cache.core must be the {expected_core} that {producer} returned, got "
                        f"{type(core).__name__}")
    # N and H come from h0, the number of packed rows P from the packing (T steps of N).
    dims = Dims()
    _arrays("cache.core", core, {"h0": ("N", "H")}, dims)
    P = _packing("cache.core.packing", core.packing, dims["N"])
    dims.size["P"], dims.source["P"] = P, "cache.core.packing"
    _arrays("cache", cache, {"x": ("P", "D"), "Wx": ("D", "G")}, dims)
    _arrays("cache.core", core, {"h0": ("N", "H"), "Wh": ("H", "G"), **core_fields}, dims)
    if core.h0.dtype != cache.x.dtype:
        raise TypeError(f"the cache's arrays must share one dtype, got cache.x={cache.x.dtype}, "
                        f"cache.core.h0={core.h0.dtype}")
    _gates("cache.core.Wh", dims, gates)
    return cache


def rnn_seq(cache):

    return _seq(cache, RNNCache, "rnn_forward", 1, {"h": ("P", "H")})


def lstm_seq(cache):

    return _seq(cache, LSTMCache, "lstm_forward", 4,
                {"ifog": ("P", "G"), "c": ("P", "H"), "h": ("P", "H")})


def embedding(cache):
    """EmbeddingCache: idx (M,) integer indices in [0, vocab_size), vocab_size >= 0, a float dtype."""

    cache = cache_of("cache", cache, EmbeddingCache, "word_embedding_forward")
    V = cache.vocab_size
    if isinstance(V, (bool, np.bool_)) or not isinstance(V, (int, np.integer)) or V < 0:
        raise ValueError(f"cache.vocab_size must be an integer >= 0, got {V!r}")
    try:
        dtype = np.dtype(cache.dtype)
    except TypeError:
        dtype = None
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"cache.dtype must be float32 or float64, got {cache.dtype!r}")
    idx = cache.idx
    if not isinstance(idx, np.ndarray) or idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"cache.idx must be an integer array of word indices, got "
                        f"{getattr(idx, 'dtype', type(idx).__name__)}")
    if idx.ndim != 1:
        raise ValueError(f"cache.idx must be 1-dimensional (the flattened (N*T,) indices), got "
                         f"shape {idx.shape}")
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= V:
            raise ValueError(f"cache.idx holds word index {lo if lo < 0 else hi}, outside "
                             f"[0, {V}) (cache.vocab_size is {V})")
    idx = np.ascontiguousarray(idx, dtype=np.intp)
    return cache._replace(idx=idx, vocab_size=int(V), dtype=dtype)


def affine(cache):

    cache = cache_of("cache", cache, AffineCache, "temporal_affine_forward")
    _arrays("cache", cache, {"x": ("N", "T", "D"), "w": ("D", "M"), "b": ("M",)}, Dims())
    return cache
