"""The attention model (issue 26) against PyTorch, measured interleaved in one process.

    python benchmarks/attention_ratios.py [--rounds 5] [--compile] [--only train|sample] [--n N] [--cells L]

Training step (model.loss + Adam on every parameter; PyTorch: loss, backward, Adam) at
N in workload.BATCHES and L in workload.ATTENTION_CELLS; greedy decoding of
workload.SAMPLE_LENGTH words (<END> suppressed, so every word is computed) at
workload.SAMPLE_BATCHES. Implementations: fastcap's Cython backend in float32 and in the
bfloat16 mode, PyTorch eager float32, PyTorch autocast bf16, and (--compile)
torch.compile of the loss where it compiles. Each round times one call of every
implementation in turn, so a change of the machine's load falls on all of them; the
table gives the medians, the ratios to fastcap (float32 against PyTorch float32 and
compiled, bf16 against autocast bf16), the CPU, its flags and the load before and after.
Threads: FASTCAP_BENCH_THREADS or every core this process may use, for both libraries.
"""
import argparse
import os
import platform
import statistics
import subprocess

import numpy as np
import workload as wl
from host_probes import apply_threads, bench_threads
from interleave import interleaved
from peers import torch_attention, torch_peer

import fastcap


def _load():
    return os.getloadavg()


def _cpu():
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    keep = [f for f in flags if f.startswith(("avx512f", "avx512_bf16", "amx", "avx2", "fma"))]
    return f"{fields.get('Model name', platform.processor()).strip()} [{' '.join(keep)}]"


def _fastcap(fn, precision):
    def run():
        with fastcap.use_backend("cython"), fastcap.use_precision(precision):
            return fn()
    return run


def _train_impls(n, cells, compiled):
    batches = wl.make_attention_batches(n, cells)
    f32, bf16 = wl.AttentionTrainer(n, cells), wl.AttentionTrainer(n, cells)
    params = {k: v.copy() for k, v in f32.model.params.items()}
    impls = {"fastcap": _fastcap(f32.step, "float32"), "fastcap-bf16": _fastcap(bf16.step, "bfloat16"),
             "torch": torch_attention.Trainer(params, batches, wl.LEARNING_RATE).step,
             "torch-bf16": torch_attention.Trainer(params, batches, wl.LEARNING_RATE, autocast=True).step}
    if compiled:
        impls["torch-compile"] = torch_attention.Trainer(params, batches, wl.LEARNING_RATE, compiled=True).step
    return impls


def _sample_impls(n, cells, compiled):
    model = wl.make_attention_model(suppress_end=True)
    a = wl.make_grid_features(n, cells, np.random.default_rng(n))
    f32 = torch_attention.Sampler(model.params)
    bf16 = torch_attention.Sampler(model.params, autocast=True)
    # "fastcap": frozen, as load_captioner's model is: packed once, as the peers' tensors are
    # made once; "fastcap-per-call": the model as training leaves it, packing every call
    unfrozen = wl.make_attention_model(suppress_end=True)
    model.freeze()
    sample = lambda m: lambda: m.sample(a, max_length=wl.SAMPLE_LENGTH)  # noqa: E731
    return {"fastcap": _fastcap(sample(model), "float32"), "fastcap-bf16": _fastcap(sample(model), "bfloat16"),
            "fastcap-per-call": _fastcap(sample(unfrozen), "float32"),
            "torch": lambda: f32.sample(a, wl.SAMPLE_LENGTH), "torch-bf16": lambda: bf16.sample(a, wl.SAMPLE_LENGTH)}


def _time(impls, rounds, warmup=2):
    """{impl: median seconds} of `rounds` interleaved calls after `warmup` untimed ones each."""
    for name, fn in list(impls.items()):
        try:
            for _ in range(warmup):
                fn()
        except Exception as e:  # torch.compile where it does not compile: said, not timed
            print(f"  {name}: skipped ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            del impls[name]
    return {name: statistics.median(t) for name, t in interleaved(impls, rounds, warmup=0).items()}


# fastcap's figure against each peer: (fastcap implementation, peer)
PAIRS = (("fastcap", "torch"), ("fastcap", "torch-compile"), ("fastcap-bf16", "torch-bf16"),
         ("fastcap-bf16", "torch"), ("fastcap-per-call", "torch"))


def _report(label, med):
    cells = "  ".join(f"{k} {v * 1e3:8.1f} ms" for k, v in med.items())
    ratios = "  ".join(f"{peer}/{fc} {med[peer] / med[fc]:5.2f}x" for fc, peer in PAIRS if fc in med and peer in med)
    print(f"{label:22s} {cells}\n{'':22s} {ratios}  (load {_load()[0]:.2f})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also torch.compile the PyTorch loss")
    ap.add_argument("--only", choices=("train", "sample"))
    ap.add_argument("--n", type=int, action="append", help="only this batch size (repeatable)")
    ap.add_argument("--cells", type=int, action="append", help="only this L (repeatable)")
    args = ap.parse_args()
    keep = lambda n, cells: (not args.n or n in args.n) and (not args.cells or cells in args.cells)  # noqa: E731
    threads = apply_threads(bench_threads())["threads"]
    torch_peer.set_threads(threads)
    print(f"CPU: {_cpu()}; {threads} threads; torch {torch_peer.version()}; load before {_load()}")
    if args.only != "sample":
        for n in wl.BATCHES:
            for cells in filter(lambda c: keep(n, c), wl.ATTENTION_CELLS):
                _report(f"train N={n} L={cells}", _time(_train_impls(n, cells, args.compile), args.rounds))
    if args.only != "train":
        for n in wl.SAMPLE_BATCHES:
            for cells in filter(lambda c: keep(n, c), wl.ATTENTION_CELLS):
                _report(f"sample N={n} L={cells}", _time(_sample_impls(n, cells, False), args.rounds))
    print(f"load after {_load()}")


if __name__ == "__main__":
    main()
