"""A/B of fastcap revisions on one host: does a change make training or decoding slower?

Each revision is checked out into a temporary git worktree and its Cython
backend built there ("." is the working tree as it is, already built). Then
rounds of one process per revision, in rotated order so drift of the host
hits every revision alike, each time the benchmark workload of docs/design.md through the
public API: training steps (``model.loss`` plus ``optim.adam`` on every
parameter) at N = 25 and 100, and greedy sampling of 30 words at batch 1 and
100, for both cells. Prints the median per revision and the ratios to the
first. Absolute times vary from host to host and hour to hour; the ratios of
one run are the evidence.

    python benchmarks/ab_revisions.py 83934df . --rounds 6 [--precision bfloat16]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One process's measurement (run with the revision first on sys.path).
_CHILD = r"""
import json, sys, time
import numpy as np
import fastcap
from fastcap import optim
from fastcap.classifiers.rnn import CaptioningRNN

steps = int(sys.argv[1])
V, D, W, H, T = 1004, 512, 256, 512, 17
rng = np.random.default_rng(0)
word_to_idx = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, **{f"w{i}": i + 4 for i in range(V - 4)}}


def median_time(f, n):
    f()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


out = {}
for cell in ("rnn", "lstm"):
    model = CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell,
                          dtype=np.float32)
    model.params["b_vocab"][2] = -1e4  # never <END>: every sample decodes all 30 words
    configs = {k: {"learning_rate": 1e-3} for k in model.params}
    for n in (25, 100):
        features = rng.standard_normal((n, D)).astype(np.float32)
        captions = rng.integers(4, V, (n, T))
        captions[:, 0] = 1

        def step():
            _, grads = model.loss(features, captions)
            for k, g in grads.items():
                model.params[k], configs[k] = optim.adam(model.params[k], g, configs[k])

        out[f"train {cell} N={n}"] = median_time(step, steps)
    for n in (1, 100):
        features = rng.standard_normal((n, D)).astype(np.float32)
        out[f"sample {cell} batch={n}"] = median_time(lambda: model.sample(features, max_length=30),
                                                      steps if n == 1 else max(3, steps // 5))
print(json.dumps(out))
"""


def checkout(rev, workdir):
    """A built tree of revision `rev` ('.': this working tree, used as it is)."""
    if rev == ".":
        return ROOT
    path = os.path.join(workdir, rev.replace("/", "_"))
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, rev], check=True,
                   capture_output=True)
    print(f"building {rev} in {path} ...", flush=True)
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=path, check=True,
                   capture_output=True)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("revisions", nargs="+", help="git revisions, '.' for the working tree; ratios are to the first")
    p.add_argument("--rounds", type=int, default=6, help="processes per revision (default 6)")
    p.add_argument("--steps", type=int, default=20, help="timed calls per workload and process (default 20)")
    p.add_argument("--precision", default="float32", help="FASTCAP_PRECISION of every process")
    args = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="fastcap-ab-")
    trees = {}
    try:
        for rev in args.revisions:
            trees[rev] = checkout(rev, workdir)
        got = {rev: [] for rev in trees}
        for r in range(args.rounds):
            order = args.revisions[r % len(trees):] + args.revisions[:r % len(trees)]
            for rev in order:
                env = dict(os.environ, PYTHONPATH=trees[rev], FASTCAP_BACKEND="cython",
                           FASTCAP_PRECISION=args.precision)
                proc = subprocess.run([sys.executable, "-c", _CHILD, str(args.steps)], env=env,
                                      capture_output=True, text=True, cwd=workdir)
                if proc.returncode:
                    sys.exit(f"{rev}: {proc.stderr}")
                got[rev].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        for rev, path in trees.items():
            if path != ROOT:
                subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", path], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    first = args.revisions[0]
    print(f"{args.precision}, medians of {args.rounds} rotated processes; ratio: time / {first}'s")
    print(f"{'workload':22s}" + "".join(f"{rev:>14s}" for rev in args.revisions) + "   ratios")
    for key in got[first][0]:
        meds = [np.median([g[key] for g in got[rev]]) for rev in args.revisions]
        print(f"{key:22s}" + "".join(f"{m * 1e3:11.2f} ms" for m in meds) + "   "
              + " ".join(f"{m / meds[0]:.3f}" for m in meds[1:]))


if __name__ == "__main__":
    main()
