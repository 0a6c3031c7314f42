"""Data-parallel scaling on one host: 1 rank x T threads against K ranks x T/K threads.

Trains the benchmark workload of docs/design.md (V = 1004, D = 512, W = 256, H = 512, float32,
caption lengths from the Flickr8k table, Adam) with CaptioningSolver at a
global batch of 100, once in one process with all the host's cores as
threads and once under ``mpiexec -n K`` with cores/K threads per rank, and
prints for each cell: captions per second of whole training steps (sampling,
loss and gradients, Allreduce, update; the slowest rank's time), and the
Allreduce's bytes and seconds per step (mean over ranks and steps: that
includes the time a rank waits for a slower one).

    python benchmarks/mpi_scaling.py                 # 1 x 2 threads vs 2 x 1 on 2 cores
    python benchmarks/mpi_scaling.py --ranks 4 --threads 8 --steps 40

Run it on a quiet machine: other processes change every figure. Needs the
``[mpi]`` extra (mpi4py and mpiexec).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from fastcap.runtime.cpu import usable_cores
from fastcap.model.sequence import CELL_TYPES

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(args):
    """One configuration, run on every rank; rank 0 prints one JSON line."""
    sys.path.insert(0, HERE)
    import numpy as np

    import fastcap
    from fastcap import CaptioningSolver

    import workload

    comm = None
    if args.mpi:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    fastcap.set_num_threads(args.threads)
    if args.backend:
        fastcap.set_backend(args.backend)
    rng = np.random.default_rng(0)
    n = 50 * args.batch  # enough distinct captions that batches differ
    data = {"train_captions": workload.make_captions(n, rng),
            "train_image_idxs": np.arange(n, dtype=np.int32),
            "train_features": workload.make_features(n, rng),
            "train_urls": np.array([""] * n)}
    model = workload.make_model(args.cell)
    solver = CaptioningSolver(model, data, update_rule="adam", batch_size=args.batch,
                              optim_config={"learning_rate": workload.LEARNING_RATE},
                              verbose=False, rng=np.random.RandomState(0), comm=comm)
    for _ in range(args.warmup):
        solver.step()
    dp = solver.data_parallel
    if dp is not None:
        dp.allreduce_seconds, dp.allreduce_calls = 0.0, 0
        comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        solver.step()
    if comm is not None:
        comm.Barrier()  # the slowest rank's time
    seconds = time.perf_counter() - t0
    result = {"cell": args.cell, "ranks": 1 if comm is None else comm.Get_size(),
              "threads": fastcap.get_num_threads(), "backend": fastcap.get_backend(),
              "step_s": seconds / args.steps, "captions_per_s": args.batch * args.steps / seconds}
    if dp is not None:
        per_rank = comm.allgather(dp.allreduce_seconds / max(dp.allreduce_calls, 1))
        result.update(allreduce_bytes=dp.nbytes, allreduce_s=sum(per_rank) / len(per_rank),
                      allreduce_calls_per_step=dp.allreduce_calls / args.steps)
    if comm is None or comm.Get_rank() == 0:
        print(json.dumps(result), flush=True)


def run(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2, help="K ranks of the MPI run (default 2)")
    p.add_argument("--threads", type=int, default=usable_cores(),
                   help="threads of the 1-rank run; each rank gets threads/K (default: all cores)")
    p.add_argument("--batch", type=int, default=100, help="global batch (default 100)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--cells", default=",".join(CELL_TYPES))
    p.add_argument("--backend", help="kernel backend (default: auto)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cell", default="lstm", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    bindir = os.path.dirname(sys.executable)
    mpiexec = shutil.which("mpiexec", path=bindir + os.pathsep + os.environ.get("PATH", ""))
    if mpiexec is None:
        from fastcap.runtime.install import install_hint

        sys.exit(f"mpiexec not found: {install_hint('mpi')}")
    env = {k: v for k, v in os.environ.items() if k not in ("FASTCAP_NUM_THREADS",)}
    env["HYDRA_LAUNCHER"] = "fork"  # local ranks: no ssh
    per_rank = max(1, args.threads // args.ranks)
    common = [__file__, "--worker", "--batch", str(args.batch), "--steps", str(args.steps),
              "--warmup", str(args.warmup)] + (["--backend", args.backend] if args.backend else [])
    from fastcap.runtime.cpu import model as cpu_model

    print(f"{cpu_model()}, {usable_cores()} usable cores; load average {os.getloadavg()[0]:.2f} before the runs")
    print(f"global batch {args.batch}, {args.steps} timed steps after {args.warmup}, float32, "
          f"the docs/design.md workload (H 512, W 256, V 1004, D 512), Adam")
    print(f"{'cell':5s} {'ranks x threads':>15s} {'captions/s':>11s} {'step ms':>8s} "
          f"{'Allreduce bytes':>16s} {'Allreduce ms/step':>18s} {'share':>6s}")
    for cell in args.cells.split(","):
        one = run([sys.executable, *common, "--cell", cell, "--threads", str(args.threads)], env)
        many = run([mpiexec, "-n", str(args.ranks), sys.executable, *common, "--cell", cell,
                    "--threads", str(per_rank), "--mpi"], env)
        for r in (one, many):
            ar = (f"{r['allreduce_bytes']:>16,d} {r['allreduce_s'] * 1e3:>18.2f} "
                  f"{r['allreduce_s'] / r['step_s']:>6.1%}") if "allreduce_bytes" in r else \
                f"{'-':>16s} {'-':>18s} {'-':>6s}"
            print(f"{cell:5s} {str(r['ranks']) + ' x ' + str(r['threads']):>15s} "
                  f"{r['captions_per_s']:>11.0f} {r['step_s'] * 1e3:>8.1f} {ar}")
        print(f"{cell:5s} {args.ranks} ranks / 1 rank: {many['captions_per_s'] / one['captions_per_s']:.2f}x "
              f"captions/s ({one['backend']} backend)")
    print(f"load average {os.getloadavg()[0]:.2f} after the runs")


if __name__ == "__main__":
    sys.exit(main())
