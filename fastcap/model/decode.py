"""Decoding a captioning model one word at a time: the decoding state, greedy decoding and sampling.

``DecodeState`` is where decoding of n captions stands; ``CaptioningRNN``'s step
API (``initial_hidden``, ``step``) hands it out and beam search
(``fastcap.model.beam``) drives it. A state computes with the ``Compute`` it was
made with (the backend and precision resolved once, when decoding started), so
every step of one decoding runs on the weights that backend packed.

Shapes: n rows (captions), H hidden, G = gates * H, V vocabulary, W word vector.
"""
from typing import NamedTuple

import numpy as np

from . import sequence
from .sequence import CELLS

__all__ = ["DecodeState", "DecodeWeights", "PackCache", "image_operands", "greedy_decode", "sample_decode",
           "counter_uniforms", "AttentionDecodeState", "attention_greedy_decode"]

# Up to this many running captions, a decoding step projects its words
# directly instead of through its per-word table (measured: the table's
# bookkeeping cost a vanilla RNN at batch 1 about 30% more time per step).
_DIRECT_ROWS = 2


class DecodeWeights(NamedTuple):
    """The weights of decoding, packed once by one backend in one precision."""

    Wh: object  # Wh packed for the recurrence kernels (not transposed); the attention model's step weights
    W_vocab: sequence.Operand  # the scores' right-hand operand
    Wx: sequence.Operand  # the word inputs' right-hand operand


class PackCache:
    """Decoding's packed weights kept from one call to the next, per backend and precision.

    Packing reads every weight once (about 3 ms of a 13 ms caption at batch 1 for the
    attention model of the benchmarks), so a model that is only decoded (a served model)
    should not pack per call. The packs are kept only while they cannot go stale: while
    every parameter is the same array as when they were packed, owns its memory and is
    read-only (``Captioner.freeze`` makes them so). A parameter replaced (as the solver
    does) or made writable again drops them, and decoding packs per call as before.
    """

    def __init__(self):
        self._entries = {}  # (backend name, bf16) -> (kernels, params' arrays, packs dict)

    def packs(self, compute, params):
        """The packs dict of ``compute`` for ``params`` (name -> array), or None (pack per call)."""
        arrays = tuple(params.values())
        if not all(isinstance(a, np.ndarray) and a.flags.owndata and not a.flags.writeable for a in arrays):
            self._entries.clear()  # a parameter can change: nothing kept may be used again
            return None
        key = (compute.kernels.name, compute.bf16)
        kept = self._entries.get(key)
        if (kept is None or kept[0] is not compute.kernels or len(kept[1]) != len(arrays)
                or any(x is not y for x, y in zip(kept[1], arrays))):
            # holding the arrays keeps their ids theirs; "kept": the packs outlive the decoding
            kept = self._entries[key] = (compute.kernels, arrays, {"kept": True})
        return kept[2]


def _made(packs, name, make):
    """packs[name], made by make() on first use."""
    if name not in packs:
        packs[name] = make()
    return packs[name]


def image_operands(compute, packs, params, names):
    """{name: params[name] as the right-hand operand of the image's products (h0, enc)}:
    packed once and kept in ``packs`` when they are kept between decodings (PackCache),
    else the arrays themselves (each product packs what it needs)."""
    if packs is None or not packs.get("kept"):
        return {k: params[k] for k in names}
    return {k: _made(packs, f"image {k}", lambda k=k: sequence.pack_operand(compute, params[k]))
            for k in names}


