"""Input checks shared by the public functions.

Every public layer validates here, once, before any kernel runs, so compiled
kernels can trust shapes, dtypes and index ranges. Errors name the argument
and what was expected:

* ``TypeError`` for a wrong kind of array (not float32/float64, not integer,
  float dtypes that disagree);
* ``ValueError`` for wrong shapes, mismatched dimensions and out-of-range
  word indices.
"""
import numpy as np

from ..runtime.names import DTYPES

FLOAT_DTYPES = tuple(np.dtype(name) for name in DTYPES)


def as_float(name, a, ndim):
    """`a` as a C-contiguous float32/float64 array of `ndim` dimensions."""
    a = np.asarray(a)
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return np.ascontiguousarray(a)


def same_dtype(**arrays):
    """All float arrays share one dtype; returns it."""
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}={d}" for n, d in dtypes.items())
        raise TypeError(f"float inputs must share one dtype, got {listed}")
    return next(iter(dtypes.values()))


class Dims:
    """Binds shape symbols (N, T, D, H, ...) to sizes and checks every later use.

    >>> dims = Dims(); dims.match("x", x, ("N", "T", "D")); dims.match("Wx", Wx, ("D", "H"))
    raises ValueError if Wx.shape[0] differs from x.shape[2], naming both.
    """

    def __init__(self):
        self.size = {}
        self.source = {}

    def match(self, name, a, spec):
        if len(a.shape) != len(spec):
            raise ValueError(
                f"{name} must have shape ({', '.join(map(str, spec))}), got shape {a.shape}"
            )
        for axis, (sym, n) in enumerate(zip(spec, a.shape)):
            if isinstance(sym, int):
                expected, origin = sym, None
            elif sym in self.size:
                expected, origin = self.size[sym], self.source[sym]
            else:
                self.size[sym], self.source[sym] = n, f"{name}.shape[{axis}]"
                continue
            if n != expected:
                where = f" ({sym} = {expected} from {origin})" if origin else ""
                raise ValueError(
                    f"{name} must have shape ({', '.join(map(str, spec))}){where}, "
                    f"got shape {a.shape}"
                )
        return a

    def __getitem__(self, sym):
        return self.size[sym]


def features(a, dtype, D, grid):
    """Image features as a C-contiguous array of the model's ``dtype``: one pooled D-vector per
    image, (N, D), or (``grid``) a grid of L >= 1 cells of D channels, (N, L, D). Features are
    data, not parameters: integers and either float dtype are cast. A pooled array handed to
    a grid model, or a grid to a pooled one, is one error that names both."""
    a = np.asarray(a)
    if a.dtype.kind != "f" and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"features must be a float array, got dtype {a.dtype}")
    want, ndim = ("(N, L, D): a grid of L cells", 3) if grid else ("(N, D): one pooled vector", 2)
    if a.ndim != ndim:
        given = {2: "one pooled vector per image (the CaptioningRNN's features)",
                 3: f"a grid of {a.shape[1] if a.ndim == 3 else 0} cells per image (the "
                    "AttentionCaptioningRNN's features)"}.get(a.ndim, f"{a.ndim} dimensions")
        raise ValueError(f"features must have shape {want} of D = {D} channels per image, got shape "
                         f"{a.shape}: {given}")
    if a.shape[-1] != D:
        raise ValueError(f"features must have shape {want[:want.index(':')]} with D = {D} (the "
                         f"model's input_dim), got shape {a.shape}")
    if grid and a.shape[1] == 0:
        raise ValueError(f"features must have at least one cell (shape (N, L, D) with L >= 1), got "
                         f"shape {a.shape}")
    return np.ascontiguousarray(a, dtype=dtype)


def captions_of(captions, N, vocab_size):
    """A model's training captions: (N, T) word indices in [0, vocab_size), one row per image,
    T >= 2 (the model reads captions[:, :-1] and predicts captions[:, 1:])."""
    captions = as_indices("captions", captions, 2, vocab_size)
    if captions.shape[0] != N:
        raise ValueError(f"captions must have one row per feature row (N = {N}), got shape {captions.shape}")
    if captions.shape[1] < 2:
        raise ValueError(f"captions must have at least 2 columns (<START> and a target), got shape "
                         f"{captions.shape}")
    return captions


