"""The benchmark report: tables, targets and a chart built from one run's
pytest-benchmark JSON (``speedups.md`` and ``speedups.png``).

Every fastcap backend is compared with the fastcap NumPy backend, the
CS231n-style NumPy peer and PyTorch (speedup = the other's median / the
backend's median); the environment section renders the JSON's
``fastcap_environment`` (fastcap.cli.info plus host_probes). Imported by
bare name from this directory (bench_runner.py, tests/test_bench_report.py).
"""
import json
import os
import pathlib

from host_probes import probe_verdict
from peers import PEERS
from workload import BATCHES, BF16_IMPLS, CELLS

from fastcap.runtime import names

BACKENDS = tuple(names.BACKENDS)  # the NumPy reference first

__all__ = ["report_markdown", "write_chart", "write_report", "target_rows", "limit_rows", "gemm_rate",
           "kernel_chart_note",
           "TARGETS", "LIMIT_TARGET", "THREADS_TARGET"]

PROG = "fastcap bench"
COMPILED = BACKENDS[1:]  # the registry lists the NumPy reference first
IMPL_LABELS = {**{b: f"fastcap {b}" for b in BACKENDS},
               **{i: f"fastcap {i.replace('-', ' ')}" for i in BF16_IMPLS}, **PEERS}
IMPLS = (*BACKENDS, *BF16_IMPLS, *PEERS)  # the column order of every table


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


def _env_lines(env, meta, kinds=None):
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
        f"Numba {v.get('numba') or 'not installed'}, Cython "
        f"{v.get('cython') or 'not installed here (it is needed only to build)'} (compiled fastcap "
        f"module: {_cython_build(env)}), PyTorch {v.get('torch') or 'not installed'}"),
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
    absent = [KIND_NAMES[k] for k in KIND_NAMES if k not in (kinds or {})]
    if kinds is not None and absent:
        lines.append(f"- Not in this run: {', '.join(absent)} ({_why_absent(meta)})")
    return lines


# The report's kinds of benchmark rows, as the report names them when a run has none.
KIND_NAMES = {"train": "training steps", "sample": "greedy sampling", "kernel": "kernels",
              "gemm": "GEMM throughput"}


