"""The checkpoint schema: every field of a checkpoint, its type and its bounds.

``fastcap.train.checkpoint.load_checkpoint`` checks a checkpoint's JSON metadata
against ``META`` and each array member against ``array_specs`` before using
any of it, so a crafted checkpoint gets a one-line error naming the file and
the field instead of crashing (an MT19937 position past its key segfaulted
NumPy), looping (an epoch counter of 10**6) or allocating without bound (a
generated data set of 3,000,000 images). The bounds are far above any real
run and low enough that what a checkpoint can ask for fits in memory. They
are fastcap.train.options' (``LIMITS`` and each option's range), so whatever the
parser accepts a checkpoint holds; ``check_config`` is what a run checks of
its config before it starts.

A spec is a small object with ``check(value, path)`` (raises ``SchemaError``
naming ``path``) and ``bad_values()`` (values it must reject: the fuzz test
in ``tests/test_checkpoint_hostile.py`` writes each of them into a checkpoint).
"""
import math

from ..classifiers import MODEL_KINDS, MODELS
from .metrics import METRIC_NAMES
from ..data.features import EXTRACTORS
from .model_config import ModelConfig
from ..runtime.names import DTYPES
from .options import DIM, GENERATED_KINDS, GRID_SIZE, LIMITS, TRAIN_OPTIONS

__all__ = ["SchemaError", "META", "CONFIG", "LIMITS", "check_config", "check_meta", "array_specs",
           "walk"]


class SchemaError(ValueError):
    """A field that does not fit the schema; ``path`` names it (``config.model.hidden_dim``)."""

    def __init__(self, path, message):
        super().__init__(f"field {path} {message}")
        self.path = path


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Int:
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def check(self, value, path):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(path, f"must be an integer in [{self.lo}, {self.hi}], got "
                                    f"{type(value).__name__} {_show(value)}")
        if not self.lo <= value <= self.hi:
            raise SchemaError(path, f"must be an integer in [{self.lo}, {self.hi}], got {value}")

    def bad_values(self):
        return [self.lo - 1, self.hi + 1, float(self.lo), str(self.lo), None, True, [self.lo]]


class Float:
    """A finite number in [lo, hi] (an integer is accepted); ``positive`` excludes lo."""

    def __init__(self, lo=-math.inf, hi=math.inf, positive=False):
        self.lo, self.hi, self.positive = lo, hi, positive

    def _range(self):
        return f"({self.lo}, {self.hi}]" if self.positive else f"[{self.lo}, {self.hi}]"

    def check(self, value, path):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(path, f"must be a finite number in {self._range()}, got "
                                    f"{type(value).__name__} {_show(value)}")
        if not math.isfinite(value) or not self.lo <= value <= self.hi or (
                self.positive and value <= self.lo):
            raise SchemaError(path, f"must be a finite number in {self._range()}, got {value}")

    def bad_values(self):
        bad = [math.nan, math.inf, "1", None, [1.0]]
        if self.positive or self.lo > -math.inf:
            bad.append(self.lo - 1)
        return bad


class Choice:
    def __init__(self, *choices):
        self.choices = choices

    def check(self, value, path):
        if not any(type(value) is type(c) and value == c for c in self.choices):
            raise SchemaError(path, f"must be one of {', '.join(map(repr, self.choices))}, got "
                                    f"{_show(value)}")

    def bad_values(self):
        return ["not-" + str(self.choices[0]), None, 1.5, [self.choices[0]]]


class Str:
    def __init__(self, max_len=4096):
        self.max_len = max_len

    def check(self, value, path):
        if not isinstance(value, str) or not 0 < len(value) <= self.max_len:
            raise SchemaError(path, f"must be a string of 1 to {self.max_len} characters, got "
                                    f"{type(value).__name__} {_show(value)}")

    def bad_values(self):
        return ["", 1, None, ["x"]]


class Optional:
    def __init__(self, spec):
        self.spec = spec

    def check(self, value, path):
        if value is not None:
            self.spec.check(value, path)

    def bad_values(self):
        return [v for v in self.spec.bad_values() if v is not None]


