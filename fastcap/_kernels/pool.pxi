# The thread pool of the Cython backend (fastcap/_kernels/engine/pool.h, through engine.h),
# included near the top of cython_backend.pyx: the recurrent engine and the
# parallel kernels (update rules, embedding backward, softmax loss) run on it,
# with one thread count, set by fastcap.set_num_threads.
#
# Why not OpenMP prange: libgomp's idle threads spin after each parallel
# region while OpenBLAS needs the cores for the next GEMM; this pool's
# workers sleep soon after a task (see pool.h).
import os

cdef extern from "engine/engine.h" nogil:
    ctypedef void (*fc_task)(void *ctx, int tid, int nthreads) noexcept nogil
    int fc_pool_run(fc_task task, void *ctx, int n)
    int fc_pool_start(int n)
    void fc_pool_fail_starts_after(int k)
    int fc_pool_last_threads()
    long fc_blas_calls()
    void fc_openblas_threads(int sync, void *dojob, int numjobs, size_t jobdata_elsize,
                             void *jobdata, int dojob_data)


def _default_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


cdef int _engine_threads = _default_threads()
# Below this many elements of work per thread, a parallel kernel runs on the
# calling thread (waking the pool costs microseconds).
cdef Py_ssize_t _GRAIN = 1 << 15


def set_num_threads(int n):
    """Threads of the pool (fastcap.set_num_threads calls this)."""
    global _engine_threads
    if n < 1:
        raise ValueError(f"the thread pool needs at least 1 thread, got {n}")
    _engine_threads = n


def get_num_threads():
    return _engine_threads


def openblas_callback_address():
    """Address of the pool's OpenBLAS threading callback (fastcap.runtime.threads installs it)."""
    return <size_t>&fc_openblas_threads


def blas_calls():
    """Threaded BLAS calls that ran on this pool (for tests)."""
    return fc_blas_calls()


def start_threads(int n):
    """Start the pool's threads so that n can run at once; returns how many can (< n when
    the process could not start more: its limits, its memory)."""
    cdef int got
    with nogil:
        got = fc_pool_start(n)
    return got


def can_start_threads(int n):
    """Whether the pool runs n threads at once (it starts them if needed)."""
    return start_threads(n) >= n


def _fail_thread_starts_after(int k):
    """Tests: the next k thread starts succeed, later ones fail (-1: none fail)."""
    fc_pool_fail_starts_after(k)



def last_engine_threads():
    """Threads the last pool task ran on (for tests)."""
    return fc_pool_last_threads()


cdef int _threads_for(Py_ssize_t work, Py_ssize_t grain) noexcept nogil:
    """Threads for `work` units: at most the budget, at least `grain` units each."""
    cdef Py_ssize_t n = work // grain
    if n < 1:
        return 1
    return <int>(n if n < _engine_threads else _engine_threads)


cdef inline void _split(Py_ssize_t size, int tid, int nth, Py_ssize_t align,
                        Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """[lo, hi) of thread tid of nth over [0, size), boundaries on multiples of align."""
    lo[0] = (size * tid // nth) // align * align
    hi[0] = size if tid == nth - 1 else (size * (tid + 1) // nth) // align * align
