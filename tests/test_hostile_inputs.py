"""Hostile inputs to the layers and the model never crash the process (issue 11).

Every case of ``tests/hostile_cases.py`` (and every hypothesis property of
``tests/hostile_properties.py``) runs in one child process per backend with
``faulthandler`` on, so a segfault or an abort inside a compiled kernel fails
the test that names the case instead of killing pytest.
"""
import functools
import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import BACKENDS, require_backend

import hostile_cases
import hostile_properties

HERE = pathlib.Path(__file__).resolve().parent



@functools.lru_cache(maxsize=None)
def _child(backend, group):
    """Run one group in a child process -> ({case: record}, crashed case or None, stderr)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run([sys.executable, "-X", "faulthandler", str(HERE / "hostile_cases.py"),
                           backend, group], capture_output=True, text=True, env=env, timeout=600)
    records, last = {}, None
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        if r["outcome"] == "start":
            last = r["case"]
        else:
            records[r["case"]] = r
            last = None
    crashed = None
    if proc.returncode != 0 or "<end>" not in records:
        crashed = f"{last or '(between cases)'}: exit status {proc.returncode}"
    return records, crashed, proc.stderr[-3000:]


def _result(backend, group, case):
    require_backend(backend)
    records, crashed, stderr = _child(backend, group)
    if case not in records:
        pytest.fail(f"the child process crashed in case {crashed} before {case!r} finished "
                    f"(a compiled kernel read or wrote out of bounds?)\n{stderr}")
    return records[case]


@pytest.mark.parametrize("case", list(hostile_cases.CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_case(backend, case):
    r = _result(backend, "cases", case)
    expected = hostile_cases.EXPECTED[case]
    if expected == "ok":
        assert r["outcome"] == "ok", f"{r.get('type')}: {r.get('message')}"
        return
    exc_type, words = expected
    assert r["outcome"] == "error", f"{case} was accepted; expected {exc_type}"
    assert r["type"] == exc_type, f"{r['type']}: {r['message']}"
    for w in words:
        assert w in r["message"], f"{w!r} not in the message: {r['message']}"


@pytest.mark.parametrize("prop", list(hostile_properties.PROPERTIES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_property(backend, prop):
    r = _result(backend, "properties", prop)
    assert r["outcome"] == "ok", f"{r.get('type')}: {r.get('message')}"
