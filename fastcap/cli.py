"""The ``fastcap`` command: train, sample, evaluate, show, make-data, info, bench.

``main(argv=None) -> int`` runs one command and returns its exit status:
0 on success, 1 for bad data, checkpoints or other errors at run time (one
line on stderr: ``fastcap: error: ...``; ``--debug`` adds the traceback),
2 for usage errors (argparse), 130 when interrupted with Ctrl-C (a training
run saves a checkpoint first and says where).
"""
import argparse
import json
import os
import signal
import sys
import traceback

__all__ = ["main", "build_parser"]

PROG = "fastcap"


class CLIError(Exception):
    """An error to report as one line, exit status 1."""


# ---------------------------------------------------------------- helpers
def _number(kind, ok, expected):
    """An argparse `type` converting with `kind` and accepting values where ok(value)."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_nonneg_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")  # not NaN/inf


def set_threads(n):
    """Use n BLAS threads (fastcap.set_num_threads); None leaves the default."""
    if n is not None:
        from . import _threads

        _threads.set_num_threads(n)


def get_threads():
    from . import _threads

    return _threads.get_num_threads()


def _setup_runtime(args):
    import fastcap

    if getattr(args, "backend", None):
        fastcap.set_backend(args.backend)
    set_threads(getattr(args, "threads", None))


def _add_runtime_options(p):
    p.add_argument("--backend", choices=("auto", "numpy", "numba", "cython"),
                   help="kernel backend (default: $FASTCAP_BACKEND, else auto = the fastest "
                        "that loads)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="BLAS threads (fastcap's kernels are single-threaded; default: as configured)")


def _one_line(text):
    return " ".join(str(text).split())


# ---------------------------------------------------------------- train
def _train_options(args):
    from .trainer import DEFAULTS

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
    from .trainer import TrainingInterrupted

    # The loss is the global batch's on every rank; an interrupt with a
    # checkpoint is the agreed stop (without one: a second Ctrl-C, this rank's).
    return isinstance(exc, TrainingDivergedError) or (
        isinstance(exc, TrainingInterrupted) and exc.checkpoint is not None)


# ---------------------------------------------------------------- sample / evaluate
def _load_for_inference(args):
    from .checkpoint import load_checkpoint
    from .trainer import DataError, describe_data, load_data

    ckpt = load_checkpoint(args.checkpoint)
    spec = ckpt.config["data"]
    if args.data is not None:
        spec = {"source": "dir", "path": os.path.abspath(args.data), "pca": spec.get("pca", True)}
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
    m = ckpt.model_config
    return (f"{ckpt.path}: {m['cell_type'].upper()} (wordvec {m['wordvec_dim']}, hidden "
            f"{m['hidden_dim']}, {m['dtype']}), epoch {ckpt.epoch}, iteration {ckpt.iteration}")


def cmd_sample(args):
    import numpy as np

    from .metrics import decode_for_metrics, references_by_image
    from .trainer import format_samples, generate

    _setup_runtime(args)
    ckpt, model, data, source = _load_for_inference(args)
    ids = np.unique(data[f"{args.split}_image_idxs"])
    if args.seed is not None:
        ids = np.sort(np.random.default_rng(args.seed).choice(ids, size=min(args.n, len(ids)),
                                                              replace=False))
    ids = ids[: args.n]
    ids, refs = references_by_image(data, args.split, ids)
    caps = generate(model, data[f"{args.split}_features"][ids], args.beam_size, args.max_length)
    cands = decode_for_metrics(caps, data["idx_to_word"])
    urls = data[f"{args.split}_urls"]
    samples = [{"image": int(i), "url": str(urls[i]), "generated": c, "references": r}
               for i, r, c in zip(ids.tolist(), refs, cands)]
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

    from .trainer import evaluate_captions

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
        from .checkpoint import atomic_write

        atomic_write(args.json, lambda f: f.write((text + "\n").encode()))
    print(f"checkpoint {_describe_ckpt(ckpt)}")
    print(f"{args.split}: {result['images']} images, {result['references']} reference captions, "
          f"{'greedy decoding' if args.beam_size == 1 else f'beam search (beam {args.beam_size})'}")
    for key, label in (("bleu1", "BLEU-1"), ("bleu2", "BLEU-2"), ("bleu3", "BLEU-3"),
                       ("bleu4", "BLEU-4"), ("cider", "CIDEr")):
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

    try:
        bench = importlib.import_module("fastcap.bench")
    except ModuleNotFoundError as exc:
        if exc.name == "fastcap.bench":
            print(f"{PROG}: error: `fastcap bench` is not available in this installation "
                  "(the fastcap.bench module is missing)", file=sys.stderr)
            return 1
        raise
    return int(bench.main(list(argv)) or 0)


# ---------------------------------------------------------------- parser
def build_parser():
    from .coco_utils import LAYOUT
    from .trainer import DEFAULTS, GENERATED_DEFAULTS

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
    d = DEFAULTS
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "train", parents=[debug], formatter_class=fmt,
        help="train a captioning model (default: an LSTM on generated data)",
        description="Train a captioning model. With no options: an LSTM on generated data\n"
                    "(made in memory, deterministic), a minute or two on 2 cores.\n"
                    "Progress goes to stderr; per-epoch validation loss and caption metrics\n"
                    "to stdout. --out gets checkpoint.npz, config.json, history.json,\n"
                    "loss.png, metrics.json, samples.txt and samples.json. Ctrl-C saves a\n"
                    "checkpoint; --resume continues it. Under `mpiexec -n K` (pip install\n"
                    "\"fastcap[mpi]\"): data-parallel over K ranks, --batch-size the global\n"
                    "batch, cores/K threads per rank (docs/distributed.md).",
        epilog=f"--data DIR expects the CS231n layout:\n{LAYOUT}")
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="DIR",
                   help="a CS231n coco_captioning directory (default: generated data)")
    g.add_argument("--pca", action=argparse.BooleanOptionalAction, default=None,
                   help="use the 512-d PCA features (default) or, with --no-pca, the 4096-d fc7 ones")
    g.add_argument("--max-train", type=_positive_int, metavar="N",
                   help="train on N captions drawn (without replacement) from the training split")
    g.add_argument("--num-train-images", type=_positive_int, metavar="N",
                   help=f"generated data: training images (default {d['num_train_images']})")
    g.add_argument("--num-val-images", type=_positive_int, metavar="N",
                   help=f"generated data: validation images (default {d['num_val_images']})")
    g.add_argument("--captions-per-image", type=_positive_int, metavar="N",
                   help=f"generated data: captions per image (default {d['captions_per_image']})")
    g.add_argument("--data-seed", type=_nonneg_int, metavar="S",
                   help=f"generated data: seed (default {d['data_seed']})")
    g = p.add_argument_group("model")
    g.add_argument("--cell", choices=("rnn", "lstm"), help=f"recurrent cell (default {d['cell']})")
    g.add_argument("--hidden-dim", type=_positive_int, metavar="H",
                   help=f"hidden size (default {d['hidden_dim']})")
    g.add_argument("--wordvec-dim", type=_positive_int, metavar="W",
                   help=f"word-vector size (default {d['wordvec_dim']})")
    g.add_argument("--dtype", choices=("float32", "float64"), help=f"(default {d['dtype']})")
    g = p.add_argument_group("optimization")
    g.add_argument("--update-rule", choices=("sgd", "sgd_momentum", "rmsprop", "adam"),
                   help=f"(default {d['update_rule']})")
    g.add_argument("--lr", type=_positive_float, metavar="LR",
                   help=f"learning rate (default {d['lr']:g})")
    g.add_argument("--lr-decay", type=_positive_float, metavar="F",
                   help=f"learning-rate factor after each epoch (default {d['lr_decay']:g})")
    g.add_argument("--batch-size", type=_positive_int, metavar="N",
                   help=f"captions per minibatch (default {d['batch_size']})")
    g.add_argument("--epochs", type=_nonneg_int, metavar="N",
                   help=f"epochs (default {d['epochs']}); with --resume, the new total")
    g.add_argument("--seed", type=_nonneg_int, metavar="S",
                   help=f"seed of the initialisation and the minibatches (default {d['seed']})")
    g = p.add_argument_group("evaluation and output")
    g.add_argument("--eval-images", type=_nonneg_int, metavar="N",
                   help=f"validation images scored at each epoch end (default {d['eval_images']}; "
                        "0 = all)")
    g.add_argument("--num-samples", type=_nonneg_int, metavar="N",
                   help=f"validation samples written to samples.txt (default {d['num_samples']})")
    g.add_argument("--max-length", type=_positive_int, metavar="L",
                   help=f"longest generated caption (default {d['max_length']})")
    g.add_argument("--out", metavar="DIR",
                   help="run directory (default: runs/fastcap-<time>, or the checkpoint's "
                        "directory with --resume)")
    g.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue the run saved in CHECKPOINT (a checkpoint.npz or its directory)")
    g.add_argument("--overwrite", action="store_true",
                   help="start a new run even if --out already holds one (its files are removed "
                        "when the new run starts)")
    g.add_argument("--print-every", type=_nonneg_int, default=0, metavar="N",
                   help="also print the loss every N iterations (default: never)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--stop-after-iterations", type=_nonneg_int, help=argparse.SUPPRESS)
    _add_runtime_options(p.add_argument_group("runtime"))
    p.set_defaults(func=cmd_train)

    # ---- sample
    p = sub.add_parser("sample", parents=[debug],
                       help="print ground-truth and generated captions of a checkpoint",
                       description="Print ground-truth and generated captions for images of a "
                                   "split; greedy by default, beam search with --beam-size.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--data", metavar="DIR",
                   help="CS231n data directory (default: the data the checkpoint was trained on)")
    p.add_argument("--split", choices=("train", "val"), default="val")
    p.add_argument("-n", type=_positive_int, default=10, metavar="N",
                   help="number of images (default 10)")
    p.add_argument("--seed", type=_nonneg_int, help="pick N random images with this seed "
                                                    "(default: the first N)")
    p.add_argument("--beam-size", type=_positive_int, default=1, metavar="K",
                   help="beam width (default 1 = greedy)")
    p.add_argument("--max-length", type=_positive_int, default=30, metavar="L")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_runtime_options(p)
    p.set_defaults(func=cmd_sample)

    # ---- evaluate
    p = sub.add_parser("evaluate", parents=[debug],
                       help="BLEU-1..4 and CIDEr-D of a checkpoint over a split",
                       description="Corpus BLEU-1..4 and CIDEr-D (COCO caption evaluation "
                                   "scorers) of a checkpoint's captions against all reference "
                                   "captions of each image of a split.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--data", metavar="DIR",
                   help="CS231n data directory (default: the data the checkpoint was trained on)")
    p.add_argument("--split", choices=("train", "val"), default="val")
    p.add_argument("--max-images", type=_nonneg_int, default=0, metavar="N",
                   help="score only the first N images (default 0 = all)")
    p.add_argument("--beam-size", type=_positive_int, default=1, metavar="K",
                   help="beam width (default 1 = greedy)")
    p.add_argument("--max-length", type=_positive_int, default=30, metavar="L")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the results as JSON to FILE (without FILE: print JSON only)")
    _add_runtime_options(p)
    p.set_defaults(func=cmd_evaluate)

    # ---- show
    p = sub.add_parser("show", parents=[debug],
                       help="a contact sheet (PNG): images with ground-truth and generated captions",
                       description="Draw the first N images of a split with their ground-truth "
                                   "captions and the checkpoint's greedy (and, with --beam-size, "
                                   "beam-search) caption. Images that cannot be downloaded get a "
                                   "placeholder tile; generated:// images are drawn offline.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--data", metavar="DIR",
                   help="CS231n data directory (default: the data the checkpoint was trained on)")
    p.add_argument("--split", choices=("train", "val"), default="val")
    p.add_argument("-n", type=_positive_int, default=8, metavar="N", help="images (default 8)")
    p.add_argument("--beam-size", type=_positive_int, metavar="K",
                   help="also show the beam-search caption with beam K")
    p.add_argument("--max-length", type=_positive_int, default=30, metavar="L")
    p.add_argument("--out", metavar="FILE.png",
                   help="where to write the sheet (default contact_sheet_SPLIT.png)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is not a contact sheet fastcap wrote")
    _add_runtime_options(p)
    p.set_defaults(func=cmd_show)

    # ---- make-data
    gd = GENERATED_DEFAULTS
    p = sub.add_parser("make-data", parents=[debug], formatter_class=fmt,
                       help="write generated data in the CS231n coco_captioning layout",
                       description="Write a deterministic generated captioning dataset in the "
                                   "CS231n layout (usable with --data).",
                       epilog=LAYOUT)
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--num-train", type=_positive_int, default=gd["num_train_images"], metavar="N",
                   help=f"training images (default {gd['num_train_images']})")
    p.add_argument("--num-val", type=_positive_int, default=gd["num_val_images"], metavar="N",
                   help=f"validation images (default {gd['num_val_images']})")
    p.add_argument("--captions-per-image", type=_positive_int, default=gd["captions_per_image"],
                   metavar="N", help=f"(default {gd['captions_per_image']})")
    p.add_argument("--pca-dim", type=_positive_int, default=gd["pca_dim"], metavar="D",
                   help=f"PCA feature size (default {gd['pca_dim']})")
    p.add_argument("--full-dim", type=_positive_int, default=gd["full_dim"], metavar="D",
                   help=f"fc7 feature size (default {gd['full_dim']})")
    p.add_argument("--seed", type=_nonneg_int, default=gd["seed"], help=f"(default {gd['seed']})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the data files OUT_DIR already holds")
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
    try:
        from . import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "?"


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


def _interrupted(argv_given):
    """Exit status 130. As the command, a further Ctrl-C now ends the process at once
    (the default action) instead of raising KeyboardInterrupt inside the interpreter's
    exit handlers, which would print their traceback."""
    if not argv_given:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    return 130


def main(argv=None):
    """Run the fastcap command line; returns the exit status."""
    argv_given = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("FASTCAP_DEBUG"))
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
    from .trainer import TrainingInterrupted

    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return _interrupted(argv_given)
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
