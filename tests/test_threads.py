"""fastcap.set_num_threads / get_num_threads and FASTCAP_NUM_THREADS."""
import os
import subprocess
import sys
import textwrap

import pytest
from threadpoolctl import threadpool_info

import fastcap
from conftest import require_backend

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, **env):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def _blas_counts():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_set_get_num_threads_round_trip():
    before = fastcap.get_num_threads()
    try:
        fastcap.set_num_threads(1)
        assert fastcap.get_num_threads() == 1
        assert _blas_counts() and all(n == 1 for n in _blas_counts())
        fastcap.set_num_threads(2)
        assert fastcap.get_num_threads() == 2 and all(n == 2 for n in _blas_counts())
    finally:
        fastcap.set_num_threads(before)
    assert fastcap.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None, True])
def test_set_num_threads_rejects(bad):
    with pytest.raises(ValueError, match="positive integer"):
        fastcap.set_num_threads(bad)


def test_num_threads_environment_variable():
    out = _run("""
        import fastcap
        from threadpoolctl import threadpool_info
        print(fastcap.get_num_threads(), [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
    """, FASTCAP_NUM_THREADS="1")
    assert out == ["1 [1]"]


def test_bad_environment_variable_names_it():
    proc = subprocess.run([sys.executable, "-c", "import fastcap"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "FASTCAP_NUM_THREADS": "many"}, timeout=300)
    assert proc.returncode != 0 and "FASTCAP_NUM_THREADS='many'" in proc.stderr


def test_numba_thread_pool_stays_down():
    """Setting threads and running every Numba kernel never starts Numba's
    thread pool (it would share libgomp with PyTorch and slow it down)."""
    require_backend("numba")
    out = _run("""
        import numpy as np
        import fastcap
        from fastcap.classifiers.rnn import CaptioningRNN
        from numba.np.ufunc import parallel
        fastcap.set_backend("numba")
        fastcap.set_num_threads(2)
        words = {w: i for i, w in enumerate(["<NULL>", "<START>", "<END>", "a", "b"])}
        model = CaptioningRNN(words, input_dim=4, wordvec_dim=3, hidden_dim=5, cell_type="lstm")
        loss, grads = model.loss(np.ones((2, 4)), np.array([[1, 3, 2], [1, 4, 2]]))
        model.sample(np.ones((2, 4)), max_length=3)
        print(getattr(parallel, "_is_initialized", "unknown"))
    """, FASTCAP_NUM_THREADS="2")
    assert out == ["False"]


def test_one_budget_for_blas_and_the_engine():
    """set_num_threads reaches the engine of a backend loaded before the call
    and of one loaded after it (FASTCAP_NUM_THREADS too), and the engine runs
    on that many threads."""
    require_backend("cython")
    out = _run("""
        import numpy as np
        import fastcap
        from fastcap.runtime import backends as _backend
        cy = _backend.load("cython").module
        print(fastcap.get_num_threads(), cy.get_num_threads())
        fastcap.set_num_threads(3)
        print(fastcap.get_num_threads(), cy.get_num_threads())
        with fastcap.use_backend("cython"):
            print(fastcap.get_engine_threads())
            words = {w: i for i, w in enumerate(["<NULL>", "<START>", "<END>", "a", "b"])}
            model = fastcap.CaptioningRNN(words, input_dim=4, wordvec_dim=3, hidden_dim=40,
                                          cell_type="lstm", dtype=np.float32)
            model.loss(np.ones((2, 4)), np.array([[1, 3, 2], [1, 4, 2]]))
            print(cy.last_engine_threads())
    """, FASTCAP_NUM_THREADS="2")
    assert out == ["2 2", "3 3", "3", "3"]


def test_openblas_runs_on_the_engine_pool_for_fastcaps_calls_only():
    """Where the Cython backend loads and OpenBLAS has the threading hook,
    fastcap's own threaded BLAS calls run on the engine's pool (not OpenBLAS's
    own spinning workers), with the same results; the user's own products,
    before, after and between fastcap's (an exception included), keep
    OpenBLAS's own threads: importing fastcap changes nothing else in the
    process. FASTCAP_BLAS_POOL=off leaves OpenBLAS alone."""
    require_backend("cython")
    code = """
        import numpy as np
        import fastcap
        from fastcap.model import sequence as _sequence
        from fastcap.runtime import backends as _backend, threads as _threads
        from fastcap.runtime.compute import resolve
        cy = _backend.load("cython").module
        fastcap.set_num_threads(2)
        a = np.random.default_rng(0).standard_normal((600, 700)).astype(np.float32)
        b = np.random.default_rng(1).standard_normal((700, 500)).astype(np.float32)
        calls = []
        def count(fn):
            before = cy.blas_calls()
            out = fn()
            calls.append(cy.blas_calls() - before)
            return out
        user = count(lambda: a @ b)
        ours = count(lambda: _sequence.matmul(resolve(), a, b))
        count(lambda: a @ b)
        try:
            with _threads.ON_POOL:
                raise KeyError
        except KeyError:
            pass
        count(lambda: a @ b)
        err = np.abs(ours - a.astype(np.float64) @ b).max() / np.abs(ours).max()
        print(len(_threads.blas_pool()), *calls, err < 1e-5, np.array_equal(user, ours))
    """
    for env, routed in (({}, True), ({"FASTCAP_BLAS_POOL": "off"}, False)):
        out = _run(code, **env)
        libs, user, ours, after, after_error, ok, same = out[0].split()
        assert ok == "True" and same == "True"
        if routed and libs == "0":
            pytest.skip("this OpenBLAS has no threading hook (openblas_set_threads_callback_function, 0.3.27+)")
        assert (user, after, after_error) == ("0", "0", "0")
        assert (int(libs) >= 1 and int(ours) >= 1) if routed else (libs, ours) == ("0", "0")

