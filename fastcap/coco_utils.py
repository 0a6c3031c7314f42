"""Reading the CS231n COCO captioning files, minibatches and decoding."""
import json
import os

import numpy as np

from .model.validate import word_to_idx as check_word_to_idx
from .runtime import env as _env
from .runtime.memory import allocating, reserve

__all__ = ["load_coco_data", "sample_coco_minibatch", "decode_captions", "LAYOUT", "DATA_FILES",
           "MANIFEST", "read_manifest", "check_manifest", "check_stored", "load_coco_text",
           "check_consistent"]

DEFAULT_DIR = _env.read("FASTCAP_COCO_DIR")

LAYOUT = """\
a CS231n coco_captioning directory holds:
  coco2014_captions.h5        train_captions, val_captions (int32, (n, 17)),
                              train_image_idxs, val_image_idxs (int32, (n,))
  train2014_vgg16_fc7.h5      features (float32, (num_images, 4096))  [--no-pca]
  train2014_vgg16_fc7_pca.h5  features (float32, (num_images, 512))   [--pca]
  val2014_vgg16_fc7.h5 / val2014_vgg16_fc7_pca.h5  (the same for val)
  coco2014_vocab.json         {"idx_to_word": [...], "word_to_idx": {...}}
  train2014_urls.txt, val2014_urls.txt  one URL per image (or a file path;
                              a relative one is relative to this directory)
(`fastcap make-data DIR` writes generated data in this layout)"""


# Every file of the layout (what `fastcap make-data` writes).
DATA_FILES = ("coco2014_captions.h5", "coco2014_vocab.json", "train2014_urls.txt", "val2014_urls.txt",
              *(f"{split}2014_vgg16_fc7{suffix}.h5" for split in ("train", "val") for suffix in ("", "_pca")))


# Written by `fastcap make-data` and `fastcap prepare` (fastcap.data.directory) before their
# first data file ({"complete": false}) and again after their last ({"complete": true}): a
# directory whose manifest is not complete was left by an interrupted writer and may mix two
# datasets. Directories without one (CS231n's, other tools') are read as they are.
MANIFEST = "fastcap_data.json"


def read_manifest(base_dir):
    """The manifest of ``base_dir`` (a dict), or None when it has none."""
    path = os.path.join(base_dir, MANIFEST)
    if not os.path.lexists(path):
        return None
    _need(base_dir, MANIFEST)
    try:
        if os.path.getsize(path) > 1 << 20:
            raise ValueError("larger than 1 MiB")
        with open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("complete"), bool):
            raise ValueError("no 'complete' flag")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path} is not a manifest fastcap wrote ({exc}); remove it if "
                         "fastcap did not make the directory") from None
    return manifest


def check_manifest(base_dir):
    """Raise ValueError if ``base_dir`` was left half-written by an interrupted writer."""
    manifest = read_manifest(base_dir)
    if manifest is not None and not manifest["complete"]:
        writer = manifest.get("format")
        writer = writer if isinstance(writer, str) and writer in _WRITERS else "fastcap make-data"
        raise ValueError(f"{base_dir} was left half-written by an interrupted `{writer}` (its "
                         f"files may mix two datasets); run `{writer}` again to finish it")


_WRITERS = ("fastcap make-data", "fastcap prepare")  # what a manifest may name as its writer


