"""Thread starts that fail end in a clear error, never a livelock (issue 19, class 4).

Thread pools are per process and keep their threads, so every case runs in a
fresh child process under a timeout: a livelock fails the test instead of hanging it.
"""
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from conftest import BACKENDS, ENV, require_backend

_GEMM = "import numpy as np; a = np.ones((384, 384), np.float32); assert (a @ a)[0, 0] == 384"
# fastcap's own product: the one that runs on fastcap's pool (the user's own keep OpenBLAS's threads)
_FASTCAP_GEMM = ("import numpy as np; from fastcap.model import sequence; from fastcap.runtime.compute import resolve; "
                 "a = np.ones((384, 384), np.float32); assert sequence.matmul(resolve(), a, a)[0, 0] == 384")


def _child(code, backend="cython", timeout=120):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(ENV, FASTCAP_BACKEND=backend), timeout=timeout)


# The pool's own starts fail after k more succeed (the hook stands in for ulimit -u,
# ENOMEM, EAGAIN: pthread_create failing is what they all look like to the pool).
_POOL_CASE = """
import json, fastcap
from fastcap.runtime import backends as _backend, threads as _threads
m = _backend.load("cython").module
fastcap.set_num_threads(1)
m._fail_thread_starts_after({k})
try:
    fastcap.set_num_threads({n}, source="--threads")
    outcome = "ok"
except _threads.ThreadStartError as exc:
    outcome = str(exc)
{gemm}
print(json.dumps({{"outcome": outcome, "threads": fastcap.get_num_threads(),
                  "engine": m.get_num_threads()}}))
"""


@settings(max_examples=6, deadline=None)
@given(k=st.integers(0, 4), n=st.integers(1, 8))
def test_thread_starts_that_fail_are_an_error_before_any_work(k, n):
    require_backend("cython")
    proc = _child(_POOL_CASE.format(k=k, n=n, gemm=_GEMM))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if got["outcome"] == "ok":
        assert got["threads"] == n and got["engine"] == n
    else:  # nothing was changed, and the error says what to do
        assert got["threads"] == 1 and got["engine"] == 1, got
        assert got["outcome"].startswith("--threads: only ") and f"of {n} threads" in got["outcome"]
        assert "ask for at most" in got["outcome"]
    # n threads need n - 1 workers; at least 1 + k can run (the caller and k more workers,
    # beside any the backend started for BLAS when it loaded)
    if n <= 1 + k:
        assert got["outcome"] == "ok", got


_BEHIND_ITS_BACK = """
import fastcap
from fastcap.runtime import backends as _backend
from threadpoolctl import threadpool_limits
m = _backend.load("cython").module
m._fail_thread_starts_after(0)
threadpool_limits(8, user_api="blas")  # not through fastcap: its checks are bypassed
{gemm}
"""


def test_a_blas_call_on_threads_that_cannot_start_ends_instead_of_spinning():
    """The last line: a thread count set behind fastcap's back, whose threads cannot
    start, ends the process with a message at the BLAS call instead of a livelock."""
    require_backend("cython")
    proc = _child(_BEHIND_ITS_BACK.format(gemm=_FASTCAP_GEMM), timeout=60)
    assert proc.returncode != 0
    assert "could not start 8 threads for a BLAS call" in proc.stderr, proc.stderr
    assert "FASTCAP_NUM_THREADS" in proc.stderr


_ADDRESS_LIMIT = """
import resource, fastcap
from fastcap.runtime import threads as _threads
used = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (used + (200 << 20), resource.RLIM_INFINITY))
try:
    fastcap.set_num_threads(16)
    raise SystemExit("16 threads were accepted in 200 MiB")
except _threads.ThreadStartError as exc:
    print(exc)
fastcap.set_num_threads(2)
{gemm}
print("ran")
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_address_space_limit_caps_the_threads_with_an_error(backend):
    """ulimit -v: threads that would start but could not map BLAS's buffers (OpenBLAS's
    jobs then wait forever) are refused up front, naming the limit; fewer still run."""
    require_backend(backend)
    proc = _child(_ADDRESS_LIMIT.format(gemm=_GEMM), backend=backend)
    assert proc.returncode == 0, proc.stderr
    assert "16 threads need about" in proc.stdout and "ulimit -v" in proc.stdout, proc.stdout
    assert proc.stdout.rstrip().endswith("ran")
