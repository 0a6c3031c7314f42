"""Streaming grid features from disk against the same features held in memory (issue 26).

One epoch of attention training (fastcap.AttentionCaptioningRNN, Adam) over a data directory
with grid files, twice per round: the features streamed from the HDF5 file a minibatch at a
time with the next one read in the background (fastcap.data.stream, what ``fastcap train
--attention`` does), and the same features read whole into memory first (float32, what
``--grid-in-memory`` does). Each run is a child process, so its peak RSS (``os.wait4``'s
ru_maxrss) is its own; the two are interleaved round by round and the load average is
recorded beside each. The target: streaming peaks at <= 1 GB over a >= 2.5 GB grid file and
runs >= 0.8x the in-memory steps per second.

    fastcap make-data /tmp/big --num-train 13000 --num-val 200 --captions-per-image 1 \\
        --grid --grid-size 7 --grid-dim 2048              # a 2.61 GB train2014_grid.h5
    python benchmarks/stream_grid.py /tmp/big --rounds 2 --hidden-dim 32 --wordvec-dim 32 \\
        --json stream.json                                # 130 steps an epoch

``--iterations N`` runs N steps instead of an epoch (a quick look).
"""
import argparse
import json
import os
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))  # this checkout's fastcap


def _child(args):
    import numpy as np

    import fastcap
    from fastcap.captioning_solver import CaptioningSolver
    from fastcap.data.load import load_data

    t0 = time.perf_counter()
    spec = {"source": "dir", "path": os.path.abspath(args.data), "pca": True, "grid": True}
    data = load_data(spec, "float32", stream=args.child == "stream")
    load_s = time.perf_counter() - t0
    model = fastcap.AttentionCaptioningRNN(
        data["word_to_idx"], input_dim=int(data["train_features"].shape[2]),
        wordvec_dim=args.wordvec_dim, hidden_dim=args.hidden_dim, rng=np.random.default_rng(0))
    solver = CaptioningSolver(model, data, update_rule="adam", batch_size=args.batch_size,
                              optim_config={"learning_rate": 1e-3}, verbose=False,
                              rng=np.random.RandomState(0))
    steps = args.iterations or solver.iterations_per_epoch
    t0 = time.perf_counter()
    for _ in range(steps):
        solver.step()
    seconds = time.perf_counter() - t0
    print(json.dumps({"variant": args.child, "steps": steps, "seconds": seconds,
                      "steps_per_s": steps / seconds, "load_seconds": load_s,
                      "final_loss": solver.loss_history[-1], "backend": fastcap.get_backend(),
                      "threads": fastcap.get_num_threads()}))


def _run(args, variant):
    cmd = [sys.executable, os.path.abspath(__file__), args.data, "--child", variant,
           "--batch-size", str(args.batch_size), "--hidden-dim", str(args.hidden_dim),
           "--wordvec-dim", str(args.wordvec_dim), "--iterations", str(args.iterations)]
    load = os.getloadavg()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{variant} run failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(peak_rss_bytes=usage.ru_maxrss * 1024, load_before=[round(x, 2) for x in load],
                  load_after=[round(x, 2) for x in os.getloadavg()])
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a data directory with train2014_grid.h5 and val2014_grid.h5")
    p.add_argument("--rounds", type=int, default=2, help="stream/memory pairs (default 2)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--wordvec-dim", type=int, default=128)
    p.add_argument("--iterations", type=int, default=0, help="0: one epoch")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--child", choices=("stream", "memory"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    size = os.path.getsize(os.path.join(args.data, "train2014_grid.h5"))
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                   "unknown")
    print(f"train2014_grid.h5: {size / 1e9:.2f} GB; CPU {cpu}, {os.cpu_count()} cores")
    results = []
    for r in range(args.rounds):
        for variant in ("stream", "memory"):
            res = _run(args, variant)
            res["round"] = r
            results.append(res)
            print(f"round {r} {variant:6s}: {res['steps']} steps in {res['seconds']:.1f} s = "
                  f"{res['steps_per_s']:.3f} steps/s, peak RSS {res['peak_rss_bytes'] / 2**30:.2f} "
                  f"GiB (load {res['load_before']} -> {res['load_after']})", flush=True)
    ratios = [s["steps_per_s"] / m["steps_per_s"] for s, m in zip(results[::2], results[1::2])]
    summary = {"file_bytes": size, "cpu": cpu, "ratios_stream_over_memory": ratios,
               "stream_peak_rss_gib": max(x["peak_rss_bytes"] for x in results[::2]) / 2**30,
               "results": results}
    print(f"stream / memory steps per second, by round: {', '.join(f'{x:.3f}' for x in ratios)}; "
          f"streaming peak RSS {summary['stream_peak_rss_gib']:.2f} GiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
