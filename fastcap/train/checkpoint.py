"""Training checkpoints: one ``.npz`` file holding everything a run needs to continue.

Layout (``np.savez``; every member is a plain array, so ``np.load(path,
allow_pickle=False)`` reads it and a checkpoint can never run code):

=====================  =====================================================
``meta``               JSON string: format name and version, fastcap version,
                       ``iteration``, ``epoch``, ``config`` (model: cell_type,
                       input_dim, wordvec_dim, hidden_dim, dtype; training:
                       update_rule, learning_rate, lr_decay, batch_size,
                       num_epochs, seed, max_train; data: where the data came
                       from, enough to load or regenerate it), ``epochs`` (the
                       per-epoch validation history), the non-array entries of
                       every optimizer config (learning_rate, beta1, t, ...)
                       and the scalar part of the minibatch RNG state
``vocab``              JSON string: the ``idx_to_word`` list
``param/<name>``       the model's parameters, in the model dtype
``optim/<name>/<key>`` the array entries of each parameter's optimizer config
                       (``m``, ``v`` for adam, ``velocity``, ``cache``)
``rng/keys``           uint32 (624,): the MT19937 key of the minibatch RNG
``loss_history``       float64: every training minibatch loss so far
``pca/mean``           float32 (F,), and ``pca/components`` float32 (F, D):
                       the PCA of the features (format 2, ``pca_embedded``
                       in ``meta``; a model of PCA-reduced features that
                       ``fastcap prepare`` made), checked against the
                       features record's SHA-256 (``config.data.features``)
=====================  =====================================================

A checkpoint is self-contained for captioning: the vocabulary, the model
(kind, sizes, dtype), the precision (``config.train.precision``), how the
image features were made (``config.data.features``) and their PCA. A model
saved without a training run (``save_model``) has no optimizer state: it
starts new runs (``--init-from``) but does not resume.

Files are written atomically: a temporary file in the same directory is
written, flushed and fsync'ed, then renamed over the target with
``os.replace``, so a crash or Ctrl-C while saving leaves the previous
checkpoint as it was.
"""
import dataclasses
import json
import os
import stat
import zipfile
import zlib

import numpy as np

