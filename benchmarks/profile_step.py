"""Where the time of one training step goes (a profiling aid, not a benchmark).

1. Phases, in process: every kernel of the backend, every ``np.dot`` of
   ``fastcap.model.sequence`` (labelled by its source line) and its
   GEMM helpers (``affine``, ``recurrent_weight_grad``, ...) are wrapped with timers
   (nested timers count once, in the outermost), so the step splits into
   GEMM phases, elementwise kernels and the rest (NumPy glue, validation,
   Python). Nothing in fastcap is edited: the wrappers are set on the loaded
   modules of this process only.

       python benchmarks/profile_step.py --cell lstm --n 100 --backend numpy

2. Everything by source line, with py-spy: record the same loop, then sum the
   samples by innermost fastcap source line, classed as a GEMM (the line calls
   ``np.dot`` or ``@``), a NumPy-backend kernel line, or anything else:

       py-spy record --nonblocking --idle -r 200 -f raw -o /tmp/lstm.txt -- \\
           python benchmarks/profile_step.py --cell lstm --n 100 --steps 60 --no-kernel-timer
       python benchmarks/profile_step.py --summarize /tmp/lstm.txt

   (Without --native: py-spy's native unwinding stops the process for every
   sample and slowed this loop about tenfold, which distorts the shares.)

3. GEMM throughput at the step's shapes, 1 and all threads:

       python benchmarks/profile_step.py --gemm
"""
import argparse
import collections
import linecache
import os
import re
import sys
import time

from fastcap.model.sequence import CELL_TYPES

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class _Timers:
    """Named accumulating timers; a timer started inside another counts nothing."""

    def __init__(self):
        self.stats = collections.defaultdict(lambda: [0, 0.0])
        self._depth = 0

    def wrap(self, label, fn):
        def timed(*args, **kwargs):
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                s = self.stats[label(*args) if callable(label) else label]
                s[0] += 1
                s[1] += time.perf_counter() - t
                self._depth -= 1

        return timed


class _NumpyWithTimedDot:
    """Stands in for ``numpy`` inside one module: np.dot is timed per calling line."""

    def __init__(self, timers):
        import numpy

        def caller(*_):
            f = sys._getframe(2)  # caller <- timed <- the function that called np.dot
            return f"GEMM {f.f_code.co_name}: {linecache.getline(f.f_code.co_filename, f.f_lineno).strip()}"

        self._np = numpy
        self.dot = timers.wrap(caller, numpy.dot)

    def __getattr__(self, name):
        return getattr(self._np, name)


def install_timers(namespace):
    """Wrap kernels, _sequence's np.dot and its GEMM helpers; returns the timers."""
    from fastcap.model import sequence as _sequence
    from fastcap._kernels import KERNEL_NAMES

    timers = _Timers()
    for name in KERNEL_NAMES:
        setattr(namespace, name, timers.wrap(f"kernel {name}", getattr(namespace, name)))
    _sequence.np = _NumpyWithTimedDot(timers)
    for helper, label in (
            ("affine", "GEMM projection x @ W (+ b): input, vocabulary"),
            ("affine_backward", "GEMM projection grads: dout @ W.T, x.T @ dout (+ db)"),
            ("recurrent_weight_grad", "GEMM recurrent weight grad dWh = h_prev.T @ da"),
            ("word_projection_backward",
             "GEMM word-projection grads: dWx, dW_embed (+ db, incl. the per-word sum of da)"),
    ):
        setattr(_sequence, helper, timers.wrap(label, getattr(_sequence, helper)))
    return timers