class DecodeState:
    """Where decoding of n captions stands: h (n, H), c (n, H) for an LSTM, the
    weights packed once (``DecodeWeights``, in ``packs``), and a per-word table of input
    projections W_embed[w] @ Wx + b (V, G), filled as words are first fed;
    the packs and the table are shared by every state derived from this one.

    packs: a dict of the packed weights, filled on first use: a new one per decoding,
    or the model's ``PackCache`` entry, which outlives the decoding while the parameters
    cannot change."""

    def __init__(self, compute, cell_type, params, h, c=None, packs=None, table=None):
        self.compute, self.cell_type, self.params, self.h = compute, cell_type, params, h
        self.lstm = cell_type == "lstm"
        self.c = np.zeros_like(h) if self.lstm and c is None else c
        self._packs = {} if packs is None else packs
        if table is None and self._packs.get("kept"):
            # kept between decodings: every word's row made once, then only read (no
            # decoding writes it, so decodings may share it from several threads)
            table = self._packed("table", lambda: self._fill(self._new_table()))
        self._table = self._new_table() if table is None else table

    def _new_table(self):
        """(table (V, G), known (V,) all False): no row made yet."""
        V, G = self.params["W_embed"].shape[0], self.params["Wx"].shape[1]
        return np.empty((V, G), dtype=self.h.dtype), np.zeros(V, dtype=bool)

    def _fill(self, table):
        """Every row of table = (rows, known) made: W_embed @ Wx + b. Returns table."""
        rows, known = table
        # straight into the table: no 8 MB temporary
        sequence.matmul(self.compute, self.params["W_embed"], self.params["Wx"], out=rows)
        rows += self.params["b"]
        known[...] = True
        return table

    @property
    def rows(self):
        return self.h.shape[0]

    def check(self):
        """Raise ValueError unless h, c and the word table fit the parameters (a
        state is handed back by the caller, so it is checked before kernels see it)."""
        name, dtype = type(self).__name__, self.params["Wh"].dtype
        arrays = self._arrays()
        for k, (a, shape) in arrays.items():
            if getattr(a, "shape", None) != shape:
                raise ValueError(f"{name}.{k} must have shape {shape} (from the parameters), got "
                                 f"{getattr(a, 'shape', None)}")
        if any(not isinstance(a, np.ndarray) or a.dtype != (bool if k == "known" else dtype)
               or not a.flags.c_contiguous for k, (a, _) in arrays.items()):
            raise ValueError(f"{name} arrays must be C-contiguous {dtype} (and a bool mask)")

    def _arrays(self):
        """{name: (array, the shape the parameters give it)} of what check() checks."""
        (V, _), (H, G) = self.params["W_embed"].shape, self.params["Wh"].shape
        table, known = self._table
        out = {"h": (self.h, (self.rows, H)), "table": (table, (V, G)), "known": (known, (V,))}
        if self.lstm:
            out["c"] = (self.c, (self.rows, H))
        return out

    def select(self, rows):
        """The state of rows `rows` (an index array or boolean mask), e.g. the
        captions still running, or the beams kept."""
        return DecodeState(self.compute, self.cell_type, self.params, self.h[rows],
                           None if self.c is None else self.c[rows], self._packs, self._table)

    def precompute_inputs(self, feeds=None):
        """Fill the word table for every word at once: one (V, W) @ (W, G)
        GEMM instead of a small one per step for the words first fed then.
        Worth it when decoding will feed about V words or more (measured:
        greedy decoding of 100 LSTM captions, 30 words, V = 1004: 20 ms of
        72 went to filling the table step by step). feeds: how many words the
        decoding will feed; given, the table is filled only when that is at
        least V and the state has more rows than are projected directly
        (None: fill it)."""
        params = self.params
        if self._packs.get("kept"):  # its table is kept full, and never written again
            return
        if feeds is not None and (self.rows <= _DIRECT_ROWS or feeds < params["W_embed"].shape[0]):
            return
        self._fill(self._table)

    def _inputs(self, words):
        """xw (n, G) = W_embed[words] @ Wx + b."""
        params = self.params
        if words.shape[0] <= _DIRECT_ROWS:
            return sequence.affine(self.compute, params["W_embed"][words], self.weights().Wx, params["b"])
        table, known = self._table
        fresh = ~known[words]
        if fresh.any():
            new = np.unique(words[fresh])
            table[new] = sequence.affine(self.compute, params["W_embed"][new], self.weights().Wx,
                                         params["b"])
            known[new] = True
        return table[words]

    def _packed(self, name, make):
        return _made(self._packs, name, make)

    def weights(self):
        """The DecodeWeights, packed on first use and shared by every state derived from this one."""
        params, compute = self.params, self.compute
        return self._packed("weights", lambda: DecodeWeights(
            self._pack_recurrent(), sequence.pack_operand(compute, params["W_vocab"]),
            sequence.pack_operand(compute, params["Wx"])))

    def _pack_recurrent(self):
        """The recurrent weights packed for this model's step kernel."""
        return sequence.pack_recurrent(self.compute, self.params["Wh"], CELLS[self.cell_type].gates, False)

    def greedy_operands(self):
        """(Whp, Wxp, W_vocabp): the packed weights of the greedy_decode kernel. The bfloat16
        mode's are the ones weights() holds; float products take the backend's pack_matrix,
        made on first use here (the step API and beam search use W_vocab and Wx as they
        are, through BLAS, so weights() does not make them)."""
        w = self.weights()
        if w.W_vocab.packed is not None:
            return w.Wh, w.Wx.packed, w.W_vocab.packed
        kernels = self.compute.kernels
        return (w.Wh, *self._packed("greedy", lambda: (kernels.pack_matrix(w.Wx.b),
                                                       kernels.pack_matrix(w.W_vocab.b))))

    def scores(self):
        """h @ W_vocab (n, V), without b_vocab."""
        return sequence.matmul(self.compute, self.h, self.weights().W_vocab)

    def advance(self, words):
        """The state after feeding words (n,) intp, one recurrent step on the engine."""
        kernels = self.compute.kernels
        Whp = self.weights().Wh
        xw, n = self._inputs(words), words.shape[0]
        batch = np.array([n], dtype=np.intp)
        h = np.empty_like(self.h)
        if self.lstm:
            c, ifog = np.empty_like(self.c), np.empty_like(xw)
            kernels.lstm_recurrence_forward(xw, self.h, self.c, Whp, batch, ifog, c, h)
        else:
            c = None
            kernels.rnn_recurrence_forward(xw, self.h, Whp, batch, h)
        return DecodeState(self.compute, self.cell_type, self.params, h, c, self._packs, self._table)