class Dict:
    """A JSON object with exactly these keys (``optional`` ones may be missing)."""

    def __init__(self, fields, optional=(), extra=False):
        self.fields, self.optional, self.extra = fields, set(optional), extra

    def check(self, value, path):
        if not isinstance(value, dict):
            raise SchemaError(path, f"must be a JSON object, got {type(value).__name__} {_show(value)}")
        for key, spec in self.fields.items():
            if key not in value:
                if key in self.optional:
                    continue
                raise SchemaError(f"{path}.{key}" if path else key, "is missing")
            spec.check(value[key], f"{path}.{key}" if path else key)
        unknown = sorted(set(value) - set(self.fields))
        if unknown and not self.extra:
            raise SchemaError(path or "(top level)", f"has unknown keys {unknown[:5]}")

    def bad_values(self):
        return [[], "x", None, 1]


class Union:
    """One of several Dict specs, chosen by the value of ``key``."""

    def __init__(self, key, by_value):
        self.key, self.by_value = key, by_value

    def check(self, value, path):
        if not isinstance(value, dict):
            raise SchemaError(path, f"must be a JSON object, got {type(value).__name__} {_show(value)}")
        choice = value.get(self.key)
        if not isinstance(choice, str) or choice not in self.by_value:
            raise SchemaError(f"{path}.{self.key}", f"must be one of "
                                                    f"{', '.join(map(repr, self.by_value))}, got {_show(choice)}")
        self.by_value[choice].check(value, path)

    def bad_values(self):
        return [[], None, {self.key: "elsewhere"}]


class List:
    def __init__(self, item, max_len):
        self.item, self.max_len = item, max_len

    def check(self, value, path):
        if not isinstance(value, list) or len(value) > self.max_len:
            raise SchemaError(path, f"must be a list of at most {self.max_len} items, got "
                                    f"{type(value).__name__} {_show(value)}")
        for i, v in enumerate(value):
            self.item.check(v, f"{path}[{i}]")

    def bad_values(self):
        return [{}, "x", None, [None]]


class Mapping:
    """A JSON object from keys in ``keys`` to values of one spec."""

    def __init__(self, keys, value):
        self.keys, self.value = keys, value

    def check(self, value, path):
        if not isinstance(value, dict):
            raise SchemaError(path, f"must be a JSON object, got {type(value).__name__} {_show(value)}")
        for k, v in value.items():
            if k not in self.keys:
                raise SchemaError(f"{path}.{k}", f"is not one of {', '.join(self.keys)}")
            self.value.check(v, f"{path}.{k}")

    def bad_values(self):
        return [[], None, {"no such key": {}}]


# ---------------------------------------------------------------- the schema
# Unknown keys are allowed (and ignored) where a later fastcap may add settings;
# the optimizer and RNG state, which reach NumPy and the kernels, are exact.
# What a checkpoint can ask for (LIMITS) and the range of every field an option
# sets are fastcap.train.options': what the parser accepts, a checkpoint holds.
_DIM = Int(DIM.lo, DIM.hi)
# learning_rate here is the decayed one (lr_decay <= 1), which may underflow to 0.
_OPTIM_SCALARS = {"learning_rate": Float(0), "momentum": Float(0, 1),
                  "decay_rate": Float(0, 1), "epsilon": Float(0, 1), "beta1": Float(0, 1),
                  "beta2": Float(0, 1), "t": Int(0, LIMITS["iterations"])}
OPTIM_ARRAYS = ("velocity", "cache", "m", "v")  # the array entries of the update rules' configs
# The parameters of every kind of model (the optimizer state's keys); a checkpoint holds its kind's.
PARAM_NAMES = tuple(dict.fromkeys(name for cls in MODELS.values() for name in cls.PARAM_SHAPES))
FORMAT = "fastcap-checkpoint"
# What this fastcap writes; it reads 1 to FORMAT_VERSION. 2: a model of PCA-reduced features that
# fastcap prepare made carries the PCA (``pca_embedded``, members ``pca/mean`` and
# ``pca/components``), so it captions new pictures without its data directory; 1 did not.
FORMAT_VERSION = 2


def _of_kind(kind):
    hi = math.inf if kind.hi is None else kind.hi  # unbounded (a float: finite)
    return Int(kind.lo, hi) if kind.convert is int else Float(kind.lo, hi, positive=kind.open_lo)


