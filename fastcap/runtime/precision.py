"""Precision mode: float32 (the default) or bfloat16 mixed precision.

In ``bfloat16`` mode every matrix product of a float32 model reads its two
operands rounded to bfloat16 (round to nearest even) and sums in float32;
everything else is unchanged: parameters, optimizer state, the loss and every
gradient stay float32 (master weights), and the gate nonlinearities, the LSTM
cell state and the softmax run in float32. float64 models ignore the mode.

Where it runs (``describe()`` says which path is taken):

* the Cython backend on a CPU with AVX512-BF16 (``avx512_bf16``: AMD Zen 4,
  Intel Cooper Lake, Sapphire Rapids and later) runs the products as the
  engine's bf16 tiles (vdpbf16ps) and its bf16 GEMM (fastcap/_kernels/engine);
* the NumPy backend, the reference, emulates the mode on any CPU
  (``fastcap._kernels.bf16``: ml_dtypes rounding, float32 BLAS);
* the Numba backend emulates it as the NumPy backend does (no faster than its
  float32: use the Cython backend for speed);
* on a CPU without bf16 units the Numba and Cython backends warn once and run
  float32, which is faster there than any emulation.

The mode is chosen by ``FASTCAP_PRECISION`` at import (default float32) and
changed with ``set_precision`` or, for a block, ``use_precision``. It is read
once per call, with the backend (``fastcap.runtime.compute.resolve``), and the
answer is passed down to every product of that call.
"""
import contextlib
import warnings

from . import backends, env
from .names import PRECISIONS

ENV_VAR = "FASTCAP_PRECISION"

_active = "float32"
_native = None  # cached native_bf16()
_warned = False
_emulate_anywhere = False  # tests: run the compiled bf16 kernels on CPUs without bf16 units


def check(name, what="precision"):
    """name if it is a precision, else ValueError listing the valid ones."""
    if not isinstance(name, str) or name not in PRECISIONS:
        raise ValueError(f"unknown fastcap {what} {name!r}; valid names are {', '.join(PRECISIONS)}")
    return name


def set_precision(name):
    """Make `name` ('float32' or 'bfloat16') the precision of every later product."""
    global _active
    _active = check(name)


def get_precision():
    """The precision mode asked for ('float32' or 'bfloat16')."""
    return _active


@contextlib.contextmanager
def use_precision(name):
    """Run a block in precision `name`, restoring the previous mode after."""
    global _active
    previous = _active
    set_precision(name)
    try:
        yield name
    finally:
        _active = previous


def native_bf16():
    """Whether this CPU and OS run AVX512-BF16 (vdpbf16ps)."""
    global _native
    if _native is None:
        _native = backends.cpu_runs("avx512bf16")
    return _native


def bf16_products(backend):
    """Whether the float32 products of a call made now on `backend` (a name) run in bf16
    (see the module doc)."""
    global _warned
    if _active != "bfloat16":
        return False
    if native_bf16() or _emulate_anywhere or backend == "numpy":
        return True
    if not _warned:
        _warned = True
        warnings.warn("fastcap: bfloat16 precision asked for, but this CPU has no bf16 units "
                      "(avx512_bf16): the products run in float32, which is faster here than "
                      "emulating bf16", RuntimeWarning, stacklevel=4)
    return False


def describe(backend=None):
    """One line: the precision asked for and the path the products of `backend` take."""
    backend = backend or backends.get_backend()
    if _active == "float32":
        return "float32"
    if not (native_bf16() or _emulate_anywhere):
        if backend == "numpy":
            return "bfloat16 (emulated: the NumPy reference; this CPU has no bf16 units)"
        return "bfloat16 asked for; float32 runs (this CPU has no bf16 units: no avx512_bf16)"
    if backend == "cython":
        module = backends.load("cython").module
        how = "vdpbf16ps" if module.ENGINE_INFO.get("bf16_native") else "two FMAs per pair, not vdpbf16ps"
        mode, why_not = module.amx_decide()
        amx = {"tiles": "AMX tiles for products of 16 rows or more",
               "emulated": "emulated AMX tiles (tests)"}.get(mode, f"no AMX: {why_not}")
        return f"bfloat16 (compiled engine and GEMM, {how}; {amx})"
    return f"bfloat16 (emulated with NumPy BLAS on the {backend} backend)"


def init_from_environment():
    """Apply FASTCAP_PRECISION (fastcap.runtime.env checked it; fastcap/__init__.py calls this once)."""
    set_precision(env.read(ENV_VAR))
