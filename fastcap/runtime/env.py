"""The ``FASTCAP_*`` environment variables, declared once: name, what each takes, its default.

The package's, the build's (setup.py reads this file and ``names`` by path, before
fastcap is built: so it imports nothing else of fastcap) and those of the examples and
the benchmark suite. ``validate()`` checks every one when fastcap
is imported, before anything reads one, so a bad value is one error naming the
variable and what it accepts (``FASTCAP_ENGINE=maybe`` is refused, not taken
as on); ``read(name)`` is the parsed value.

The library raises the error at import; the ``fastcap`` command prints it as
one line and exits with status 2, as for a bad option (even for ``--help``),
which is why ``fastcap/__init__.py`` asks ``is_command()``. The lists a variable
chooses from are read from ``fastcap.runtime.names``.
"""
import dataclasses
import os
import sys

from .names import BACKEND_CHOICES, ISA_CHOICES, PRECISIONS

__all__ = ["EnvVarError", "VARS", "read", "validate", "is_command"]

_ON = ("1", "on", "yes", "true")
_OFF = ("0", "off", "no", "false")


class EnvVarError(ValueError):
    """A FASTCAP_* variable with a value fastcap does not accept."""


@dataclasses.dataclass(frozen=True)
class Var:
    """name; parse(text) -> value, ValueError if not accepted; expected: what is accepted;
    default: the value when unset or empty."""

    name: str
    parse: object
    expected: str
    default: object = None


def _switch(text):
    text = text.lower()
    if text not in _ON + _OFF:
        raise ValueError(text)
    return text in _ON


def _choice(names):
    """A parser accepting one of ``names``."""
    def parse(text):
        if text not in names:
            raise ValueError(text)
        return text

    return parse


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise ValueError(text)
    return int(text)


def _fault(text):
    rank, *rest = text.split(":")
    ok = rank.isdigit() and (rest == ["eval"] or (
        1 <= len(rest) <= 2 and rest[0].isdigit() and rest[1:] in ([], ["kill"])))
    if not ok:
        raise ValueError(text)
    return text


SWITCH = f"one of {', '.join(_ON)} (on) or {', '.join(_OFF)} (off)"
VARS = {v.name: v for v in (
    Var("FASTCAP_BACKEND", _choice(BACKEND_CHOICES), f"one of {', '.join(BACKEND_CHOICES)}",
        "auto"),
    Var("FASTCAP_CYTHON_ISA", lambda t: _choice(ISA_CHOICES)(t.lower()),
        f"one of {', '.join(ISA_CHOICES)}", "auto"),
    Var("FASTCAP_NUM_THREADS", _positive_int, "a positive integer number of threads"),
    Var("FASTCAP_PRECISION", _choice(PRECISIONS), f"one of {', '.join(PRECISIONS)}", "float32"),
    Var("FASTCAP_ENGINE", _switch, SWITCH, True),
    Var("FASTCAP_AMX", _switch, SWITCH, True),
    Var("FASTCAP_BLAS_POOL", _switch, SWITCH, True),
    Var("FASTCAP_NUMBA_CACHE", _switch, SWITCH, True),
    Var("FASTCAP_DEBUG", _switch, SWITCH, False),
    Var("FASTCAP_COCO_DIR", str, "a directory", os.path.join("cs231n", "datasets",
                                                             "coco_captioning")),
    Var("FASTCAP_CACHE_DIR", str, "a directory"),
    Var("FASTCAP_TEST_FAULT", _fault, "RANK:ITERATION, RANK:eval or RANK:ITERATION:kill (tests)"),
    # setup.py's build switches
    Var("FASTCAP_CYTHON_DEBUG", _switch, SWITCH, False),
    Var("FASTCAP_CYTHON_OPENMP", _switch, SWITCH, True),
    Var("FASTCAP_CYTHON_NATIVE", _switch, SWITCH, False),
    Var("FASTCAP_CYTHON_REQUIRED", _switch, SWITCH, False),
    # examples/ and benchmarks/
    Var("FASTCAP_EXAMPLE_EPOCHS", _positive_int, "a positive integer", 50),
    Var("FASTCAP_EXAMPLE_MAX_TRAIN", _positive_int, "a positive integer", 2**62),
    Var("FASTCAP_EXAMPLE_FIGURES", str, "a directory"),
    Var("FASTCAP_BENCH_THREADS", _positive_int, "a positive integer number of threads"),
    Var("FASTCAP_BENCHMARKS_DIR", str, "a directory"),
    Var("FASTCAP_BENCH_EXPECT_FASTCAP", str, "a file"),
    Var("FASTCAP_FLICKR8K_DIR", str, "a directory"),
)}


def read(name):
    """The value of variable ``name`` (its default when unset or blank); EnvVarError if bad."""
    var = VARS[name]
    text = os.environ.get(name, "").strip()
    if not text:
        return var.default
    try:
        return var.parse(text)
    except ValueError:
        raise EnvVarError(f"{name}={os.environ[name]!r}: expected {var.expected}") from None


def validate():
    """The first EnvVarError among the variables that are set, or None."""
    for name in VARS:
        try:
            read(name)
        except EnvVarError as exc:
            return exc
    return None


def is_command():
    """Whether this process is the ``fastcap`` command (its console script, or ``python -m
    fastcap``), which reports a bad variable itself instead of failing at import."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    args = argv[1:]
    while args and args[0].startswith("-") and args[0] != "-m":  # interpreter options
        args = args[2:] if args[0] in ("-X", "-W") else args[1:]  # those two take a value
    if args[:2] == ["-m", "fastcap"]:
        return True
    return bool(args) and os.path.basename(args[0]) in ("fastcap", "fastcap.exe")
