"""How many threads fastcap computes with: BLAS and Numba, set together.

A training step alternates BLAS GEMMs with the backend's kernels. Two thread
pools are involved: the BLAS library's (OpenBLAS under NumPy, and SciPy's copy
if SciPy is loaded) and Numba's (for any kernel that uses ``prange``). Setting
them separately invites oversubscription, so ``set_num_threads(n)`` sets both:

* BLAS through threadpoolctl, on every BLAS library loaded at the time of the
  call (call it again after importing something that loads another one);
* Numba through ``numba.set_num_threads`` when Numba is installed. Numba's
  setting is per Python thread and cannot exceed the pool size Numba started
  with (``NUMBA_NUM_THREADS``, the number of cores by default); larger values
  are capped to it.

``FASTCAP_NUM_THREADS``, when set, is applied when this module is imported.
Without it fastcap changes nothing: the libraries' defaults (one thread per
core) stay in force.
"""
import os

__all__ = ["set_num_threads", "get_num_threads", "ENV_VAR"]

ENV_VAR = "FASTCAP_NUM_THREADS"

# The threadpoolctl limiter of the last set_num_threads call, kept so the limit
# is documented in one place (and could be restored with .restore_original_limits()).
_blas_limiter = None


def _numba():
    try:
        import numba
    except ImportError:
        return None
    return numba


def _check(n, what="n"):
    try:
        ok = int(n) == n and int(n) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(n, bool):
        raise ValueError(f"{what} must be a positive integer number of threads, got {n!r}")
    return int(n)


def set_num_threads(n):
    """Compute with `n` threads: BLAS (all loaded libraries) and Numba (if installed)."""
    global _blas_limiter
    n = _check(n)
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        _blas_limiter = None
    else:
        # A fresh controller re-scans the loaded libraries, so BLAS libraries
        # loaded since the last call are limited too.
        _blas_limiter = ThreadpoolController().limit(limits=n, user_api="blas")
    numba = _numba()
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def _blas_threads():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return None
    counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return max(counts) if counts else None


def get_num_threads():
    """The number of threads fastcap computes with.

    Numba's thread count for this Python thread when Numba is installed (what
    the last set_num_threads gave it), else the BLAS thread count, else 1.
    """
    numba = _numba()
    if numba is not None:
        # numba.get_num_threads() would start Numba's thread pool just to read a
        # number; until the pool exists every thread has the default count.
        from numba.np.ufunc import parallel

        if not getattr(parallel, "_is_initialized", True):
            return numba.config.NUMBA_NUM_THREADS
        return numba.get_num_threads()
    return _blas_threads() or 1


def _init_from_environment():
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = value
        set_num_threads(_check(n, what=f"{ENV_VAR}={value!r}"))


_init_from_environment()
