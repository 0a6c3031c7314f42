"""First-call cost of one fastcap backend, measured in this fresh process.

Usage: FASTCAP_BACKEND=numba python firstcall.py
Prints one JSON object (seconds): ``import`` (import fastcap with that
backend), then, in this order, train_rnn, train_lstm (a training step at
N = 25) and sample_rnn, sample_lstm (30 words at batch 1): ``<phase>_first``
(the first call: Numba compiles the kernels it reaches here) and
``<phase>_steady`` (the best of three later calls). test_bench_firstcall.py
runs it with the Numba cache off, and on with a cold and then a warm cache.
"""
import json
import os
import sys
import time

t0 = time.perf_counter()
import fastcap  # noqa: E402  (timed: loads the backend named by FASTCAP_BACKEND)

t_import = time.perf_counter() - t0

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload  # noqa: E402
from host_probes import apply_threads, bench_threads  # noqa: E402

threads = apply_threads(bench_threads())


def first_and_steady(fn, repeats=3):
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    steady = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        steady.append(time.perf_counter() - t)
    return first, min(steady)


result = {"backend": fastcap.get_backend(), "import": t_import, "threads": threads["threads"]}
rng = __import__("numpy").random.default_rng(0)
for cell in workload.CELLS:
    trainer = workload.FastcapTrainer(cell, 25)
    result[f"train_{cell}_first"], result[f"train_{cell}_steady"] = first_and_steady(trainer.step)
for cell in workload.CELLS:
    model = workload.make_model(cell, suppress_end=True)
    features = workload.make_features(1, rng)
    result[f"sample_{cell}_first"], result[f"sample_{cell}_steady"] = first_and_steady(
        lambda m=model, f=features: m.sample(f, max_length=workload.SAMPLE_LENGTH)
    )
print(json.dumps(result))
