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

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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
