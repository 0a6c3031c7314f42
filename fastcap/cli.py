"""The ``fastcap`` command: train, sample, evaluate, show, make-data, info, bench.

``main(argv=None) -> int`` runs one command and returns its exit status:
0 on success, 1 for bad data, checkpoints or other errors at run time (one
line on stderr: ``fastcap: error: ...``; ``--debug`` adds the traceback),
2 for usage errors (argparse and bad ``FASTCAP_*`` environment variables),
130 when interrupted with Ctrl-C and 143 with SIGTERM (a training run saves a
checkpoint first and says where).
"""
import argparse
import json
import os
import signal
import sys
import traceback

from .options import (DEFAULTS, INFERENCE_OPTIONS, MAKE_DATA_OPTIONS, POSITIVE_INT, TRAIN_OPTIONS,
                      add_options)

__all__ = ["main", "build_parser"]

PROG = "fastcap"


# ---------------------------------------------------------------- helpers
def _setup_runtime(args):
    import fastcap

    if getattr(args, "backend", None):
        fastcap.set_backend(args.backend)
    if getattr(args, "threads", None) is not None:
        fastcap.set_num_threads(args.threads)


def _add_runtime_options(p):
    from ._backend import NAMES

    p.add_argument("--backend", choices=("auto", *NAMES),
                   help="kernel backend (default: $FASTCAP_BACKEND, else auto = the fastest "
                        "that loads)")
    p.add_argument("--threads", type=POSITIVE_INT.argtype(), metavar="N",
                   help="BLAS threads (fastcap's kernels are single-threaded; default: as configured)")


def _one_line(text):
    return " ".join(str(text).split())


# ---------------------------------------------------------------- train
def _train_options(args):
    return {k: getattr(args, k, None) for k in list(DEFAULTS) + ["data"]}


def cmd_train(args):
    from . import distributed
    from .trainer import Trainer

    comm = distributed.world()  # None unless started by mpiexec
    with distributed.rank_guard(comm, collective=_agreed_by_all_ranks):
        _setup_runtime(args)
        if comm is not None:
            distributed.rank_threads(comm, args.threads)
        trainer = distributed.all_or_none(comm, lambda: Trainer(
            _train_options(args), out_dir=args.out, resume=args.resume,
            overwrite=args.overwrite, stop_after_iterations=args.stop_after_iterations,
            progress=not args.quiet, print_every=args.print_every, comm=comm).setup())
        trainer.run()
    return 0


def _agreed_by_all_ranks(exc):
    """Errors every rank of a data-parallel run raises alike (see fastcap.distributed)."""
    from .captioning_solver import TrainingDivergedError
    from .interrupts import TrainingInterrupted

    # The loss is the global batch's on every rank; an interrupt with a
    # checkpoint is the agreed stop (without one: a second Ctrl-C, this rank's).
    return isinstance(exc, TrainingDivergedError) or (
        isinstance(exc, TrainingInterrupted) and exc.checkpoint is not None)


# ---------------------------------------------------------------- sample / evaluate
def _load_for_inference(args):
    from .checkpoint import load_checkpoint
    from .config import dir_spec
    from .data import DataError, describe_data, load_data

    ckpt = load_checkpoint(args.checkpoint)
    spec = ckpt.config["data"]
    if args.data is not None:
        spec = dir_spec(args.data, spec.get("pca", True))
    elif spec["source"] == "dir" and not os.path.isdir(spec["path"]):
        raise DataError(f"checkpoint {ckpt.path} was trained on {spec['path']}, which is not there "
                        "any more; pass --data DIR")
    source = describe_data(spec)
    data = load_data(spec)
    ckpt.check_vocab(data["idx_to_word"], source)
    ckpt.check_input_dim(data[f"{args.split}_features"].shape[1], source)
    model = ckpt.build_model()
    return ckpt, model, data, source


def _describe_ckpt(ckpt):
    return (f"{ckpt.path}: {ckpt.model.describe()}, epoch {ckpt.epoch}, "
            f"iteration {ckpt.iteration}")