def _of_option(option):
    if option.action == "store_true":
        spec = Choice(True, False)
    elif option.choices:
        spec = Choice(*option.choices)
    else:
        spec = _of_kind(option.kind) if option.kind is not None else Str()  # a path (--init-from)
    return Optional(spec) if option.default is None else spec


# Config keys of options added after checkpoints were first written: a checkpoint
# without one means the option's default (fastcap.train.run_config fills them in on resume).
ADDED_LATER = {"train": ("precision", "patience", "init_from", "scst", "scst_samples", "scst_baseline",
                         "scst_max_length"), "eval": ("best_metric",),
               "model": ("kind", "attention_dim", "attention_reg")}
# The model kind's fields (fastcap.train.model_config; a config without them is a pooled model's).
_MODEL_KIND = {"kind": Choice(*MODEL_KINDS), "attention_dim": Optional(_DIM),
               "attention_reg": Optional(Float(0))}


# How the features of a directory fastcap prepare wrote were made (its fastcap_features.json:
# fastcap.data.features.Extractor.record and the PCA's SHA-256): what loading needs of it;
# fastcap.data.features checks the rest when it makes the features again.
# Its grid entry, where prepare --grid wrote grid features (fastcap.data.prepare): what a
# checkpoint of an attention model embeds the grid PCA by.
_GRID_SHAPE = List(Int(1, 1 << 10), 2)  # (rows, cols) of a grid
_GRID_RECORD = Dict({"shape": _GRID_SHAPE, "channels": _DIM, "dim": _DIM,
                     "pca_dim": Optional(_DIM), "pca_sha256": Optional(Str(64))}, extra=True)
FEATURES_RECORD = Dict({"extractor": Str(100), "weights": Str(100), "pca_sha256": Str(64),
                        "dim": _DIM, "grid": _GRID_RECORD}, optional=("grid",), extra=True)
# An attention model's data: the generated grids' size, or a directory's grid files; and
# "grid_shape", the (rows, cols) it was trained on (set once the data is loaded).
_GENERATED_GRID = Dict({"grid_size": _of_kind(GRID_SIZE), "grid_dim": _DIM})


def _config_spec(input_dim):
    """The config's schema, from the options' ranges; input_dim: the spec of model.input_dim."""
    sections = {"model": {"input_dim": input_dim}, "train": {}, "eval": {}}
    for option in TRAIN_OPTIONS:
        if option.config:
            section, key = option.config
            sections[section][key] = _of_option(option)
    sections["model"].update(_MODEL_KIND)
    generated = {key: _of_kind(kind) for key, kind in GENERATED_KINDS.items()}
    return Dict({
        **{name: Dict(fields, optional=ADDED_LATER.get(name, ()), extra=True)
           for name, fields in sections.items()},
        "data": Union("source", {
            "generated": Dict({"source": Choice("generated"), **generated,
                               "pca": Choice(True, False), "grid": _GENERATED_GRID,
                               "grid_shape": _GRID_SHAPE},
                              optional=("grid", "grid_shape"), extra=True),
            "dir": Dict({"source": Choice("dir"), "path": Str(), "pca": Choice(True, False),
                         "features": FEATURES_RECORD, "grid": Choice(True),
                         "grid_shape": _GRID_SHAPE},
                        optional=("features", "grid", "grid_shape"), extra=True),
            # A model saved from Python (fastcap.inference.captioner) without its data.
            "none": Dict({"source": Choice("none"), "pca": Choice(True, False),
                          "features": FEATURES_RECORD, "grid": Choice(True),
                          "grid_shape": _GRID_SHAPE},
                         optional=("features", "grid", "grid_shape"), extra=True),
        }),
    }, extra=True)


CONFIG = _config_spec(_DIM)
_CONFIG_BEFORE_DATA = _config_spec(Optional(_DIM))  # a new run's: the data sets input_dim


_EPOCH = Dict({"epoch": Int(0, LIMITS["epochs"]), "iteration": Int(0, LIMITS["iterations"]),
               "train_loss": Optional(Float()), "val_loss": Float(),
               **{k: Float() for k in METRIC_NAMES}, "eval_seconds": Float(0)},
              optional=("eval_seconds",), extra=True)

