"""Each compiled build is checked once, when it loads, against the NumPy reference (issue 27):
a build whose results change from call to call or differ from the reference is refused,
naming it, and `auto` goes on to the next backend, saying why."""
import types
import warnings

import numpy as np
import pytest

import fastcap
from fastcap._kernels import selfcheck
from fastcap.runtime import backends

from conftest import require_backend


@pytest.fixture
def build():
    require_backend("cython")
    return backends.load("cython").module


def _copy(module, **replaced):
    """A stand-in for a build: `module`'s kernels, some replaced."""
    fake = types.SimpleNamespace(**{k: getattr(module, k) for k in dir(module) if not k.startswith("__")})
    fake.__name__, fake.__file__ = "fastcap._kernels.cython_backend_broken", "/somewhere/broken.so"
    for k, v in replaced.items():
        setattr(fake, k, v)
    return fake


def test_the_build_in_use_passes(build):
    assert selfcheck._disagreements(build) == []
    selfcheck.check(build)


def test_a_build_whose_products_change_from_call_to_call_is_refused(build):
    calls = []

    def drifting(xw, h0, c0, Whp, batch_sizes, ifog_out, c_out, h_out):
        build.lstm_recurrence_forward(xw, h0, c0, Whp, batch_sizes, ifog_out, c_out, h_out)
        calls.append(1)
        h_out[0, 0] += np.float32(1e-6) * (len(calls) % 2)  # what a torn build did: not the same twice

    with pytest.warns(RuntimeWarning, match="computes wrong"), \
            pytest.raises(backends.BackendUnavailableError, match="cython_backend_broken.*"
                          "/somewhere/broken.so.*LSTM recurrence changes from call to call.*rebuild"):
        selfcheck.check(_copy(build, lstm_recurrence_forward=drifting))


def test_a_build_off_from_the_reference_is_refused(build):
    def off(x, y, mask, scale, dx_out):
        return build.softmax_loss(x, y, mask, scale * 1.01, dx_out)

    with pytest.warns(RuntimeWarning), \
            pytest.raises(backends.BackendUnavailableError, match=r"softmax loss is off by 1\.0e-02"):
        selfcheck.check(_copy(build, softmax_loss=off))


def test_a_build_that_raises_is_refused(build):
    def raises(*args):
        raise TypeError("torn")

    with pytest.warns(RuntimeWarning), \
            pytest.raises(backends.BackendUnavailableError, match="softmax loss raised TypeError: torn"):
        selfcheck.check(_copy(build, softmax_loss=raises))


def test_modules_that_are_not_builds_are_not_checked():
    selfcheck.check(types.SimpleNamespace(softmax_loss=None))  # no BUILD_INFO: nothing to check


def test_the_registry_refuses_a_broken_build_and_auto_goes_on(build, monkeypatch):
    """The check runs as the registry loads a backend; refused, `auto` takes the next one and
    says why, and the reason is what `fastcap info` reports."""
    require_backend("numba")
    monkeypatch.setattr(backends, "_loaded", {k: v for k, v in backends._loaded.items() if k != "cython"})
    monkeypatch.setattr(backends, "_why_not", dict(backends._why_not))
    monkeypatch.setattr(build, "softmax_loss", lambda x, y, mask, scale, dx_out: dx_out.fill(0))
    with pytest.warns(RuntimeWarning, match="computes wrong results"):
        with fastcap.use_backend("auto"):
            assert fastcap.get_backend() == "numba"
    assert "softmax loss" in backends.unavailable_reasons()["cython"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(backends.BackendUnavailableError, match="computes wrong"):
            fastcap.set_backend("cython")