from ..runtime import files as _atomic
from ..runtime.names import VERSION as __version__
from ..model.validate import REQUIRED_TOKENS
from ..data.prepare import pca_digest
from . import checkpoint_schema as schema
from .checkpoint_schema import FORMAT, FORMAT_VERSION, LIMITS
from .model_config import ModelConfig
from ..classifiers import MODELS, kind_of

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "save_model", "load_checkpoint",
           "FORMAT", "FORMAT_VERSION"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the data or model."""


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _dumps(obj):
    return json.dumps(obj, default=_json_default, allow_nan=True)


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint (see the module docstring for what each part holds)."""

    path: str
    config: dict
    iteration: int
    epoch: int
    epochs: list
    params: dict
    optim_configs: dict
    rng_state: tuple
    loss_history: list
    idx_to_word: list
    meta: dict
    pca: tuple = None  # (mean float32 (F,), components float32 (F, D)) where it carries them

    @property
    def model_config(self):
        return self.config["model"]

    @property
    def model(self):
        """The ModelConfig of the checkpoint's model."""
        return ModelConfig.from_dict(self.model_config)

    @property
    def word_to_idx(self):
        return {w: i for i, w in enumerate(self.idx_to_word)}

    # ------------------------------------------------------------ checks
    def check_vocab(self, idx_to_word, source):
        """Raise CheckpointError unless ``idx_to_word`` is the checkpoint's vocabulary."""
        mine, theirs = list(self.idx_to_word), list(idx_to_word)
        if mine == theirs:
            return
        if len(mine) != len(theirs):
            detail = f"{len(mine)} words in the checkpoint, {len(theirs)} in the data"
        else:
            i = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
            detail = f"word {i} is {mine[i]!r} in the checkpoint and {theirs[i]!r} in the data"
        raise CheckpointError(f"checkpoint {self.path} was trained on another vocabulary than "
                              f"{source} ({detail})")

    def check_input_dim(self, input_dim, source):
        expected = self.model_config["input_dim"]
        if int(input_dim) != expected:
            raise CheckpointError(
                f"checkpoint {self.path} expects {expected}-dimensional image features but "
                f"{source} has {int(input_dim)}-dimensional ones (a model reads either the "
                "data's PCA-reduced or its full features: check --pca/--no-pca)")

    def check_grid_shape(self, grid_shape, source):
        """Raise CheckpointError unless ``grid_shape`` (rows, cols) of ``source``'s grid
        features is the one the model was trained on (where the checkpoint records it)."""
        trained = self.config["data"].get("grid_shape")
        if trained is not None and tuple(trained) != tuple(grid_shape):
            raise CheckpointError(
                f"checkpoint {self.path} was trained on grids of {trained[0]}x{trained[1]} cells "
                f"but {source} has {grid_shape[0]}x{grid_shape[1]}: its attention learned those "
                "cells' places (make the grid features with the checkpoint's network)")

    def check_kind(self, kind, what):
        """Raise CheckpointError unless the checkpoint holds a model of ``kind`` (a key of
        fastcap.classifiers.MODELS), which ``what`` (the code it is given to) takes."""
        mine = self.model
        if mine.kind != kind:
            raise CheckpointError(
                f"checkpoint {self.path} holds {_a(mine)} ({mine.describe()}, "
                f"{MODELS[mine.kind].__name__}), but {what} takes {_a(kind)} "
                f"({MODELS[kind].__name__})")

    def build_model(self):
        """The model (fastcap.classifiers.MODELS by its kind) with this checkpoint's vocabulary,
        sizes and parameters."""
        return self.load_params_into(self.model.build(self.word_to_idx))

    def load_params_into(self, model):
        """Copy the parameters into ``model`` after checking its kind and every name, shape and
        dtype."""
        self.check_kind(kind_of(model), f"this {type(model).__name__}")
        for name, value in model.params.items():
            saved = self.params.get(name)
            if saved is None:
                raise CheckpointError(f"checkpoint {self.path} has no parameter {name!r}")
            if saved.shape != value.shape:
                raise CheckpointError(
                    f"checkpoint {self.path} does not fit this model: parameter {name} has shape "
                    f"{saved.shape} in the checkpoint and {value.shape} in the model "
                    f"({self.model.describe(keys=True)} vs "
                    f"{ModelConfig.from_model(model).describe(keys=True)})")
        extra = set(self.params) - set(model.params)
        if extra:
            raise CheckpointError(f"checkpoint {self.path} has unknown parameters {sorted(extra)}")
        for name in model.params:
            model.params[name] = np.array(self.params[name], dtype=model.dtype, order="C")
        return model

    def restore_solver(self, solver):
        """Put the optimizer state, counters, loss history and RNG state into ``solver``."""
        if not self.optim_configs:
            raise CheckpointError(f"checkpoint {self.path} is a model without optimizer state "
                                  "(saved by save_model or Captioner.save), which cannot be "
                                  "resumed; start a new run from it with --init-from")
        if set(self.optim_configs) != set(solver.model.params):
            raise CheckpointError(f"checkpoint {self.path} has optimizer state for "
                                  f"{sorted(self.optim_configs)}, not for the model's parameters")
        configs = {}
        for name, config in self.optim_configs.items():
            config = dict(config)
            for key, value in config.items():
                if isinstance(value, np.ndarray):
                    w = solver.model.params[name]
                    if value.shape != w.shape:
                        raise CheckpointError(f"checkpoint {self.path}: optimizer state {name}.{key} "
                                              f"has shape {value.shape}, the parameter {w.shape}")
                    config[key] = np.array(value, dtype=w.dtype, order="C")
            configs[name] = config
        solver.optim_configs = configs
        solver.iteration = self.iteration
        solver.epoch = self.epoch
        solver.loss_history = list(self.loss_history)
        if solver.rng is not None:
            solver.rng.set_state(self.rng_state)
        return solver