def greedy_decode(state, start, end, null, max_length):
    """Greedy captions of max_length words from a DecodeState of N rows -> (N, max_length) int32.

    Each step feeds every running caption's last word and keeps the argmax
    (lowest index on ties). A caption that emits `end` (-1: none) stops: its
    rows leave the batch, its later positions stay `null`, and the loop ends
    once every caption has stopped. The loop is one kernel, greedy_decode
    (fastcap/_kernels/greedy.py is its definition): on the Cython backend in
    float32 and bfloat16 it runs in C without returning to Python per step.
    """
    return _decode(state, start, end, null, max_length, None)


def sample_decode(state, start, end, null, uniforms):
    """Sampled captions from a DecodeState of N rows -> (N, L) int32, uniforms (N, L) float64
    in [0, 1): greedy_decode's loop with caption n's word t drawn from the model's softmax
    at uniforms[n, t] (the sample_words kernel), one kernel call (sample_decode)."""
    return _decode(state, start, end, null, uniforms.shape[1], uniforms)


def _decode(state, start, end, null, max_length, uniforms):
    params = state.params
    captions = np.empty((state.rows, max_length), dtype=np.int32)
    state.precompute_inputs(feeds=state.rows * max_length)
    Whp, Wxp, W_vocabp = state.greedy_operands()
    table, known = state._table
    args = (state.h, state.c if state.lstm else None, params["W_embed"], Wxp, params["b"], Whp,
            W_vocabp, params["b_vocab"], table, known, start, end, null)
    if uniforms is None:
        state.compute.kernels.greedy_decode(*args, captions)
    else:
        state.compute.kernels.sample_decode(*args, uniforms, captions)
    return captions


