"""Captions of new pictures from Python: ``load_captioner(path)`` and ``Captioner``.

::

    captioner = fastcap.load_captioner("run/best.npz")     # or the run folder
    captioner.caption("photo.jpg")                         # one picture: a string
    captioner.caption([path, url, pil_image, array], beam_size=3)   # a list: a list of strings
    captioner.model                                        # the CaptioningRNN
    captioner.save("model.npz")                            # a checkpoint that carries everything

A picture is a path, a ``file://`` or ``http(s)`` URL (read by
``fastcap.image_utils.fetch_image``), a PIL image or a uint8 (H, W, 3) RGB
array. Its features are made as the model's training data was: by the CNN,
weights and preprocessing that ``fastcap prepare`` recorded
(``config.data.features`` of the checkpoint; fastcap.data.features) and, for a
model of PCA-reduced features, the PCA the checkpoint carries (checkpoint
format 2). A format-1 checkpoint did not carry it: its PCA is read from its
data directory (``data_dir``, else the one it names), with a
``CheckpointNote``. A model trained on features fastcap cannot make (the
CS231n files, the generated data) still loads: ``caption_features`` captions
features, and ``caption`` says what is missing (``extractor=`` names the CNN of
a model of full features).

``Captioner(model, data_dir=...)`` wraps a CaptioningRNN trained in Python
(``CaptioningSolver``) on a directory ``fastcap prepare`` wrote; ``save``
writes it as a checkpoint (without optimizer state), which ``load_captioner``
and every ``fastcap`` command read.
"""
import json
import os
import warnings

import numpy as np

from ..data import features as F
from ..data.prepare import apply_pca, load_pca, read_features_record
from ..image_utils import MAX_PIXELS, fetch_image, to_rgb8
from .attention_map import attended_words
from ..runtime.files import check_target
from ..runtime.names import PRECISIONS
from ..runtime.precision import use_precision
from ..train.checkpoint import CheckpointError, load_checkpoint, save_model
from ..train.evaluation import generate, suppressing
from ..train.metrics import decode_for_metrics
from ..train.model_config import ModelConfig
from ..train.options import MAX_LENGTH, POSITIVE_INT
from ..train.run_config import resolve_config
from ..train.rundir import inference_checkpoint

__all__ = ["Captioner", "ImageFeatures", "load_captioner", "CheckpointNote", "as_image"]


class CheckpointNote(UserWarning):
    """Something about a checkpoint worth knowing that does not stop it (an old format)."""


class ImageFeatures:
    """Pictures -> the features a model reads: ``extractor`` (a fastcap.data.features.Extractor)
    and, for a model of PCA-reduced features, ``pca`` (mean float32 (F,), components float32
    (F, D)). ``record``: the features record they reproduce. Calling it on uint8 (H, W, 3)
    arrays gives float32 (N, dim); with ``grid`` (an attention model's), the network's grid
    of cells, float32 (N, L, dim), L = rows * cols of ``grid_shape``, the PCA per cell."""

    def __init__(self, extractor, pca=None, record=None, grid=False):
        self.extractor, self.pca, self.record, self.grid = extractor, pca, record, grid

    @property
    def dim(self):
        full = self.extractor.spec.grid[2] if self.grid else self.extractor.dim
        return full if self.pca is None else int(self.pca[1].shape[1])

    @property
    def grid_shape(self):
        return tuple(self.extractor.spec.grid[:2])

    def describe(self):
        s = f"{self.extractor.spec.name} ({F.describe_weights(self.extractor.record())} weights)"
        grid = "grid {}x{}x".format(*self.grid_shape) if self.grid else ""
        return f"{s}{' PCA' if self.pca is not None else ''} {grid}{self.dim}-d features"

    def __call__(self, images, sources=None):
        """``sources``: the pictures' names, for the error when memory runs out."""
        full = self.extractor.features(images, sources, grid=self.grid)
        full = full[1] if self.grid else full
        return full if self.pca is None else apply_pca(full, *self.pca)

    def view(self, image):
        """uint8 (crop, crop, 3): the part of ``image`` the network (and its grid) sees."""
        return F.network_view(image, self.extractor.spec)


