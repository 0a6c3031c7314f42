import os

import numpy as np
import pytest

import fastcap
from fastcap import _backend

COMPILED = [name for name in ("numba", "cython") if name in fastcap.available_backends()]
# CI installs and builds every backend: there, a missing one is a failure, not a skip.
REQUIRE_ALL = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(params=["numpy", "numba", "cython"])
def backend(request):
    """Every backend in turn, made active for the test."""
    name = request.param
    if name not in fastcap.available_backends():
        if REQUIRE_ALL:
            pytest.fail(f"backend {name!r} is unavailable in CI: {_backend.unavailable_reasons().get(name)}")
        pytest.skip(f"backend {name!r} not available here: {_backend.unavailable_reasons().get(name)}")
    with fastcap.use_backend(name):
        yield name


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def cython_module():
    """The compiled module the cython backend uses here (the best build this
    CPU runs); skipped (failed in CI) when it is not built."""
    if "cython" not in fastcap.available_backends():
        why = _backend.unavailable_reasons().get("cython")
        if REQUIRE_ALL:
            pytest.fail(f"the cython backend is unavailable in CI: {why}")
        pytest.skip(f"the cython backend is not built here: {why}")
    return _backend.load("cython").module
