"""``fastcap bench``: finds the benchmark suite that belongs to this fastcap and runs its
runner (benchmarks/bench_runner.py), which parses the arguments after ``bench`` itself.

The suite ships in the wheel as ``fastcap/benchmarks/``; an editable install
(or a source tree) has it as ``benchmarks/`` next to the package. Either way it
is the suite of the fastcap that is imported, never one found from the working
directory. ``python -m fastcap.cli.bench`` is ``fastcap bench``.
"""
import argparse
import importlib
import pathlib
import sys

__all__ = ["main", "load", "suite_dir", "add_parser", "run"]


def suite_dir():
    """The benchmark suite's directory of this fastcap, or None (an install without it)."""
    package = pathlib.Path(__file__).resolve().parent.parent  # fastcap/
    for d in (package / "benchmarks", package.parent / "benchmarks"):
        if (d / "bench_runner.py").is_file():
            return d
    return None


def load(name):
    """Import module `name` of the suite (bench_runner, bench_report, host_probes, ...).

    The suite's files import each other by bare name, so its directory goes on
    sys.path, as pytest and the scripts put it."""
    suite = suite_dir()
    if suite is None:
        raise ModuleNotFoundError(f"this fastcap installation ({pathlib.Path(__file__).resolve().parent.parent}) has no "
                                  "benchmark suite (fastcap/benchmarks/ or a checkout's benchmarks/)",
                                  name=name)
    if str(suite) not in sys.path:
        sys.path.insert(0, str(suite))
    return importlib.import_module(name)


def main(argv=None):
    """Run ``fastcap bench`` with `argv` (default sys.argv[1:]); returns the exit status."""
    try:
        runner = load("bench_runner")
    except ModuleNotFoundError as exc:
        if exc.name != "bench_runner":
            raise
        print(f"fastcap bench: error: {exc}", file=sys.stderr)
        return 1
    return runner.main(argv)


def add_parser(sub, parents):
    """Listed for --help only: fastcap.cli.main hands the arguments after `bench` to main()."""
    p = sub.add_parser("bench", add_help=False, help="benchmarks (fastcap bench --help)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return p


def run(args):
    return int(main(list(args.args)) or 0)


if __name__ == "__main__":
    sys.exit(main())
