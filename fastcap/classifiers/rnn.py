"""CaptioningRNN: image feature -> initial hidden state -> RNN/LSTM language model.

Each public method resolves the backend and precision once
(``fastcap.runtime.compute``) and hands them down. The loss runs the
packed-sequence orchestration of ``fastcap.model.sequence``: the
captions are sorted by their number of scored words, each runs only up to its
last scored word, and only scored positions are projected onto the
vocabulary. Padding after '<END>' (about 28% of a real batch) costs nothing,
and the result equals scoring the full padded grid. The word embedding and the
input projection run per distinct word of the batch (``word_projection``).
Decoding (the step API's state, greedy decoding) is ``fastcap.model.decode``.
"""
import numpy as np

from ..model import sequence, validate
from ..model.decode import DecodeState, counter_uniforms, greedy_decode, sample_decode
from ..model.sequence import CELLS
from ..model.validate import Dims, FLOAT_DTYPES, as_float, as_indices
from ..runtime import threads
from ..runtime.compute import resolve

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
        word_to_idx = validate.word_to_idx(word_to_idx)  # before any index reaches a kernel
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
        validate.tokens_fit({"<NULL>": self._null, "<START>": self._start, "<END>": self._end}, dims["V"])
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

    @threads.routed  # one install of the BLAS routing for the whole step, not one per product
    def loss(self, features, captions, grads=True, weights=None):
        """Training loss and gradients.

        features (N, D) image features; captions (N, T) integer word indices
        with T >= 2 (the model reads captions[:, :-1] and predicts captions[:, 1:];
        '<NULL>' targets are not scored). Returns (loss, grads) with grads a
        dict shaped like self.params. The loss is summed over time and
        averaged over N; an empty batch has loss 0.0 and zero gradients.
        grads=False skips the backward pass and returns (loss, None): the
        validation loss is this same forward. weights (N,) finite numbers
        (default: 1): caption n's summed loss counts weights[n] times, as
        self-critical training weighs each sampled caption by its advantage
        (fastcap.train.scst); the loss is still divided by N.
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
        if weights is not None:
            weights = validate.as_weights("weights", weights, N)
        cell = CELLS[self.cell_type]
        compute = resolve()

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
        packing = sequence.Packing.of(running.sum(axis=1))

        h0 = sequence.affine(compute, features, params["W_proj"], params["b_proj"])[order]  # (N, H), sorted
        xw, projection = sequence.word_projection(compute, x_words, params["W_embed"], params["Wx"],
                                                  params["b"])  # (P, G)
        core = cell.forward(compute, xw, h0, params["Wh"], packing)
        h = core.h  # (P, H)
        all_scored = bool(scored.all())  # unless <NULL> occurs inside a caption
        h_scored = h if all_scored else h[scored]
        scores = sequence.affine(compute, h_scored, params["W_vocab"], params["b_vocab"])  # (S, V)
        dscores = np.empty_like(scores)
        y_scored = y if all_scored else y[scored]
        row_weight = None
        if weights is not None:  # each packed row carries its caption's weight
            row_weight = np.broadcast_to(weights[order], running.shape)[running]
            row_weight = np.ascontiguousarray(row_weight if all_scored else row_weight[scored])
        loss = compute.kernels.softmax_loss(scores, y_scored, np.ones(len(y_scored), bool),
                                            1.0 / N if N else 0.0, row_weight, dscores)
        if not grads:
            return loss, None

        grads = {}
        dh_scored, grads["W_vocab"], grads["b_vocab"] = sequence.affine_backward(
            compute, dscores, h_scored, params["W_vocab"])
        if all_scored:
            dh = dh_scored
        else:
            dh = np.zeros_like(h)
            dh[scored] = dh_scored
        da, dh0_sorted, grads["Wh"] = cell.backward(compute, dh, core)  # da (P, G) gate gradients
        grads["W_embed"], grads["Wx"], grads["b"] = sequence.word_projection_backward(compute, da, projection)
        dh0 = np.empty_like(dh0_sorted)
        dh0[order] = dh0_sorted
        grads["W_proj"] = sequence.matmul(compute, features.T, dh0)
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
        recurrent weights packed once for every later ``step``, by the backend
        and in the precision active now. The state holds the parameters as
        they are now: make a new one after an update."""
        return self._initial_hidden(resolve(), features)

    def _initial_hidden(self, compute, features):
        params = self._check_params()
        features = self._features(features, params["W_proj"].shape[0])
        h0 = sequence.affine(compute, features, params["W_proj"], params["b_proj"])
        return DecodeState(compute, self.cell_type, params, h0)

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

    @threads.routed
    def sample(self, features, max_length=30):
        """Greedy test-time captions.

        features (N, D) -> captions (N, max_length) int32. The first column is
        the first generated word (not '<START>'); after a caption's '<END>'
        every position is '<NULL>'.
        """
        if self._start is None:
            raise ValueError("sampling needs a '<START>' token in word_to_idx")
        max_length = validate.count("max_length", max_length)
        state = self._initial_hidden(resolve(), features)
        end = -1 if self._end is None else self._end
        return greedy_decode(state, self._start, end, self._null, int(max_length))


    @threads.routed
    def sample_multinomial(self, features, num_samples=1, max_length=30, seed=0, keys=None):
        """Captions drawn from the model's word distributions (temperature 1), num_samples
        per image: features (N, D) -> captions (N, num_samples, max_length) int32, laid
        out as ``sample``'s (the first column the first word; '<NULL>' after '<END>').

        Every word is drawn from the softmax over the whole vocabulary (suppress words by
        setting their b_vocab to -inf, as fastcap.train.evaluation.suppressing does). The
        draws are counter-based (fastcap.model.decode.counter_uniforms): sample k of image
        n is a function of (seed, keys[n], k) and the weights alone, the same on every
        backend whose scores are the same and for any thread count. seed: a non-negative
        integer or a sequence of them; keys (N,) non-negative integers (default 0..N-1).
        """
        if self._start is None:
            raise ValueError("sampling needs a '<START>' token in word_to_idx")
        num_samples = validate.count("num_samples", num_samples, 1)
        max_length = validate.count("max_length", max_length)
        for s in np.atleast_1d(np.asarray(seed, dtype=object)):
            validate.count("seed", s)
        state = self._initial_hidden(resolve(), features)
        N = state.rows
        keys = np.arange(N) if keys is None else np.asarray(keys)
        if keys.shape != (N,) or not np.issubdtype(keys.dtype, np.integer) or (keys < 0).any():
            raise ValueError(f"keys must be {N} non-negative integers (one per image), got "
                             f"{keys.dtype} of shape {keys.shape}")
        uniforms = counter_uniforms(seed, keys, num_samples, max_length).reshape(N * num_samples, max_length)
        state = state.select(np.repeat(np.arange(N), num_samples))  # image n's rows: n*K .. n*K+K-1
        end = -1 if self._end is None else self._end
        captions = sample_decode(state, self._start, end, self._null, uniforms)
        return captions.reshape(N, num_samples, max_length)
