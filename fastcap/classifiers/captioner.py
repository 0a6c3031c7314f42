"""What the captioning models share: their vocabulary, the checks of their parameters and
arguments, and the step API of decoding (``initial_hidden``, ``step``) that beam search
(``fastcap.model.beam``) drives.

A model class sets ``PARAM_SHAPES`` (parameter name -> shape in dims), ``GRID`` (its
features are (N, L, D) grids, not pooled (N, D) vectors) and ``STATE`` (its decoding state
class), and defines ``_initial_hidden(compute, features)``.
"""
import numpy as np

from ..model import validate
from ..model.decode import PackCache
from ..model.sequence import CELLS
from ..model.validate import Dims, FLOAT_DTYPES, as_float, as_indices
from ..runtime.compute import resolve


class Captioner:
    """The base of CaptioningRNN and AttentionCaptioningRNN (see the module docstring)."""

    PARAM_SHAPES = {}
    GRID = False
    STATE = None

    def _setup(self, word_to_idx, cell_type, dtype, sizes):
        """Check and keep the vocabulary, cell type and dtype; sizes: {argument name: value},
        each a positive integer."""
        if cell_type not in CELLS:
            raise ValueError(f"cell_type must be one of {', '.join(map(repr, CELLS))}, got {cell_type!r}")
        if np.dtype(dtype) not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        word_to_idx = validate.word_to_idx(word_to_idx)  # before any index reaches a kernel
        for name, n in sizes.items():
            if isinstance(n, (bool, np.bool_)) or int(n) != n or n < 1:
                raise ValueError(f"{name} must be a positive integer, got {n!r}")
        self.cell_type = cell_type
        self.dtype = np.dtype(dtype)
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self._null = word_to_idx["<NULL>"]
        self._start = word_to_idx.get("<START>", None)
        self._end = word_to_idx.get("<END>", None)

    def _check_params(self):
        """The parameters, checked against PARAM_SHAPES, the model dtype and the cell -> dict.
        Parameters may be replaced by the user (the seeds do): checked before kernels see them."""
        dims = Dims()
        gates = CELLS[self.cell_type].gates
        out = {}
        for k, s in self.PARAM_SHAPES.items():
            a = as_float(f"params[{k!r}]", self.params[k], len(s))
            out[k] = dims.match(f"params[{k!r}]", a, s)
            if a.dtype != self.dtype:
                raise TypeError(f"params[{k!r}] must have the model dtype {self.dtype}, got {a.dtype}")
        if dims["G"] != gates * dims["H"]:
            raise ValueError(f"params['Wx'] must have {gates}*H = {gates * dims['H']} columns for "
                             f"cell_type {self.cell_type!r}, got {dims['G']}")
        validate.tokens_fit({"<NULL>": self._null, "<START>": self._start, "<END>": self._end}, dims["V"])
        self._check_dims(dims)
        return out

    def freeze(self):
        """Make every parameter a read-only array of its own, for a model that is only decoded
        from now on: decoding then keeps its packed weights from one call to the next
        (``fastcap.model.decode.PackCache``) instead of packing them per call. Training
        it again works (the solver's first update replaces each parameter by a writable
        copy) and decoding then packs per call again. Returns self."""
        frozen = {}
        for k, a in self.params.items():
            a = np.array(a)  # a copy: nothing else can write to it
            a.flags.writeable = False
            frozen[k] = a
        self.params = frozen
        return self

    def _decode_packs(self, compute):
        """The dict decoding keeps its packed weights in: the PackCache's while the parameters
        cannot change (see freeze), else None (a new one per decoding)."""
        cache = self.__dict__.get("_pack_cache")
        if cache is None:
            cache = self._pack_cache = PackCache()
        return cache.packs(compute, self.params)

    def _check_dims(self, dims):
        """What a model checks of its dims beyond PARAM_SHAPES (raise ValueError)."""

    def _features(self, features, D):
        return validate.features(features, self.dtype, D, self.GRID)

    def _batch(self, params, features, captions):
        """A training batch checked: (features, captions as intp (N, T))."""
        features = self._features(features, params["W_proj"].shape[0])
        return features, validate.captions_of(captions, features.shape[0], params["W_embed"].shape[0])

    def _decoding(self, max_length):
        """(start, end (-1: none), max_length) of a greedy decoding."""
        if self._start is None:
            raise ValueError("sampling needs a '<START>' token in word_to_idx")
        max_length = validate.count("max_length", max_length)
        return self._start, -1 if self._end is None else self._end, max_length

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
        """The decoding state of ``features`` before the first word, with the recurrent
        weights packed once for every later ``step``, by the backend and in the precision
        active now. The state holds the parameters as they are now: make a new one after an
        update."""
        return self._initial_hidden(resolve(), features)

    def step(self, state, words):
        """Feed one word per row: words (n,) integer indices in [0, V), n =
        state.rows -> (scores (n, V) = h @ W_vocab + b_vocab, the next state)."""
        if type(state) is not self.STATE:
            raise TypeError(f"state must be a {self.STATE.__name__} from this model's initial_hidden or "
                            f"step, got {type(state).__name__}")
        state.check()
        words = as_indices("words", words, 1, state.params["W_embed"].shape[0])
        if words.shape[0] != state.rows:
            raise ValueError(f"words must have one index per state row ({state.rows}), got shape {words.shape}")
        state = state.advance(words)
        scores = state.scores()
        scores += state.params["b_vocab"]
        return scores, state