def cmd_sample(args):
    import numpy as np

    from .evaluation import format_samples, sample_records

    _setup_runtime(args)
    ckpt, model, data, source = _load_for_inference(args)
    ids = np.unique(data[f"{args.split}_image_idxs"])
    if args.seed is not None:
        ids = np.sort(np.random.default_rng(args.seed).choice(ids, size=min(args.n, len(ids)),
                                                              replace=False))
    ids = ids[: args.n]
    samples = sample_records(model, data, args.split, ids, args.beam_size, args.max_length)
    if args.json:
        print(json.dumps(samples, indent=2))
        return 0
    decoding = "greedy" if args.beam_size == 1 else f"beam search, beam {args.beam_size}"
    print(f"checkpoint {_describe_ckpt(ckpt)}")
    print(f"{args.split} images of {source}; {decoding}\n")
    print(format_samples(samples), end="")
    return 0


def cmd_evaluate(args):
    import numpy as np

    from .evaluation import evaluate_captions
    from .metrics import METRIC_LABELS

    _setup_runtime(args)
    ckpt, model, data, source = _load_for_inference(args)
    ids = np.unique(data[f"{args.split}_image_idxs"])
    if args.max_images:
        ids = ids[: args.max_images]
    m, ids, refs, _ = evaluate_captions(model, data, args.split, ids, args.beam_size,
                                        args.max_length)
    decoding = "greedy" if args.beam_size == 1 else f"beam{args.beam_size}"
    result = {"checkpoint": ckpt.path, "data": source, "split": args.split, "images": len(ids),
              "references": sum(len(r) for r in refs), "decoding": decoding, **m}
    if args.json is not None:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
            return 0
        from ._atomic import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    print(f"checkpoint {_describe_ckpt(ckpt)}")
    print(f"{args.split}: {result['images']} images, {result['references']} reference captions, "
          f"{'greedy decoding' if args.beam_size == 1 else f'beam search (beam {args.beam_size})'}")
    for key, label in METRIC_LABELS.items():
        print(f"  {label:7s} {m[key]:.4f}")
    if args.json not in (None, "-"):
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------- show
def cmd_show(args):
    from .contact_sheet import check_out_path, contact_sheet, save_png

    _setup_runtime(args)
    out = check_out_path(args.out or f"contact_sheet_{args.split}.png", args.overwrite)
    ckpt, model, data, source = _load_for_inference(args)
    decoding = "greedy" + (f" and beam search (beam {args.beam_size})" if args.beam_size else "")
    fig = contact_sheet(model, data, args.split, n=args.n, beam_size=args.beam_size,
                        max_length=args.max_length,
                        title=f"{_describe_ckpt(ckpt)}\n{args.split} images of {source}; {decoding}")
    for img, url, reason in fig.fastcap_unavailable:
        print(f"{args.split} image {img}: {url} is unavailable ({reason}); drew a placeholder")
    print(f"wrote {save_png(fig, out, args.overwrite)}")
    return 0


# ---------------------------------------------------------------- make-data / info / bench
def cmd_make_data(args):
    from .datagen import write_coco_data

    out = write_coco_data(args.out_dir, overwrite=args.overwrite,
                          num_train_images=args.num_train, num_val_images=args.num_val,
                          captions_per_image=args.captions_per_image, pca_dim=args.pca_dim,
                          full_dim=args.full_dim, seed=args.seed)
    n_tr, n_va = args.num_train * args.captions_per_image, args.num_val * args.captions_per_image
    print(f"wrote generated data to {out}: {args.num_train} train images ({n_tr} captions), "
          f"{args.num_val} val images ({n_va} captions), features {args.pca_dim}-d (PCA) and "
          f"{args.full_dim}-d (fc7), seed {args.seed}")
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name)
        if os.path.isfile(path) and not name.startswith("."):
            print(f"  {name:28s} {os.path.getsize(path):>12,d} bytes")
    return 0


def cmd_info(args):
    from .environment import collect, info_lines

    print("\n".join(info_lines(collect())))
    return 0


def run_bench(argv):
    import importlib

    bench = importlib.import_module("fastcap.bench")  # late: the other commands never load it
    return int(bench.main(list(argv)) or 0)


# ---------------------------------------------------------------- parser
_INFERENCE_COMMANDS = (
    ("sample", cmd_sample, "print ground-truth and generated captions of a checkpoint",
     "Print ground-truth and generated captions for images of a split; greedy by default, beam "
     "search with --beam-size."),
    ("evaluate", cmd_evaluate, "BLEU-1..4 and CIDEr-D of a checkpoint over a split",
     "Corpus BLEU-1..4 and CIDEr-D (COCO caption evaluation scorers) of a checkpoint's captions "
     "against all reference captions of each image of a split."),
    ("show", cmd_show, "a contact sheet (PNG): images with ground-truth and generated captions",
     "Draw the first N images of a split with their ground-truth captions and the checkpoint's "
     "greedy (and, with --beam-size, beam-search) caption. Images that cannot be downloaded get "
     "a placeholder tile; generated:// images are drawn offline."),
)


