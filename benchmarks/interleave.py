"""Interleaved timing: each implementation once per round, in turn, so that a shared machine's
changing load falls on all of them alike (the ratios within one run are the evidence)."""
import time


def interleaved(fns, rounds, warmup=1):
    """{name: [seconds]} of `rounds` calls of each fn of ``fns`` ({name: fn}), in turn, after
    `warmup` untimed calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times