def as_image(image, where="image"):
    """uint8 (H, W, 3) RGB of a picture (see the module docstring); TypeError or ValueError
    naming ``where`` for anything else, fastcap.image_utils.ImageUnavailableError for a source
    that cannot be read."""
    if isinstance(image, (str, bytes, os.PathLike)):
        return fetch_image(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            batch = " (a list of pictures is a list, not a 4-d array)" if image.ndim == 4 else ""
            raise ValueError(f"{where}: an array picture must be uint8 (H, W, 3) RGB, got "
                             f"{image.dtype} {image.shape}{batch}")
        _check_pixels(image.shape[1], image.shape[0], where)
        return np.ascontiguousarray(image)
    if type(image).__module__.startswith("PIL."):
        from PIL import Image

        if isinstance(image, Image.Image):
            _check_pixels(*image.size, where)
            return to_rgb8(image)  # deep modes scaled, as a file's are
    raise TypeError(f"{where}: a picture is a path, a URL, a PIL image or a uint8 (H, W, 3) "
                    f"array, got {type(image).__name__}")


def _check_pixels(w, h, where):
    if w * h > MAX_PIXELS:
        raise ValueError(f"{where}: {w} x {h} pixels, more than MAX_PIXELS = {MAX_PIXELS:,}")


def _count(value, kind, name):
    if not kind.ok(value):
        raise ValueError(f"{name} must be {kind.expected}, got {value!r}")
    return int(value)


class Captioner:
    """A captioning model and the way its pictures become features.

    ``model``: a CaptioningRNN; ``data_dir``: a directory ``fastcap prepare`` wrote, whose
    CNN and PCA made the features the model was trained on; ``extractor`` (with
    ``weights``): for a model of full features of a known CNN; neither: the model captions
    features only (``caption_features``). ``precision``: of the model's products."""

    def __init__(self, model, *, data_dir=None, extractor=None, weights=None,
                 precision="float32", threads=None):
        self.model, self.path, self.checkpoint = model, None, None
        self.data_dir = None if data_dir is None else os.path.abspath(os.fspath(data_dir))
        self.precision = _precision(precision)
        record = read_features_record(self.data_dir) if self.data_dir is not None else None
        dim = ModelConfig.from_model(model).input_dim
        pca, grid = None, bool(model.GRID)
        if grid and record is not None:
            if record.get("grid") is None:
                raise ValueError(f"the model reads grid features, but {self.data_dir} has none "
                                 "(fastcap prepare --grid writes them)")
            if record["grid"].get("pca_dim") is not None:
                pca = load_pca(self.data_dir, record, grid=True)
        elif record is not None and dim != record.get("dim"):  # a model of PCA features
            pca = load_pca(self.data_dir, record)
            if pca[1].shape[1] != dim:
                raise ValueError(f"the model reads {dim}-d features, but {self.data_dir} has "
                                 f"{record.get('dim')}-d features and a {pca[1].shape[1]}-d PCA")
        self.features, self.unavailable = _features(record, pca, extractor, weights, threads,
                                                    f"data_dir {self.data_dir}", dim,
                                                    self.data_dir, grid=grid)

    @classmethod
    def from_checkpoint(cls, ckpt, *, data_dir=None, extractor=None, weights=None,
                        precision=None, threads=None):
        """The Captioner of a loaded checkpoint (fastcap.train.checkpoint.Checkpoint)."""
        self = cls.__new__(cls)
        # frozen: only decoded from here, so its packed weights are kept between calls
        self.model, self.path, self.checkpoint = ckpt.build_model().freeze(), ckpt.path, ckpt
        spec = ckpt.config["data"]
        self.data_dir = data_dir or (spec.get("path") if spec["source"] == "dir" else None)
        self.precision = _precision(precision or ckpt.config["train"].get("precision", "float32"))
        record, where = spec.get("features"), f"checkpoint {ckpt.path}"  # schema-checked
        if record is None and self.data_dir is not None and os.path.isdir(self.data_dir):
            record, where = read_features_record(self.data_dir), f"data directory {self.data_dir}"
        pca, grid = ckpt.pca, bool(spec.get("grid"))
        if record is not None and spec.get("pca", True) and pca is None:
            pca = _old_pca(ckpt, self.data_dir, record, grid)
        if record is None and extractor is not None and spec.get("pca", True):
            raise CheckpointError(
                f"checkpoint {ckpt.path} was trained on PCA-reduced features that fastcap did not "
                "make: their PCA is unknown, so no extractor can reproduce them")
        self.features, self.unavailable = _features(
            record, pca, extractor, weights, threads, where, ckpt.model_config["input_dim"],
            self.data_dir, spec=spec, path=ckpt.path, grid=grid)
        if grid and self.features is not None:
            ckpt.check_grid_shape(self.features.grid_shape, self.features.describe())
        return self

    # ------------------------------------------------------------ captions
    @property
    def idx_to_word(self):
        return [self.model.idx_to_word[i] for i in range(len(self.model.idx_to_word))]

    def caption(self, images, *, beam_size=1, max_length=30, no_unk=False, batch_size=32):
        """The caption of each picture (see the module docstring): a string for one picture,
        a list of strings for a list. ``beam_size`` 1 is greedy decoding; ``no_unk``: never
        <UNK>; ``batch_size``: pictures per pass of the CNN."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        batch_size = _count(batch_size, POSITIVE_INT, "batch_size")
        self._check_decoding(beam_size, max_length)
        self._require_features()
        out = []
        for a in range(0, len(items), batch_size):
            where = ["images" if single else f"images[{a + k}]" for k in range(len(items[a:a + batch_size]))]
            arrays = [as_image(im, w) for im, w in zip(items[a:a + batch_size], where)]
            sources = [str(im) if isinstance(im, (str, os.PathLike)) else w
                       for im, w in zip(items[a:a + batch_size], where)]
            out += self.caption_arrays(arrays, beam_size=beam_size, max_length=max_length,
                                       no_unk=no_unk, sources=sources)
        return out[0] if single else out

    def caption_arrays(self, arrays, *, beam_size=1, max_length=30, no_unk=False, sources=None):
        """Captions of uint8 (H, W, 3) arrays (already checked: ``as_image``), one CNN pass;
        ``sources``: their names, for the error when memory runs out."""
        self._require_features()
        return self.caption_features(self.features(arrays, sources), beam_size=beam_size,
                                     max_length=max_length, no_unk=no_unk)

    def caption_features(self, features, *, beam_size=1, max_length=30, no_unk=False):
        """Captions (a list of strings) of image features, float (N, D) in the model's D; an
        attention model's: grids, float (N, L, D)."""
        self._check_decoding(beam_size, max_length)
        x = self._checked(features)
        model = self._decoder(no_unk)
        with use_precision(self.precision):
            words = generate(model, x, int(beam_size), int(max_length))
        return decode_for_metrics(words, self.model.idx_to_word)

    def attend(self, arrays, *, max_length=30, no_unk=False, sources=None):
        """An attention model's greedy captions of uint8 (H, W, 3) arrays (``as_image``) with
        where it looked: [(words, weights float32 (len(words), L))], each word's attention over
        the L cells of ``features.grid_shape`` (the grid covers ``features.view(array)``)."""
        if not self.model.GRID:
            raise ValueError(f"attention maps need an attention model; this is "
                             f"{ModelConfig.from_model(self.model).describe()}")
        self._check_decoding(1, max_length)
        self._require_features()
        x = self._checked(self.features(arrays, sources))
        model = self._decoder(no_unk)
        with use_precision(self.precision):
            captions, alpha = model.sample(x, int(max_length), return_attention=True)
        return attended_words(self.model, captions, alpha)

    def _decoder(self, no_unk):
        """The model that decodes: self.model, or with no_unk its copy that never says <UNK>.
        The copy of a frozen model (read-only parameters) is made once and kept while the
        model and its parameters are the same objects, so its packed weights are kept too."""
        if not no_unk:
            return self.model
        arrays = tuple(self.model.params.items())
        made = self.__dict__.get("_no_unk")
        if made is not None and made[0] is self.model and len(made[1]) == len(arrays) and all(
                k == j and a is b for (k, a), (j, b) in zip(made[1], arrays)):
            return made[2]
        made = (self.model, arrays, suppressing(self.model, ("<UNK>",)))
        if not any(np.asarray(a).flags.writeable for _, a in arrays):
            self._no_unk = made
        return made[2]

    def _checked(self, features):
        """``features`` as the model's dtype, checked: (N, D), or (N, L, D) for a grid."""
        x = np.asarray(features)
        dim, grid = self.model.params["W_proj"].shape[0], bool(self.model.GRID)
        want = f"(N, L, {dim}) grid" if grid else f"(N, {dim})"
        if x.ndim != (3 if grid else 2) or x.shape[-1] != dim or x.dtype.kind not in "fiu" or \
                (grid and x.shape[1] == 0):
            raise ValueError(f"features must be a float {want} array (the model's input size"
                             f"{', L >= 1 cells' if grid else ''}), got {x.dtype} {x.shape}")
        with np.errstate(over="ignore"):
            x = x.astype(self.model.dtype)
        if not np.isfinite(x).all():
            raise ValueError(f"features hold NaN or infinite values (as {self.model.dtype})")
        return x

    def _check_decoding(self, beam_size, max_length):
        _count(beam_size, POSITIVE_INT, "beam_size")
        _count(max_length, MAX_LENGTH, "max_length")

    def _require_features(self):
        if self.features is None:
            raise CheckpointError(self.unavailable)

    # ------------------------------------------------------------ saving
    def save(self, path, *, overwrite=False):
        """Write the model and what captioning needs as a checkpoint at ``path`` (atomically;
        an existing file only with ``overwrite``, never the checkpoint it was loaded from);
        returns its real path. It has no optimizer state: it starts runs (``--init-from``),
        it does not resume."""
        if self.model.idx_to_word.keys() != set(range(len(self.model.idx_to_word))):
            raise ValueError("the model's vocabulary indices are not 0..V-1, which a checkpoint's "
                             "word list needs")
        if os.path.lexists(path) and not overwrite:
            raise FileExistsError(f"Captioner.save: {path} exists; it is replaced only with "
                                  "overwrite=True")
        target = check_target(path, what="Captioner.save path", inputs=[self.path],
                              overwrite=True)  # still never an input, a link or a special file
        pca = None if self.features is None else self.features.pca
        ckpt = self.checkpoint
        if ckpt is not None:
            config = _copy(ckpt.config)
            progress = (ckpt.iteration, ckpt.epoch, ckpt.epochs, ckpt.loss_history)
        else:
            config, progress = resolve_config({}), None
            record = None if self.features is None else self.features.record
            config["data"] = ({"source": "dir", "path": self.data_dir} if self.data_dir
                              else {"source": "none"})
            config["data"]["pca"] = pca is not None or record is None
            if self.model.GRID:
                config["data"]["grid"] = True
            if record is not None:
                config["data"]["features"] = record
        config["model"] = ModelConfig.from_model(self.model).as_dict()
        config["train"]["precision"] = self.precision
        return save_model(target, model=self.model, config=config, idx_to_word=self.idx_to_word,
                          pca=pca, progress=progress)

    def describe(self):
        """``LSTM (wordvec 128, hidden 256, float32), 21 words, resnet50 (imagenet weights) PCA
        512-d features``: the model and what it reads."""
        what = self.features.describe() if self.features is not None else "features only"
        return (f"{ModelConfig.from_model(self.model).describe()}, "
                f"{len(self.model.word_to_idx)} words, {what}")

    def __repr__(self):
        return f"Captioner({self.describe()}" + (f", from {self.path})" if self.path else ")")


def _precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _copy(config):
    return json.loads(json.dumps(config))


def _old_pca(ckpt, data_dir, record, grid=False):
    """The PCA of a format-1 checkpoint, from its data directory, with a CheckpointNote."""
    if data_dir is None or not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"checkpoint {ckpt.path} was written before checkpoints carried their PCA, and its "
            f"data directory {data_dir} is not there any more; pass --data DIR (data_dir=) "
            "for the directory it was trained on")
    pca = load_pca(data_dir, record, grid=grid)
    warnings.warn(CheckpointNote(
        f"checkpoint {ckpt.path} was written before checkpoints carried their PCA (format 1): "
        f"read it from {data_dir}; Captioner.save writes a copy that carries it"), stacklevel=3)
    return pca


