"""The command-line options of fastcap, declared once: parser, defaults, validation and config keys.

Each ``Option`` is one flag. ``add_options`` puts a list of them into an
argparse parser; ``DEFAULTS`` (a training run's defaults, by option name),
``OPTION_KEYS`` (option -> (config section, key)), ``GENERATED_KEYS`` (option
-> key of the generated-data spec) and ``RESUME_OVERRIDABLE`` (what a resumed
run may change) are read off ``TRAIN_OPTIONS``; ``check_options`` validates a
flat options dict (as ``Trainer`` gets it from Python) with the same checks the
parser applies to the command line. Each number option's ``Kind`` is its
range, the range the checkpoint schema (fastcap.train.checkpoint_schema) checks, so
a run with any accepted values writes checkpoints that load and resume.
"""
import argparse
import dataclasses

from ..runtime.names import PRECISIONS
from .option_kinds import Kind
from .metrics import METRIC_LABELS
from ..model.sequence import CELL_TYPES
from ..data.features import EXTRACTORS
from ..classifiers import ATTENTION_REG
from ..data.generated import GENERATED_DEFAULTS, GRID_DEFAULTS
from ..runtime.names import DTYPES
from ..optim import UPDATE_RULES

__all__ = ["Option", "Kind", "TRAIN_OPTIONS", "INFERENCE_OPTIONS", "MAKE_DATA_OPTIONS",
           "PREPARE_OPTIONS", "CAPTION_OPTIONS", "MIN_ITERATIONS",
           "DEFAULTS", "GENERATED_DEFAULTS", "OPTION_KEYS", "GENERATED_KEYS",
           "RESUME_OVERRIDABLE", "add_options", "check_options", "flag"]



# What a run may ask for, and so what a checkpoint may hold: the options'
# ranges below and fastcap.train.checkpoint_schema read these. A real run is far
# below each bound; they are low enough that what a checkpoint can ask for
# fits in memory.
LIMITS = {
    "dim": 1 << 16,  # input_dim, wordvec_dim, hidden_dim, pca_dim, full_dim
    "vocab": 1 << 20,  # words
    "images": 1 << 20,  # generated images per split
    "feature_floats": 1 << 28,  # generated images x feature size (1 GiB of float32)
    "captions": 1 << 22,  # generated captions (COCO has about 600,000)
    "captions_per_image": 100,
    "max_train": 1 << 32,
    "batch": 1 << 20,
    "epochs": 1 << 20,
    "iterations": 1 << 40,
    "max_length": 1000,
    "seed": 2**32 - 1,  # what np.random.RandomState takes
    "meta_bytes": 64 << 20,  # the JSON members of a checkpoint
    "array_bytes": 4 << 30,  # any one array member of a checkpoint
}


POSITIVE_INT = Kind(int, 1)
NONNEG_INT = Kind(int, 0)
DIM = Kind(int, 1, LIMITS["dim"])
SEED = Kind(int, 0, LIMITS["seed"])
IMAGES = Kind(int, 1, LIMITS["images"])
MAX_LENGTH = Kind(int, 1, LIMITS["max_length"])
LEARNING_RATE = Kind(float, 0, open_lo=True)
LR_DECAY = Kind(float, 0, 1, open_lo=True)  # a decay: the learning rate never grows
BATCH = Kind(int, 1, LIMITS["batch"])
EPOCHS = Kind(int, 0, LIMITS["epochs"])
MAX_TRAIN = Kind(int, 1, LIMITS["max_train"])
EVAL_IMAGES = Kind(int, 0, LIMITS["images"])
SAMPLES = Kind(int, 1, LIMITS["batch"])  # self-critical samples per image (memory: checked per run)
# The ranges of the generated-data spec's keys (fastcap train's --num-train-images ...
# and fastcap make-data's --num-train ... alike).
GENERATED_KINDS = {"num_train_images": IMAGES, "num_val_images": IMAGES,
                   "captions_per_image": Kind(int, 1, LIMITS["captions_per_image"]),
                   "pca_dim": DIM, "full_dim": DIM, "seed": SEED}