def as_indices(name, x, ndim, vocab_size):
    """`x` as a C-contiguous intp array of `ndim` dims with values in [0, vocab_size)."""
    x = np.asarray(x)
    if x.dtype == bool or not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array of word indices, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    if x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"{name} holds word index {bad}, outside [0, {vocab_size}) "
                f"(the vocabulary size is {vocab_size})"
            )
    return np.ascontiguousarray(x, dtype=np.intp)


def as_mask(name, mask, shape):
    """`mask` as a C-contiguous bool array of `shape` (bool, or integers 0/1)."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got shape {mask.shape}")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.integer) or (
            mask.size and not np.isin(mask, (0, 1)).all()
        ):
            raise TypeError(f"{name} must be a boolean array (or integers 0/1), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    return np.ascontiguousarray(mask)


def as_weights(name, w, n):
    """`w` as a C-contiguous float64 array of n finite numbers (one per caption)."""
    w = np.asarray(w)
    if w.dtype == bool or not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
        raise TypeError(f"{name} must be an array of numbers, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one weight per caption), got shape {w.shape}")
    w = np.ascontiguousarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        bad = int(np.flatnonzero(~np.isfinite(w))[0])
        raise ValueError(f"{name} must be finite, got {w[bad]} at caption {bad}")
    return w


def cache_of(name, cache, cls, producer):
    if not isinstance(cache, cls):
        raise TypeError(
            f"{name} must be the cache returned by {producer}, got {type(cache).__name__}"
        )
    return cache


def like(name, a, ref, ref_name):
    """Upstream gradient `a` must have `ref`'s shape and dtype."""
    a = np.asarray(a)
    if a.shape != ref.shape:
        raise ValueError(f"{name} must have shape {ref.shape} (the shape of {ref_name}), got {a.shape}")
    if a.dtype != ref.dtype:
        raise TypeError(f"{name} must have dtype {ref.dtype} (the dtype of {ref_name}), got {a.dtype}")
    return np.ascontiguousarray(a)


def count(name, value, minimum=0):
    """``value`` as a Python int >= minimum (an integral float such as 30.0 is accepted)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if not np.isfinite(value) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


SPECIAL_TOKENS = ("<NULL>", "<START>", "<END>")
REQUIRED_TOKENS = SPECIAL_TOKENS[:1]  # every vocabulary has <NULL> (padding); the others only decoding needs


def word_to_idx(mapping, name="word_to_idx", required=REQUIRED_TOKENS):
    """Check a vocabulary ``{word (str): index (int)}`` and return it with int indices.

    Indices are non-negative integers, one per word. The special tokens
    (SPECIAL_TOKENS) must lie in [0, V), V = len(mapping): the model feeds and
    compares them as rows of its (V, ...) weight tables, so one outside would
    make a compiled kernel read past them. Other words may have larger indices
    (the CS231n seed's vocabulary ``{'<NULL>': 0, 'cat': 2, 'dog': 3}`` does);
    captions are checked against V before they reach a kernel.
    """
    if not isinstance(mapping, dict):
        raise TypeError(f"{name} must be a dict of word -> index, got {type(mapping).__name__}")
    V = len(mapping)
    owner = {}
    for word, i in mapping.items():
        if not isinstance(word, str):
            raise TypeError(f"{name} keys must be words (str), got {type(word).__name__} {word!r}"[:300])
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{name}[{word!r}] must be an integer index, got "
                            f"{type(i).__name__} {i!r}"[:300])
        if i < 0 or (word in SPECIAL_TOKENS and i >= V):
            raise ValueError(f"{name}[{word!r}] is {int(i)}, outside [0, {V}) (the model has one "
                             f"row per word of the {V}-word vocabulary)")
        if int(i) in owner:
            raise ValueError(f"{name} maps both {owner[int(i)]!r} and {word!r} to index {int(i)}")
        owner[int(i)] = word
    for token in required:
        if token not in mapping:
            raise ValueError(f"{name} must contain the {token!r} token")
    return {w: int(i) for w, i in mapping.items()}


def tokens_fit(mapping, vocab_size, table="params['W_embed']", name="word_to_idx"):
    """The special tokens of ``mapping`` index rows of a (vocab_size, ...) table."""
    for token in SPECIAL_TOKENS:
        i = mapping.get(token)
        if i is not None and not 0 <= i < vocab_size:
            raise ValueError(f"{name}[{token!r}] is {i}, outside the {vocab_size} rows of {table} "
                             f"(the parameters have a smaller vocabulary than {name})")
