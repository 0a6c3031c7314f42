"""FASTCAP_BACKEND, set_backend, use_backend, unknown and unavailable backends."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcap
from fastcap.runtime import backends as _backend, env as _env, names

from conftest import require_backend


def _run(code, **env):
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full)


@pytest.mark.parametrize("name", ["numpy", "auto"])
def test_environment_variable_picks_backend(name):
    r = _run("import fastcap; print(fastcap.get_backend())", FASTCAP_BACKEND=name)
    assert r.returncode == 0, r.stderr
    expected = name if name != "auto" else fastcap.available_backends()[0]
    assert r.stdout.strip() == expected


def test_environment_variable_unknown_name_fails_at_import_listing_valid_names():
    r = _run("import fastcap", FASTCAP_BACKEND="tensorflow")
    assert r.returncode != 0
    assert "FASTCAP_BACKEND='tensorflow'" in r.stderr and "numpy, numba, cython, auto" in r.stderr


def test_set_get_and_context_manager(compiled):
    """use_backend switches to another backend for its block and restores the
    one before, also when the block raises."""
    before = fastcap.get_backend()
    fastcap.set_backend("numpy")
    try:
        assert fastcap.get_backend() == "numpy"
        with fastcap.use_backend(compiled) as kernels:
            assert kernels.name == compiled == fastcap.get_backend()
            assert _backend.kernels() is kernels
        assert fastcap.get_backend() == "numpy" and _backend.kernels().name == "numpy"
        with pytest.raises(ValueError):
            with fastcap.use_backend(compiled):
                raise ValueError("inside")
        assert fastcap.get_backend() == "numpy"  # restored after an exception too
    finally:
        fastcap.set_backend(before)


@pytest.mark.parametrize("missing", [(), ("cython",), ("cython", "numba")])
def test_auto_takes_first_loadable_in_preference_order(monkeypatch, missing):
    """`auto` is the documented order (the compiled engine first, then Numba, then the NumPy
    reference), skipping the backends that do not load: made unloadable here one by one."""
    assert names.AUTO_ORDER == ("cython", "numba", "numpy")
    for name in ("cython", "numba"):
        require_backend(name)
    for name in missing:
        monkeypatch.setitem(names.BACKENDS, name, ("fastcap._kernels.no_such_module", "gone"))
    monkeypatch.setattr(_backend, "_loaded", {k: v for k, v in _backend._loaded.items()
                                              if k not in missing})
    monkeypatch.setattr(_backend, "_why_not", dict(_backend._why_not))
    want = {(): "cython", ("cython",): "numba", ("cython", "numba"): "numpy"}[missing]
    with fastcap.use_backend("auto"):
        assert fastcap.get_backend() == want
    assert fastcap.available_backends() == [n for n in names.AUTO_ORDER if n not in missing]


def test_unavailable_backend_says_what_to_install(monkeypatch):
    # A registered backend whose module cannot be imported.
    monkeypatch.setitem(names.BACKENDS, "numba", ("fastcap._kernels.no_such_module", "install Numba: `pip install numba`"))
    monkeypatch.setattr(_backend, "_loaded", {k: v for k, v in _backend._loaded.items() if k != "numba"})
    with pytest.raises(fastcap.BackendUnavailableError, match="pip install numba"):
        fastcap.set_backend("numba")
    assert "numba" not in fastcap.available_backends()
    with fastcap.use_backend("auto"):
        assert fastcap.get_backend() != "numba"


def test_backend_missing_a_kernel_is_rejected(monkeypatch, tmp_path):
    (tmp_path / "half_backend.py").write_text("def sgd_update(w, dw, lr):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(names.BACKENDS, "numba", ("half_backend", ""))
    monkeypatch.setattr(_backend, "_loaded", {})
    with pytest.raises(RuntimeError, match="lacks kernels: rnn_cell_forward"):
        _backend.load("numba")


def test_forward_of_one_backend_feeds_backward_of_another():
    rng = np.random.default_rng(0)
    x, h0 = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 6))
    Wx, Wh, b = rng.standard_normal((5, 24)), rng.standard_normal((6, 24)), rng.standard_normal(24)
    names = fastcap.available_backends()
    dout = rng.standard_normal((3, 4, 6))
    with fastcap.use_backend("numpy"):
        _, cache = fastcap.lstm_forward(x, h0, Wx, Wh, b)
        want = fastcap.lstm_backward(dout, cache)
    for name in names:
        with fastcap.use_backend(name):
            got = fastcap.lstm_backward(dout, cache)
        for g, w in zip(got, want):
            assert fastcap.rel_error(g, w) < 1e-10


def test_every_backend_takes_the_kernel_tables_arguments(backend):
    """The contract is data: every kernel of every backend takes exactly the table's
    argument names, and a module whose kernel does not is refused."""
    import inspect
    import types

    from fastcap._kernels import KERNELS

    module = _backend.kernels().module
    for name, kernel in KERNELS.items():
        assert tuple(inspect.signature(getattr(module, name)).parameters) == kernel.args, name
        assert set(kernel.writes) <= set(kernel.args), name
    fake = types.ModuleType("fake_backend")
    fake.__dict__.update({k: getattr(module, k) for k in KERNELS})
    _backend.check_kernels("fake", fake)
    fake.adam_update = lambda w, dw, m, v, lr: None  # noqa: E731
    with pytest.raises(RuntimeError, match=r"adam_update\('w', 'dw', 'm', 'v', 'lr'\)"):
        _backend.check_kernels("fake", fake)
    del fake.sgd_update
    with pytest.raises(RuntimeError, match="lacks kernels: sgd_update"):
        _backend.check_kernels("fake", fake)


# ---------------------------------------------------------------- every FASTCAP_* variable
def _bad_value(var):
    """A value the variable refuses, or None if it takes any text (a directory)."""
    for text in ("maybe", "0:", "-1"):
        try:
            var.parse(text)
        except ValueError:
            return text
    return None


CHECKED = [v for v in _env.VARS.values() if _bad_value(v) is not None]


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(_env.VARS)),
       text=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                    max_size=12))  # what an environment can hold
def test_every_variable_is_read_or_refused_naming_itself(name, text):
    """Any text in any FASTCAP_* variable is either a value of its kind or an EnvVarError
    naming the variable and what it takes; a switch is never taken as on by accident."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(name, text)
        try:
            value = _env.read(name)
        except _env.EnvVarError as exc:
            assert str(exc).startswith(f"{name}={text!r}: expected ")
            assert _env.validate() is not None
            return
    if not text.strip():
        assert value == _env.VARS[name].default
    elif _env.VARS[name].parse is _env._switch:
        assert value is (text.strip().lower() in ("1", "on", "yes", "true"))


@pytest.mark.parametrize("var", CHECKED, ids=lambda v: v.name)
def test_a_bad_variable_fails_the_import_and_is_one_usage_line_of_the_command(var):
    """The library raises at import; the command (--help included) prints one line naming
    the variable and exits 2, without a traceback."""
    bad = _bad_value(var)
    r = _run("import fastcap", **{var.name: bad})
    assert r.returncode != 0 and f"{var.name}={bad!r}: expected" in r.stderr
    for args in (["-m", "fastcap", "--help"], ["-m", "fastcap", "train", "--help"],
                 ["-X", "utf8", "-m", "fastcap", "info"]):
        r = subprocess.run([sys.executable, *args], capture_output=True,
                           text=True, env={**os.environ, var.name: bad}, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.splitlines() == [f"fastcap: error: {var.name}={bad!r}: expected "
                                         f"{r.stderr.split(': expected ', 1)[1].strip()}"]
