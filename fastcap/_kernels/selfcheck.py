"""A compiled build checked once, when it loads, against the NumPy reference on small cases.

Two ``pip install`` runs building one source tree at the same time have left a module whose
bf16 products changed from call to call (setuptools' shared build folder, not fastcap's
code). A build that computes wrong numbers would train and caption wrong without a word, so
each compiled build the registry loads runs, once per process: a tiny LSTM recurrence on the
engine in float32 and in bf16, twice each, and the masked softmax loss; each result must equal
its repeat bit for bit and the reference within float32 (or bf16) rounding. A build that
fails is refused (BackendUnavailableError naming its file and what disagreed; ``auto`` goes
on to the next backend). The cases are small enough to run on the calling thread: no thread
is started and no AMX tile state asked for (that waits for the first large bf16 product).
"""
import warnings

import numpy as np

from . import numpy_backend as reference
from ..runtime import backends

__all__ = ["check"]

_N, _T, _H, _V = 3, 4, 8, 11
_TOL = {False: 1e-5, True: 2e-2}  # scaled error: float32 rounding; bf16 operands' rounding


def _scaled_error(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def _recurrence(kernels, xw, h0, Wh, bf16):
    h = np.empty((xw.shape[0], h0.shape[1]), np.float32)
    kernels.lstm_recurrence_forward(xw, h0, np.zeros_like(h0), kernels.recurrent_pack(Wh, 4, False, bf16),
                                    np.full(_T, _N, np.intp), np.empty_like(xw), np.empty_like(h), h)
    return h


def _softmax(kernels, x, y):
    dx = np.empty_like(x)
    loss = kernels.softmax_loss(x, y, np.ones(y.shape[0], bool), 1.0 / _N, dx)
    return np.append(dx.ravel(), np.float32(loss))


def _disagreements(module):
    """What of ``module``'s results differs from the reference or from its own repeat."""
    rng = np.random.default_rng(2026)
    xw = rng.standard_normal((_N * _T, 4 * _H)).astype(np.float32)
    h0 = rng.standard_normal((_N, _H)).astype(np.float32)
    Wh = (rng.standard_normal((_H, 4 * _H)) / np.sqrt(_H)).astype(np.float32)
    x = rng.standard_normal((_N * _T, _V)).astype(np.float32)
    y = rng.integers(0, _V, _N * _T).astype(np.intp)
    runs = {f"the {'bf16' if bf16 else 'float32'} LSTM recurrence":
            (lambda k, bf16=bf16: _recurrence(k, xw, h0, Wh, bf16), _TOL[bf16]) for bf16 in (False, True)}
    runs["the softmax loss"] = (lambda k: _softmax(k, x, y), _TOL[False])
    problems = []
    for what, (run, tol) in runs.items():
        want = run(reference)
        try:
            first, again = run(module), run(module)
        except Exception as exc:  # a broken build may fail any way it likes: that is wrong too
            problems.append(f"{what} raised {type(exc).__name__}: {' '.join(str(exc).split())[:100]}")
            continue
        if not np.array_equal(first, again, equal_nan=True):
            problems.append(f"{what} changes from call to call")
        elif not np.isfinite(first).all() or _scaled_error(first, want) > tol:
            problems.append(f"{what} is off by {_scaled_error(first, want):.1e} (scaled) from "
                            "the reference")
    return problems


def check(module):
    """Refuse a compiled build (one with BUILD_INFO) whose results are wrong; others pass."""
    if not hasattr(module, "BUILD_INFO"):
        return
    problems = _disagreements(module)
    if problems:
        message = (f"the build {module.__name__} ({getattr(module, '__file__', '?')}) computes wrong "
                   f"results: {'; '.join(problems)}. It was probably left broken by an interrupted "
                   "or concurrent build: rebuild it (pip install -e . or pip install .)")
        # said even where `auto` goes on quietly to the next backend
        warnings.warn(f"fastcap: {message}", RuntimeWarning, stacklevel=2)
        raise backends.BackendUnavailableError(message)


backends.on_load(check)
