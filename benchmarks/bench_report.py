"""``fastcap bench``: run the benchmark suite and write a speedup report.

The suite lives in the source tree's ``benchmarks/`` directory (pytest-benchmark
files ``test_bench_*.py``, outside the normal test run). This command finds it
(``--benchmarks-dir``, ``$FASTCAP_BENCHMARKS_DIR``, the checkout fastcap was
installed from, or ``./benchmarks``), runs it with pytest in a subprocess, and
writes into ``--out`` (default ``bench-results/``):

* ``benchmark.json``: pytest-benchmark's raw JSON of the run, with the machine,
  library versions, BLAS and thread settings under ``fastcap_environment``;
* ``speedups.md``: medians and speedup tables built from that one run: every
  fastcap backend against the fastcap NumPy backend, the CS231n-style NumPy
  peer and PyTorch (speedup = the other's median / the backend's median);
* ``speedups.png``: the same as a chart.

``fastcap bench --from-json FILE`` rebuilds the report from an earlier JSON
without running anything. Run ``fastcap bench --help`` for the options.
"""
import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

__all__ = ["main", "apply_threads", "default_threads", "environment_info", "cpu_snapshot", "contention",
           "gemm_probe", "probe_verdict",
           "write_report"]

PROG = "fastcap bench"
BACKENDS = ("numpy", "numba", "cython")
PEERS = {"cs231n": "CS231n-style NumPy", "torch": "PyTorch"}
IMPL_LABELS = {"numpy": "fastcap numpy", "numba": "fastcap numba", "cython": "fastcap cython", **PEERS}
# pytest-benchmark settings; --quick trades precision for a run of a few minutes.
FULL_OPTS = ["--benchmark-min-rounds=5", "--benchmark-max-time=1.0", "--benchmark-warmup=off"]
QUICK_OPTS = ["--benchmark-min-rounds=3", "--benchmark-max-time=0.1", "--benchmark-warmup=off"]

_limits = []  # threadpoolctl limiters kept alive for the life of the process


# ------------------------------------------------------------------ threads and environment


def default_threads():
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def apply_threads(n=None):
    """Use `n` threads (default: all cores) for every thread pool fastcap's work can reach.

    BLAS through ``fastcap.set_num_threads``, and the OpenMP pools (the Cython
    backend's ``prange``, when enabled) through threadpoolctl, so that nothing
    runs with more threads than the report states. Returns {"threads": n, "method": how}.
    """
    import fastcap
    from threadpoolctl import threadpool_limits

    n = default_threads() if n is None else int(n)
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
        result[str(n)] = round(flop / best / 1e9, 1)
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
    result["gemv_GBps"] = round(w.nbytes / best / 1e9, 1)
    return result


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


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "fma", "avx512f") if x in flags]
    except OSError:
        pass
    return None


