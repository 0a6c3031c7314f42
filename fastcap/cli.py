"""The ``fastcap`` command: train, sample, evaluate, show, caption, prepare, make-data, info, bench.

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
import warnings

from ._install import install_hint
from .options import (CAPTION_OPTIONS, DEFAULTS, INFERENCE_OPTIONS, MAKE_DATA_OPTIONS,
                      POSITIVE_INT, PREPARE_OPTIONS, TRAIN_OPTIONS, add_options)

__all__ = ["main", "build_parser"]

PROG = "fastcap"


# ---------------------------------------------------------------- helpers
def _setup_runtime(args):
    import fastcap

    if getattr(args, "backend", None):
        fastcap.set_backend(args.backend)
    if getattr(args, "threads", None) is not None:
        fastcap.set_num_threads(args.threads, source="--threads")


def _add_runtime_options(p):
    from ._backend import NAMES

    p.add_argument("--backend", choices=("auto", *NAMES),
                   help="kernel backend (default: $FASTCAP_BACKEND, else auto = the fastest "
                        "that loads)")
    p.add_argument("--threads", type=POSITIVE_INT.argtype(), metavar="N",
                   help="threads for BLAS and fastcap's compiled kernels (default: FASTCAP_NUM_THREADS, "
                        "else every core)")


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
    data = load_data(spec, ckpt.config["model"]["dtype"])
    ckpt.check_vocab(data["idx_to_word"], source)
    ckpt.check_input_dim(data[f"{args.split}_features"].shape[1], source)
    model = ckpt.build_model()
    if args.no_unk:
        from .evaluation import suppressing

        model = suppressing(model, ("<UNK>",))
    return ckpt, model, data, source


def _describe_ckpt(ckpt):
    return (f"{ckpt.path}: {ckpt.model.describe()}, epoch {ckpt.epoch}, "
            f"iteration {ckpt.iteration}")


def _inputs(args, ckpt=None):
    """The files a sample/evaluate/show command reads: its checkpoint and data files
    (those of --data, or of the checkpoint's data directory once it is loaded)."""
    from .coco_utils import DATA_FILES

    paths = [args.checkpoint, *([ckpt.path] if ckpt is not None else [])]  # a directory names one
    dirs = [args.data] if args.data is not None else []
    if ckpt is not None and ckpt.config["data"]["source"] == "dir":
        dirs.append(ckpt.config["data"]["path"])
    return paths + [os.path.join(d, name) for d in dirs for name in DATA_FILES]


# What `evaluate --json` writes before the metrics; a JSON object with them is one it wrote.
_RESULT_KEYS = ("checkpoint", "data", "split", "images", "references", "decoding")


def _is_evaluation_json(path):
    """Whether ``path`` (a regular file) holds the results `fastcap evaluate --json` writes."""
    try:
        if os.path.getsize(path) > 1 << 20:
            return False
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(result, dict) and all(k in result for k in _RESULT_KEYS)


def _json_target(args, ckpt=None):
    from ._atomic import check_target

    return check_target(args.json, what="--json", inputs=_inputs(args, ckpt),
                        overwrite=args.overwrite, ours=_is_evaluation_json)


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
    if args.json not in (None, "-"):  # before the work it would be lost after
        _json_target(args)
    ckpt, model, data, source = _load_for_inference(args)
    ids = np.unique(data[f"{args.split}_image_idxs"])
    if args.max_images:
        ids = ids[: args.max_images]
    m, ids, refs, _ = evaluate_captions(model, data, args.split, ids, args.beam_size,
                                        args.max_length)
    decoding = "greedy" if args.beam_size == 1 else f"beam{args.beam_size}"
    result = {**dict(zip(_RESULT_KEYS, (ckpt.path, source, args.split, len(ids),
                                        sum(len(r) for r in refs), decoding))), **m}
    if args.json is not None:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
            return 0
        from ._atomic import atomic_write_text

        atomic_write_text(_json_target(args, ckpt), text + "\n")
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
    out = check_out_path(args.out or f"contact_sheet_{args.split}.png", args.overwrite,
                         _inputs(args))
    ckpt, model, data, source = _load_for_inference(args)
    decoding = "greedy" + (f" and beam search (beam {args.beam_size})" if args.beam_size else "")
    fig = contact_sheet(model, data, args.split, n=args.n, beam_size=args.beam_size,
                        max_length=args.max_length,
                        title=f"{_describe_ckpt(ckpt)}\n{args.split} images of {source}; {decoding}")
    for img, url, reason in fig.fastcap_unavailable:
        print(f"{args.split} image {img}: {url} is unavailable ({reason}); drew a placeholder")
    print(f"wrote {save_png(fig, out, args.overwrite, _inputs(args, ckpt))}")
    return 0


# ---------------------------------------------------------------- prepare / caption
def _one_line_warnings():
    """fastcap's own warnings (a random CNN) as one `fastcap: warning:` line, not Python's
    file:line form; other warnings keep theirs."""
    from .features import RandomWeightsWarning

    shown = warnings.showwarning

    def show(message, category, *rest, **kw):
        if issubclass(category, RandomWeightsWarning):
            print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)
        else:
            shown(message, category, *rest, **kw)

    return show