def _features(record, pca, extractor, weights, threads, where, dim, data_dir, spec=None,
              path=None, grid=False):
    """(ImageFeatures, None), or (None, why pictures cannot be captioned); ``grid``: an
    attention model's (the network's grid of cells)."""
    if grid and record is not None and record.get("grid") is None:
        raise CheckpointError(f"{where}: the model reads grid features, but the features record "
                              "has none (fastcap prepare --grid writes them)")
    if record is not None:
        if extractor is not None and extractor != record.get("extractor"):
            raise CheckpointError(f"{where}: the model was trained on {record.get('extractor')} "
                                  f"features, not {extractor}")
        ext = F.extractor_from_record(record, where, threads, weights)
        made = ImageFeatures(ext, pca, record, grid)
    elif extractor is not None:
        spec_of = F.EXTRACTORS.get(extractor)
        made = dim if spec_of is None else spec_of.grid[2] if grid else spec_of.dim
        if made != dim:  # before the network is built (and its weights downloaded)
            raise CheckpointError(f"{where}: the model reads {dim}-dimensional features but "
                                  f"extractor {extractor} makes {made}-dimensional ones")
        made = ImageFeatures(F.Extractor(extractor, weights or "imagenet", threads), grid=grid)
    elif spec is None and data_dir is None:  # a model made in Python, told nothing
        return None, ("this Captioner was given neither data_dir (a directory fastcap prepare "
                      "wrote) nor extractor, so it cannot make features of pictures; "
                      "caption_features captions features")
    else:
        if spec is not None and spec["source"] == "generated":
            what = "fastcap's generated data"
        elif spec is not None and spec["source"] == "none":
            what = "data it does not record"
        else:
            what = f"{data_dir}, data fastcap did not prepare (such as the CS231n files)"
        model = f"checkpoint {path}" if path else "the model"
        return None, (f"{model} was trained on features of {what}; fastcap cannot compute them "
                      "for a new image. Train on data made by `fastcap prepare`, or, for a model "
                      "of full (--no-pca) features of a known network, pass --extractor "
                      f"({', '.join(F.EXTRACTORS)})")
    if made.dim != dim:
        raise CheckpointError(f"{where}: the model reads {dim}-dimensional features but its "
                              f"features are {made.dim}-dimensional")
    return made, None


def load_captioner(path, *, data_dir=None, extractor=None, weights=None, precision=None,
                   threads=None):
    """The Captioner of a checkpoint, or of a run folder (its best.npz, else checkpoint.npz).

    ``data_dir``: where a format-1 checkpoint's data directory is now (format 2 needs none);
    ``extractor``: the CNN of a model of full features that fastcap did not prepare;
    ``weights``: a local copy of the weights file its features were made with (offline),
    checked by SHA-256; ``precision``: of the model's products (default: the checkpoint's);
    ``threads``: the CNN's. Raises CheckpointError (a ValueError) for a checkpoint that is
    not one or does not fit."""
    file, _ = inference_checkpoint(path)
    return Captioner.from_checkpoint(load_checkpoint(file), data_dir=data_dir,
                                     extractor=extractor, weights=weights, precision=precision,
                                     threads=threads)
