"""CIDEr-D kernels of the Numba backend: ``cider_df`` and ``cider_d``, the algorithm of the engine's cider.c.

An n-gram (n = 1..4) of word ids is a 128-bit key, two uint64 words (each word id + 1 in
32 bits, 0 past n); the document frequencies are an open-addressing hash table of keys
(linear probing, at most half full, doubled as it fills); a caption's tf-idf vector is
its distinct keys sorted, so a candidate meets a reference in one merge. Sums run in
float64 in pycocoevalcap's order per n-gram order and reference (fastcap/_kernels/
numpy_backend.py is the reference). Serial: a score is microseconds.
"""
import math
from typing import NamedTuple

import numpy as np

from .numba_jit import jit

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FIRST_SLOTS = 4096
_SIGMA = 6.0


class NumbaCiderTable(NamedTuple):
    """cider_df's table: the hash table's keys and document frequencies, and I."""

    lo: np.ndarray  # (S,) uint64: words 1-2 of each slot's key; 0: empty
    hi: np.ndarray  # (S,) uint64: words 3-4
    df: np.ndarray  # (S,) int32
    images: int


@jit
def _mix(z):
    # SplitMix64's output function (every output bit depends on every input bit)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@jit
def _key(tokens, p, n):
    lo, hi = np.uint64(tokens[p] + 1), np.uint64(0)
    if n > 1:
        lo |= np.uint64(tokens[p + 1] + 1) << np.uint64(32)
    if n > 2:
        hi = np.uint64(tokens[p + 2] + 1)
    if n > 3:
        hi |= np.uint64(tokens[p + 3] + 1) << np.uint64(32)
    return lo, hi


@jit
def _order(hi, lo):
    if hi:
        return 4 if hi >> np.uint64(32) else 3
    return 2 if lo >> np.uint64(32) else 1


@jit
def _find(lo, hi, klo, khi):
    mask = np.uint64(lo.shape[0] - 1)
    s = _mix(klo ^ _mix(khi + _GOLDEN)) & mask
    while lo[s] != 0 and (lo[s] != klo or hi[s] != khi):
        s = (s + np.uint64(1)) & mask
    return s


@jit
def _grow(lo, hi, df, seen):
    S = 2 * lo.shape[0]
    lo2, hi2 = np.zeros(S, np.uint64), np.zeros(S, np.uint64)
    df2, seen2 = np.zeros(S, np.int32), np.zeros(S, np.int64)
    for s in range(lo.shape[0]):
        if lo[s]:
            d = _find(lo2, hi2, lo[s], hi[s])
            lo2[d], hi2[d], df2[d], seen2[d] = lo[s], hi[s], df[s], seen[s]
    return lo2, hi2, df2, seen2


@jit
def _build(tokens, starts, images):
    lo, hi = np.zeros(_FIRST_SLOTS, np.uint64), np.zeros(_FIRST_SLOTS, np.uint64)
    df, seen = np.zeros(_FIRST_SLOTS, np.int32), np.zeros(_FIRST_SLOTS, np.int64)
    count = 0
    for i in range(images.shape[0] - 1):
        for c in range(images[i], images[i + 1]):
            for n in range(1, 5):
                for p in range(starts[c], starts[c + 1] - n + 1):
                    if 2 * (count + 1) > lo.shape[0]:
                        lo, hi, df, seen = _grow(lo, hi, df, seen)
                    klo, khi = _key(tokens, p, n)
                    s = _find(lo, hi, klo, khi)
                    if lo[s] == 0:
                        lo[s], hi[s] = klo, khi
                        count += 1
                    if seen[s] != i + 1:  # once per image
                        seen[s] = i + 1
                        df[s] += 1
    return lo, hi, df


def cider_df(tokens, starts, images):
    lo, hi, df = _build(tokens, starts, images)
    return NumbaCiderTable(lo, hi, df, images.shape[0] - 1)