def cmd_prepare(args):
    from .prepare import prepare

    if (args.train_list is None) != (args.val_list is None):
        raise ValueError("--train-list and --val-list go together (a Flickr8k split)")
    lists = {"train": args.train_list, "val": args.val_list} if args.train_list else None
    _setup_runtime(args)
    s = prepare(args.captions_file, args.images, args.out, split_lists=lists,
                extractor=args.extractor, weights=args.weights, min_count=args.min_count,
                val_fraction=args.val_fraction, seed=args.seed, pca_dim=args.pca_dim,
                overwrite=args.overwrite, progress=not args.quiet, threads=args.threads)
    split = "from the file" if s["split_from_file"] else f"random, seed {args.seed}"
    print(f"wrote {s['out']}: {s['format']} captions, split {split}")
    for name in ("train", "val"):
        print(f"  {name:5s} {s['images'][name]:>7,d} images {s['captions'][name]:>8,d} captions")
    print(f"  vocabulary {s['vocab']:,d} words (seen >= {args.min_count} times in train); "
          f"{s['truncated']:,d} captions truncated to 15 words")
    print(f"  features {args.extractor} ({args.weights} weights) {s['feature_dim']}-d, "
          f"PCA {s['pca_dim']}-d")
    for why, n in sorted(s["dropped"].items()):
        print(f"  left out: {n:,d} {why}")
    print(f"train on it: fastcap train --data {s['out']}")
    return 0


def cmd_caption(args):
    from .caption import caption_files

    _setup_runtime(args)
    ckpt, results = caption_files(args.checkpoint, args.images, data_dir=args.data,
                                  extractor=args.extractor, weights=args.weights,
                                  beam_size=args.beam_size, max_length=args.max_length,
                                  suppress=("<UNK>",) if args.no_unk else (),
                                  threads=args.threads)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for r in results:
            print(f"{r['image']}\t{r['caption']}")
    return 0


# ---------------------------------------------------------------- make-data / info / bench
def cmd_make_data(args):
    from .make_data import write_coco_data

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
                    "to stdout. --out gets checkpoint.npz, best.npz (the best epoch by\n"
                    "--best-metric), config.json, history.json, loss.png, metrics.json,\n"
                    "samples.txt and samples.json. Ctrl-C (or SIGTERM) saves a checkpoint;\n"
                    "--resume continues it exactly; --init-from starts a new run from its weights.\n"
                    "Under `mpiexec -n K` (the [mpi] extra: " + install_hint("mpi") + "):\n"
                    "data-parallel over K ranks, --batch-size the global batch, cores/K\n"
                    "threads per rank (docs/distributed.md).",
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

    # ---- caption, prepare
    p = sub.add_parser("caption", parents=[debug], help="caption new images with a checkpoint",
                       description="Print a caption for each image (files, folders, http(s) "
                                   "URLs): IMAGE<TAB>caption, or JSON. The features are made "
                                   "as the checkpoint's data was (fastcap prepare recorded the "
                                   "CNN, its preprocessing and the PCA); needs the [vision] "
                                   "extra. --threads also sets the CNN's threads (default: "
                                   "every core).")
    add_options(p, CAPTION_OPTIONS)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser("prepare", parents=[debug], formatter_class=fmt,
                       help="a captions file and an image folder -> a data directory",
                       description="Turn a captions file (COCO captions_*.json, Karpathy's "
                                   "dataset_*.json or a\nFlickr8k token file with --train-list/"
                                   "--val-list) and its images into a\ndata directory for "
                                   "`fastcap train --data`: tokenized captions, a vocabulary,\n"
                                   "CNN features and their PCA (needs the [vision] extra). An "
                                   "interrupted run\ncontinues where it stopped when run again. "
                                   "--threads also sets the CNN's threads\n(default: every "
                                   "core).",
                       epilog=f"DATA_DIR gets the CS231n layout:\n{LAYOUT}\nand "
                              "fastcap_features.json, fastcap_pca.h5 (how the features were "
                              "made).")
    add_options(p, PREPARE_OPTIONS)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_prepare)

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
    from ._resources import OutOfMemory
    from .coco_utils import LAYOUT

    msg = str(exc) or type(exc).__name__
    layout = LAYOUT in msg
    if layout:
        msg = msg.replace("; " + LAYOUT, "").replace(LAYOUT, "")
    msg = _one_line(msg)
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

    shown = warnings.showwarning
    warnings.showwarning = _one_line_warnings()
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
            RankError, MemoryError) as exc:
        _report(exc, debug)
        return 1
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        _report(exc, debug, internal=True)
        return 1
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