META = Dict({
    "format": Choice(FORMAT),
    "version": Int(1, FORMAT_VERSION),
    "fastcap_version": Str(100),
    "iteration": Int(0, LIMITS["iterations"]),
    "epoch": Int(0, LIMITS["epochs"]),
    "config": CONFIG,
    "epochs": List(_EPOCH, LIMITS["epochs"] + 1),
    "optim_scalars": Mapping(PARAM_NAMES, Dict(_OPTIM_SCALARS, optional=tuple(_OPTIM_SCALARS))),
    "optim_arrays": Mapping(PARAM_NAMES, List(Choice(*OPTIM_ARRAYS), len(OPTIM_ARRAYS))),
    "rng": Dict({"kind": Choice("MT19937"), "pos": Int(0, 624), "has_gauss": Int(0, 1),
                 "cached_gaussian": Float()}),
    "pca_embedded": Choice(True, False),  # format 2: the members pca/mean, pca/components
}, optional=("pca_embedded",), extra=True)  # a later fastcap may add keys: they are ignored


def check_config(config, path="config"):
    """Check a run's config (input_dim may still be None) against the schema, then what the
    generated data it names would allocate. Raises SchemaError naming the field."""
    _CONFIG_BEFORE_DATA.check(config, path)
    data = config["data"]
    if data["source"] == "generated":
        # What generate_coco_data allocates: the PCA features (and the fc7 ones without
        # PCA), the (full_dim, pca_dim) reduction, the grids of an attention model's data,
        # and the captions.
        images = data["num_train_images"] + data["num_val_images"]
        dim = data["pca_dim"] + (0 if data["pca"] else data["full_dim"])
        if data.get("grid"):
            dim += data["grid"]["grid_size"] ** 2 * data["grid"]["grid_dim"]
        floats = max(images * dim, data["full_dim"] * data["pca_dim"])
        if floats > LIMITS["feature_floats"]:
            raise SchemaError(f"{path}.data", f"asks for {floats:,} generated feature values, "
                                              f"more than the {LIMITS['feature_floats']:,} a "
                                              "checkpoint may ask for")
        captions = images * data["captions_per_image"]
        if captions > LIMITS["captions"]:
            raise SchemaError(f"{path}.data", f"asks for {captions:,} generated captions, more "
                                              f"than the {LIMITS['captions']:,} a checkpoint may "
                                              "ask for")


def check_meta(meta):
    """Check the metadata against META, then what one field says about another."""
    META.check(meta, "")
    check_config(meta["config"])
    cfg = meta["config"]
    if meta["epoch"] > meta["iteration"] or meta["epoch"] > cfg["train"]["num_epochs"]:
        raise SchemaError("epoch", f"is {meta['epoch']}, more than the iteration "
                                   f"({meta['iteration']}) or config.train.num_epochs "
                                   f"({cfg['train']['num_epochs']})")
    if len(meta["epochs"]) > meta["epoch"] + 1:
        raise SchemaError("epochs", f"records {len(meta['epochs'])} evaluations for epoch "
                                    f"{meta['epoch']} (at most epoch + 1)")
    for i, e in enumerate(meta["epochs"]):
        if e["epoch"] != i:
            raise SchemaError(f"epochs[{i}].epoch", f"must be {i}, got {e['epoch']}")
    if set(meta["optim_arrays"]) - set(meta["optim_scalars"]):
        raise SchemaError("optim_arrays", "names parameters that optim_scalars does not")
    data = cfg["data"]
    if meta.get("pca_embedded") and not ("features" in data and data["pca"]):
        raise SchemaError("pca_embedded", "is true, but config.data is not PCA-reduced features "
                                          "with a features record")
    kind = cfg["model"].get("kind", "pooled")
    other = sorted(set(meta["optim_scalars"]) - set(MODELS[kind].PARAM_SHAPES))
    if other:
        raise SchemaError("optim_scalars", f"names {other[:3]}, not parameters of the "
                                           f"config's {kind} model")
    _check_records(cfg)