def _why_absent(meta):
    """Why a kind of row is not in the report: what the run left out."""
    if meta.get("filter"):
        return f"filtered out by --filter {meta['filter']!r}"
    return "not selected, or not run: see the run's command"


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
    impls = [i for i in IMPLS if any(i in g for g in groups.values())]
    lines = [f"## {title}", "", what, "",
             "| workload | " + " | ".join(IMPL_LABELS[i] for i in impls) + " |",
             "|---|" + "---:|" * len(impls)]
    for group, by in groups.items():
        lines.append(f"| {group} | " + " | ".join(_fmt_time(_median(by[i])) if i in by else "–"
                                                   for i in impls) + " |")
    lines += ["", ("Speedup of each fastcap backend (median of the other / median of the backend; "
              "above 1× means the fastcap backend is faster):"), "",
              "| workload | backend | median | vs fastcap numpy | vs CS231n-style NumPy | vs PyTorch "
              "| vs PyTorch autocast bf16 |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for group, by in groups.items():
        med = {i: _median(b) for i, b in by.items()}
        for be in (*BACKENDS, *BF16_IMPLS):
            if be in med:
                lines.append(f"| {group} | {be} | {_fmt_time(med[be])} | "
                             f"{_fmt_ratio(med.get('numpy'), med[be])} | "
                             f"{_fmt_ratio(med.get('cs231n'), med[be])} | "
                             f"{_fmt_ratio(med.get('torch'), med[be])} | "
                             f"{_fmt_ratio(med.get('torch-bf16'), med[be])} |")
    return lines + [""]


def _kernel_table(groups):
    if not groups:
        return []
    compiled = [b for b in COMPILED if any(b in g for g in groups.values())]
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


# The speed targets the suite tracks: (label, kind, group, other impl, at least,
# and optionally the mode: "-bf16" compares each backend's bf16 implementation,
# shown in the backend's column). Training and sampling compare the whole
# step; kernels the summed medians of the listed groups (the LSTM cell target
# counts forward plus backward). A target of BF16_VS_TORCH is 1.5x, or 2x on a
# host with AMX tiles (amx_bf16), where PyTorch's bf16 GEMM is fastest.
BF16_VS_TORCH = "1.5x (2x with amx_bf16)"
TARGETS = [
    *[(f"train {c} N={n} vs PyTorch", "train", [f"train {c} N={n}"], "torch", 1.5)
      for c in CELLS for n in BATCHES],
    *[(f"train {c} N={n} vs CS231n-style NumPy", "train", [f"train {c} N={n}"], "cs231n", 3.0)
      for c in CELLS for n in BATCHES],
    ("sample lstm batch=100 vs PyTorch", "sample", ["sample lstm batch=100"], "torch", 1.3),
    ("sample lstm batch=1 vs PyTorch", "sample", ["sample lstm batch=1"], "torch", 2.0),
    ("embedding_backward N=100 vs fastcap numpy", "kernel", ["kernel embedding_backward N=100"], "numpy", 20.0),
    ("softmax_loss N=100 vs fastcap numpy", "kernel", ["kernel softmax_loss N=100"], "numpy", 3.0),
    ("LSTM cell forward + backward N=100 vs fastcap numpy", "kernel",
     ["kernel lstm_cell_forward N=100", "kernel lstm_cell_backward N=100"], "numpy", 3.0),
    ("adam_update vs fastcap numpy", "kernel", ["kernel adam_update 512x2048"], "numpy", 3.0),
    *[(f"train {c} N={n} bf16 vs PyTorch autocast bf16", "train", [f"train {c} N={n}"], "torch-bf16",
       BF16_VS_TORCH, "-bf16") for c in CELLS for n in BATCHES],
    *[(f"train {c} N={n} bf16 vs fastcap float32", "train", [f"train {c} N={n}"], None, 1.6, "-bf16")
      for c in CELLS for n in BATCHES],
    *[(f"sample lstm batch={n} bf16 vs fastcap float32", "sample", [f"sample lstm batch={n}"], None, 1.5,
       "-bf16") for n in (1, 100)],
]
# A step within this factor of the time its matrix products need at the
# host's large-GEMM rate, and this speedup from 1 thread to all of them.
LIMIT_TARGET = 1.6
THREADS_TARGET = 1.7


def _amx(env):
    return "amx_bf16" in ((env or {}).get("cpu_flags") or [])


def target_rows(kinds, env=None):
    """[(label, target, {backend: ratio or None})] for every target of TARGETS the run measured."""
    rows = []
    for label, kind, groups, other, target, *mode in TARGETS:
        mode = mode[0] if mode else ""
        if target == BF16_VS_TORCH:
            target = 2.0 if _amx(env) else 1.5
        found = [kinds.get(kind, {}).get(g) for g in groups]
        if not all(found):
            continue
        ratios = {}
        for be in COMPILED:
            mine, theirs = be + mode, other or be  # other None: the backend's own float32
            if all(mine in g and theirs in g for g in found):
                ratios[be] = sum(_median(g[theirs]) for g in found) / sum(_median(g[mine]) for g in found)
        if ratios:
            rows.append((label, target, ratios))
    for group, by1 in kinds.get("train1", {}).items():
        by = kinds.get("train", {}).get(group, {})
        ratios = {be: _median(by1[be]) / _median(by[be]) for be in COMPILED if be in by1 and be in by}
        if ratios:
            threads = next(iter(by.values()))["extra_info"].get("threads")
            rows.append((f"{group}: {threads} threads vs 1", THREADS_TARGET, ratios))
    return rows


def gemm_rate(env, bf16=False):
    """The host's large-GEMM rate (FLOP/s) at the run's thread count, float32 or
    (bf16) bfloat16: the mean of the probes at the start and the end of the run,
    or None (bf16: the host has no bf16 units, or no PyTorch to measure them)."""
    n = str((env.get("threads") or {}).get("threads") or 1)
    key = "bf16_GFLOPs" if bf16 else n
    probes = [p.get(key) for p in (env.get("gemm_probe") or {}).values() if p and p.get(key)]
    return sum(probes) / len(probes) * 1e9 if probes else None


def _is_bf16(impl):
    return impl.endswith("-bf16")


def limit_rows(kinds, env):
    """[(group, gemm_seconds, {impl: step median / gemm_seconds})] for the training steps:
    float32 implementations against the float32 GEMM rate, bf16 ones against the bf16 rate."""
    rates = {False: gemm_rate(env), True: gemm_rate(env, bf16=True)}
    rows = []
    for group, by in kinds.get("train", {}).items():
        flops = next((b["extra_info"].get("gemm_flops") for b in by.values()), None)
        if rates[False] and flops:
            ratios = {i: _median(b) / (flops / rates[_is_bf16(i)]) for i, b in by.items()
                      if rates[_is_bf16(i)]}
            rows.append((group, flops / rates[False], ratios))
    return rows


def _threads_table(kinds):
    """Training steps at every thread count measured (kinds train1, train2, ... and train)."""
    counts = {}
    for kind, groups in kinds.items():
        if kind.startswith("train") and kind[5:].isdigit():
            counts[int(kind[5:])] = groups
    if not counts:
        return []
    all_ = kinds.get("train", {})
    threads = next((b["extra_info"].get("threads") for g in all_.values() for b in g.values()), None)
    if threads:
        counts[int(threads)] = all_
    ns = sorted(counts)
    lines = ["## Thread scaling", "", "Training step medians at each thread count (every pool limited "
             "to it), and the speedup of all threads over one.", "",
             "| workload | implementation | " + " | ".join(f"{n} thr" for n in ns) + " | speedup |",
             "|---|---|" + "---:|" * (len(ns) + 1)]
    for group in all_:
        for impl in IMPLS:
            cells = [counts[n].get(group, {}).get(impl) for n in ns]
            if sum(c is not None for c in cells) < 2:
                continue
            speed = (_fmt_ratio(_median(cells[0]), _median(cells[-1])) if cells[0] and cells[-1] else "–")
            lines.append(f"| {group} | {IMPL_LABELS[impl]} | "
                         + " | ".join(_fmt_time(_median(c)) if c else "–" for c in cells) + f" | {speed} |")
    return lines + [""]


def _targets_table(kinds, env=None):
    rows = target_rows(kinds, env)
    if not rows:
        return []
    compiled = [be for be in COMPILED if any(be in r for _, _, r in rows)]
    lines = ["## Targets", "", "Each target as a ratio from this run (the other's median over the "
             "backend's; met when at least the target).", "",
             "| target | at least | " + " | ".join(compiled) + " |", "|---|---:|" + "---:|" * len(compiled)]
    for label, target, ratios in rows:
        cells = [("–" if be not in ratios else
                  f"{ratios[be]:.2f}x " + ("met" if ratios[be] >= target else "**not met**")) for be in compiled]
        lines.append(f"| {label} | {target:g}x | " + " | ".join(cells) + " |")
    limits = limit_rows(kinds, env or {})
    if limits:
        impls = [i for i in IMPLS if any(i in r for _, _, r in limits)]
        bf16 = gemm_rate(env, bf16=True)
        lines += ["", (f"Distance from the limit: each training step's median over the time its matrix "
                  f"products need at this host's large-GEMM rate ({gemm_rate(env) / 1e9:.0f} GFLOP/s, the "
                  f"host probe's 1024^3 GEMM"
                  + (f"; bf16 implementations: the bf16 rate, {bf16 / 1e9:.0f} GFLOP/s, PyTorch's bf16 GEMM"
                     if bf16 else "; this host has no bf16 GEMM rate") +
                  f"; products counted on the scored positions, "
                  f"benchmarks/workload.py:step_gemm_flops). Target: at most {LIMIT_TARGET:g}x."), "",
                  "| workload | GEMM time | " + " | ".join(IMPL_LABELS[i] for i in impls) + " |",
                  "|---|---:|" + "---:|" * len(impls)]
        for group, need, ratios in limits:
            cells = ["–" if i not in ratios else f"{ratios[i]:.2f}x" + ("" if ratios[i] <= LIMIT_TARGET or
                     i in ("numpy", "cs231n") else " **over**") for i in impls]
            lines.append(f"| {group} | {_fmt_time(need)} | " + " | ".join(cells) + " |")
    return lines + [""]


def report_markdown(data):
    meta = data.get("fastcap_bench_meta") or {}
    env = data.get("fastcap_environment") or {}
    kinds = _collect(data.get("benchmarks", []))
    lines = ["# fastcap benchmark report", "",
             ("Workload (docs/design.md): V = 1004, D = 512, W = 256, H = 512, 17-token captions "
             "(16 scored steps, lengths drawn from the Flickr8k table), float32. All ratios are "
             "ratios of medians from this one run."), ""]
    lines += _env_lines(env, meta, kinds) + [""]
    lines += _targets_table(kinds, env)
    lines += _threads_table(kinds)
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


def kernel_chart_note(data):
    """What the chart's kernel panel says when it has no compiled backend's bars: that the run
    has no kernel rows (filtered out, or not selected), or that no compiled backend loaded."""
    kern = _collect(data.get("benchmarks", [])).get("kernel", {})
    if not kern:
        return f"no kernel benchmarks in this run\n({_why_absent(data.get('fastcap_bench_meta') or {})})"
    unavailable = (data.get("fastcap_environment") or {}).get("backends_unavailable") or {}
    return "no compiled backend was available" + "".join(f"\n{k}: {r}" for k, r in unavailable.items())


def write_chart(data, path):
    """A PNG: training/sampling medians per implementation, and kernel speedups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = _collect(data.get("benchmarks", []))
    steps = {**kinds.get("train", {}), **kinds.get("sample", {})}
    kern = kinds.get("kernel", {})
    impls = [i for i in IMPLS if any(i in g for g in steps.values())]
    compiled = [b for b in COMPILED if any(b in g for g in kern.values())]
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
        ax.text(0.5, 0.5, kernel_chart_note(data), ha="center", va="center", wrap=True)
        ax.set_axis_off()
    ax.set_title("Kernels")
    env = data.get("fastcap_environment") or {}
    fig.suptitle(f"fastcap benchmarks: {env.get('cpu_model', '?')}, "
                 f"{(env.get('threads') or {}).get('threads', '?')} threads", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    from fastcap.runtime.files import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


REPORT_FILES = ("speedups.md", "speedups.png")


def write_report(json_path, out_dir):
    """speedups.md and speedups.png from a JSON report (with the run's ``fastcap_bench_meta``)."""
    with open(json_path) as f:
        data = json.load(f)
    out_dir = pathlib.Path(out_dir)
    md = report_markdown(data)
    from fastcap.runtime.files import atomic_write_text

    atomic_write_text(out_dir / REPORT_FILES[0], md + "\n")
    write_chart(data, out_dir / REPORT_FILES[1])
    return md, [out_dir / name for name in REPORT_FILES]

