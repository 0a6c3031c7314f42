"""The bfloat16 mode's matrix products, emulated with NumPy: the reference.

fastcap's bfloat16 mode (``fastcap.set_precision("bfloat16")``) changes one
thing: every matrix product reads its two operands rounded to bfloat16 (round
to nearest even) and sums in float32. This module is that definition, written
with ``ml_dtypes`` rounding and NumPy's float32 BLAS; the NumPy and Numba
backends run it, and the compiled bf16 kernels of the Cython backend (the
engine's vdpbf16ps tiles and fastcap/_kernels/engine/gemm.c) are tested
against it. Only the order of the float32 sums differs between the two.
"""
import ml_dtypes
import numpy as np


def round_bf16(a):
    """float32 a -> float32 array of a's values rounded to bfloat16 (nearest even)."""
    with np.errstate(invalid="ignore"):  # NaN stays NaN, as in the compiled kernels, without a warning
        return np.asarray(a, dtype=np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def pack_bf16(b):
    """b (K, N) float32 -> its bf16 values, for many matmul_bf16 calls."""
    return Bf16Matrix(round_bf16(b))


def matmul_bf16(a, b, out):
    """a (M, K), b (K, N) float32 (any strides) or pack_bf16(b) -> out (M, N) = bf16(a) @ bf16(b),
    float32 sums."""
    np.dot(round_bf16(a), b.W if isinstance(b, Bf16Matrix) else round_bf16(b), out=out)


class Bf16Matrix:
    """A matmul_bf16 operand rounded once (pack_bf16)."""

    __slots__ = ("W",)

    def __init__(self, W):
        self.W = W

    @property
    def shape(self):
        return self.W.shape


class Bf16Weights:
    """Recurrent weights of the BLAS loops in bf16 mode: Wh rounded once per pack."""

    __slots__ = ("W",)

    def __init__(self, Wh):
        self.W = round_bf16(Wh)