def environment_info(threads=None, since=None, probes=None):
    """What a measurement ran with: machine, versions, BLAS, threads (a JSON-able dict).
    ``since``: a cpu_snapshot() from the start of the run, to report contention;
    ``probes``: {"start": gemm_probe(...), "end": gemm_probe(...)}."""
    import fastcap
    from fastcap import _backend

    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": default_threads(),
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {"fastcap": fastcap.__version__, "numpy": _version("numpy"),
                     "numba": _version("numba"), "cython": _version("Cython"),
                     "torch": _version("torch"), "threadpoolctl": _version("threadpoolctl"),
                     "pytest-benchmark": _version("pytest-benchmark")},
        "backends_available": fastcap.available_backends(),
        "backends_unavailable": _backend.unavailable_reasons(),
        "threads": dict(threads or {}),
        "env": {k: os.environ.get(k) for k in (
            "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "NUMBA_NUM_THREADS", "FASTCAP_NUMBA_CACHE", "FASTCAP_BACKEND")},
    }
    if since is not None:
        info["contention"] = contention(since, cpu_snapshot())
    if probes:
        info["gemm_probe"] = dict(probes)
    cy = getattr(_backend._loaded.get("cython"), "module", None)  # the build in use
    info["cython_module"] = getattr(cy, "__file__", None)
    info["cython_build"] = dict(getattr(cy, "BUILD_INFO", None) or {}) or None
    if hasattr(cy, "ENGINE_INFO"):
        info["engine"] = dict(cy.ENGINE_INFO, threads=cy.get_num_threads(), on=cy.engine_on())
    if "numba" in sys.modules:
        # Reported without starting it (numba.get_num_threads() would).
        from numba.np.ufunc import parallel

        info["numba_pool_started"] = bool(getattr(parallel, "_is_initialized", False))
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
    try:
        from threadpoolctl import threadpool_info

        keys = ("user_api", "internal_api", "version", "architecture", "num_threads",
                "threading_layer", "prefix", "filepath")
        info["threadpools"] = [{k: p.get(k) for k in keys} for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = None
    return info


# ------------------------------------------------------------------ the report


def _median(b):
    return b["stats"]["median"]


def _collect(benchmarks):
    """{kind: {group: {impl: benchmark}}} in the suite's order."""
    out = {}
    for b in benchmarks:
        extra = b.get("extra_info") or {}
        kind, impl = extra.get("kind"), extra.get("impl")
        if kind and impl:
            out.setdefault(kind, {}).setdefault(b["group"], {})[impl] = b
    return out


def _fmt_time(seconds):
    if seconds is None:
        return "–"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds * 1e6:.3g} µs"


def _fmt_ratio(other, mine):
    if other is None or mine is None or mine <= 0:
        return "–"
    return f"{other / mine:.2f}×"


def _env_lines(env, meta):
    v = env.get("versions", {})
    t = env.get("threads", {})
    lines = [
        (f"- Run: {env.get('date', '?')}; `{meta.get('command', PROG)}`"
        f"{' (quick: fewer rounds)' if meta.get('quick') else ''}; pytest-benchmark "
        f"{v.get('pytest-benchmark')} ({' '.join(meta.get('pytest_benchmark_opts', [])) or 'defaults'})"),
        (f"- CPU: {env.get('cpu_model')} ({', '.join(env.get('cpu_flags') or []) or '?'}), "
        f"{env.get('logical_cores')} logical cores, {env.get('usable_cores')} usable; "
        f"{env.get('platform')}"),
        f"- Threads: fastcap {t.get('threads')} (set with {t.get('method')}); PyTorch "
        f"{env.get('torch_threads', t.get('torch_threads', 'not loaded'))}"
        + ("; Numba's thread pool: started (fastcap's kernels do not use it)" if env.get("numba_pool_started")
           else "; Numba's thread pool: never started" if "numba_pool_started" in env else ""),
        (f"- Versions: Python {env.get('python')}, fastcap {v.get('fastcap')}, NumPy {v.get('numpy')}, "
        f"Numba {v.get('numba')}, Cython {v.get('cython')} (compiled fastcap module: "
        f"{_cython_build(env)}), PyTorch {v.get('torch') or 'not installed'}"),
    ]
    for p in env.get("threadpools") or []:
        lines.append(
            f"- Thread pool: {p.get('internal_api')} {p.get('version')} ({p.get('user_api')}), "
            f"core type {p.get('architecture') or '–'}, {p.get('num_threads')} threads, "
            f"{p.get('threading_layer') or '–'} threading, `{os.path.basename(p.get('filepath') or '')}`"
        )
    core = (env.get("env") or {}).get("OPENBLAS_CORETYPE")
    lines.append(f"- OPENBLAS_CORETYPE: {core if core else 'unset (OpenBLAS picks its kernels from the CPU)'}")
    busy = env.get("contention") or {}
    if "other_cores" in busy:
        load = busy["other_cores"]
        lines.append(f"- Other processes kept {load:.2f} of {env.get('usable_cores')} cores busy on average "
                     f"during the {busy['wall_s']:.0f} s run"
                     + (" (**the machine was not quiet: these numbers are disturbed**)" if load > 0.2 else
                        " (a quiet machine)"))
    probes = env.get("gemm_probe") or {}
    if probes:
        n = (env.get("threads") or {}).get("threads") or 1
        def fmt(probe):
            gflops = " / ".join(f"{k} thread{'s' if k != '1' else ''} {v:g}" for k, v in (probe or {}).items()
                                if k.isdigit())
            gemv = (probe or {}).get("gemv_GBps")
            return gflops + (f" GFLOP/s, 8 MB vector-matrix product {gemv:g} GB/s" if gemv else " GFLOP/s")

        verdict = probe_verdict(probes.get("start"), probes.get("end"), int(n))
        lines.append(f"- Host probe (1024^3 float32 GEMM, best of 3): at the start {fmt(probes.get('start'))}; "
                     f"at the end {fmt(probes.get('end'))}"
                     + (f" (**the host did not give this run its cores: {verdict}**)" if verdict
                        else " (steady, every thread had a core)"))
    missing = env.get("backends_unavailable") or {}
    lines.append(f"- fastcap backends measured: {', '.join(env.get('backends_available', []))}"
                 + "".join(f"; `{k}` unavailable: {r}" for k, r in missing.items()))
    return lines


def _cython_build(env):
    if not env.get("cython_module"):
        return "absent"
    isa = (env.get("cython_build") or {}).get("isa")
    engine = env.get("engine") or {}
    if engine:
        return (f"the {isa} build; recurrent engine {engine.get('isa')}, {engine.get('vector_width')}-float "
                f"vectors, {engine.get('threads')} threads{'' if engine.get('on', True) else ', switched off'}")
    return f"the {isa} build" if isa else "present"


def _step_tables(groups, title, what):
    """Medians per implementation, then each fastcap backend's speedups."""
    if not groups:
        return []
    impls = [i for i in (*BACKENDS, *PEERS) if any(i in g for g in groups.values())]
    lines = [f"## {title}", "", what, "",
             "| workload | " + " | ".join(IMPL_LABELS[i] for i in impls) + " |",
             "|---|" + "---:|" * len(impls)]
    for group, by in groups.items():
        lines.append(f"| {group} | " + " | ".join(_fmt_time(_median(by[i])) if i in by else "–"
                                                   for i in impls) + " |")
    lines += ["", ("Speedup of each fastcap backend (median of the other / median of the backend; "
              "above 1× means the fastcap backend is faster):"), "",
              "| workload | backend | median | vs fastcap numpy | vs CS231n-style NumPy | vs PyTorch |",
              "|---|---|---:|---:|---:|---:|"]
    for group, by in groups.items():
        med = {i: _median(b) for i, b in by.items()}
        for be in BACKENDS:
            if be in med:
                lines.append(f"| {group} | {be} | {_fmt_time(med[be])} | "
                             f"{_fmt_ratio(med.get('numpy'), med[be])} | "
                             f"{_fmt_ratio(med.get('cs231n'), med[be])} | "
                             f"{_fmt_ratio(med.get('torch'), med[be])} |")
    return lines + [""]


def _kernel_table(groups):
    if not groups:
        return []
    compiled = [b for b in BACKENDS[1:] if any(b in g for g in groups.values())]
    head = "| kernel | fastcap numpy | " + " | ".join(f"{b} | {b} vs numpy" for b in compiled) + " |"
    lines = ["## Kernels", "",
             ("One call of each kernel of the kernel table at the workload shapes "
             "(M = N·16 rows; update rules on a 512×2048 array): medians, and the speedup "
             "of each compiled backend over the NumPy reference backend."), "",
             head, "|---|---:|" + "---:|---:|" * len(compiled)]
    for group, by in groups.items():
        med = {i: _median(b) for i, b in by.items()}
        cells = [_fmt_time(med.get("numpy"))]
        for b in compiled:
            cells += [_fmt_time(med.get(b)), _fmt_ratio(med.get("numpy"), med.get(b))]
        lines.append(f"| {group.removeprefix('kernel ')} | " + " | ".join(cells) + " |")
    return lines + [""]


def _gemm_table(groups):
    if not groups:
        return []
    lines = ["## GEMM throughput (float32, NumPy `@`, the BLAS above)", "",
             "The matrix products of one training step at N = 100 (M = 1600 rows).", "",
             "| GEMM | shape (m×k @ k×n) | threads | median | GFLOP/s |", "|---|---|---:|---:|---:|"]
    for group, by in groups.items():
        for impl, b in sorted(by.items(), key=lambda kv: kv[1]["extra_info"].get("gemm_threads", 0)):
            e = b["extra_info"]
            lines.append(f"| {group.removeprefix('gemm ')} | {e.get('shape')} | {e.get('gemm_threads')} | "
                         f"{_fmt_time(_median(b))} | {e['flops'] / _median(b) / 1e9:.0f} |")
    return lines + [""]


def _firstcall_table(groups):
    rows = [(b["extra_info"]["impl"], mode, r) for by in groups.values() for b in by.values()
            for mode, r in (b["extra_info"].get("results") or {}).items()]
    if not rows:
        return []
    phases = ("train_rnn", "train_lstm", "sample_rnn", "sample_lstm")  # the order they run in
    lines = ["## First call (a fresh process per row; compilation is excluded from every table above)", "",
             ("Seconds. `import`: `import fastcap` with that backend selected. Then, in this order, "
             "the first call and the best later call of a training step (N = 25) and of sampling "
             "30 words (batch 1), RNN then LSTM: the first column also pays one-time start-up "
             "(Numba's LLVM set-up, loading cached code). `compile overhead`: the sum of (first - later). "
             "Numba cache: off is FASTCAP_NUMBA_CACHE=0; on, cold compiles into an empty "
             "NUMBA_CACHE_DIR; on, warm is the next process, loading from it."), "",
             ("| backend | Numba cache | import | RNN step first / later | LSTM step first / later | "
             "RNN sample first / later | LSTM sample first / later | compile overhead | "
             "import + first calls |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for impl, mode, r in rows:
        if "error" in r:
            lines.append(f"| {impl} | {mode} | failed: {r['error']} | | | | | | |")
            continue
        overhead = sum(r[f"{p}_first"] - r[f"{p}_steady"] for p in phases)
        total = r["import"] + sum(r[f"{p}_first"] for p in phases)
        lines.append(f"| {impl} | {mode} | {r['import']:.2f} | "
                     + " | ".join(f"{r[f'{p}_first']:.3f} / {r[f'{p}_steady']:.3f}" for p in phases)
                     + f" | {overhead:.2f} | {total:.2f} |")
    return lines + [""]


# The speed targets the suite tracks: (label, kind, group, other impl, at least).
# Training and sampling compare the whole step; kernels the summed medians of
# the listed groups (the LSTM cell target counts forward plus backward).
TARGETS = [
    *[(f"train {c} N={n} vs PyTorch", "train", [f"train {c} N={n}"], "torch", 1.5)
      for c in ("rnn", "lstm") for n in (25, 100)],
    *[(f"train {c} N={n} vs CS231n-style NumPy", "train", [f"train {c} N={n}"], "cs231n", 3.0)
      for c in ("rnn", "lstm") for n in (25, 100)],
    ("sample lstm batch=100 vs PyTorch", "sample", ["sample lstm batch=100"], "torch", 1.3),
    ("sample lstm batch=1 vs PyTorch", "sample", ["sample lstm batch=1"], "torch", 2.0),
    ("embedding_backward N=100 vs fastcap numpy", "kernel", ["kernel embedding_backward N=100"], "numpy", 20.0),
    ("softmax_loss N=100 vs fastcap numpy", "kernel", ["kernel softmax_loss N=100"], "numpy", 3.0),
    ("LSTM cell forward + backward N=100 vs fastcap numpy", "kernel",
     ["kernel lstm_cell_forward N=100", "kernel lstm_cell_backward N=100"], "numpy", 3.0),
    ("adam_update vs fastcap numpy", "kernel", ["kernel adam_update 512x2048"], "numpy", 3.0),
]
# A step within this factor of the time its matrix products need at the
# host's large-GEMM rate, and this speedup from 1 thread to all of them.
LIMIT_TARGET = 1.6
THREADS_TARGET = 1.7


def target_rows(kinds):
    """[(label, target, {backend: ratio or None})] for every target of TARGETS the run measured."""
    rows = []
    for label, kind, groups, other, target in TARGETS:
        found = [kinds.get(kind, {}).get(g) for g in groups]
        if not all(found) or not all(other in g for g in found):
            continue
        ratios = {}
        for be in BACKENDS[1:]:
            if all(be in g for g in found):
                ratios[be] = sum(_median(g[other]) for g in found) / sum(_median(g[be]) for g in found)
        rows.append((label, target, ratios))
    for group, by1 in kinds.get("train1", {}).items():
        by = kinds.get("train", {}).get(group, {})
        ratios = {be: _median(by1[be]) / _median(by[be]) for be in BACKENDS[1:] if be in by1 and be in by}
        if ratios:
            threads = next(iter(by.values()))["extra_info"].get("threads")
            rows.append((f"{group}: {threads} threads vs 1", THREADS_TARGET, ratios))
    return rows


def gemm_rate(env):
    """The host's large-GEMM rate (FLOP/s) at the run's thread count: the mean
    of the probes at the start and the end of the run, or None."""
    n = str((env.get("threads") or {}).get("threads") or 1)
    probes = [p.get(n) for p in (env.get("gemm_probe") or {}).values() if p and p.get(n)]
    return sum(probes) / len(probes) * 1e9 if probes else None


def limit_rows(kinds, env):
    """[(group, gemm_seconds, {impl: step median / gemm_seconds})] for the training steps."""
    rate = gemm_rate(env)
    rows = []
    for group, by in kinds.get("train", {}).items():
        flops = next((b["extra_info"].get("gemm_flops") for b in by.values()), None)
        if rate and flops:
            need = flops / rate
            rows.append((group, need, {i: _median(b) / need for i, b in by.items()}))
    return rows


def _targets_table(kinds, env=None):
    rows = target_rows(kinds)
    if not rows:
        return []
    compiled = [be for be in BACKENDS[1:] if any(be in r for _, _, r in rows)]
    lines = ["## Targets", "", "Each target as a ratio from this run (the other's median over the "
             "backend's; met when at least the target).", "",
             "| target | at least | " + " | ".join(compiled) + " |", "|---|---:|" + "---:|" * len(compiled)]
    for label, target, ratios in rows:
        cells = [("–" if be not in ratios else
                  f"{ratios[be]:.2f}x " + ("met" if ratios[be] >= target else "**not met**")) for be in compiled]
        lines.append(f"| {label} | {target:g}x | " + " | ".join(cells) + " |")
    limits = limit_rows(kinds, env or {})
    if limits:
        impls = [i for i in (*BACKENDS, *PEERS) if any(i in r for _, _, r in limits)]
        lines += ["", (f"Distance from the limit: each training step's median over the time its matrix "
                  f"products need at this host's large-GEMM rate ({gemm_rate(env) / 1e9:.0f} GFLOP/s, the "
                  f"host probe's 1024^3 GEMM; products counted on the scored positions, "
                  f"benchmarks/workload.py:step_gemm_flops). Target: at most {LIMIT_TARGET:g}x."), "",
                  "| workload | GEMM time | " + " | ".join(IMPL_LABELS[i] for i in impls) + " |",
                  "|---|---:|" + "---:|" * len(impls)]
        for group, need, ratios in limits:
            cells = ["–" if i not in ratios else f"{ratios[i]:.2f}x" + ("" if ratios[i] <= LIMIT_TARGET or
                     i in ("numpy", "cs231n") else " **over**") for i in impls]
            lines.append(f"| {group} | {_fmt_time(need)} | " + " | ".join(cells) + " |")
    return lines + [""]


def report_markdown(data, meta=None):
    meta = meta or data.get("fastcap_bench_meta") or {}
    env = data.get("fastcap_environment") or {}
    kinds = _collect(data.get("benchmarks", []))
    lines = ["# fastcap benchmark report", "",
             ("Workload (DESIGN.md): V = 1004, D = 512, W = 256, H = 512, 17-token captions "
             "(16 scored steps, lengths drawn from the Flickr8k table), float32. All ratios are "
             "ratios of medians from this one run."), ""]
    lines += _env_lines(env, meta) + [""]
    lines += _targets_table(kinds, env)
    lines += _step_tables(kinds.get("train", {}), "Training step",
                          "One training step: `model.loss` on a minibatch and an Adam update of every "
                          "parameter (as CaptioningSolver.step). Peers: the CS231n-style NumPy solution "
                          "(benchmarks/peers/cs231n_numpy.py) and PyTorch nn.LSTM/nn.RNN + torch.optim.Adam "
                          "(benchmarks/peers/torch_peer.py).")
    lines += _step_tables(kinds.get("sample", {}), "Greedy sampling",
                          "`model.sample(features, max_length=30)`: 30 greedy words "
                          "(`<END>` is never chosen, so every implementation runs all 30 steps).")
    lines += _kernel_table(kinds.get("kernel", {}))
    lines += _gemm_table(kinds.get("gemm", {}))
    lines += _firstcall_table(kinds.get("firstcall_all", {}))
    return "\n".join(lines)


def write_chart(data, path):
    """A PNG: training/sampling medians per implementation, and kernel speedups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = _collect(data.get("benchmarks", []))
    steps = {**kinds.get("train", {}), **kinds.get("sample", {})}
    kern = kinds.get("kernel", {})
    impls = [i for i in (*BACKENDS, *PEERS) if any(i in g for g in steps.values())]
    compiled = [b for b in BACKENDS[1:] if any(b in g for g in kern.values())]
    rows = max(len(steps) * len(impls), len(kern) * max(len(compiled), 1))
    fig, axes = plt.subplots(1, 2, figsize=(15, min(max(5, 0.17 * rows), 12)))
    ax = axes[0]
    names = list(steps)
    height = 0.8 / max(len(impls), 1)
    for k, impl in enumerate(impls):
        ys = [i + k * height for i in range(len(names))]
        vals = [_median(steps[g][impl]) * 1e3 if impl in steps[g] else 0 for g in names]
        ax.barh(ys, vals, height=height, label=IMPL_LABELS[impl])
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time per call (ms, log scale; shorter is faster)")
    ax.set_title("Training step and greedy sampling")
    ax.legend(fontsize=8)
    ax = axes[1]
    names = list(kern)
    if compiled:
        height = 0.8 / len(compiled)
        for k, be in enumerate(compiled):
            ys = [i + k * height for i in range(len(names))]
            vals = [_median(kern[g]["numpy"]) / _median(kern[g][be])
                    if be in kern[g] and "numpy" in kern[g] else 0 for g in names]
            ax.barh(ys, vals, height=height, label=f"fastcap {be}")
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))],
                      [g.removeprefix("kernel ") for g in names], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("speedup over the fastcap NumPy backend (log scale)")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no compiled backend was available", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("Kernels")
    env = data.get("fastcap_environment") or {}
    fig.suptitle(f"fastcap benchmarks: {env.get('cpu_model', '?')}, "
                 f"{(env.get('threads') or {}).get('threads', '?')} threads", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(json_path, out_dir, meta=None):
    """speedups.md (and speedups.png when matplotlib is installed) from a JSON report."""
    with open(json_path) as f:
        data = json.load(f)
    out_dir = pathlib.Path(out_dir)
    md = report_markdown(data, meta)
    (out_dir / "speedups.md").write_text(md + "\n")
    written = [out_dir / "speedups.md"]
    if importlib.util.find_spec("matplotlib") is None:
        print(f"{PROG}: matplotlib is not installed, so no chart "
              "(`pip install matplotlib` or `pip install -e .[plot]`)", file=sys.stderr)
    else:
        write_chart(data, out_dir / "speedups.png")
        written.append(out_dir / "speedups.png")
    return md, written


# ------------------------------------------------------------------ running the suite


def find_benchmarks_dir(explicit=None):
    """The suite's directory, or None. Order: explicit, $FASTCAP_BENCHMARKS_DIR,
    the source tree next to the fastcap package (a checkout or an editable
    install), ./benchmarks."""
    candidates = [explicit] if explicit else []
    candidates += [os.environ.get("FASTCAP_BENCHMARKS_DIR")]
    candidates += [pathlib.Path(__file__).resolve().parent.parent / "benchmarks",
                   pathlib.Path.cwd() / "benchmarks"]
    for c in candidates:
        if c and (pathlib.Path(c) / "conftest.py").is_file() and (pathlib.Path(c) / "workload.py").is_file():
            return pathlib.Path(c).resolve()
        if explicit:  # an explicit directory that is not the suite is an error, not a fallback
            return None
    return None


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run fastcap's benchmark suite (pytest-benchmark) and write a speedup report: "
                    "every fastcap backend against the NumPy backend, a CS231n-style NumPy "
                    "implementation and PyTorch.",
        epilog="Extra pytest arguments can follow `--`, e.g. `fastcap bench -- -x`.")
    p.add_argument("--out", default="bench-results", metavar="DIR",
                   help="directory for benchmark.json, speedups.md and speedups.png (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="fewer rounds (a smoke run of a few minutes, noisier numbers)")
    p.add_argument("--filter", metavar="EXPR", help="only benchmarks matching this pytest -k expression")
    p.add_argument("--threads", type=int, metavar="N",
                   help=f"threads for fastcap and PyTorch (default: all cores, here {default_threads()})")
    p.add_argument("--benchmarks-dir", metavar="DIR",
                   help="the suite's directory (default: benchmarks/ of the fastcap source tree)")
    p.add_argument("--from-json", metavar="FILE",
                   help="do not run anything: rebuild the report from this benchmark JSON")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1:]
    args = _parser().parse_args(argv)
    out = pathlib.Path(args.out)
    if args.threads is not None and args.threads < 1:
        print(f"{PROG}: error: --threads must be at least 1", file=sys.stderr)
        return 2

    if args.from_json:
        out.mkdir(parents=True, exist_ok=True)
        md, written = write_report(args.from_json, out)
        print(md)
        print(f"\n{PROG}: wrote {', '.join(map(str, written))}")
        return 0

    bench_dir = find_benchmarks_dir(args.benchmarks_dir)
    if bench_dir is None:
        where = (f"{args.benchmarks_dir} is not it" if args.benchmarks_dir else
                 "it is not next to the installed fastcap package nor in ./benchmarks")
        print(f"{PROG}: error: cannot find the benchmark suite ({where}). The suite lives in the "
              "fastcap source tree's benchmarks/ directory (conftest.py, workload.py, test_bench_*.py): "
              "run from a checkout, install with `pip install -e .`, or pass --benchmarks-dir DIR "
              "(or set FASTCAP_BENCHMARKS_DIR).", file=sys.stderr)
        return 2
    missing = [m for m in ("pytest", "pytest_benchmark") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"{PROG}: error: {' and '.join(missing)} not installed; install the test extra: "
              "`pip install -e .[test]` (or `pip install pytest pytest-benchmark`)", file=sys.stderr)
        return 2

    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "benchmark.json"
    if json_path.exists():
        json_path.unlink()
    threads = args.threads or default_threads()
    bench_opts = QUICK_OPTS if args.quick else FULL_OPTS
    cmd = [sys.executable, "-m", "pytest", str(bench_dir), "-p", "no:cacheprovider",
           f"--benchmark-json={json_path}", "--benchmark-sort=fullname",
           "--benchmark-columns=min,median,max,rounds,iterations", *bench_opts]
    if args.filter:
        cmd += ["-k", args.filter]
    cmd += extra
    env = dict(os.environ, FASTCAP_BENCH_THREADS=str(threads))
    if args.quick:
        env["FASTCAP_BENCH_QUICK"] = "1"
    print(f"{PROG}: {threads} threads; running {' '.join(cmd)}", flush=True)
    rc = subprocess.call(cmd, env=env)
    if rc == 5:
        print(f"{PROG}: error: no benchmark was selected"
              + (f" by --filter {args.filter!r}" if args.filter else ""), file=sys.stderr)
        return 5
    if not json_path.exists():
        print(f"{PROG}: error: pytest exited with status {rc} and wrote no {json_path}", file=sys.stderr)
        return rc or 1

    meta = {"command": " ".join(["fastcap bench", *argv] + (["--", *extra] if extra else [])),
            "quick": args.quick, "pytest_benchmark_opts": bench_opts, "pytest_exit_status": rc,
            "benchmarks_dir": str(bench_dir)}
    with open(json_path) as f:
        data = json.load(f)
    data["fastcap_bench_meta"] = meta
    with open(json_path, "w") as f:
        json.dump(data, f, indent=2)
    md, written = write_report(json_path, out, meta)
    print(md)
    print(f"\n{PROG}: wrote {json_path}, {', '.join(map(str, written))}")
    if rc != 0:
        print(f"{PROG}: pytest exited with status {rc} (see the failures above); the report covers "
              "the benchmarks that ran", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