def _need(base_dir, name):
    path = os.path.join(base_dir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; {LAYOUT}")
    if not os.path.isfile(path):  # a FIFO or device would block or never end
        raise ValueError(f"{path} is not a regular file; {LAYOUT}")
    return path


def _dataset(f, path, name):
    """The dataset ``name`` of the open HDF5 file ``f``, stored in that file; ValueError otherwise."""
    import h5py

    link = f.get(name, getlink=True)
    if link is None:
        raise ValueError(f"{path} has no dataset {name!r}; {LAYOUT}")
    if isinstance(link, h5py.ExternalLink):  # another file, which could be anything
        raise ValueError(f"{path}: {name!r} is a link to {link.filename}, another file; the "
                         f"layout's datasets are stored in their own file; {LAYOUT}")
    try:
        ds = f[name]
    except (KeyError, ValueError, OSError) as exc:  # a dangling soft link
        target = f" to {link.path}" if isinstance(link, h5py.SoftLink) else ""
        raise ValueError(f"{path}: {name!r} is a link{target} that leads nowhere ({exc}); "
                         f"{LAYOUT}") from None
    if not isinstance(ds, h5py.Dataset):
        raise ValueError(f"{path}: {name!r} must be a dataset, got a group; {LAYOUT}")
    return ds


def check_stored(ds, path, name):
    """Raise ValueError when ``ds`` declares more data than its file stores (a sparse or
    never-written dataset, whose rest would be fill values) or is made of other files."""
    import h5py

    nbytes = int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize
    what = f"{path}: dataset {name!r} of shape {ds.shape}"
    layout = ds.id.get_create_plist().get_layout()
    if layout == h5py.h5d.CHUNKED and nbytes:
        expected = int(np.prod([-(-n // c) for n, c in zip(ds.shape, ds.chunks)], dtype=object))
        stored = ds.id.get_num_chunks()
        if stored != expected:
            raise ValueError(f"{what} stores {stored:,} of its {expected:,} chunks: the rest was "
                             "never written (a sparse or truncated file)")
    elif layout == h5py.h5d.CONTIGUOUS and nbytes and ds.id.get_storage_size() != nbytes:
        raise ValueError(f"{what} declares {nbytes:,} bytes but its file stores "
                         f"{ds.id.get_storage_size():,} (a sparse or truncated file)")
    elif layout not in (h5py.h5d.CHUNKED, h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT):
        raise ValueError(f"{what} is a virtual dataset (made of other files); the layout's "
                         "datasets are stored in their own file")
    return nbytes


def _check_declared_size(ds, path, name):
    """check_stored, then raise before reading when the dataset would not fit in memory."""
    reserve(check_stored(ds, path, name), f"reading {name!r}", path)


def _read_h5(path, names):
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as f:
            for name, dtype, ndim in names:
                ds = _dataset(f, path, name)
                kind = "an integer" if dtype is np.integer else "a float"
                if len(ds.shape) != ndim or ds.dtype.kind not in ("iu" if dtype is np.integer else "f"):
                    raise ValueError(f"{path}: dataset {name!r} must be {kind} array with "
                                     f"{ndim} dimensions, got {ds.dtype} {ds.shape}")
                _check_declared_size(ds, path, name)
                with allocating(f"dataset {name!r}", path):
                    out[name] = _native(np.asarray(ds), dtype)
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 file ({exc})") from exc
    return out


def _native(a, kind):
    """Big-endian arrays (as other tools write HDF5) in native byte order; float16 and
    narrower integers widened to the layout's float32 / int32, so no later step sees them."""
    a = a.astype(a.dtype.newbyteorder("="), copy=False)
    if kind is np.floating and a.dtype.itemsize < 4:
        return a.astype(np.float32)
    if kind is np.integer and a.dtype != np.int32 and a.dtype.itemsize <= 4 and not (
            a.dtype.kind == "u" and a.dtype.itemsize == 4):
        return a.astype(np.int32)
    return a


def _read_lines(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not UTF-8 text (byte {exc.start}); the file "
                         "must hold one URL per line") from None
    return [line.strip() for line in text.splitlines()]


def _resolve_url(url, base_dir):
    """A relative file path in a urls file names a file beside the data (not in the working
    directory): made absolute against ``base_dir``. URLs and absolute paths are kept."""
    import urllib.parse

    scheme = urllib.parse.urlsplit(url).scheme
    if not url or (scheme and len(scheme) > 1) or os.path.isabs(url):  # 1 letter: a drive
        return url
    return os.path.normpath(os.path.join(os.path.abspath(base_dir), url))


def _read_vocab(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        vocab = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"{path} is JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} must be JSON with 'idx_to_word' and 'word_to_idx' ({exc})") from None
    if not isinstance(vocab, dict) or "idx_to_word" not in vocab or "word_to_idx" not in vocab:
        raise ValueError(f"{path} must be a JSON object with 'idx_to_word' and 'word_to_idx'")
    idx_to_word = vocab["idx_to_word"]
    if not isinstance(idx_to_word, list) or not all(isinstance(w, str) for w in idx_to_word):
        bad = idx_to_word if not isinstance(idx_to_word, list) else next(
            w for w in idx_to_word if not isinstance(w, str))
        raise ValueError(f"{path}: field idx_to_word must be a list of words (strings), found "
                         f"{type(bad).__name__} {str(bad)[:60]}")
    try:
        word_to_idx = check_word_to_idx(vocab["word_to_idx"], name=f"{path}: field word_to_idx",
                                        required=())
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    return idx_to_word, word_to_idx


def load_coco_data(base_dir=DEFAULT_DIR, max_train=None, pca_features=True):
    """Load the captioning data of a CS231n ``coco_captioning`` directory.

    Returns a dict: train/val_captions (int32 (n, 17)), train/val_image_idxs
    (int32 (n,)), train/val_features (float32 (num_images, 512 with PCA,
    4096 without)), idx_to_word (list), word_to_idx (dict), train/val_urls (a relative
    file path in the urls files is made absolute against ``base_dir``).
    ``max_train`` keeps that many training captions drawn at random with
    replacement from NumPy's global random state, as CS231n does.
    Missing or malformed files raise an error naming the file, as does a
    directory an interrupted ``make-data`` left (``MANIFEST``), and a dataset that
    declares more than its file stores or than memory holds (checked before reading).
    """
    base_dir = os.fspath(base_dir)
    data = load_coco_text(base_dir)
    suffix = "_pca" if pca_features else ""
    for split in ("train", "val"):
        path = _need(base_dir, f"{split}2014_vgg16_fc7{suffix}.h5")
        data[f"{split}_features"] = _read_h5(path, [("features", np.floating, 2)])["features"]
    check_consistent(data, base_dir)
    if max_train is not None:
        num_train = data["train_captions"].shape[0]
        keep = np.random.randint(num_train, size=max_train)
        data["train_captions"] = data["train_captions"][keep]
        data["train_image_idxs"] = data["train_image_idxs"][keep]
    return data


def load_coco_text(base_dir):
    """What ``load_coco_data`` returns but the features: the captions, image indices,
    vocabulary and urls (for data whose features are read otherwise, such as grid features);
    ``check_consistent`` checks them once the features are there."""
    check_manifest(base_dir)
    data = _read_h5(_need(base_dir, "coco2014_captions.h5"),
                    [(f"{s}_{k}", np.integer, nd) for s in ("train", "val")
                     for k, nd in (("captions", 2), ("image_idxs", 1))])
    data["idx_to_word"], data["word_to_idx"] = _read_vocab(_need(base_dir, "coco2014_vocab.json"))
    for split in ("train", "val"):
        urls = _read_lines(_need(base_dir, f"{split}2014_urls.txt"))
        data[f"{split}_urls"] = np.asarray([_resolve_url(u, base_dir) for u in urls])
    return data


def check_consistent(data, base_dir):
    """Raise ValueError naming ``base_dir`` unless the vocabulary, captions, image indices,
    features (anything with a ``shape``) and urls of ``data`` agree."""
    V = len(data["idx_to_word"])
    if len(data["word_to_idx"]) != V or any(data["idx_to_word"][i] != w for w, i in data["word_to_idx"].items()
                                            if 0 <= i < V) or any(not 0 <= i < V for i in data["word_to_idx"].values()):
        raise ValueError(f"{base_dir}: coco2014_vocab.json's idx_to_word and word_to_idx disagree")
    for split in ("train", "val"):
        caps, idxs = data[f"{split}_captions"], data[f"{split}_image_idxs"]
        n_img = data[f"{split}_features"].shape[0]
        if caps.shape[0] != idxs.shape[0]:
            raise ValueError(f"{base_dir}: {split}_captions has {caps.shape[0]} rows but "
                             f"{split}_image_idxs has {idxs.shape[0]}")
        if caps.size and (caps.min() < 0 or caps.max() >= V):
            bad = int(caps.min()) if caps.min() < 0 else int(caps.max())
            raise ValueError(f"{base_dir}: {split}_captions holds word index {bad}, outside "
                             f"[0, {V}) (the {V} words of coco2014_vocab.json)")
        if idxs.size and (idxs.min() < 0 or idxs.max() >= n_img):
            bad = int(idxs.min()) if idxs.min() < 0 else int(idxs.max())
            raise ValueError(f"{base_dir}: {split}_image_idxs holds image index {bad}, outside "
                             f"[0, {n_img}) (the rows of the {split} features)")
        if len(data[f"{split}_urls"]) != n_img:
            raise ValueError(f"{base_dir}: {split}2014_urls.txt has {len(data[f'{split}_urls'])} lines "
                             f"for {n_img} images")


def sample_coco_minibatch(data, batch_size=100, split="train", rng=None):
    """Draw batch_size captions at random (with replacement) from a split.

    Returns (captions (B, 17) int32, image_features (B, D), urls (B,)). ``rng``
    defaults to NumPy's global random state, as in CS231n.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    split_size = data[f"{split}_captions"].shape[0]
    if split_size == 0:
        raise ValueError(f"data[{split + '_captions'!r}] is empty")
    choice = (np.random if rng is None else rng).choice(split_size, batch_size)
    captions = data[f"{split}_captions"][choice]
    image_idxs = data[f"{split}_image_idxs"][choice]
    return captions, data[f"{split}_features"][image_idxs], data[f"{split}_urls"][image_idxs]


def decode_captions(captions, idx_to_word):
    """Word-index captions -> strings, dropping '<NULL>' and stopping after '<END>'.

    A 1-D caption gives one string; an (N, T) array gives a list of N strings.
    """
    captions = np.asarray(captions)
    singleton = captions.ndim == 1
    if singleton:
        captions = captions[None]
    decoded = []
    for row in captions:
        words = []
        for idx in row:
            word = idx_to_word[int(idx)]
            if word != "<NULL>":
                words.append(word)
            if word == "<END>":
                break
        decoded.append(" ".join(words))
    return decoded[0] if singleton else decoded
