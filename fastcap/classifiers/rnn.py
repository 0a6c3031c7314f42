"""CaptioningRNN: image feature -> initial hidden state -> RNN/LSTM language model.

The loss runs the packed-sequence orchestration of ``fastcap._sequence``: the
captions are sorted by their number of scored words, each runs only up to its
last scored word, and only scored positions are projected onto the
vocabulary. Padding after '<END>' (about 28% of a real batch) costs nothing,
and the result equals scoring the full padded grid. The word embedding and the
input projection run per distinct word of the batch (``word_projection``).
"""
import numpy as np

from .. import _backend, _sequence, _threads, _validate
from .._sequence import CELLS
from .._validate import Dims, FLOAT_DTYPES, as_float, as_indices

# The model's parameters and their shapes in the dims V vocabulary, D feature,
# W word vector, H hidden, G = gates * H (gates per cell: CELLS).
PARAM_SHAPES = {"W_embed": ("V", "W"), "W_proj": ("D", "H"), "b_proj": ("H",),
                "Wx": ("W", "G"), "Wh": ("H", "G"), "b": ("G",),
                "W_vocab": ("H", "V"), "b_vocab": ("V",)}  # fmt: skip


class CaptioningRNN:
    """A captioning model over a vocabulary ``word_to_idx`` (which must map '<NULL>').

    Parameters (``self.params``): W_embed (V, W), W_proj (D, H), b_proj (H,),
    Wx (W, GH), Wh (H, GH), b (GH,), W_vocab (H, V), b_vocab (V,), where GH is
    H for cell_type 'rnn' and 4H for 'lstm'. Weights are drawn from ``rng``
    (default: NumPy's global random state, as in CS231n) and cast to ``dtype``.
    """

    def __init__(self, word_to_idx, input_dim=512, wordvec_dim=128, hidden_dim=128,
                 cell_type="rnn", dtype=np.float32, rng=None):
        if cell_type not in CELLS:
            raise ValueError(f"cell_type must be one of {', '.join(map(repr, CELLS))}, got {cell_type!r}")
        if np.dtype(dtype) not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        word_to_idx = _validate.word_to_idx(word_to_idx)  # before any index reaches a kernel
        for name, n in (("input_dim", input_dim), ("wordvec_dim", wordvec_dim), ("hidden_dim", hidden_dim)):
            if int(n) != n or n < 1:
                raise ValueError(f"{name} must be a positive integer, got {n!r}")
        self.cell_type = cell_type
        self.dtype = np.dtype(dtype)
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self._null = word_to_idx["<NULL>"]
        self._start = word_to_idx.get("<START>", None)
        self._end = word_to_idx.get("<END>", None)

        V, D, W, H = len(word_to_idx), input_dim, wordvec_dim, hidden_dim
        G = CELLS[cell_type].gates * H
        randn = (np.random if rng is None else rng).standard_normal
        # Same draws, in the same order, as CS231n's CaptioningRNN.__init__.
        p = {}
        p["W_embed"] = randn((V, W)) / 100
        p["W_proj"] = randn((D, H)) / np.sqrt(D)
        p["b_proj"] = np.zeros(H)
        p["Wx"] = randn((W, G)) / np.sqrt(W)
        p["Wh"] = randn((H, G)) / np.sqrt(H)
        p["b"] = np.zeros(G)
        p["W_vocab"] = randn((H, V)) / np.sqrt(H)
        p["b_vocab"] = np.zeros(V)
        self.params = {k: v.astype(self.dtype) for k, v in p.items()}

    def _check_params(self):
        # Parameters may be replaced by the user (the seeds do); check before kernels see them.
        dims = Dims()
        gates = CELLS[self.cell_type].gates
        out = {}
        for k, s in PARAM_SHAPES.items():
            a = as_float(f"params[{k!r}]", self.params[k], len(s))
            out[k] = dims.match(f"params[{k!r}]", a, s)
            if a.dtype != self.dtype:
                raise TypeError(f"params[{k!r}] must have the model dtype {self.dtype}, got {a.dtype}")
        if dims["G"] != gates * dims["H"]:
            raise ValueError(f"params['Wx'] must have {gates}*H = {gates * dims['H']} columns for "
                             f"cell_type {self.cell_type!r}, got {dims['G']}")
        _validate.tokens_fit({"<NULL>": self._null, "<START>": self._start, "<END>": self._end}, dims["V"])
        return out

    def _features(self, features, D):
        features = np.asarray(features)
        if features.dtype.kind != "f" and not np.issubdtype(features.dtype, np.integer):
            raise TypeError(f"features must be a float array, got dtype {features.dtype}")
        # Features are data, not parameters: cast them to the model's dtype.
        features = as_float("features", features.astype(self.dtype, copy=False), 2)
        if features.shape[1] != D:
            raise ValueError(f"features must have shape (N, D) with D = {D} (the model's "
                             f"input_dim), got shape {features.shape}")
        return features

    @_threads.routed  # one install of the BLAS routing for the whole step, not one per product
    def loss(self, features, captions, grads=True):
        """Training loss and gradients.

        features (N, D) image features; captions (N, T) integer word indices
        with T >= 2 (the model reads captions[:, :-1] and predicts captions[:, 1:];
        '<NULL>' targets are not scored). Returns (loss, grads) with grads a
        dict shaped like self.params. The loss is summed over time and
        averaged over N; an empty batch has loss 0.0 and zero gradients.
        grads=False skips the backward pass and returns (loss, None): the
        validation loss is this same forward.
        """
        params = self._check_params()
        V = params["W_embed"].shape[0]
        features = self._features(features, params["W_proj"].shape[0])
        captions = as_indices("captions", captions, 2, V)
        N, T = captions.shape
        if features.shape[0] != N:
            raise ValueError(f"captions must have one row per feature row (N = {features.shape[0]}), "
                             f"got shape {captions.shape}")
        if T < 2:
            raise ValueError(f"captions must have at least 2 columns (<START> and a target), got shape {captions.shape}")
        cell = CELLS[self.cell_type]
        kernels = _backend.kernels()

        words_in, words_out = captions[:, :-1], captions[:, 1:]
        scored = words_out != self._null  # (N, T-1)
        # Pack: sort captions by the step after their last scored word, longest
        # first, so the captions still running at step t are a prefix.
        lengths = np.where(scored.any(axis=1), (T - 1) - np.argmax(scored[:, ::-1], axis=1), 0)
        order = np.argsort(-lengths, kind="stable")
        steps = int(lengths[order[0]]) if N else 0
        running = np.arange(steps)[:, None] < lengths[order][None, :]  # (steps, N) time-major
        x_words = words_in[order, :steps].T[running]  # (P,) packed
        y = words_out[order, :steps].T[running]
        scored = scored[order, :steps].T[running]
        packing = _sequence.packing(running.sum(axis=1))

        h0 = _sequence.affine(features, params["W_proj"], params["b_proj"])[order]  # (N, H), sorted
        xw, projection = _sequence.word_projection(x_words, params["W_embed"], params["Wx"], params["b"])  # (P, G)
        core = cell.forward(xw, h0, params["Wh"], packing)
        h = core.h  # (P, H)
        all_scored = bool(scored.all())  # unless <NULL> occurs inside a caption
        h_scored = h if all_scored else h[scored]
        scores = _sequence.affine(h_scored, params["W_vocab"], params["b_vocab"])  # (S, V)
        dscores = np.empty_like(scores)
        y_scored = y if all_scored else y[scored]
        loss = kernels.softmax_loss(scores, y_scored, np.ones(len(y_scored), bool), 1.0 / N if N else 0.0, dscores)
        if not grads:
            return loss, None

        grads = {}
        dh_scored, grads["W_vocab"], grads["b_vocab"] = _sequence.affine_backward(dscores, h_scored, params["W_vocab"])
        if all_scored:
            dh = dh_scored
        else:
            dh = np.zeros_like(h)
            dh[scored] = dh_scored
        da, dh0_sorted, grads["Wh"] = cell.backward(dh, core)  # da (P, G) gate gradients
        grads["W_embed"], grads["Wx"], grads["b"] = _sequence.word_projection_backward(da, projection)
        dh0 = np.empty_like(dh0_sorted)
        dh0[order] = dh0_sorted
        grads["W_proj"] = _sequence.matmul(features.T, dh0)
        grads["b_proj"] = dh0.sum(axis=0)
        return loss, grads

    # -- decoding: one step at a time ------------------------------------------------

    @property
    def null_token(self):
        """Index of '<NULL>' (padding)."""
        return self._null

    @property
    def start_token(self):
        """Index of '<START>', or None if the vocabulary has none."""
        return self._start

    @property
    def end_token(self):
        """Index of '<END>', or None if the vocabulary has none."""
        return self._end

    def initial_hidden(self, features):
        """The decoding state of ``features`` (N, D) before the first word:
        h0 = features @ W_proj + b_proj (and c0 = 0 for an LSTM), with the
        recurrent weights packed once for every later ``step``. The state
        holds the parameters as they are now: make a new one after an update."""
        params = self._check_params()
        features = self._features(features, params["W_proj"].shape[0])
        h0 = _sequence.affine(features, params["W_proj"], params["b_proj"])
        return DecodeState(self.cell_type, params, h0)

    def step(self, state, words):
        """Feed one word per row: words (n,) integer indices in [0, V), n =
        state.rows -> (scores (n, V) = h @ W_vocab + b_vocab, the next state)."""
        if not isinstance(state, DecodeState):
            raise TypeError(f"state must be a DecodeState from initial_hidden or step, got {type(state).__name__}")
        state.check()
        words = as_indices("words", words, 1, state.params["W_embed"].shape[0])
        if words.shape[0] != state.rows:
            raise ValueError(f"words must have one index per state row ({state.rows}), got shape {words.shape}")
        state = state.advance(words)
        scores = state.scores()
        scores += state.params["b_vocab"]
        return scores, state

    @_threads.routed
    def sample(self, features, max_length=30):
        """Greedy test-time captions.

        features (N, D) -> captions (N, max_length) int32. The first column is
        the first generated word (not '<START>'); after a caption's '<END>'
        every position is '<NULL>'.
        """
        if self._start is None:
            raise ValueError("sampling needs a '<START>' token in word_to_idx")
        max_length = _validate.count("max_length", max_length)
        state = self.initial_hidden(features)
        end = -1 if self._end is None else self._end
        return _greedy_decode(state, self._start, end, self._null, int(max_length))