def _check_records(cfg):
    """The records against each other: the network a features record names, the feature size
    it claims, its PCA, the model's kind and input size (each one field, checked alone, could
    be right while together they cannot be: a 2048-d PCA beside a record claiming VGG-16)."""
    data, input_dim = cfg["data"], cfg["model"]["input_dim"]
    record = data.get("features")
    kind = cfg["model"].get("kind", "pooled")
    if bool(data.get("grid")) != (kind == "attention"):
        raise SchemaError("config.data", f"{'names' if data.get('grid') else 'has no'} grid "
                                         f"features, but config.model.kind is {kind!r}: an "
                                         "attention model reads grids, a pooled one vectors")
    if record is not None:
        spec = EXTRACTORS.get(record["extractor"])
        if spec is None:
            raise SchemaError("config.data.features.extractor", f"names {record['extractor']!r}, "
                              f"not a network fastcap knows ({', '.join(EXTRACTORS)})")
        if record["dim"] != spec.dim:
            raise SchemaError("config.data.features.dim", f"is {record['dim']}, but "
                              f"{spec.name} features are {spec.dim}-d")
        pca_dim = record.get("pca_dim")
        if pca_dim is not None and not (isinstance(pca_dim, int) and 1 <= pca_dim <= spec.dim):
            raise SchemaError("config.data.features.pca_dim", f"is {pca_dim!r}, not a PCA of "
                              f"{spec.dim}-d {spec.name} features")
    if "grid_shape" in data and (not data.get("grid") or len(data["grid_shape"]) != 2):
        raise SchemaError("config.data.grid_shape", "must be the (rows, cols) of grid features")
    if data.get("grid"):
        want, what = _grid_dim(data, record)
    elif record is not None:
        want = pca_dim if data["pca"] else spec.dim
        what = f"{spec.name}{' PCA' if data['pca'] else ''} features"
    elif data["source"] == "generated":
        want = data["pca_dim"] if data["pca"] else data["full_dim"]
        what = f"the generated data's {'PCA' if data['pca'] else 'full'} features"
    else:  # the CS231n files, or a saved model without its data: nothing says the size
        want = None
    if want is not None and input_dim is not None and input_dim != want:
        raise SchemaError("config.model.input_dim", f"is {input_dim}, but the model was trained "
                          f"on {what}, which are {want}-d")


def _grid_dim(data, record):
    """(channels a cell of the data's grid has, what it is called) for the size check."""
    if data["source"] == "generated":
        return data["grid"]["grid_dim"], "the generated data's grid features"
    grid = (record or {}).get("grid")
    if grid is None:  # grid files fastcap did not record (or a saved model without its data)
        return None, None
    spec = EXTRACTORS[record["extractor"]]
    if grid["channels"] != spec.grid[2]:
        raise SchemaError("config.data.features.grid.channels", f"is {grid['channels']}, but "
                          f"{spec.name}'s grid cells have {spec.grid[2]} channels")
    if grid["dim"] != (grid["pca_dim"] or grid["channels"]):
        raise SchemaError("config.data.features.grid.dim", f"is {grid['dim']}, not its PCA's "
                          "size or its channels")
    return grid["dim"], f"{record['extractor']} grid features"


def array_specs(meta, vocab_size):
    """member name -> (allowed dtypes as ``str``, exact shape) for every array the schema names."""
    shapes = ModelConfig.from_dict(meta["config"]["model"]).param_shapes(vocab_size)
    floats = DTYPES
    specs = {f"param/{k}": (floats, s) for k, s in shapes.items()}
    for name, keys in meta["optim_arrays"].items():
        for key in keys:
            specs[f"optim/{name}/{key}"] = (floats, shapes[name])
    if meta.get("pca_embedded"):  # (full - mean) @ components: (F,) and (F, D)
        data = meta["config"]["data"]
        full = data["features"]["grid"]["channels"] if data.get("grid") else data["features"]["dim"]
        specs["pca/mean"] = (("float32",), (full,))
        specs["pca/components"] = (("float32",), (full, meta["config"]["model"]["input_dim"]))
    specs["rng/keys"] = (("uint32",), (624,))
    specs["loss_history"] = (("float64",), (meta["iteration"],))
    return specs


def walk(spec=META, path=""):
    """(path, spec) of every field of the schema, depth first (for the fuzz test)."""
    yield path, spec
    if isinstance(spec, Dict):
        for key, sub in spec.fields.items():
            yield from walk(sub, f"{path}.{key}" if path else key)
    elif isinstance(spec, Union):
        for sub in spec.by_value.values():
            for p, s in walk(sub, path):
                if p != path:
                    yield p, s
