"""Host probes of a benchmark run: the threads every pool gets, CPU-time
snapshots that show other processes' load, and a GEMM probe of what the host
grants; ``run_environment`` adds them to fastcap's environment report.

Imported by bare name from this directory (the suite's conftest.py,
firstcall.py, profile_step.py and the report), as pytest and the scripts put
it on sys.path.
"""
import os
import time

from fastcap.runtime import env as _env
from fastcap.cli.info import collect
from fastcap.runtime.cpu import usable_cores

__all__ = ["THREADS_ENV", "bench_threads", "apply_threads", "cpu_snapshot", "gemm_probe", "probe_verdict", "contention",
           "run_environment", "usable_cores"]

THREADS_ENV = "FASTCAP_BENCH_THREADS"  # the run's threads, set by bench_runner.py
_limits = []  # threadpoolctl limiters kept alive for the life of the process


def bench_threads():
    """The run's threads: $FASTCAP_BENCH_THREADS, else every usable core."""
    return _env.read(THREADS_ENV) or usable_cores()


def apply_threads(n=None):
    """Use `n` threads (default: all cores) for every thread pool fastcap's work can reach.

    BLAS through ``fastcap.set_num_threads``, and the OpenMP pools (the Cython
    backend's ``prange``, when enabled) through threadpoolctl, so that nothing
    runs with more threads than the report states. Returns {"threads": n, "method": how}.
    """
    import fastcap
    from threadpoolctl import threadpool_limits

    n = usable_cores() if n is None else int(n)
    fastcap.available_backends()  # load every backend, so their thread pools exist
    fastcap.set_num_threads(n)
    _limits.append(threadpool_limits(limits=n, user_api="openmp"))
    return {"threads": n, "method": "fastcap.set_num_threads (blas) + threadpoolctl (openmp)"}


def cpu_snapshot():
    """Wall time, this process's CPU time (with waited-for children) and, on Linux,
    the whole machine's busy CPU time: two snapshots tell how much CPU other
    processes took during a measurement (``contention``)."""
    t = os.times()
    snap = {"wall": time.monotonic(), "own": t.user + t.system + t.children_user + t.children_system}
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        snap["busy"] = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    return snap


def _rate(per_second):
    """A measured rate in giga-units per second, to 4 significant digits (a small probe on a
    busy host is slow, and one decimal would round it to 0)."""
    return float(f"{per_second / 1e9:.4g}")


def gemm_probe(threads, size=1024, repeats=3):
    """GFLOP/s of a size**3 float32 GEMM at 1 thread and at `threads` (best of
    `repeats`), and the GB/s of a vector-matrix product over 8 MB ("gemv_GBps").

    A host that gives this machine less than its cores shows up here: the
    all-threads figure falls toward the 1-thread one (seen on this project's
    2-core VM: 70 GFLOP/s with 2 threads in a quiet hour, 30 in a busy one,
    with /proc/stat showing nothing).
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    out = np.empty_like(a)
    flop = 2.0 * size**3
    result = {}
    for n in sorted({1, int(threads)}):
        with threadpool_limits(limits=n, user_api="blas"):
            np.dot(a, a, out=out)
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                np.dot(a, a, out=out)
                best = min(best, time.perf_counter() - t)
        result[str(n)] = _rate(flop / best)
    # Memory: a vector times an 8 MB matrix (batch-1 decoding's kind of work)
    # reads every weight once, at the bandwidth the host grants.
    w = np.ones((2048, 1024), dtype=np.float32)
    v, y = np.ones((1, 2048), dtype=np.float32), np.empty((1, 1024), dtype=np.float32)
    with threadpool_limits(limits=int(threads), user_api="blas"):
        np.dot(v, w, out=y)
        best = float("inf")
        for _ in range(3 * repeats):
            t = time.perf_counter()
            np.dot(v, w, out=y)
            best = min(best, time.perf_counter() - t)
    result["gemv_GBps"] = _rate(w.nbytes / best)
    bf16 = bf16_gemm_probe(threads, size, repeats)
    if bf16 is not None:
        result["bf16_GFLOPs"] = bf16
    return result


def bf16_gemm_probe(threads, size=1024, repeats=3):
    """GFLOP/s of a size**3 bfloat16 GEMM (float32 sums) at `threads`: PyTorch's
    (oneDNN: vdpbf16ps or AMX tiles), the host's bf16 rate, where the CPU has bf16
    units and PyTorch is installed; else None (NumPy's BLAS has no bf16 GEMM)."""
    from fastcap.runtime import precision as _precision

    if not _precision.native_bf16():
        return None
    try:
        import torch
    except ImportError:
        return None
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        a = torch.randn(size, size).to(torch.bfloat16)
        torch.mm(a, a)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, a)
            best = min(best, time.perf_counter() - t)
    finally:
        torch.set_num_threads(previous)
    return _rate(2.0 * size**3 / best)


def probe_verdict(start, end, threads):
    """None if both probes look like a machine with its cores to itself, else why not."""
    why = []
    for when, probe in (("start", start), ("end", end)):
        if not probe:
            continue
        one, all_ = probe.get("1"), probe.get(str(threads))
        if threads >= 2 and one and all_ and all_ < 1.4 * one:
            why.append(f"at the {when}, {threads} threads ran the GEMM only {all_ / one:.2f}x as fast as 1")
    if start and end and start.get(str(threads)) and end.get(str(threads)):
        a, b = start[str(threads)], end[str(threads)]
        if abs(a - b) > 0.25 * max(a, b):
            why.append(f"the {threads}-thread GEMM ran at {a:g} GFLOP/s at the start and {b:g} at the end")
    return "; ".join(why) or None


def contention(start, end):
    """{'wall_s', 'own_cores', 'other_cores'}: average cores busy with this run / with other processes."""
    wall = max(end["wall"] - start["wall"], 1e-9)
    out = {"wall_s": round(wall, 1), "own_cores": round((end["own"] - start["own"]) / wall, 2)}
    if "busy" in start and "busy" in end:
        other = (end["busy"] - start["busy"]) - (end["own"] - start["own"])
        out["other_cores"] = round(max(other, 0.0) / wall, 2)
    return out




def run_environment(threads=None, since=None, probes=None):
    """fastcap.cli.info.collect() plus what this run ran with: ``threads``
    (apply_threads' result), ``since``: a cpu_snapshot() from the start of the
    run, to report contention; ``probes``: {"start": gemm_probe(...), "end": ...}."""
    info = collect()
    info["threads"] = dict(threads or {})
    if since is not None:
        info["contention"] = contention(since, cpu_snapshot())
    if probes:
        info["gemm_probe"] = dict(probes)
    return info