# Up to this many running captions, a decoding step projects its words
# directly instead of through its per-word table (measured: the table's
# bookkeeping cost a vanilla RNN at batch 1 about 30% more time per step).
_DIRECT_ROWS = 2


class DecodeState:
    """Where decoding of n captions stands: h (n, H), c (n, H) for an LSTM,
    the recurrent weights packed once for the active backend, and a per-word
    table of input projections W_embed[w] @ Wx + b (V, G), filled as words
    are first fed and shared by every state derived from this one."""

    def __init__(self, cell_type, params, h, c=None, packed=None, table=None):
        self.cell_type, self.params, self.h = cell_type, params, h
        self.lstm = cell_type == "lstm"
        self.c = np.zeros_like(h) if self.lstm and c is None else c
        # ((backend kernels, bf16 mode), Wh, W_vocab, Wx packed by them): made on first use
        self._packed = packed
        if table is None:
            V, G = params["W_embed"].shape[0], params["Wx"].shape[1]
            table = (np.empty((V, G), dtype=h.dtype), np.zeros(V, dtype=bool))
        self._table = table

    @property
    def rows(self):
        return self.h.shape[0]

    def check(self):
        """Raise ValueError unless h, c and the word table fit the parameters (a
        state is handed back by the caller, so it is checked before kernels see it)."""
        params = self.params
        (V, _), (H, G) = params["W_embed"].shape, params["Wh"].shape
        table, known = self._table
        want = {"h": (self.rows, H), "table": (V, G), "known": (V,)}
        got = {"h": self.h.shape, "table": table.shape, "known": known.shape}
        if self.lstm:
            want["c"], got["c"] = (self.rows, H), getattr(self.c, "shape", None)
        for k, shape in want.items():
            if got[k] != shape:
                raise ValueError(f"DecodeState.{k} must have shape {shape} (from the parameters), got {got[k]}")
        arrays = [self.h, table] + ([self.c] if self.lstm else [])
        if any(not isinstance(a, np.ndarray) or a.dtype != params["Wh"].dtype or not a.flags.c_contiguous
               for a in arrays) or known.dtype != bool:
            raise ValueError(f"DecodeState arrays must be C-contiguous {params['Wh'].dtype} (and a bool mask)")

    def select(self, rows):
        """The state of rows `rows` (an index array or boolean mask), e.g. the
        captions still running, or the beams kept."""
        return DecodeState(self.cell_type, self.params, self.h[rows],
                           None if self.c is None else self.c[rows], self._packed, self._table)

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
        if feeds is not None and (self.rows <= _DIRECT_ROWS or feeds < params["W_embed"].shape[0]):
            return
        table, known = self._table
        _sequence.matmul(params["W_embed"], params["Wx"], out=table)  # straight into the table: no 8 MB temporary
        table += params["b"]
        known[...] = True

    def _inputs(self, words):
        """xw (n, G) = W_embed[words] @ Wx + b."""
        params = self.params
        if words.shape[0] <= _DIRECT_ROWS:
            return _sequence.affine(params["W_embed"][words], self.packed()[3], params["b"])
        table, known = self._table
        fresh = ~known[words]
        if fresh.any():
            new = np.unique(words[fresh])
            table[new] = _sequence.affine(params["W_embed"][new], self.packed()[3], params["b"])
            known[new] = True
        return table[words]

    def packed(self):
        """(key, Wh packed for the recurrence, W_vocab and Wx packed for the scores and the
        word inputs), made once per backend and precision and shared by every state derived
        from this one."""
        key = (_backend.kernels(), _sequence.bf16())
        if self._packed is None or self._packed[0] != key:
            params = self.params
            self._packed = (key, _sequence.pack(params["Wh"], CELLS[self.cell_type].gates, False),
                            _sequence.pack_matrix(params["W_vocab"]), _sequence.pack_matrix(params["Wx"]))
        return self._packed

    def greedy_operands(self):
        """(Whp, Wxp, W_vocabp): the packed weights of the greedy_decode kernel. The bfloat16
        mode's are the ones packed() holds; float products take the backend's pack_matrix,
        made here for one decoding (the step API and beam search use W_vocab and Wx as they
        are, through BLAS, so packed() does not make them)."""
        _, Whp, W_vocab, Wx = self.packed()
        if W_vocab.packed is not None:
            return Whp, Wx.packed, W_vocab.packed
        kernels = _backend.kernels()
        return Whp, kernels.pack_matrix(Wx.b), kernels.pack_matrix(W_vocab.b)

    def scores(self):
        """h @ W_vocab (n, V), without b_vocab."""
        return _sequence.matmul(self.h, self.packed()[2])

    def advance(self, words):
        """The state after feeding words (n,) intp, one recurrent step on the engine."""
        kernels = _backend.kernels()
        packed = self.packed()[1]
        xw, n = self._inputs(words), words.shape[0]
        batch = np.array([n], dtype=np.intp)
        h = np.empty_like(self.h)
        if self.lstm:
            c, ifog = np.empty_like(self.c), np.empty_like(xw)
            kernels.lstm_recurrence_forward(xw, self.h, self.c, packed, batch, ifog, c, h)
        else:
            c = None
            kernels.rnn_recurrence_forward(xw, self.h, packed, batch, h)
        return DecodeState(self.cell_type, self.params, h, c, self._packed, self._table)


def _greedy_decode(state, start, end, null, max_length):
    """Greedy captions of max_length words from a DecodeState of N rows -> (N, max_length) int32.

    Each step feeds every running caption's last word and keeps the argmax
    (lowest index on ties). A caption that emits `end` (-1: none) stops: its
    rows leave the batch, its later positions stay `null`, and the loop ends
    once every caption has stopped. The loop is one kernel, greedy_decode
    (fastcap/_kernels/greedy.py is its definition): on the Cython backend in
    float32 and bfloat16 it runs in C without returning to Python per step.
    """
    kernels = _backend.kernels()
    params = state.params
    captions = np.empty((state.rows, max_length), dtype=np.int32)
    state.precompute_inputs(feeds=state.rows * max_length)
    Whp, Wxp, W_vocabp = state.greedy_operands()
    table, known = state._table
    kernels.greedy_decode(state.h, state.c if state.lstm else None, params["W_embed"], Wxp,
                          params["b"], Whp, W_vocabp, params["b_vocab"], table, known, start,
                          end, null, captions)
    return captions