def save_checkpoint(path, *, model, solver, config, epochs, idx_to_word, extra_meta=None,
                    pca=None):
    """Write a checkpoint of ``model`` and ``solver`` to ``path`` atomically.

    config: JSON-able dict with a ``model`` entry (``ModelConfig.as_dict()``) and the
    training and data settings; epochs: the per-epoch history (list of dicts);
    idx_to_word: the vocabulary; pca: (mean (F,), components (F, D)) of the features the
    model reads, or None. The solver's ``rng`` must be a
    ``np.random.RandomState`` (its MT19937 state is saved). Returns the path.
    """
    arrays = {}
    for name, value in model.params.items():
        arrays[f"param/{name}"] = np.ascontiguousarray(value)
    optim_scalars = {}
    for name, cfg in solver.optim_configs.items():
        scalars = {}
        for key, value in cfg.items():
            if isinstance(value, np.ndarray):
                arrays[f"optim/{name}/{key}"] = np.ascontiguousarray(value)
            elif isinstance(value, (bool, int, float, str, np.integer, np.floating, np.bool_)) or value is None:
                scalars[key] = value
            else:
                raise TypeError(f"optimizer config {name}.{key} is a {type(value).__name__}; "
                                "checkpoints store arrays and numbers only")
        optim_scalars[name] = scalars
    if not isinstance(solver.rng, np.random.RandomState):
        raise TypeError("checkpoints need the solver's rng to be a np.random.RandomState")
    kind, keys, pos, has_gauss, cached_gaussian = solver.rng.get_state()
    arrays["rng/keys"] = np.asarray(keys, dtype=np.uint32)
    arrays["loss_history"] = np.asarray(solver.loss_history, dtype=np.float64)
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "fastcap_version": __version__,
        "iteration": int(solver.iteration),
        "epoch": int(solver.epoch),
        "config": config,
        "epochs": epochs,
        "optim_scalars": optim_scalars,
        "optim_arrays": {name: sorted(k for k, v in cfg.items() if isinstance(v, np.ndarray))
                         for name, cfg in solver.optim_configs.items()},
        "rng": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached_gaussian)},
        **(extra_meta or {}),
    }
    return _write(path, arrays, meta, idx_to_word, pca)


def save_model(path, *, model, config, idx_to_word, pca=None, progress=None):
    """Write ``model`` alone (no optimizer state) as a checkpoint at ``path``, atomically.

    config, idx_to_word and pca as save_checkpoint's; progress: (iteration, epoch, epochs,
    loss_history) of the run it comes from (default: none). It loads everywhere a
    checkpoint does and starts runs (``--init-from``); it cannot be resumed."""
    iteration, epoch, epochs, losses = progress or (0, 0, [], [])
    kind, keys, pos, has_gauss, cached = np.random.RandomState(0).get_state()
    arrays = {f"param/{name}": np.ascontiguousarray(v) for name, v in model.params.items()}
    arrays["rng/keys"] = np.asarray(keys, dtype=np.uint32)
    arrays["loss_history"] = np.asarray(losses, dtype=np.float64)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "fastcap_version": __version__,
            "iteration": int(iteration), "epoch": int(epoch), "config": config,
            "epochs": list(epochs), "optim_scalars": {}, "optim_arrays": {},
            "rng": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss),
                    "cached_gaussian": float(cached)}}
    return _write(path, arrays, meta, idx_to_word, pca)


def _write(path, arrays, meta, idx_to_word, pca):
    """Add the PCA, the metadata and the vocabulary to ``arrays`` and write them atomically."""
    if pca is not None:
        mean, components = pca
        arrays["pca/mean"] = np.ascontiguousarray(mean, dtype=np.float32)
        arrays["pca/components"] = np.ascontiguousarray(components, dtype=np.float32)
        meta["pca_embedded"] = True
    arrays["meta"] = np.array(_dumps(meta))
    arrays["vocab"] = np.array(json.dumps(list(idx_to_word)))

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a name
            np.savez(f, **arrays)

    return _atomic.atomic_write(path, write)


