"""Shared fixtures of the test suite: each backend in turn, the compiled ones, the Cython module, a seeded rng, a small dataset.

Backend names come from the registry (``fastcap.runtime.backends``). A backend that
does not load here skips its tests with the reason; under CI (``CI=true``,
where every backend is built) it fails them instead (``require_backend``).
"""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fastcap
from fastcap.runtime import backends as _backend, names, precision as _precision
from fastcap.data.generated import generate_coco_data

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Child processes import this checkout's fastcap, on the reference backend.
ENV = dict(os.environ, FASTCAP_BACKEND="numpy",
           PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))

BACKENDS = tuple(names.BACKENDS)
REFERENCE = "numpy"
COMPILED = tuple(name for name in BACKENDS if name != REFERENCE)
# CI installs and builds every backend: there, a missing one is a failure, not a skip.
REQUIRE_ALL = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_backend(name):
    """Skip the calling test (or module) unless backend `name` loads here; fail it in CI."""
    if name not in fastcap.available_backends():
        why = _backend.unavailable_reasons().get(name)
        if REQUIRE_ALL:
            pytest.fail(f"backend {name!r} is unavailable in CI: {why}")
        pytest.skip(f"backend {name!r} not available here: {why}", allow_module_level=True)


def fastcap_cmd(*args, timeout=180, cwd=None):
    """``python -m fastcap ARGS`` in a child process (ENV) -> subprocess.CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "fastcap", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout, cwd=cwd)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every backend in turn, made active for the test."""
    require_backend(request.param)
    with fastcap.use_backend(request.param):
        yield request.param


@pytest.fixture(params=COMPILED)
def compiled(request):
    """Every compiled backend in turn, made active for the test (the reference is compared with them)."""
    require_backend(request.param)
    with fastcap.use_backend(request.param):
        yield request.param


@pytest.fixture
def bf16_anywhere(monkeypatch):
    """bfloat16 mode, with the compiled bf16 kernels on whatever CPU this is."""
    monkeypatch.setattr(_precision, "_emulate_anywhere", True)
    with fastcap.use_precision("bfloat16"):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def small_data():
    """A small generated dataset (20 train / 12 val images, 20-dim features), shared read-only."""
    return generate_coco_data(num_train_images=20, num_val_images=12, pca_dim=20, full_dim=20, seed=4)


@pytest.fixture(scope="session")
def cython_module():
    """The compiled module the cython backend uses here (the best build this CPU runs)."""
    require_backend("cython")
    return _backend.load("cython").module
