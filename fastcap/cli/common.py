"""What several commands share: the runtime options, the loading of a checkpoint for inference,
and the one-line forms of messages."""
import os
import sys
import warnings

from ..coco_utils import DATA_FILES
from ..data.features import RandomWeightsWarning
from ..data.grid import grid_name
from ..data.load import DataError, describe_data, grid_shape_of, load_data
from ..inference.caption import SkippedImageWarning
from ..inference.captioner import CheckpointNote
from ..runtime import backends, precision, threads
from ..runtime.names import BACKEND_CHOICES
from ..train.checkpoint import load_checkpoint
from ..train.evaluation import suppressing
from ..train.options import INFERENCE_OPTIONS, POSITIVE_INT, add_options
from ..train.run_config import spec_like
from ..train.rundir import BEST_NAME, LAST_NAME, inference_checkpoint

PROG = "fastcap"
# The exit status of a command that did its work but left inputs out (fastcap caption: files of
# a folder that are not pictures); 0, 1, 2, 130 and 143 are fastcap.cli.main's.
EXIT_SKIPPED = 3
# fastcap's own warnings, shown as one `fastcap: warning:` line each.
ONE_LINE_WARNINGS = (RandomWeightsWarning, CheckpointNote, SkippedImageWarning)


def one_line(text):
    return " ".join(str(text).split())


def add_runtime_options(p):
    """--backend and --threads."""
    p.add_argument("--backend", choices=BACKEND_CHOICES,
                   help="kernel backend (default: $FASTCAP_BACKEND, else auto = the fastest "
                        "that loads)")
    p.add_argument("--threads", type=POSITIVE_INT.argtype(), metavar="N",
                   help="threads for BLAS and fastcap's compiled kernels (default: FASTCAP_NUM_THREADS, "
                        "else every core)")


# The commands that run a checkpoint over a split: (--help line, description).
INFERENCE_COMMANDS = {
    "sample": ("print ground-truth and generated captions of a checkpoint",
               "Print ground-truth and generated captions for images of a split; greedy by "
               "default, beam search with --beam-size."),
    "evaluate": ("BLEU-1..4 and CIDEr-D of a checkpoint over a split",
                 "Corpus BLEU-1..4 and CIDEr-D (COCO caption evaluation scorers) of a "
                 "checkpoint's captions against all reference captions of each image of a "
                 "split."),
    "show": ("a contact sheet (PNG) or HTML page: images with ground-truth and generated "
             "captions",
             "Draw the first N images of a split with their ground-truth captions and the "
             "checkpoint's greedy (and, with --beam-size, beam-search) caption, as a contact "
             "sheet (--out) or a self-contained HTML page (--html). Images that cannot be "
             "downloaded get a placeholder tile; generated:// images are drawn offline."),
}


def add_inference_parser(sub, parents, name):
    """The parser of sample, evaluate or show: a checkpoint, its data and how to decode
    (fastcap.train.options.INFERENCE_OPTIONS[name]), and the runtime options."""
    help, description = INFERENCE_COMMANDS[name]
    p = sub.add_parser(name, parents=parents, help=help, description=description)
    add_options(p, INFERENCE_OPTIONS[name])
    add_runtime_options(p)
    return p


def setup_runtime(args):
    """Apply --backend and --threads."""
    if getattr(args, "backend", None):
        backends.set_backend(args.backend)
    if getattr(args, "threads", None) is not None:
        threads.set_num_threads(args.threads, source="--threads")


def asked_precision(args):
    """The precision asked for on the command line (--precision) or by FASTCAP_PRECISION, else
    None."""
    if getattr(args, "precision", None):
        return args.precision
    if os.environ.get(precision.ENV_VAR, "").strip():
        return precision.get_precision()
    return None


def inference_precision(args, ckpt):
    """The precision a command running checkpoint `ckpt` computes in: the one asked for
    (asked_precision), else the one the checkpoint was trained in."""
    return asked_precision(args) or ckpt.config["train"].get("precision", "float32")


def describe_ckpt(ckpt):
    return (f"{ckpt.path}: {ckpt.model.describe()}, epoch {ckpt.epoch}, "
            f"iteration {ckpt.iteration}")


def checkpoint_file(path):
    """The checkpoint file a command that uses a model reads for ``path`` (a run folder: its
    best.npz, else its checkpoint.npz; fastcap.train.rundir.inference_checkpoint), saying which
    on stderr when ``path`` is a folder."""
    file, note = inference_checkpoint(path)
    if note is not None:
        print(f"{PROG}: {note}", file=sys.stderr)
    return file


def checkpoint_inputs(path):
    """The files a command given the checkpoint ``path`` must never replace: the file, or a run
    folder's two checkpoints (whichever it reads)."""
    if os.path.isdir(path):
        return [path, *(os.path.join(path, name) for name in (LAST_NAME, BEST_NAME))]
    return [path]


def load_for_inference(args):
    """(checkpoint, model, data, data description) of a sample/evaluate/show command."""
    ckpt = load_checkpoint(checkpoint_file(args.checkpoint))
    spec = ckpt.config["data"]
    if args.data is not None:
        spec = spec_like(args.data, spec)
    elif spec["source"] == "dir" and not os.path.isdir(spec["path"]):
        raise DataError(f"checkpoint {ckpt.path} was trained on {spec['path']}, which is not there "
                        "any more; pass --data DIR")
    source = describe_data(spec)
    data = load_data(spec, ckpt.config["model"]["dtype"])
    ckpt.check_vocab(data["idx_to_word"], source)
    ckpt.check_input_dim(data[f"{args.split}_features"].shape[-1], source)
    if spec.get("grid"):
        ckpt.check_grid_shape(grid_shape_of(data, args.split), source)
    model = ckpt.build_model()
    if args.no_unk:
        model = suppressing(model, ("<UNK>",))
    return ckpt, model, data, source


def inputs(args, ckpt=None):
    """The files a sample/evaluate/show command reads: its checkpoint and data files
    (those of --data, or of the checkpoint's data directory once it is loaded)."""
    paths = [*checkpoint_inputs(args.checkpoint), *([ckpt.path] if ckpt is not None else [])]
    dirs = [args.data] if args.data is not None else []
    if ckpt is not None and ckpt.config["data"]["source"] == "dir":
        dirs.append(ckpt.config["data"]["path"])
    names = (*DATA_FILES, grid_name("train"), grid_name("val"))
    return paths + [os.path.join(d, name) for d in dirs for name in names]


def one_line_warnings():
    """fastcap's own warnings (ONE_LINE_WARNINGS: a random CNN, an old checkpoint, a skipped
    file) as one `fastcap: warning:` line, not Python's file:line form; other warnings keep
    theirs."""
    shown = warnings.showwarning

    def show(message, category, *rest, **kw):
        if issubclass(category, ONE_LINE_WARNINGS):
            print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)
        else:
            shown(message, category, *rest, **kw)

    return show
