"""Shared setup of the benchmark suite: threads, the environment record, and the
fixtures and helpers every benchmark uses (run with `fastcap bench`, or
`pytest benchmarks/ --benchmark-...`; the normal `pytest` run never collects it).

* fastcap: run by `fastcap bench`, the suite must import the fastcap the
  command imported (bench_runner.py passes its path); another one (e.g. a
  source tree on PYTHONPATH) stops the run before anything is measured.
* Threads: every measurement runs with FASTCAP_BENCH_THREADS threads (default:
  every core this process may use), set once for the whole session, for
  fastcap (``host_probes.apply_threads``: BLAS and OpenMP) and for PyTorch
  (``torch.set_num_threads``).
* Every benchmark records in ``extra_info`` what it measures (``kind``: kernel,
  gemm, train, sample, firstcall), which implementation (``impl``: a fastcap
  backend name, ``cs231n`` or ``torch``) and the threads it ran with;
  bench_report.py builds its tables from those fields.
* The machine, library versions, BLAS and thread settings the suite actually
  ran with go into the JSON report under ``fastcap_environment``.
* JIT compilation is never timed in the throughput benchmarks: ``measure``
  runs the function (``warmup`` times) before pytest-benchmark starts timing.
  First-call costs are measured on their own in fresh processes
  (test_bench_firstcall.py).
"""
import pathlib

import pytest
from bench_runner import EXPECT_ENV
from host_probes import apply_threads, bench_threads, cpu_snapshot, gemm_probe, run_environment
from peers import PEERS, TORCH_PEERS
from workload import BF16_IMPLS

import fastcap
from fastcap.runtime import backends as _backend, env as _env, names

BACKENDS = tuple(names.BACKENDS)

_threads = {}  # what apply_threads reported
_start = {}  # cpu_snapshot() when the session began
_probes = {}  # gemm_probe() at the start and at the end of the session


def pytest_configure(config):
    expected = _env.read(EXPECT_ENV)
    if expected and pathlib.Path(fastcap.__file__).resolve() != pathlib.Path(expected):
        raise pytest.UsageError(f"the benchmarks imported {fastcap.__file__}, not the fastcap `fastcap bench` "
                                f"runs with ({expected}): is a source tree on PYTHONPATH?")
    _threads.update(apply_threads(bench_threads()))
    if config.getoption("benchmark_disable", False) is False:
        _probes["start"] = gemm_probe(_threads["threads"])
    _start.update(cpu_snapshot())


def pytest_report_header(config):
    t = _threads
    return [(f"fastcap bench: {t.get('threads')} threads via {t.get('method')}; "
            f"backends available: {', '.join(fastcap.available_backends())}")]


def pytest_benchmark_update_json(config, benchmarks, output_json):
    if "start" in _probes:
        _probes["end"] = gemm_probe(_threads["threads"])
    output_json["fastcap_environment"] = run_environment(_threads, since=_start or None, probes=_probes)


def require_backend(name):
    """Skip, with the reason, when fastcap backend `name` does not load here."""
    if name not in fastcap.available_backends():
        pytest.skip(f"fastcap backend {name!r} not available: "
                    f"{_backend.unavailable_reasons().get(name, 'unknown reason')}")


def torch_peer():
    """The PyTorch peer module, threads matched to fastcap's; skips without torch."""
    try:
        import torch  # noqa: F401
    except ImportError:
        from fastcap.runtime.install import install_hint

        pytest.skip(f"PyTorch is not installed: the PyTorch peer needs the [torch] extra "
                    f"({install_hint('torch')}; torch 2.13.0, the CPU build: see the README)")
    from peers import torch_peer as tp

    _threads["torch_threads"] = tp.set_threads(_threads["threads"])
    return tp


def measure(benchmark, fn, *, kind, impl, group, warmup=1, **extra):
    """Time fn with pytest-benchmark after `warmup` untimed calls (JIT, caches, allocator)."""
    benchmark.group = group
    benchmark.extra_info.update(kind=kind, impl=impl, threads=_threads["threads"],
                                threads_via=_threads["method"], **extra)
    if impl in TORCH_PEERS:
        benchmark.extra_info["torch_threads"] = _threads.get("torch_threads")
    for _ in range(warmup):
        fn()
    return benchmark(fn)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each fastcap backend in turn, made active for the benchmark."""
    require_backend(request.param)
    with fastcap.use_backend(request.param):
        yield request.param


@pytest.fixture(params=BACKENDS + BF16_IMPLS + tuple(PEERS))
def impl(request):
    """Each fastcap backend, the bf16 mode and each peer in turn (a backend and a precision
    are made active)."""
    name = request.param
    if name in PEERS:
        if name in TORCH_PEERS:
            torch_peer()
        yield name
        return
    backend, _, precision = name.partition("-")
    require_backend(backend)
    with fastcap.use_backend(backend), fastcap.use_precision("bfloat16" if precision else "float32"):
        yield name


@pytest.fixture
def threads():
    return _threads["threads"]
