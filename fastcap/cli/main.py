"""The ``fastcap`` command: the parser, the dispatch to one module per command, and errors.

``main(argv=None) -> int`` runs one command and returns its exit status:
0 on success, 1 for bad data, checkpoints or other errors at run time (one
line on stderr: ``fastcap: error: ...``; ``--debug`` adds the traceback),
2 for usage errors (argparse and bad ``FASTCAP_*`` environment variables;
shown with the command's own usage, and a "did you mean" for a mistyped
option or command), 3 when a command did its work but skipped inputs it could
not read (``fastcap caption`` on a folder: ``common.EXIT_SKIPPED``), 130 when
interrupted with Ctrl-C and 143 with SIGTERM (a training run saves a
checkpoint first and says where).

Each command is a module of this package with ``add_parser(subparsers, parents)``
and ``run(args) -> exit status``, optionally ``check_args(args)`` -> a usage error
argparse cannot see, or None, and ``prints_its_product(args)`` where what it prints is
its work (fastcap.cli.streams: a reader gone then means 141, not 0); ``COMMANDS`` lists
them in the order ``--help`` shows them.
"""
import argparse
import difflib
import signal
import sys
import traceback
import warnings

from ..coco_utils import LAYOUT
from ..runtime import env
from ..runtime.memory import OutOfMemory
from ..runtime.names import VERSION
from ..train.checkpoint import CheckpointError
from ..train.distributed import RankError
from ..train.interrupts import SIGNALS, TrainingInterrupted
from . import bench, caption, evaluate, info, make_data, prepare, sample, show, train
from .common import PROG, one_line, one_line_warnings
from .streams import SIGPIPE_STATUS, Tolerant

__all__ = ["main", "build_parser", "COMMANDS"]

COMMANDS = (train, sample, evaluate, show, caption, prepare, make_data, info, bench)


def build_parser():
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error")

    parser = argparse.ArgumentParser(
        prog=PROG, parents=[debug],
        description="Train and use CS231n-style image-captioning models (RNN/LSTM) on a CPU.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub, [debug]).set_defaults(func=command.run, command_module=command)
    return parser


def _commands(parser):
    """{command name: its subparser} of the parser build_parser made."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _did_you_mean(word, choices):
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def parse(parser, argv):
    """The arguments of ``argv``; a usage error exits with status 2 and the usage of the command
    it is about (not the top level's), with a "did you mean" for a mistyped name."""
    commands = _commands(parser)
    word = next((a for a in argv if not a.startswith("-")), None)
    if word is not None and word not in commands:
        parser.error(f"unknown command {word!r}{_did_you_mean(word, commands)} (commands: "
                     f"{', '.join(commands)})")
    args, extra = parser.parse_known_args(argv)
    sub = commands[args.command]
    if extra:
        options = [s for a in sub._actions for s in a.option_strings]
        hints = "".join(_did_you_mean(e.split("=")[0], options) for e in extra if e.startswith("-"))
        sub.error(f"unrecognized arguments: {' '.join(extra)}{hints}")
    module = next(c for c in COMMANDS if c.run is args.func)
    problem = module.check_args(args) if hasattr(module, "check_args") else None
    if problem is not None:
        sub.error(problem)
    return args


def _report(exc, debug, internal=False):
    if debug:
        traceback.print_exc()
    msg = str(exc) or type(exc).__name__
    layout = LAYOUT in msg
    if layout:
        msg = msg.replace("; " + LAYOUT, "").replace(LAYOUT, "")
    msg = one_line(msg)
    if isinstance(exc, MemoryError) and not isinstance(exc, OutOfMemory):
        # Out of memory where no size was checked beforehand: still the machine's limit.
        msg = (f"out of memory ({msg}); ask for less (--batch-size, --hidden-dim, "
               "--wordvec-dim, the data's size) or free memory")
    elif internal:
        msg = f"{type(exc).__name__}: {msg} (this is a bug in fastcap; rerun with --debug for " \
              "the traceback)"
    elif isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{msg}: {exc.filename}"
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    if layout:
        print("expected layout: " + LAYOUT, file=sys.stderr)


def _interrupted(argv_given, signum=signal.SIGINT):
    """Exit status 128 + signum (130 for Ctrl-C, 143 for SIGTERM). As the command, a further
    signal now ends the process at once (the default action) instead of raising
    KeyboardInterrupt inside the interpreter's exit handlers, which would print their
    traceback."""
    if not argv_given:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_DFL)
    return 128 + int(signum)


def main(argv=None):
    """Run the fastcap command line; returns the exit status."""
    env_error = env.validate()
    if env_error is not None:  # a usage error, reported before anything else (--help too)
        print(f"{PROG}: error: {env_error}", file=sys.stderr)
        return 2
    argv_given = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = env.read("FASTCAP_DEBUG")
    # `bench` takes its own arguments: hand everything after it to the benchmark runner.
    head = 0
    while head < len(argv) and argv[head] == "--debug":
        head, debug = head + 1, True
    if head < len(argv) and argv[head] == "bench":
        return int(bench.main(argv[head + 1:]) or 0)

    parser = build_parser()
    args = parse(parser, argv)  # exits with status 2 on usage errors
    debug = debug or getattr(args, "debug", False)
    shown = warnings.showwarning
    warnings.showwarning = one_line_warnings()
    streams = (sys.stdout, sys.stderr)
    sys.stdout, sys.stderr = out, err = Tolerant(sys.stdout), Tolerant(sys.stderr)
    try:
        status = int(args.func(args) or 0)
        out.flush()  # what is still buffered: did it reach its reader?
        err.flush()
        product = getattr(args.command_module, "prints_its_product", lambda a: False)(args)
        return SIGPIPE_STATUS if status == 0 and out.broken and product else status
    except TrainingInterrupted as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return _interrupted(argv_given, exc.signum)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return _interrupted(argv_given)
    except BrokenPipeError:  # a pipe of the command's own (stdout and stderr survive theirs)
        return SIGPIPE_STATUS
    except (CheckpointError, ValueError, OSError, ImportError, FloatingPointError,
            RankError, MemoryError) as exc:
        _report(exc, debug)
        return 1
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        _report(exc, debug, internal=True)
        return 1
    finally:
        warnings.showwarning = shown
        sys.stdout, sys.stderr = streams


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
