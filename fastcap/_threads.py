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

``FASTCAP_NUM_THREADS``, when set, is applied when this module is imported.
Without it fastcap changes nothing: the BLAS default (one thread per core)
stays in force, and the engine uses one thread per core this process may run on.
"""
import os

from threadpoolctl import ThreadpoolController, threadpool_info

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
    """Give a backend module with an engine pool (``set_num_threads``) the budget."""
    if _requested is not None and hasattr(module, "set_num_threads"):
        module.set_num_threads(_requested)


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


def _init_from_environment():
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = value
        set_num_threads(_check(n, what=f"{ENV_VAR}={value!r}"))


_init_from_environment()
