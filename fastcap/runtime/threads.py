"""How many threads fastcap computes with: one budget for BLAS and the engine.

Two thread pools compute: the BLAS library's (every large matrix product)
and the Cython backend's recurrent engine (its own pthread pool, which runs
the time loop of the recurrences; see fastcap/_kernels/engine/pool.h). They
take turns, never run at once, so both get the whole budget.
``set_num_threads(n)`` sets the BLAS thread count through threadpoolctl on
every BLAS library loaded at the time of the call (call it again after
importing something that loads another one, such as SciPy) and the engine's
thread count in every loaded backend that has one (and in those loaded
later). The Cython backend's update rules, embedding scatter-add, softmax
loss and bf16 GEMM run on the engine's pool too; the other kernels run on
the calling thread.

Numba's thread pool is deliberately left alone: no fastcap kernel uses it,
and starting it (``numba.set_num_threads`` does) keeps its worker threads
around; with Numba's OpenMP layer they share libgomp with PyTorch, whose
operations in the same process then ran several times slower.

A count the process cannot run (thread starts fail: ``ulimit -u``, memory;
or the address-space limit, ``ulimit -v``, leaves no room for the threads'
BLAS buffers) raises ThreadStartError before anything is changed: OpenBLAS
hands a threaded call's jobs to threads that must all run, and a job without
a thread would leave the others waiting forever.

``FASTCAP_NUM_THREADS``, when set, is applied when fastcap is imported.
Without it fastcap changes nothing: the BLAS default (one thread per core)
stays in force, and the engine uses one thread per core this process may run on.
"""
import functools
import threading

from threadpoolctl import ThreadpoolController, threadpool_info

from . import backends, env
from .memory import address_space_left

__all__ = ["set_num_threads", "get_num_threads", "ENV_VAR", "ThreadStartError"]

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


class ThreadStartError(OSError):
    """The process cannot run the thread count asked for (its limits or its memory)."""


# Address space one more compute thread may take beside its stack: OpenBLAS's GEMM buffer
# and a malloc arena. A thread that starts but cannot map its buffer leaves OpenBLAS's
# other jobs waiting on it forever. Measured (OpenBLAS 0.3.31, x86-64, 8 MiB stacks): with
# 180 MiB of address space left, 4 threads ran a GEMM and 5 spun; hence 60 MiB a thread.
_THREAD_ADDRESS_SPACE = 52 << 20


def _thread_cost():
    import resource

    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    if stack == resource.RLIM_INFINITY or stack <= 0:
        stack = 8 << 20  # glibc's default thread stack then
    return stack + _THREAD_ADDRESS_SPACE


def _check_runnable(n, what):
    """Raise ThreadStartError unless ``n`` threads can compute: checked before any BLAS
    library or pool is told to use them (raised too late, a BLAS call hands work to threads
    that never run, and spins forever)."""
    left = address_space_left()
    if left is not None:
        # Every thread but the caller is new to BLAS's work (the pool's or OpenBLAS's own).
        cost = _thread_cost()
        if (n - 1) * cost > left:
            raise ThreadStartError(
                f"{what}: {n} threads need about {(n - 1) * cost >> 20} MiB more address "
                f"space than the {max(0, left) >> 20} MiB the process's limit (ulimit -v) leaves; "
                f"ask for at most {1 + max(0, left) // cost}, or raise the limit")
    for kernels in backends.loaded():
        start = getattr(kernels.module, "start_threads", None)
        got = start(n) if start is not None else n
        if got < n:
            raise ThreadStartError(
                f"{what}: only {got} of {n} threads could be started (the process's limits, "
                f"ulimit -u / -v, or its memory); ask for at most {got}")


def set_num_threads(n, *, source=None):
    """Compute with `n` threads: the thread count of every loaded BLAS library.

    source: how the count was given (an option or variable), for the error messages.
    Raises ThreadStartError, changing nothing, when the process cannot run `n` threads.
    """
    global _blas_limiter, _requested
    what = source or "n"
    n = _check(n, what)
    _check_runnable(n, what)
    # A fresh controller re-scans the loaded libraries, so BLAS libraries
    # loaded since the last call are limited too.
    _blas_limiter = ThreadpoolController().limit(limits=n, user_api="blas")
    _requested = n
    for kernels in backends.loaded():
        apply_to(kernels.module)


def apply_to(module):
    """Give a backend module with a thread pool (``set_num_threads``) the budget, and
    route OpenBLAS's threaded calls through that pool (``share_blas_threads``). The
    registry calls it for every backend as it loads (``backends.on_load``, below)."""
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
    """Make every loaded OpenBLAS (0.3.27 or newer) run fastcap's threaded calls
    on `module`'s pool instead of its own worker threads: inside ``on_pool``
    (fastcap's own products: fastcap.model.sequence), and only there. Outside it,
    the process's other BLAS calls (the user's own) run on OpenBLAS's threads
    as if fastcap were not imported.

    Why: after each call OpenBLAS's workers spin for about 0.1 s (2^28
    cycles); a compiled engine call right after a GEMM then shares its cores
    with them (measured: an LSTM forward on 2 threads 2x slower right after a
    GEMM than alone). On one pool BLAS and the engine take turns. Returns the
    libraries newly found. FASTCAP_BLAS_POOL=off leaves OpenBLAS alone."""
    import ctypes

    if not env.read(BLAS_POOL_ENV_VAR):
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
        _blas_pool[path] = module
        _routes.append((setter, module.openblas_callback_address()))
        routed.append(path)
    return routed


# (callback setter, the pool's callback) of every OpenBLAS found; how deep in
# on_pool blocks the process is (the routes are installed while it is above 0).
_routes = []
_depth = 0
_depth_lock = threading.Lock()


class on_pool:
    """A block of fastcap's own BLAS calls, run on the engine's pool: the
    OpenBLAS threading callback is installed on entering the outermost block
    and removed (OpenBLAS's own threads again) on leaving it."""

    __slots__ = ()

    def __enter__(self):
        global _depth
        with _depth_lock:
            if _depth == 0:
                for setter, callback in _routes:
                    setter(callback)
            _depth += 1

    def __exit__(self, *exc):
        global _depth
        with _depth_lock:
            _depth -= 1
            if _depth == 0:
                for setter, _ in _routes:
                    setter(None)


ON_POOL = on_pool()


def routed(fn):
    """Decorator: fn's BLAS calls run on the engine's pool (on_pool)."""
    @functools.wraps(fn)
    def run_on_pool(*args, **kwargs):
        with ON_POOL:
            return fn(*args, **kwargs)
    return run_on_pool


def blas_pool():
    """{OpenBLAS library path: module whose pool runs its threads}."""
    return dict(_blas_pool)


def get_engine_threads():
    """The recurrent engine's thread count (the active backend's, if it has an engine), else None."""
    kernels = backends.kernels()
    getter = getattr(kernels.module, "get_num_threads", None) if kernels is not None else None
    return getter() if getter else None


def get_num_threads():
    """The BLAS thread count (the largest, if several BLAS libraries are loaded), else 1."""
    counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return max(counts) if counts else 1


def init_from_environment():
    """Apply FASTCAP_NUM_THREADS, if set (fastcap/__init__.py calls this once)."""
    n = env.read(ENV_VAR)
    if n is not None:
        set_num_threads(n, source=f"{ENV_VAR}={n}")


backends.on_load(apply_to)