def _a(kind_or_config):
    """'an attention model' or 'a pooled-feature model', of a kind or a ModelConfig."""
    kind = getattr(kind_or_config, "kind", kind_or_config)
    return "an attention model" if kind == "attention" else "a pooled-feature model"


def _not_a_checkpoint(path, why):
    return CheckpointError(f"{path} is not a fastcap checkpoint ({why})")


def _regular_file(path):
    """Refuse what is not a regular file (a FIFO would block the reader forever)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path} is not a regular file (a checkpoint is an .npz file)")


class _Members:
    """Reads single ``.npy`` members of a zip (``np.savez``) file, bounded by their headers.

    Only members that are asked for are decompressed, and only after their
    ``.npy`` header (dtype, shape) and the zip's declared size agree with what
    the caller expects; the zip reader stops at the declared size, so a member
    cannot inflate past it.
    """

    def __init__(self, path, zf):
        self.path, self.zf = path, zf

    def read(self, name, dtypes, shape=None, max_bytes=None, why=""):
        """The array ``name`` (dtype one of ``dtypes``; ``shape`` exact or None) in native byte order.

        ``why``: where the expected shape comes from, for the error message."""
        try:
            info = self.zf.getinfo(name + ".npy")
        except KeyError:
            raise CheckpointError(f"checkpoint {self.path} is incomplete: missing {name!r}") from None
        where = f"checkpoint {self.path}: member {name!r}"
        with self.zf.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0(f, max_header_size=10000)
                elif version == (2, 0):
                    header = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except (ValueError, OSError, EOFError) as exc:
                raise CheckpointError(f"{where} is not a readable array ({exc})") from None
            got_shape, fortran, dtype = header
            if dtype.hasobject or dtype.newbyteorder("=").name not in dtypes:
                raise CheckpointError(f"{where} must have dtype {' or '.join(dtypes)}, got {dtype}")
            if shape is not None and tuple(got_shape) != tuple(shape):
                raise CheckpointError(f"{where} has shape {tuple(got_shape)}, but {why or 'the format'} "
                                      f"needs {tuple(shape)}")
            nbytes = int(np.prod(got_shape, dtype=np.int64)) * dtype.itemsize
            limit = LIMITS["array_bytes"] if max_bytes is None else max_bytes
            if nbytes > limit:
                raise CheckpointError(f"{where} is {nbytes:,} bytes, more than the {limit:,} allowed")
            if info.file_size != f.tell() + nbytes:
                raise CheckpointError(f"{where} declares {info.file_size:,} bytes but its header "
                                      f"describes {f.tell() + nbytes:,}")
            try:
                raw = f.read(nbytes)
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise CheckpointError(f"{where} is damaged ({exc})") from None
        if len(raw) != nbytes:
            raise CheckpointError(f"{where} is truncated")
        a = np.frombuffer(raw, dtype=dtype)
        a = a.reshape(got_shape, order="F" if fortran else "C")
        return np.array(a, dtype=dtype.newbyteorder("="), order="C")  # a writable native copy

    def json(self, name):
        try:
            a = self.read(name, dtypes=_TEXT_DTYPES, shape=(), max_bytes=LIMITS["meta_bytes"])
        except CheckpointError as exc:
            raise _not_a_checkpoint(self.path, str(exc)) from None
        try:
            return json.loads(str(a))
        except RecursionError:
            raise CheckpointError(f"checkpoint {self.path}: member {name!r} is JSON nested too "
                                  "deeply") from None
        except ValueError as exc:
            raise _not_a_checkpoint(self.path, f"unreadable {name}: {exc}") from None


class _AnyUnicode(tuple):
    def __contains__(self, name):
        return name.startswith("str")  # '<U12' is 'str384'


_TEXT_DTYPES = _AnyUnicode(("a unicode string",))


def load_checkpoint(path):
    """Read and check a checkpoint written by ``save_checkpoint``. Raises CheckpointError.

    Every field is checked against ``fastcap.train.checkpoint_schema`` before any is
    used; only the members the schema names are read.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        candidate = os.path.join(path, "checkpoint.npz")
        if not os.path.exists(candidate):
            raise CheckpointError(f"{path} is a directory without a checkpoint.npz")
        path = candidate
    _regular_file(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _not_a_checkpoint(path, f"{type(exc).__name__}: {exc}") from None
    with zf:
        z = _Members(path, zf)
        names = set(zf.namelist())
        if "meta.npy" not in names or "vocab.npy" not in names:
            raise _not_a_checkpoint(path, "no 'meta' or 'vocab' entry")
        meta = z.json("meta")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise _not_a_checkpoint(path, "its metadata does not name the fastcap checkpoint format")
        version = meta.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise CheckpointError(f"{path} was written by a newer fastcap (field version: checkpoint "
                                  f"format {version}; this fastcap reads up to {FORMAT_VERSION})")
        try:
            schema.check_meta(meta)
        except schema.SchemaError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from None
        idx_to_word = z.json("vocab")
        _check_vocab_list(path, idx_to_word)
        model = ModelConfig.from_dict(meta["config"]["model"])
        why = f"its config ({model.describe(keys=True)}, {len(idx_to_word)} words)"
        arrays = {name: z.read(name, dtypes, shape, why=why)
                  for name, (dtypes, shape) in schema.array_specs(meta, len(idx_to_word)).items()}
    bad = [name for name, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise CheckpointError(f"checkpoint {path}: {bad[0]} holds NaN or infinite values")
    pca = None
    if meta.get("pca_embedded"):
        pca = arrays["pca/mean"], arrays["pca/components"]
        data = meta["config"]["data"]  # an attention model's: the PCA of its grid's cells
        field = "features.grid" if data.get("grid") else "features"
        record = data["features"]["grid"] if data.get("grid") else data["features"]
        if pca_digest(*pca) != record["pca_sha256"]:
            raise CheckpointError(f"checkpoint {path}: pca/mean and pca/components are not the "
                                  "PCA its features record names (their SHA-256 is not "
                                  f"config.data.{field}.pca_sha256)")
    params = {name: arrays[f"param/{name}"] for name in model.model_class.PARAM_SHAPES}
    optim_configs = {}
    for name, scalars in meta["optim_scalars"].items():
        cfg = dict(scalars)
        for key in meta["optim_arrays"].get(name, []):
            cfg[key] = arrays[f"optim/{name}/{key}"]
        optim_configs[name] = cfg
    rng = meta["rng"]
    rng_state = (rng["kind"], arrays["rng/keys"], rng["pos"], rng["has_gauss"], rng["cached_gaussian"])
    return Checkpoint(path=path, config=meta["config"], iteration=meta["iteration"],
                      epoch=meta["epoch"], epochs=list(meta["epochs"]), params=params,
                      optim_configs=optim_configs, rng_state=rng_state,
                      loss_history=arrays["loss_history"].tolist(), idx_to_word=idx_to_word,
                      meta=meta, pca=pca)


def _check_vocab_list(path, idx_to_word):
    if not isinstance(idx_to_word, list) or not 0 < len(idx_to_word) <= LIMITS["vocab"]:
        raise CheckpointError(f"checkpoint {path}: the vocabulary must be a list of 1 to "
                              f"{LIMITS['vocab']} words")
    for i, w in enumerate(idx_to_word):
        if not isinstance(w, str):
            raise CheckpointError(f"checkpoint {path}: vocabulary word {i} must be a string, got "
                                  f"{type(w).__name__}")
    if len(set(idx_to_word)) != len(idx_to_word):
        seen = set()
        dup = next(w for w in idx_to_word if w in seen or seen.add(w))
        raise CheckpointError(f"checkpoint {path}: the vocabulary lists {dup!r} twice")
    for token in REQUIRED_TOKENS:
        if token not in idx_to_word:
            raise CheckpointError(f"checkpoint {path}: the vocabulary has no {token} token")
