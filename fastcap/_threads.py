"""How many threads fastcap computes with: the BLAS library's.

fastcap's own kernels run on the calling thread (Numba's without ``prange``,
Cython's with OpenMP compiled in but off: threads between the GEMMs of a
recurrent step measured slower on small machines), so the one thread count
that matters is the BLAS library's, which runs every matrix product.
``set_num_threads(n)`` sets it through threadpoolctl on every BLAS library
loaded at the time of the call (call it again after importing something that
loads another one, such as SciPy).

Numba's thread pool is deliberately left alone: no fastcap kernel uses it,
and starting it (``numba.set_num_threads`` does) keeps its worker threads
around; with Numba's OpenMP layer they share libgomp with PyTorch, whose
operations in the same process then ran several times slower.

``FASTCAP_NUM_THREADS``, when set, is applied when this module is imported.
Without it fastcap changes nothing: the BLAS default (one thread per core)
stays in force.
"""
import os

from threadpoolctl import ThreadpoolController, threadpool_info

__all__ = ["set_num_threads", "get_num_threads", "ENV_VAR"]

ENV_VAR = "FASTCAP_NUM_THREADS"

# The threadpoolctl limiter of the last set_num_threads call.
_blas_limiter = None


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
    global _blas_limiter
    n = _check(n)
    # A fresh controller re-scans the loaded libraries, so BLAS libraries
    # loaded since the last call are limited too.
    _blas_limiter = ThreadpoolController().limit(limits=n, user_api="blas")


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