def run_steps(args):
    import workload as wl
    from host_probes import apply_threads

    import fastcap
    from fastcap.runtime import backends as _backend

    threads = apply_threads(args.threads)
    fastcap.set_backend(args.backend)
    trainer = wl.FastcapTrainer(args.cell, args.n)
    for _ in range(3):
        trainer.step()  # warm up (JIT, allocator)
    timers = None if args.no_kernel_timer else install_timers(_backend.load(args.backend))
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        trainer.step()
        times.append(time.perf_counter() - t)
    mean = sum(times) / len(times)
    times.sort()
    print(f"{args.cell} N={args.n} backend={args.backend} threads={threads['threads']}: "
          f"mean step {mean * 1e3:.1f} ms, median {times[len(times) // 2] * 1e3:.1f}, "
          f"min {times[0] * 1e3:.1f} over {args.steps} steps")
    if timers:
        rows = sorted(timers.stats.items(), key=lambda kv: -kv[1][1])
        per = {k: v[1] / args.steps for k, v in rows}
        gemm = sum(v for k, v in per.items() if k.startswith("GEMM"))
        kern = sum(v for k, v in per.items() if k.startswith("kernel"))
        print(f"  GEMM phases {gemm * 1e3:7.1f} ms ({gemm / mean:4.0%})   elementwise kernels "
              f"{kern * 1e3:6.1f} ms ({kern / mean:4.0%})   rest (glue, validation, Python) "
              f"{(mean - gemm - kern) * 1e3:6.1f} ms ({(mean - gemm - kern) / mean:4.0%})")
        for label, (calls, secs) in rows:
            print(f"  {secs / args.steps * 1e3:7.2f} ms {secs / args.steps / mean:4.0%} "
                  f"{calls / args.steps:4.0f}/step  {label}")


_GEMM = re.compile(r"np\.dot\(|np\.matmul\(|\S @ \S")


def summarize(path, top=30):
    """Raw py-spy stacks -> share of samples by innermost fastcap source line and class."""
    by_line = collections.Counter()
    by_class = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count)
            total += count
            frames = [fr for fr in stack.split(";")
                      if re.search(r"\((?:[^()]*/)?fastcap/[^()]*\.py:\d+\)", fr)]
            if not frames:
                by_line[("(outside fastcap: start-up, the benchmark loop)", "other")] += count
                by_class["other"] += count
                continue
            m = re.search(r"^(.*) \((.*\.py):(\d+)\)$", frames[-1])
            func, path_, lineno = m.group(1), m.group(2), int(m.group(3))
            src = linecache.getline(_resolve(path_), lineno).strip()
            if _GEMM.search(src):
                kind = "GEMM"
            elif path_.endswith("_backend.py"):
                kind = "kernel"
            else:
                kind = "other"
            by_line[(f"{func} {os.path.basename(path_)}:{lineno}  {src[:80]}", kind)] += count
            by_class[kind] += count
    print(f"{total} samples")
    for kind, c in by_class.most_common():
        print(f"  {kind:8s} {c / total:6.1%}")
    print("by innermost fastcap line:")
    for (where, kind), c in by_line.most_common(top):
        print(f"  {c / total:6.1%}  [{kind}] {where}")


def _resolve(path):
    if os.path.isfile(path):
        return path
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (os.path.dirname(here), here):
        cand = os.path.join(root, path)
        if os.path.isfile(cand):
            return cand
    return path


def gemm_table(repeats=20):
    import numpy as np
    from host_probes import usable_cores
    from test_bench_kernels import GEMMS, gemm_operands
    from threadpoolctl import threadpool_limits

    for label, (a_shape, b_shape, ta, tb) in GEMMS.items():
        a, b, c = gemm_operands(a_shape, b_shape, ta, tb)
        flops = 2 * a_shape[0] * a_shape[1] * b_shape[1]
        cells = []
        for n in sorted({1, usable_cores()}):
            with threadpool_limits(limits=n, user_api="blas"):
                np.matmul(a, b, out=c)
                ts = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    np.matmul(a, b, out=c)
                    ts.append(time.perf_counter() - t)
            best, med = min(ts), sorted(ts)[len(ts) // 2]
            cells.append(f"{n}t: {med * 1e6:8.0f} us  {flops / med / 1e9:5.0f} GFLOP/s (best {flops / best / 1e9:4.0f})")
        print(f"{label:42s} {a_shape[0]}x{a_shape[1]}@{b_shape[0]}x{b_shape[1]}  " + "  ".join(cells))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", default="lstm", choices=CELL_TYPES)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-kernel-timer", action="store_true")
    p.add_argument("--summarize", metavar="RAW")
    p.add_argument("--gemm", action="store_true")
    args = p.parse_args(argv)
    if args.summarize:
        summarize(args.summarize)
    elif args.gemm:
        gemm_table()
    else:
        run_steps(args)


if __name__ == "__main__":
    main()