FRACTION = Kind(float, 0, 1, open_hi=True)  # a share: prepare's --val-fraction
GRID_SIZE = Kind(int, 1, 64)  # cells per side of a generated grid
ATTENTION_REG_KIND = Kind(float, 0)  # the attention penalty's weight


@dataclasses.dataclass(frozen=True)
class Option:
    """One flag. name: the dest (``--name-with-dashes``, unless ``flag`` is given);
    default: a training run's default (None: none; the parser's default is ``parser_default``,
    None = not given); help may hold ``{default}``; config: (section, key) in a run's config;
    generated: its key in the generated-data spec; resumable: a resumed run may change it."""

    name: str
    kind: Kind = None
    help: str = None
    metavar: str = None
    choices: tuple = None
    default: object = None
    group: str = None
    config: tuple = None
    generated: str = None
    resumable: bool = False
    flag: str = None
    action: object = None
    parser_default: object = None
    positional: bool = False
    nargs: object = None
    const: object = None
    required: bool = False

    @property
    def option_string(self):
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value):
        """Raise ValueError naming the option unless ``value`` is acceptable (None = not given)."""
        if value is None:
            return
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.option_string} must be one of {', '.join(self.choices)}, "
                             f"got {value!r}")
        if self.kind is not None:
            try:
                ok = self.kind.ok(value)
            except TypeError:
                ok = False
            if not ok:
                raise ValueError(f"{self.option_string} must be {self.kind.expected}, got {value!r}")

    def help_text(self):
        """The --help line: ``help`` with its default and, for a bounded number, its range."""
        if not self.help or self.help == argparse.SUPPRESS:
            return self.help
        text = self.help.format(default=self.default)
        return text if self.kind is None or self.kind.hi is None else f"{text}; {self.kind.expected}"

    def add_to(self, parser):
        kwargs = {"help": self.help_text()}
        for key in ("metavar", "choices", "action", "nargs", "const"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        if self.kind is not None:
            kwargs["type"] = self.kind.argtype()
        if self.action not in ("store_true",) or self.config:  # a config flag: None = not given
            kwargs["default"] = self.parser_default
        if self.required:
            kwargs["required"] = True
        if self.positional:
            return parser.add_argument(self.name, **kwargs)
        return parser.add_argument(self.option_string, **kwargs, **(
            {"dest": self.name} if self.flag else {}))


def _gen(name, what, key=None, metavar="N"):
    key = key or name
    return Option(name, GENERATED_KINDS[key], f"generated data: {what} (default {{default}})",
                  metavar, default=GENERATED_DEFAULTS[key], group="data", generated=key)


# A run without --epochs trains for at least this many iterations (more epochs on small data):
# the default run on the generated data (5 epochs x 100) reaches BLEU-4 0.86 in as many, while 5
# epochs of 4 iterations on 180 pictures left BLEU-4 at 0 (issue 29).
MIN_ITERATIONS = 500

# What a self-critical sample's reward must beat (fastcap.train.scst): the mean reward of the
# image's other samples, or the reward of its greedy caption.
SCST_BASELINES = ("mean", "greedy")

# What best.npz may be chosen by: a caption metric (higher is better) or the loss (lower).
BEST_METRICS = (*METRIC_LABELS, "val_loss")

# `fastcap train`, in the order of its --help, with the group each is listed under.
TRAIN_OPTIONS = (
    Option("data", help="a data directory in the CS231n coco_captioning layout: the CS231n "
                        "files, or one fastcap prepare or make-data wrote (default: generated "
                        "data)", metavar="DIR", group="data"),
    Option("pca", help="use the data's PCA-reduced features (default) or, with --no-pca, its full "
                       "ones (the CS231n files: 512-d PCA of 4096-d VGG-16 fc7; a directory "
                       "fastcap prepare wrote: its --pca-dim PCA of its CNN's features)",
           action=argparse.BooleanOptionalAction, default=True, group="data"),
    Option("max_train", MAX_TRAIN, "train on N captions drawn (without replacement) from the "
                                   "training split", "N", group="data",
           config=("train", "max_train")),
    _gen("num_train_images", "training images"),
    _gen("num_val_images", "validation images"),
    _gen("captions_per_image", "captions per image"),
    _gen("data_seed", "seed", key="seed", metavar="S"),
    Option("cell", help="recurrent cell (default {default})", choices=CELL_TYPES, default="lstm",
           group="model", config=("model", "cell_type")),
    Option("hidden_dim", DIM, "hidden size (default {default})", "H", default=256,
           group="model", config=("model", "hidden_dim")),
    Option("wordvec_dim", DIM, "word-vector size (default {default})", "W", default=128,
           group="model", config=("model", "wordvec_dim")),
    Option("dtype", help="(default {default})", choices=DTYPES, default="float32", group="model",
           config=("model", "dtype")),
    Option("kind", help="the soft-attention model (Show, Attend and Tell): at each word it "
                        "looks at a grid of image cells, the data's grid features (fastcap "
                        "prepare --grid, make-data --grid; generated grids without --data)",
           flag="--attention", action="store_const", const="attention", default="pooled",
           group="model", config=("model", "kind")),
    Option("attention_dim", DIM, "with --attention: size A of the attention layer (default: "
                                 "--hidden-dim)", "A", group="model",
           config=("model", "attention_dim")),
    Option("attention_reg", ATTENTION_REG_KIND, "with --attention: weight of the penalty that "
                                                "spreads each image's attention over its cells "
                                                f"(default {ATTENTION_REG:g})", "F",
           group="model", config=("model", "attention_reg")),
    Option("grid_in_memory", help="with --attention --data DIR: read the grid features into "
                                  "memory first instead of a minibatch at a time from disk",
           action="store_true", group="data"),
    Option("precision", help="precision of the matrix products: bfloat16 rounds their operands "
                             "to bf16 and sums in float32, with float32 weights, gradients and "
                             "optimizer state (default {default}; fastest on CPUs with "
                             "avx512_bf16)", choices=PRECISIONS, default="float32",
           group="model", config=("train", "precision")),
    Option("update_rule", help="(default {default})", choices=UPDATE_RULES, default="adam",
           group="optimization", config=("train", "update_rule")),
    Option("lr", LEARNING_RATE, "learning rate (default {default:g})", "LR", default=3e-3,
           group="optimization", config=("train", "learning_rate")),
    Option("lr_decay", LR_DECAY, "learning-rate factor after each epoch (default "
                                 "{default:g}; when --epochs is not given and the data needs "
                                 "more epochs than 5, spread so that the run decays as 5 "
                                 "epochs of it do)", "F", default=0.9, group="optimization",
           config=("train", "lr_decay")),
    Option("batch_size", BATCH, "captions per minibatch (default {default}; at most the number "
                                "of training captions: a larger one is lowered to it, with a "
                                "note)", "N",
           default=100, group="optimization", config=("train", "batch_size")),
    Option("epochs", EPOCHS, "epochs (default: at least {default}, and enough for "
                             f"{MIN_ITERATIONS} iterations on the data, or with --scst "
                             "{default}; the run says what it chose); with --resume, the new "
                             "total", "N",
           default=5, group="optimization", config=("train", "num_epochs"), resumable=True),
    Option("seed", SEED, "seed of the initialisation and the minibatches (default "
                         "{default})", "S", default=0, group="optimization",
           config=("train", "seed")),
    Option("eval_images", EVAL_IMAGES, "validation images scored at each epoch end (default "
                                       "{default}; 0 = all)", "N", default=200,
           group="evaluation and output", config=("eval", "eval_images"), resumable=True),
    Option("num_samples", EVAL_IMAGES, "validation samples written to samples.txt (default "
                                       "{default})", "N", default=10,
           group="evaluation and output", config=("eval", "num_samples"), resumable=True),
    Option("max_length", MAX_LENGTH, "longest generated caption (default {default})", "L",
           default=30, group="evaluation and output", config=("eval", "max_length"),
           resumable=True),
    Option("best_metric", help="the validation score best.npz keeps the best of (default "
                               "{default}; val_loss: the lowest)", choices=BEST_METRICS,
           default="cider", group="evaluation and output", config=("eval", "best_metric"),
           resumable=True),
    Option("patience", EPOCHS, "stop when --best-metric has not improved in N evaluations "
                                   "(default {default} = never)", "N", default=0,
           group="evaluation and output", config=("train", "patience"), resumable=True),
    Option("init_from", help="start a new run from the weights of CHECKPOINT (its model; new "
                             "optimizer, schedule and options: fine-tuning); --resume instead "
                             "continues a run exactly", metavar="CHECKPOINT",
           group="optimization", config=("train", "init_from")),
    Option("scst", help="self-critical sequence training: sample captions of each image, "
                        "reward their CIDEr-D against its references, and push up those that beat "
                        "the baseline; starts from --init-from CHECKPOINT (or --resume of such a "
                        "run); --batch-size counts images", action="store_true", default=False,
           group="self-critical training", config=("train", "scst")),
    Option("scst_samples", SAMPLES, "captions sampled per image (default {default})", "K", default=5,
           group="self-critical training", config=("train", "scst_samples")),
    Option("scst_baseline", help="what a sample's reward must beat: the mean reward of the "
                                 "image's other samples, or its greedy caption's (default "
                                 "{default})", choices=SCST_BASELINES, default="mean",
           group="self-critical training", config=("train", "scst_baseline")),
    Option("scst_max_length", MAX_LENGTH, "longest sampled caption (default {default})", "L",
           default=16, group="self-critical training", config=("train", "scst_max_length")),
    Option("scst_from_scratch", help="allow --scst from random weights (it rarely learns)",
           action="store_true", group="self-critical training"),
    # How the run is driven, not what it computes: not in the config.
    Option("out", help="run directory (default: runs/fastcap-<time>, or the checkpoint's "
                       "directory with --resume)", metavar="DIR", group="evaluation and output"),
    Option("resume", help="continue the run saved in CHECKPOINT (a checkpoint.npz or its "
                          "directory)", metavar="CHECKPOINT", group="evaluation and output"),
    Option("overwrite", help="start a new run even if --out already holds one (its files are "
                             "removed when the new run starts)", action="store_true",
           group="evaluation and output"),
    Option("print_every", NONNEG_INT, "also print the loss every N iterations (default: never)",
           "N", parser_default=0, group="evaluation and output"),
    Option("quiet", help="no progress bar", action="store_true", group="evaluation and output"),
    Option("stop_after_iterations", NONNEG_INT, argparse.SUPPRESS,
           group="evaluation and output"),
)

_BY_NAME = {o.name: o for o in TRAIN_OPTIONS}
DEFAULTS = {o.name: o.default for o in TRAIN_OPTIONS if o.config or o.generated or o.name == "pca"}
OPTION_KEYS = {o.name: o.config for o in TRAIN_OPTIONS if o.config}
GENERATED_KEYS = {o.name: o.generated for o in TRAIN_OPTIONS if o.generated}
RESUME_OVERRIDABLE = {o.name for o in TRAIN_OPTIONS if o.resumable}


def _data(what="the data the checkpoint was trained on"):
    return Option("data", help=f"CS231n data directory (default: {what})", metavar="DIR")


_SPLIT = Option("split", choices=("train", "val"), parser_default="val")
_MAX_LENGTH = Option("max_length", MAX_LENGTH, "longest generated caption (default 30)", "L",
                     parser_default=30)
_CHECKPOINT = Option("checkpoint", metavar="CHECKPOINT", positional=True,
                     help="a checkpoint (.npz) or a run folder (its best.npz where there is one, "
                          "else its checkpoint.npz; the command says which it read)")
_GREEDY_BEAM = Option("beam_size", POSITIVE_INT, "beam width (default 1 = greedy)", "K",
                      parser_default=1)
_NO_UNK = Option("no_unk", help="never generate <UNK> (the words outside the vocabulary)",
                 action="store_true")
_PRECISION = Option("precision", help="precision of the matrix products (default: "
                                      "$FASTCAP_PRECISION if set, else the precision the "
                                      "checkpoint was trained in)", choices=PRECISIONS)



def _html(what):
    return Option("html", help=f"write FILE, one self-contained HTML page (pictures embedded) of "
                               f"{what}; replaced only if fastcap wrote it, else with --overwrite",
                  metavar="FILE")


def _attention_map(what):
    return Option("attention_map", help=f"an attention checkpoint's maps: also write "
                                        f"DIR/<{what}>.png for each {what}, the part the network "
                                        "sees and a panel per word of its greedy caption, lit "
                                        "where the word's attention lay", metavar="DIR")


# sample, evaluate and show: the checkpoint and data they read, and how they decode.
INFERENCE_OPTIONS = {
    "sample": (
        _CHECKPOINT, _data(), _SPLIT,
        Option("n", POSITIVE_INT, "number of images (default 10)", "N", flag="-n",
               parser_default=10),
        Option("seed", NONNEG_INT, "pick N random images with this seed (default: the first N)"),
        _GREEDY_BEAM, _MAX_LENGTH, _NO_UNK, _PRECISION,
        Option("json", help="print JSON instead of text", action="store_true"),
    ),
    "evaluate": (
        _CHECKPOINT, _data(), _SPLIT,
        Option("max_images", NONNEG_INT, "score only the first N images (default 0 = all)", "N",
               parser_default=0),
        _GREEDY_BEAM, _MAX_LENGTH, _NO_UNK, _PRECISION,
        Option("json", help="write the results as JSON to FILE (without FILE: print JSON only)",
               metavar="FILE", nargs="?", const="-"),
        Option("overwrite", help="replace --json FILE even if it is not results fastcap wrote",
               action="store_true"),
    ),
    "show": (
        _CHECKPOINT, _data(), _SPLIT,
        Option("n", POSITIVE_INT, "images (default 8)", "N", flag="-n", parser_default=8),
        Option("beam_size", POSITIVE_INT, "also show the beam-search caption with beam K", "K"),
        _MAX_LENGTH, _NO_UNK, _PRECISION,
        Option("out", help="where to write the sheet, in the image format its suffix names "
                           "(default contact_sheet_SPLIT.png; with --html, no sheet unless --out "
                           "is given)",
               metavar="FILE"),
        _html("the images with their ground-truth and generated captions"),
        _attention_map("image"),
        Option("overwrite", help="replace --out, --html or the maps even if fastcap did not "
                                 "write them", action="store_true"),
    ),
}


def _made(name, key, help, metavar="N"):
    return Option(name, GENERATED_KINDS[key], help, metavar, default=GENERATED_DEFAULTS[key],
                  parser_default=GENERATED_DEFAULTS[key])


MAKE_DATA_OPTIONS = (
    Option("out_dir", metavar="OUT_DIR", positional=True),
    _made("num_train", "num_train_images", "training images (default {default})"),
    _made("num_val", "num_val_images", "validation images (default {default})"),
    _made("captions_per_image", "captions_per_image", "(default {default})"),
    _made("pca_dim", "pca_dim", "PCA feature size (default {default})", "D"),
    _made("full_dim", "full_dim", "fc7 feature size (default {default})", "D"),
    _made("seed", "seed", "(default {default})", None),
    Option("grid", help="also write grid features ({{train,val}}2014_grid.h5: each image's "
                        "subject and object at their places in a grid of cells), for `fastcap "
                        "train --attention`", action="store_true"),
    Option("grid_size", GRID_SIZE, "with --grid: cells per side of the grid (default "
                                   f"{GRID_DEFAULTS['grid_size']})", "N"),
    Option("grid_dim", DIM, f"with --grid: channels of a cell (default {GRID_DEFAULTS['grid_dim']})",
           "D"),
    Option("overwrite", help="replace the data files OUT_DIR already holds", action="store_true"),
)


def _extractor_options(default, help, weights_help, weights_default):
    return (Option("extractor", help=help, choices=tuple(EXTRACTORS), parser_default=default),
            Option("weights", help=weights_help, metavar="imagenet|none|PATH",
                   parser_default=weights_default))


# `fastcap prepare`: a captions file and an image folder -> a data directory.
PREPARE_OPTIONS = (
    Option("captions_file", metavar="CAPTIONS_FILE", positional=True,
           help="COCO captions_*.json, Karpathy's dataset_*.json or a Flickr8k token file"),
    Option("images", help="the folder the captions file's image names are relative to",
           metavar="DIR", required=True),
    Option("out", help="the data directory to write", metavar="DATA_DIR", required=True),
    Option("train_list", help="Flickr8k: the training images, one name a line", metavar="FILE"),
    Option("val_list", help="Flickr8k: the validation images, one name a line", metavar="FILE"),
    *_extractor_options("resnet50", "the CNN (default resnet50)",
                        "the CNN's weights: imagenet (the published file, downloaded once into "
                        "torch's cache), none (random, offline: for tests) or PATH, a local file "
                        "of the network's weights (the published .pth copied by hand, or your "
                        "own; its SHA-256 is recorded) (default imagenet)", "imagenet"),
    Option("min_count", POSITIVE_INT, "keep words seen at least N times in the training "
                                      "captions (default 5)", "N", parser_default=5),
    Option("val_fraction", FRACTION, "when the file has no split: the share of images held "
                                     "out for validation (default 0.1)", "F",
           parser_default=0.1),
    Option("seed", NONNEG_INT, "seed of that split (default 0)", "S", parser_default=0),
    Option("pca_dim", POSITIVE_INT, "PCA feature size (default 512)", "D", parser_default=512),
    Option("grid", help="also write grid features, the CNN's last spatial map of each image "
                        "(resnet50 7x7x2048, vgg16 14x14x512; float16), for `fastcap train "
                        "--attention`", action="store_true"),
    Option("grid_pca_dim", POSITIVE_INT, "with --grid: reduce each cell to D channels by a "
                                         "PCA of the training images' cells (default: keep "
                                         "them all)", "D"),
    Option("overwrite", help="replace the data files DATA_DIR already holds",
           action="store_true"),
    Option("quiet", help="no progress bar", action="store_true"),
)

# `fastcap caption`: captions of new images.
CAPTION_OPTIONS = (
    _CHECKPOINT,
    Option("images", metavar="IMAGE", positional=True, nargs="*",
           help="image files, folders of images or http(s) URLs (a file in a folder that "
                "cannot be read is skipped with a warning; a file named here is an error)"),
    Option("data", help="the data directory the checkpoint was trained on (default: the one "
                        "it names)", metavar="DIR"),
    _GREEDY_BEAM, _MAX_LENGTH, _NO_UNK, _PRECISION,
    *_extractor_options(None, "for a checkpoint of data fastcap did not prepare: the CNN whose "
                              "full (--no-pca) features it was trained on",
                        "PATH: a local copy of the weights file the checkpoint's features were "
                        "made with (offline; checked by SHA-256); imagenet or none must be the "
                        "checkpoint's own (default: the checkpoint's weights, from torch's cache, "
                        "a download or the file it names; with --extractor: imagenet)", None),
    Option("json", help="print JSON instead of text", action="store_true"),
    _html("each picture with its caption"),
    _attention_map("picture"),
    Option("overwrite", help="replace --html FILE or the maps even if fastcap did not write "
                             "them", action="store_true"),
)


def add_options(parser, options, groups=False):
    """Add ``options`` to an argparse parser; groups=True lists them under their ``group``."""
    made = {}
    for o in options:
        target = parser
        if groups and o.group is not None:
            if o.group not in made:
                made[o.group] = parser.add_argument_group(o.group)
            target = made[o.group]
        o.add_to(target)


def flag(name):
    """The command-line flag of train option `name` (``--lr`` for ``lr``)."""
    return _BY_NAME[name].option_string


def check_options(options):
    """Raise ValueError naming the option for any bad value in a flat train-options dict;
    returns the dict with each number as its option's type (a NumPy integer as an int)."""
    checked = dict(options)
    for name, value in options.items():
        if name in _BY_NAME:
            option = _BY_NAME[name]
            option.check(value)
            if value is not None and option.kind is not None:
                checked[name] = option.kind.convert(value)
    return checked