@jit
def _vector(tlo, thi, tdf, ref_len, tokens, a, b, klo, khi, w, norm):
    """The tf-idf vector of tokens[a:b]: its distinct keys sorted into klo, khi with their
    weights in w; norm (4,) the norm per n. Returns how many."""
    m = 0
    for n in range(1, 5):
        for p in range(a, b - n + 1):
            klo[m], khi[m] = _key(tokens, p, n)
            m += 1
    for i in range(1, m):  # insertion sort by (lo, hi): captions are short
        xl, xh, j = klo[i], khi[i], i
        while j > 0 and (klo[j - 1] > xl or (klo[j - 1] == xl and khi[j - 1] > xh)):
            klo[j], khi[j] = klo[j - 1], khi[j - 1]
            j -= 1
        klo[j], khi[j] = xl, xh
    norm[:] = 0.0
    d, i = 0, 0
    while i < m:
        j = i + 1
        while j < m and klo[j] == klo[i] and khi[j] == khi[i]:
            j += 1
        s = _find(tlo, thi, klo[i], khi[i])
        df = float(tdf[s]) if tlo[s] else 0.0
        weight = (j - i) * (ref_len - math.log(max(1.0, df)))
        klo[d], khi[d], w[d] = klo[i], khi[i], weight
        norm[_order(khi[i], klo[i]) - 1] += weight * weight
        d += 1
        i = j
    for n in range(4):
        norm[n] = math.sqrt(norm[n])
    return d


@jit
def _scores(tlo, thi, tdf, images, cand_tokens, cand_starts, ref_tokens, ref_starts, refs, scores_out):
    room = 4
    for k in range(cand_starts.shape[0] - 1):
        room = max(room, 4 * (cand_starts[k + 1] - cand_starts[k]))
    for r in range(ref_starts.shape[0] - 1):
        room = max(room, 4 * (ref_starts[r + 1] - ref_starts[r]))
    clo, chi, cw = np.empty(room, np.uint64), np.empty(room, np.uint64), np.empty(room)
    rlo, rhi, rw = np.empty(room, np.uint64), np.empty(room, np.uint64), np.empty(room)
    cn, rn, val, score = np.empty(4), np.empty(4), np.empty(4), np.empty(4)
    ref_len = math.log(float(images))
    for k in range(refs.shape[0]):
        ca, cb = cand_starts[k], cand_starts[k + 1]
        cm = _vector(tlo, thi, tdf, ref_len, cand_tokens, ca, cb, clo, chi, cw, cn)
        score[:] = 0.0
        for r in range(refs[k, 0], refs[k, 1]):
            ra, rb = ref_starts[r], ref_starts[r + 1]
            rm = _vector(tlo, thi, tdf, ref_len, ref_tokens, ra, rb, rlo, rhi, rw, rn)
            val[:] = 0.0
            a, b = 0, 0
            while a < cm and b < rm:
                if clo[a] < rlo[b] or (clo[a] == rlo[b] and chi[a] < rhi[b]):
                    a += 1
                elif clo[a] > rlo[b] or chi[a] > rhi[b]:
                    b += 1
                else:  # the candidate's weight clipped at the reference's
                    val[_order(chi[a], clo[a]) - 1] += min(cw[a], rw[b]) * rw[b]
                    a += 1
                    b += 1
            delta = float(max(cb - ca - 1, 0) - max(rb - ra - 1, 0))  # the bigrams' counts
            penalty = math.exp(-(delta * delta) / (2.0 * _SIGMA * _SIGMA))
            for n in range(4):
                if cn[n] != 0.0 and rn[n] != 0.0:
                    val[n] /= cn[n] * rn[n]
                score[n] += val[n] * penalty
        scores_out[k] = (((score[0] + score[1]) + score[2]) + score[3]) / 4.0 / (refs[k, 1] - refs[k, 0]) * 10.0


def cider_d(table, cand_tokens, cand_starts, ref_tokens, ref_starts, refs, scores_out):
    _scores(table.lo, table.hi, table.df, table.images, cand_tokens, cand_starts, ref_tokens,
            ref_starts, refs, scores_out)
