"""``fastcap bench``: run this benchmark suite with pytest in a subprocess that
imports the same fastcap as the command, then write the report.

The suite is this directory (pytest-benchmark files ``test_bench_*.py``, outside
the normal test run); it ships in the wheel as ``fastcap/benchmarks/`` and is
the checkout's ``benchmarks/`` for an editable install (fastcap/cli/bench.py finds
it). ``--benchmarks-dir`` (or ``$FASTCAP_BENCHMARKS_DIR``) runs another copy.
Into ``--out`` (default ``bench-results/``) go:

* ``benchmark.json``: pytest-benchmark's raw JSON of the run, with the machine,
  library versions, BLAS and thread settings under ``fastcap_environment``;
* ``speedups.md`` and ``speedups.png``: the report (bench_report.py).

``fastcap bench --from-json FILE`` rebuilds the report from an earlier JSON
without running anything. Run ``fastcap bench --help`` for the options.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

from bench_report import PROG, REPORT_FILES, write_report
from host_probes import THREADS_ENV, usable_cores

import fastcap
from fastcap.runtime import env as _env

__all__ = ["main", "suite_command"]

HERE = pathlib.Path(__file__).resolve().parent
DIR_ENV = "FASTCAP_BENCHMARKS_DIR"
# The fastcap.__file__ the suite must import (conftest.py checks it).
EXPECT_ENV = "FASTCAP_BENCH_EXPECT_FASTCAP"
# pytest-benchmark settings; --quick trades precision for a run of a few minutes.
FULL_OPTS = ["--benchmark-min-rounds=5", "--benchmark-max-time=1.0", "--benchmark-warmup=off"]
QUICK_OPTS = ["--benchmark-min-rounds=3", "--benchmark-max-time=0.1", "--benchmark-warmup=off"]


def _is_suite(path):
    return (path / "conftest.py").is_file() and (path / "workload.py").is_file()


def suite_command(suite, pytest_args, threads):
    """(argv, kwargs for subprocess) running pytest on `suite` so that it imports
    the fastcap this process imported, wherever the command is run: the working
    directory is the suite (a ``fastcap/`` in the caller's directory, e.g. a
    source checkout next to a non-editable install, is never on sys.path), and
    conftest.py refuses to run when its fastcap is another one."""
    cmd = [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", *pytest_args]
    env = dict(os.environ, PYTHONSAFEPATH="1",
               **{THREADS_ENV: str(threads), EXPECT_ENV: str(pathlib.Path(fastcap.__file__).resolve())})
    return cmd, {"cwd": str(suite), "env": env}


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
                   help=f"threads for fastcap and PyTorch (default: all cores, here {usable_cores()})")
    p.add_argument("--benchmarks-dir", metavar="DIR",
                   help="the suite's directory (default: the one installed with fastcap)")
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

    # The report's files in --out are the bench's by name (as a run's are in its directory);
    # what is not a regular file, or the --from-json input, is never replaced.
    from fastcap.runtime.files import UnsafeOutputError, check_target

    try:
        for name in ("benchmark.json", *REPORT_FILES):
            check_target(out / name, what=f"--out {out}:", inputs=[args.from_json], overwrite=True)
    except UnsafeOutputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.from_json:
        out.mkdir(parents=True, exist_ok=True)
        md, written = write_report(args.from_json, out)
        print(md)
        print(f"\n{PROG}: wrote {', '.join(map(str, written))}")
        return 0

    chosen = args.benchmarks_dir or _env.read(DIR_ENV)
    bench_dir = pathlib.Path(chosen).resolve() if chosen else HERE
    if not _is_suite(bench_dir):
        print(f"{PROG}: error: {chosen} is not the benchmark suite (a directory with conftest.py, "
              f"workload.py and test_bench_*.py: fastcap's benchmarks/)", file=sys.stderr)
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
    threads = args.threads or usable_cores()
    bench_opts = QUICK_OPTS if args.quick else FULL_OPTS
    # Absolute: the suite runs in its own directory.
    pytest_args = [f"--benchmark-json={json_path.resolve()}", "--benchmark-sort=fullname",
                   "--benchmark-columns=min,median,max,rounds,iterations", *bench_opts]
    if args.filter:
        pytest_args += ["-k", args.filter]
    cmd, how = suite_command(bench_dir, pytest_args + extra, threads)
    print(f"{PROG}: {threads} threads; running {' '.join(cmd)}", flush=True)
    rc = subprocess.call(cmd, **how)
    if rc == 5:
        print(f"{PROG}: error: no benchmark was selected"
              + (f" by --filter {args.filter!r}" if args.filter else ""), file=sys.stderr)
        return 5
    if not json_path.exists():
        print(f"{PROG}: error: pytest exited with status {rc} and wrote no {json_path}", file=sys.stderr)
        return rc or 1

    meta = {"command": " ".join(["fastcap bench", *argv] + (["--", *extra] if extra else [])),
            "quick": args.quick, "filter": args.filter, "pytest_benchmark_opts": bench_opts,
            "pytest_exit_status": rc,
            "benchmarks_dir": str(bench_dir)}
    with open(json_path) as f:
        data = json.load(f)
    data["fastcap_bench_meta"] = meta
    from fastcap.runtime.files import atomic_write_text

    atomic_write_text(json_path, json.dumps(data, indent=2))
    md, written = write_report(json_path, out)
    print(md)
    print(f"\n{PROG}: wrote {json_path}, {', '.join(map(str, written))}")
    if rc != 0:
        print(f"{PROG}: pytest exited with status {rc} (see the failures above); the report covers "
              "the benchmarks that ran", file=sys.stderr)
    return rc
