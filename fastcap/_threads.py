"""How many threads fastcap computes with: one budget for BLAS and the engine.

Two thread pools compute: the BLAS library's (every large matrix product)
and the Cython backend's recurrent engine (its own pthread pool, which runs
the time loop of the recurrences; see fastcap/_kernels/engine/pool.h). They
take turns, never run at once, so both get the whole budget.
``set_num_threads(n)`` sets the BLAS thread count through threadpoolctl on
every BLAS library loaded at the time of the call (call it again after
importing something that loads another one, such as SciPy) and the engine's
thread count in every loaded backend that has one (and in those loaded
later). The other kernels run on the calling thread.

Numba's thread pool is deliberately left alone: no fastcap kernel uses it,
and starting it (``numba.set_num_threads`` does) keeps its worker threads
around; with Numba's OpenMP layer they share libgomp with PyTorch, whose
operations in the same process then ran several times slower.

``FASTCAP_NUM_THREADS``, when set, is applied when fastcap is imported.
Without it fastcap changes nothing: the BLAS default (one thread per core)
stays in force, and the engine uses one thread per core this process may run on.
"""
from threadpoolctl import ThreadpoolController, threadpool_info

from . import _env

__all__ = ["set_num_threads", "get_num_threads", "ENV_VAR"]

ENV_VAR = "FASTCAP_NUM_THREADS"

# The threadpoolctl limiter of the last set_num_threads call.
_blas_limiter = None
# The last set_num_threads count, applied to backends loaded later (None: their default).
_requested = None


def _check(n, what="n"):
    try:
        ok = int(n) == n and int(n) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(n, bool):
        raise ValueError(f"{what} must be a positive integer number of threads, got {n!r}")
    return int(n)


def set_num_threads(n):
    """Compute with `n` threads: the thread count of every loaded BLAS library."""
    global _blas_limiter, _requested
    n = _check(n)
    # A fresh controller re-scans the loaded libraries, so BLAS libraries
    # loaded since the last call are limited too.
    _blas_limiter = ThreadpoolController().limit(limits=n, user_api="blas")
    _requested = n
    from . import _backend

    for kernels in _backend.loaded():
        apply_to(kernels.module)


def apply_to(module):
    """Give a backend module with a thread pool (``set_num_threads``) the budget, and
    route OpenBLAS's threaded calls through that pool (``share_blas_threads``)."""
    if _requested is not None and hasattr(module, "set_num_threads"):
        module.set_num_threads(_requested)
    share_blas_threads(module)


BLAS_POOL_ENV_VAR = "FASTCAP_BLAS_POOL"  # on (default) | off
# OpenBLAS library path -> the module whose pool runs its threads.
_blas_pool = {}
_CALLBACK_SETTERS = ("openblas_set_threads_callback_function",
                     "scipy_openblas_set_threads_callback_function64_",
                     "scipy_openblas_set_threads_callback_function",
                     "openblas_set_threads_callback_function64_")


def share_blas_threads(module):
    """Make every loaded OpenBLAS (0.3.27 or newer) run its threaded calls on
    `module`'s pool instead of its own worker threads.

    Why: after each call OpenBLAS's workers spin for about 0.1 s (2^28
    cycles); a compiled engine call right after a GEMM then shares its cores
    with them (measured: an LSTM forward on 2 threads 2x slower right after a
    GEMM than alone). On one pool BLAS and the engine take turns. Returns the
    libraries newly routed. FASTCAP_BLAS_POOL=off leaves OpenBLAS alone."""
    import ctypes

    if not _env.read(BLAS_POOL_ENV_VAR):
        return []
    if not hasattr(module, "openblas_callback_address"):
        return []
    routed = []
    for info in threadpool_info():
        path = info.get("filepath")
        if info.get("internal_api") != "openblas" or not path or path in _blas_pool:
            continue
        lib = ctypes.CDLL(path)
        setter = next((getattr(lib, n) for n in _CALLBACK_SETTERS if hasattr(lib, n)), None)
        if setter is None or not module.can_start_threads(max(1, int(info.get("num_threads") or 1))):
            continue  # an OpenBLAS without the hook keeps its own threads
        setter.argtypes, setter.restype = [ctypes.c_void_p], None
        setter(module.openblas_callback_address())
        _blas_pool[path] = module
        routed.append(path)
    return routed


def blas_pool():
    """{OpenBLAS library path: module whose pool runs its threads}."""
    return dict(_blas_pool)


def get_engine_threads():
    """The recurrent engine's thread count (the active backend's, if it has an engine), else None."""
    from . import _backend

    kernels = _backend.kernels()
    getter = getattr(kernels.module, "get_num_threads", None) if kernels is not None else None
    return getter() if getter else None


def get_num_threads():
    """The BLAS thread count (the largest, if several BLAS libraries are loaded), else 1."""
    counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return max(counts) if counts else 1


def init_from_environment():
    """Apply FASTCAP_NUM_THREADS, if set (fastcap/__init__.py calls this once)."""
    n = _env.read(ENV_VAR)
    if n is not None:
        set_num_threads(n)
