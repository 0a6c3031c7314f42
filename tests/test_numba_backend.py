"""Numba-specific tests: the float32 math helpers are accurate; importing
compiles nothing; caching and bounds checking are controlled as documented.

The kernel-by-kernel parity is test_kernel_parity.py, the public API against
numpy (layers, model, optimizers, a training run) test_public_parity.py; both
run the numba backend among the others.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import require_backend

require_backend("numba")
import numba  # noqa: E402

from fastcap._kernels import numba_backend as nb  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------
# float32 math helpers


@numba.njit
def _apply_exp(x, out):
    for k in range(x.shape[0]):
        out[k] = nb._exp(x[k])


@numba.njit
def _apply_sigmoid(x, out):
    for k in range(x.shape[0]):
        out[k] = nb._sigmoid(x[k])


@numba.njit
def _apply_tanh(x, out):
    for k in range(x.shape[0]):
        out[k] = nb._tanh(x[k])


def _grid(lo, hi):
    x = np.concatenate([np.linspace(lo, hi, 200_001), -np.logspace(-30, 0, 1001), np.logspace(-30, 0, 1001),
                        [0.0, -0.0]])
    return x[(x >= lo) & (x <= hi)].astype(np.float32)


@pytest.mark.parametrize(
    "name, apply, exact, lo, hi",
    [("exp", _apply_exp, np.exp, -100.0, 0.0),
     ("sigmoid", _apply_sigmoid, lambda x: 1 / (1 + np.exp(-x)), -100.0, 100.0),
     ("tanh", _apply_tanh, np.tanh, -100.0, 100.0)],
)
def test_float32_math_accuracy(name, apply, exact, lo, hi):
    """The vectorizable float32 exp/sigmoid/tanh are within a few ulp of float64
    (measured: exp 0.8, sigmoid 1.5, tanh 1.3 eps; NumPy's float32 ufuncs 0.9 - 1.7)."""
    x = _grid(lo, hi)
    got = np.empty_like(x)
    apply(x, got)
    want = exact(x.astype(np.float64))
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    rel = np.abs(got[normal] - want[normal]) / np.abs(want[normal])
    assert rel.max() <= 3 * np.finfo(np.float32).eps, f"{name}: max relative error {rel.max():.3g}"
    # below float32's normal range the helpers may flush to zero
    assert np.all(np.abs(got[~normal]) <= np.finfo(np.float32).tiny)
    # special values
    special = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    if name == "exp":
        special = special[[0, 2]]  # exp is only used for x <= 0
    out = np.empty_like(special)
    apply(special, out)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out, exact(special.astype(np.float64)).astype(np.float32))


# ----------------------------------------------------------------------------
# compilation, caching, bounds checking


def _run(code, **env):
    full_env = {**os.environ, **env}
    for k, v in env.items():
        if v is None:
            full_env.pop(k)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=full_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def test_import_compiles_nothing():
    lines = _run("""
        import fastcap
        from numba.core.dispatcher import Dispatcher
        from fastcap._kernels import numba_backend as nb
        assert fastcap.get_backend() == "numba"
        dispatchers = {k: v for k, v in vars(nb).items() if isinstance(v, Dispatcher)}
        print(len(dispatchers), sum(len(d.signatures) for d in dispatchers.values()))
        import numpy as np
        a = np.ones((2, 3))
        nb.rnn_cell_forward(a, a, np.empty_like(a))  # compiles (or loads) exactly this one
        print(sum(len(d.signatures) for d in dispatchers.values()))
    """, FASTCAP_BACKEND="numba")
    n_dispatchers, before = map(int, lines[0].split())
    assert n_dispatchers >= 14 and before == 0
    assert int(lines[1]) == 1


@pytest.mark.parametrize("env, cached", [
    ({"FASTCAP_NUMBA_CACHE": None, "NUMBA_BOUNDSCHECK": None}, True),
    ({"FASTCAP_NUMBA_CACHE": "0", "NUMBA_BOUNDSCHECK": None}, False),
    ({"FASTCAP_NUMBA_CACHE": "1", "NUMBA_BOUNDSCHECK": "1"}, False),
])
def test_cache_switches(env, cached):
    out = _run("""
        from fastcap._kernels import numba_backend as nb
        print(nb.CACHE, nb.rnn_cell_forward._cache.__class__.__name__)
    """, **env)
    flag, cache_class = out[0].split()
    assert flag == str(cached)
    assert (cache_class == "NullCache") != cached


def test_boundscheck_env_compiles_bounds_checks():
    """With NUMBA_BOUNDSCHECK=1 a kernel given an out-of-range index raises instead of reading
    past the array (so the parity suite under that variable really checks bounds)."""
    out = _run("""
        import numpy as np
        from fastcap._kernels import numba_backend as nb
        try:
            nb.embedding_backward(np.ones((1, 2)), np.array([3]), np.empty((3, 2)))  # row 3 of 3
        except IndexError:
            print("IndexError")
    """, NUMBA_BOUNDSCHECK="1")
    assert out == ["IndexError"]