# SplitMix64 (Steele, Lea and Flood 2014): its increment and the multipliers of its
# output function, a bijection of 64-bit words whose outputs pass BigCrush even for
# consecutive inputs, which is what a counter-based stream needs.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _mix(z):
    """SplitMix64's step on a uint64 array (wrapping arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX[0]
    z = (z ^ (z >> np.uint64(27))) * _MIX[1]
    return z ^ (z >> np.uint64(31))


def counter_uniforms(seed, keys, samples, steps):
    """Uniforms in [0, 1) for sampling: (n, samples, steps) float64, u[i, k, t] a function of
    (seed, keys[i], k, t) alone (a counter-based stream: SplitMix64 chained over the four).

    seed: a non-negative integer or a sequence of them (a run's seed and its iteration);
    keys (n,) non-negative integers naming the images (a data set's image indices), so an
    image's samples do not depend on the batch it is drawn in, on how a batch is split
    over MPI ranks, on the backend or on the thread count.
    """
    z = np.zeros(1, dtype=np.uint64)
    for s in np.atleast_1d(np.asarray(seed, dtype=np.uint64)):
        z = _mix(z ^ s)
    z = _mix(z ^ np.asarray(keys, dtype=np.uint64)[:, None, None])
    z = _mix(z ^ np.arange(samples, dtype=np.uint64)[None, :, None])
    z = _mix(z ^ np.arange(steps, dtype=np.uint64)[None, None, :])
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


class AttentionDecodeState(DecodeState):
    """Where decoding of n captions of the attention model stands: a DecodeState (its h, c,
    packed weights and word table) with the rows' features a (n, L, D) and enc = a @ W_enc +
    b_enc (n, L, A), and alpha (n, L), the attention of the last word fed (None before the
    first). Its ``params`` are the model's with "Wx" the word vector's rows Wx[:W] (the
    word table's weights) and "Wz" the context's, Wx[W:]."""

    def __init__(self, compute, cell_type, params, h, a, enc, c=None, alpha=None, packs=None,
                 table=None):
        super().__init__(compute, cell_type, params, h, c, packs, table)
        self.a, self.enc, self.alpha = a, enc, alpha

    def _arrays(self):
        D, A = self.params["W_enc"].shape
        shape = getattr(self.a, "shape", ())
        L = shape[1] if len(shape) == 3 and shape[1] >= 1 else "L >= 1"  # the cells: a's own
        out = super()._arrays()
        out.update(a=(self.a, (self.rows, L, D)), enc=(self.enc, (self.rows, L, A)))
        if self.alpha is not None:
            out["alpha"] = (self.alpha, (self.rows, L))
        return out

    def select(self, rows):
        alpha = None if self.alpha is None else self.alpha[rows]
        return AttentionDecodeState(self.compute, self.cell_type, self.params, self.h[rows], self.a[rows],
                                    self.enc[rows], None if self.c is None else self.c[rows], alpha,
                                    self._packs, self._table)

    def _pack_recurrent(self):
        p = self.params
        return sequence.pack_attention(self.compute, p["Wh"], p["Wz"], p["W_dec"], p["W_beta"], False)

    def advance(self, words):
        """The state after feeding words (n,) intp: one step of the attention recurrence."""
        p, xw, n = self.params, self._inputs(words), words.shape[0]
        (L, D), A, dtype = self.a.shape[1:], self.enc.shape[2], self.h.dtype
        h, alpha = np.empty_like(self.h), np.empty((n, L), dtype)
        c, ifog = (np.empty_like(self.c), np.empty_like(xw)) if self.lstm else (None, None)
        self.compute.kernels.attention_recurrence_forward(
            xw, self.h, self.c, self.a, self.enc, self.weights().Wh, p["b_beta"], p["w_att"],
            np.array([n], dtype=np.intp), ifog, c, h, alpha, np.empty((n, D), dtype),
            np.empty((n, D), dtype), np.empty((n, A), dtype))
        return AttentionDecodeState(self.compute, self.cell_type, p, h, self.a, self.enc, c, alpha,
                                    self._packs, self._table)


def attention_greedy_decode(state, start, end, null, max_length):
    """Greedy captions of max_length words from an AttentionDecodeState of N rows -> (captions
    (N, max_length) int32, alpha (N, max_length, L): the attention of every word, 0 after a
    caption's end), as greedy_decode; one kernel, attention_greedy_decode."""
    params, (N, L) = state.params, state.a.shape[:2]
    captions = np.empty((N, max_length), dtype=np.int32)
    alpha = np.empty((N, max_length, L), dtype=state.h.dtype)
    state.precompute_inputs(feeds=N * max_length)
    Wp, Wxp, W_vocabp = state.greedy_operands()
    table, known = state._table
    state.compute.kernels.attention_greedy_decode(
        state.h, state.c if state.lstm else None, state.a, state.enc, params["W_embed"], Wxp,
        params["b"], Wp, params["b_beta"], params["w_att"], W_vocabp, params["b_vocab"], table, known,
        start, end, null, captions, alpha)
    return captions, alpha
