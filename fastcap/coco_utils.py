"""Reading the CS231n COCO captioning files, minibatches and decoding."""
import json
import os

import numpy as np

from . import _env

__all__ = ["load_coco_data", "sample_coco_minibatch", "decode_captions", "LAYOUT", "DATA_FILES"]

DEFAULT_DIR = _env.read("FASTCAP_COCO_DIR")

LAYOUT = """\
a CS231n coco_captioning directory holds:
  coco2014_captions.h5        train_captions, val_captions (int32, (n, 17)),
                              train_image_idxs, val_image_idxs (int32, (n,))
  train2014_vgg16_fc7.h5      features (float32, (num_images, 4096))  [--no-pca]
  train2014_vgg16_fc7_pca.h5  features (float32, (num_images, 512))   [--pca]
  val2014_vgg16_fc7.h5 / val2014_vgg16_fc7_pca.h5  (the same for val)
  coco2014_vocab.json         {"idx_to_word": [...], "word_to_idx": {...}}
  train2014_urls.txt, val2014_urls.txt  one URL per image
(`fastcap make-data DIR` writes generated data in this layout)"""


# Every file of the layout (what `fastcap make-data` writes).
DATA_FILES = ("coco2014_captions.h5", "coco2014_vocab.json", "train2014_urls.txt", "val2014_urls.txt",
              *(f"{split}2014_vgg16_fc7{suffix}.h5" for split in ("train", "val") for suffix in ("", "_pca")))


def _need(base_dir, name):
    path = os.path.join(base_dir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; {LAYOUT}")
    if not os.path.isfile(path):  # a FIFO or device would block or never end
        raise ValueError(f"{path} is not a regular file; {LAYOUT}")
    return path


def _read_h5(path, names):
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as f:
            for name, dtype, ndim in names:
                if name not in f:
                    raise ValueError(f"{path} has no dataset {name!r}; {LAYOUT}")
                ds = f[name]
                if not isinstance(ds, h5py.Dataset):
                    raise ValueError(f"{path}: {name!r} must be a dataset, got a group; {LAYOUT}")
                kind = "an integer" if dtype is np.integer else "a float"
                if len(ds.shape) != ndim or ds.dtype.kind not in ("iu" if dtype is np.integer else "f"):
                    raise ValueError(f"{path}: dataset {name!r} must be {kind} array with "
                                     f"{ndim} dimensions, got {ds.dtype} {ds.shape}")
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


def _read_vocab(path):
    from ._validate import word_to_idx as check_word_to_idx

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
    4096 without)), idx_to_word (list), word_to_idx (dict), train/val_urls.
    ``max_train`` keeps that many training captions drawn at random with
    replacement from NumPy's global random state, as CS231n does.
    Missing or malformed files raise an error naming the file.
    """
    base_dir = os.fspath(base_dir)
    data = _read_h5(_need(base_dir, "coco2014_captions.h5"),
                    [(f"{s}_{k}", np.integer, nd) for s in ("train", "val")
                     for k, nd in (("captions", 2), ("image_idxs", 1))])
    suffix = "_pca" if pca_features else ""
    for split in ("train", "val"):
        path = _need(base_dir, f"{split}2014_vgg16_fc7{suffix}.h5")
        data[f"{split}_features"] = _read_h5(path, [("features", np.floating, 2)])["features"]
    data["idx_to_word"], data["word_to_idx"] = _read_vocab(_need(base_dir, "coco2014_vocab.json"))
    for split in ("train", "val"):
        data[f"{split}_urls"] = np.asarray(_read_lines(_need(base_dir, f"{split}2014_urls.txt")))
    _check_consistent(data, base_dir)
    if max_train is not None:
        num_train = data["train_captions"].shape[0]
        keep = np.random.randint(num_train, size=max_train)
        data["train_captions"] = data["train_captions"][keep]
        data["train_image_idxs"] = data["train_image_idxs"][keep]
    return data


def _check_consistent(data, base_dir):
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
