"""First-call cost per backend, each in a fresh process (benchmarks/firstcall.py):
import, then the first and the steady-state time of a training step and of
sampling. Numba compiles lazily, so its first calls include compilation; it is
measured with the on-disk cache off (FASTCAP_NUMBA_CACHE=0), and on with an
empty cache directory (compile and write) and then again (load from it).
The numbers go to ``extra_info["result"]``; the timed value is the whole
subprocess (interpreter start included).
"""
import json
import os
import subprocess
import sys

import pytest
from conftest import BACKENDS, require_backend
from host_probes import THREADS_ENV

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = {"numba": ["off", "on, cold", "on, warm"]}


def run_firstcall(backend, env_extra, threads):
    env = dict(os.environ, FASTCAP_BACKEND=backend, **{THREADS_ENV: str(threads)}, **env_extra)
    proc = subprocess.run([sys.executable, os.path.join(HERE, "firstcall.py")], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_bench_firstcall(benchmark, backend_name, tmp_path, threads):
    require_backend(backend_name)
    benchmark.group = "first call (fresh process)"
    rows = []
    cache_dir = str(tmp_path / "numba-cache")
    for mode in MODES.get(backend_name, ["n/a"]):
        env = {}
        if backend_name == "numba":
            env = {"FASTCAP_NUMBA_CACHE": "0" if mode == "off" else "1", "NUMBA_CACHE_DIR": cache_dir}
        rows.append((mode, env))
    results = {}

    def run_all():
        for mode, env in rows:
            results[mode] = run_firstcall(backend_name, env, threads)

    benchmark.pedantic(run_all, rounds=1, iterations=1)
    # one benchmark per backend in the JSON; the rows go in extra_info
    benchmark.extra_info.update(kind="firstcall_all", impl=backend_name, threads=threads,
                                results=results)
    errors = {m: r["error"] for m, r in results.items() if "error" in r}
    assert not errors, errors