def build_parser():
    from .coco_utils import LAYOUT

    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error")

    parser = argparse.ArgumentParser(
        prog=PROG, parents=[debug],
        description="Train and use CS231n-style image-captioning models (RNN/LSTM) on a CPU.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # ---- train
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "train", parents=[debug], formatter_class=fmt,
        help="train a captioning model (default: an LSTM on generated data)",
        description="Train a captioning model. With no options: an LSTM on generated data\n"
                    "(made in memory, deterministic), a minute or two on 2 cores.\n"
                    "Progress goes to stderr; per-epoch validation loss and caption metrics\n"
                    "to stdout. --out gets checkpoint.npz, config.json, history.json,\n"
                    "loss.png, metrics.json, samples.txt and samples.json. Ctrl-C (or\n"
                    "SIGTERM) saves a checkpoint; --resume continues it. Under `mpiexec -n K`\n"
                    "(pip install \"fastcap[mpi]\"): data-parallel over K ranks, --batch-size\n"
                    "the global batch, cores/K threads per rank (docs/distributed.md).",
        epilog=f"--data DIR expects the CS231n layout:\n{LAYOUT}")
    add_options(p, TRAIN_OPTIONS, groups=True)
    _add_runtime_options(p.add_argument_group("runtime"))
    p.set_defaults(func=cmd_train)

    # ---- sample, evaluate, show
    for name, func, help, description in _INFERENCE_COMMANDS:
        p = sub.add_parser(name, parents=[debug], help=help, description=description)
        add_options(p, INFERENCE_OPTIONS[name])
        _add_runtime_options(p)
        p.set_defaults(func=func)

    # ---- make-data
    p = sub.add_parser("make-data", parents=[debug], formatter_class=fmt,
                       help="write generated data in the CS231n coco_captioning layout",
                       description="Write a deterministic generated captioning dataset in the "
                                   "CS231n layout (usable with --data).",
                       epilog=LAYOUT)
    add_options(p, MAKE_DATA_OPTIONS)
    p.set_defaults(func=cmd_make_data)

    # ---- info
    p = sub.add_parser("info", parents=[debug],
                       help="version, backends, threads and the BLAS library in use")
    p.set_defaults(func=cmd_info)

    # ---- bench (dispatched before parsing; listed here for --help)
    p = sub.add_parser("bench", add_help=False, help="benchmarks (fastcap bench --help)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: run_bench(a.args))
    return parser


def _version():
    from . import __version__  # the one version (pyproject.toml reads it too)

    return __version__


def _report(exc, debug, internal=False):
    if debug:
        traceback.print_exc()
    from .coco_utils import LAYOUT

    msg = str(exc) or type(exc).__name__
    layout = LAYOUT in msg
    if layout:
        msg = msg.replace("; " + LAYOUT, "").replace(LAYOUT, "")
    msg = _one_line(msg)
    if internal:
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
    from .interrupts import SIGNALS

    if not argv_given:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_DFL)
    return 128 + int(signum)


def main(argv=None):
    """Run the fastcap command line; returns the exit status."""
    from . import ENV_ERROR, _env

    if ENV_ERROR is not None:  # a usage error, reported before anything else (--help too)
        print(f"{PROG}: error: {ENV_ERROR}", file=sys.stderr)
        return 2
    argv_given = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _env.read("FASTCAP_DEBUG")
    # `bench` takes its own arguments: hand everything after it to fastcap.bench.
    head = 0
    while head < len(argv) and argv[head] == "--debug":
        head, debug = head + 1, True
    if head < len(argv) and argv[head] == "bench":
        return run_bench(argv[head + 1:])

    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on usage errors
    debug = debug or getattr(args, "debug", False)
    from .checkpoint import CheckpointError
    from .distributed import RankError
    from .interrupts import TrainingInterrupted

    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return _interrupted(argv_given, exc.signum)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return _interrupted(argv_given)
    except BrokenPipeError:  # e.g. `fastcap sample ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:  # pragma: no cover
            pass
        return 0
    except (CheckpointError, ValueError, OSError, ImportError, FloatingPointError,
            RankError) as exc:
        _report(exc, debug)
        return 1
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        _report(exc, debug, internal=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
