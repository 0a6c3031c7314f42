"""``fastcap prepare``: a captions file and an image folder -> a data directory ``--data`` reads.

Steps: read the captions (fastcap.data.captions: COCO, Karpathy or Flickr8k),
keep the images found under the image folder, split by image when the file
has no split (``val_fraction``, ``seed``), build the vocabulary from the
training captions (``<NULL> <START> <END> <UNK>`` first, then every word seen
at least ``min_count`` times, most frequent first), encode each caption in the
17-column CS231n layout (``<START>``, at most 15 words, ``<END>``, ``<NULL>``
padding; longer captions are truncated), extract CNN features in batches
(fastcap.data.features) and reduce them by PCA fitted on the training images.

The directory gets the CS231n file names (``coco_utils.DATA_FILES``: the
``*_vgg16_fc7*.h5`` names hold whichever network's features) and, beside
them, ``FEATURES_FILE`` (how the features were made: the extractor record,
the PCA size and the SHA-256 of the PCA arrays) and ``PCA_FILE`` (``mean``
float32 (D,), ``components`` float32 (D, K): pca = (full - mean) @ components).
With ``grid``, also ``{train,val}2014_grid.h5``, each image's spatial features
(fastcap.data.grid, fastcap.data.prepare_grid), optionally reduced by a PCA of the cells
(``GRID_PCA_FILE``); the record's ``grid`` entry says how they were made.
Every file is written atomically. Features are computed in chunks saved under
``PARTIAL_DIR`` inside the output directory, so an interrupted run continues
where it stopped when run again with the same inputs; the chunks are removed
once the data directory is complete.
"""
import collections
import hashlib
import json
import os
import shutil

import numpy as np

from ..coco_utils import DATA_FILES, _read_h5
from ..image_utils import fetch_image
from ..runtime import progress as _progress
from ..runtime.files import atomic_write, atomic_write_h5 as _write_h5, atomic_write_text
from .captions import SPLITS, is_image_name, read_captions
from .directory import check_outputs, writing
from .features import Extractor
from .generated import CAPTION_LENGTH, MAX_WORDS, SPECIAL_TOKENS
from .grid import grid_name
from .prepare_grid import (GRID_PCA_FILE, PCA_CELLS, grid_chunk_ok, grid_chunk_path, sample_cells,
                           save_grid_chunk, write_grid_files)
# The command line's declarations of prepare's options: its Python callers get the same checks
# (the one import of this floor from the floor above: fastcap.train.options keeps every command's).
from ..train.options import PREPARE_OPTIONS

__all__ = ["prepare", "read_features_record", "check_record", "load_pca", "apply_pca", "pca_digest",
           "build_vocab",
           "encode_captions", "FEATURES_FILE", "PCA_FILE", "PARTIAL_DIR", "OUTPUT_FILES"]

FEATURES_FILE = "fastcap_features.json"
PCA_FILE = "fastcap_pca.h5"
PARTIAL_DIR = ".fastcap-prepare"
CHUNK = 64  # images per saved chunk of features (the most an interruption loses)


def _output_files():
    return (*DATA_FILES, FEATURES_FILE, PCA_FILE, GRID_PCA_FILE, grid_name("train"),
            grid_name("val"))


OUTPUT_FILES = _output_files()


# ---------------------------------------------------------------- vocabulary and captions
def build_vocab(token_lists, min_count):
    """idx_to_word: the special tokens, then words seen >= min_count times (most frequent
    first, ties alphabetical)."""
    counts = collections.Counter(w for tokens in token_lists for w in tokens[:MAX_WORDS])
    words = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS),
                   key=lambda w: (-counts[w], w))
    return list(SPECIAL_TOKENS) + words


def encode_captions(token_lists, word_to_idx):
    """int32 (n, 17): <START>, the first 15 words (<UNK> outside the vocabulary), <END>,
    <NULL> padding."""
    null, start, end, unk = (word_to_idx[t] for t in SPECIAL_TOKENS)
    out = np.full((len(token_lists), CAPTION_LENGTH), null, dtype=np.int32)
    for row, tokens in zip(out, token_lists):
        ids = [start, *(word_to_idx.get(w, unk) for w in tokens[:MAX_WORDS]), end]
        row[: len(ids)] = ids
    return out


def _assign_splits(corpus, names, val_fraction, seed):
    if corpus.split:
        return {n: corpus.split[n] for n in names}
    n_val = int(round(len(names) * val_fraction))
    if len(names) >= 2:
        n_val = min(max(n_val, 1), len(names) - 1)  # both splits non-empty
    order = np.random.default_rng(seed).permutation(len(names))
    val = {names[i] for i in order[:n_val]}
    return {n: "val" if n in val else "train" for n in names}


# ---------------------------------------------------------------- files
def pca_digest(mean, components):
    """The SHA-256 of a PCA (shapes and float32 little-endian bytes): what a record names."""
    h = hashlib.sha256()
    for a in (mean, components):
        a = np.ascontiguousarray(a, dtype="<f4")
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fit_pca(features, dim):
    """(mean float32 (D,), components float32 (D, K)), K = min(dim, D, n): the top principal
    directions of ``features`` (n, D), each with its largest entry positive (deterministic)."""
    x = features.astype(np.float64)
    mean = x.mean(axis=0)
    x -= mean
    k = min(dim, x.shape[1], x.shape[0])
    if x.shape[0] < x.shape[1]:  # fewer images than dimensions: the small Gram matrix
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        comps = vt[:k].T
    else:
        vals, vecs = np.linalg.eigh(x.T @ x)
        comps = vecs[:, np.argsort(vals)[::-1][:k]]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(k)])
    comps *= np.where(signs == 0, 1, signs)
    return mean.astype(np.float32), comps.astype(np.float32)


def apply_pca(features, mean, components):
    """float32 (n, K) = (features (n, D) - mean) @ components."""
    return ((features - mean) @ components).astype(np.float32)


def read_features_record(data_dir):
    """The FEATURES_FILE dict of a data directory fastcap prepared, or None (CS231n or
    generated data). Raises ValueError when the file is there but malformed."""
    path = os.path.join(os.fspath(data_dir), FEATURES_FILE)
    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path) or os.path.getsize(path) > 1 << 20:
        raise ValueError(f"{path} must be a JSON file of at most 1 MiB")
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path} is not valid JSON ({str(exc)[:100]})") from None
    return check_record(record, path)


def check_record(record, source):
    """``record`` if it is a features record (a dict with the string fields 'extractor',
    'weights' and 'pca_sha256'); else ValueError naming ``source``."""
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in
                                               ("extractor", "weights", "pca_sha256")):
        raise ValueError(f"{source}: a features record must be an object with the strings "
                         "'extractor', 'weights' and 'pca_sha256'")
    return record


def load_pca(data_dir, record, grid=False):
    """(mean, components) of a prepared data directory, checked against ``record``; with
    ``grid``, the PCA of its grid's cells (checked against ``record["grid"]``)."""
    path = os.path.join(os.fspath(data_dir), GRID_PCA_FILE if grid else PCA_FILE)
    if grid:
        record = record["grid"]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the PCA of the features is needed to "
                                "caption new images")
    arrays = _read_h5(path, [("mean", np.floating, 1), ("components", np.floating, 2)])
    mean = arrays["mean"].astype(np.float32)
    comps = arrays["components"].astype(np.float32)
    if comps.shape[0] != mean.shape[0] or not np.isfinite(comps).all() or \
            not np.isfinite(mean).all():
        raise ValueError(f"{path}: mean {mean.shape} and components {comps.shape} do not fit")
    if pca_digest(mean, comps) != record["pca_sha256"]:
        raise ValueError(f"{path} is not the PCA the features were made with (its SHA-256 "
                         "differs from the record's)")
    return mean, comps


# ---------------------------------------------------------------- features, resumable
def _load_chunk(path, rows, dim):
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if a.dtype != np.float32 or a.shape != (rows, dim) or not np.isfinite(a).all():
        return None
    return a


def _save_npy(path, array):
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _extract_all(paths, extractor, partial, progress, grid=False):
    """float32 (len(paths), D), saving every CHUNK images under ``partial`` (a directory
    whose manifest must match these inputs for its chunks to be reused); with ``grid``, each
    chunk's grid features are saved there too (fastcap.data.prepare_grid)."""
    manifest = {"record": extractor.record(), "images": hashlib.sha256(
        "\n".join(paths).encode("utf-8", "surrogatepass")).hexdigest(), "chunk": CHUNK,
        "grid": bool(grid)}
    mpath = os.path.join(partial, "manifest.json")
    old = None
    if os.path.isfile(mpath):
        try:
            with open(mpath, encoding="utf-8") as f:
                old = json.load(f)
        except (ValueError, OSError):
            old = None
    if old != manifest:  # other inputs (or none): the chunks there are not these images'
        if os.path.isdir(partial):
            shutil.rmtree(partial)
        os.makedirs(partial)
        atomic_write_text(mpath, json.dumps(manifest))
    out = np.empty((len(paths), extractor.dim), np.float32)
    if grid:
        grid_rows, grid_cols, channels = extractor.spec.grid
        cells = (grid_rows * grid_cols, channels)
    bar = _progress.bar(len(paths), unit="img", desc="features", disable=not progress)
    try:
        for a in range(0, len(paths), CHUNK):
            rows = min(CHUNK, len(paths) - a)
            cpath = os.path.join(partial, f"chunk-{a // CHUNK:06d}.npy")
            chunk = _load_chunk(cpath, rows, extractor.dim) if os.path.isfile(cpath) else None
            gpath = grid_chunk_path(partial, a // CHUNK)
            if grid and chunk is not None and not grid_chunk_ok(gpath, rows, *cells):
                chunk = None
            if chunk is None:
                images = [fetch_image(p) for p in paths[a:a + rows]]
                if grid:  # the grid first: the pooled chunk marks the chunk done
                    chunk, spatial = extractor.features(images, paths[a:a + rows], grid=True)
                    atomic_write(gpath, lambda tmp, g=spatial: save_grid_chunk(tmp, g))
                else:
                    chunk = extractor.features(images, paths[a:a + rows])
                atomic_write(cpath, lambda tmp, c=chunk: _save_npy(tmp, c))
            out[a:a + rows] = chunk
            bar.update(rows)
    finally:
        bar.close()
    return out


# ---------------------------------------------------------------- the command
def prepare(captions_file, images_dir, out_dir, *, split_lists=None, extractor="resnet50",
            weights="imagenet", min_count=5, val_fraction=0.1, seed=0, pca_dim=512,
            overwrite=False, progress=True, threads=None, say=print, grid=False,
            grid_pca_dim=None):
    """Write a data directory (see the module docstring); returns a summary dict.
    ``threads``: for the CNN and image decoding (default: every core); ``grid``: also the
    grid features, their cells reduced to ``grid_pca_dim`` channels by a PCA when given."""
    given = {"extractor": extractor, "weights": weights, "min_count": min_count,
             "val_fraction": val_fraction, "seed": seed, "pca_dim": pca_dim,
             **({} if grid_pca_dim is None else {"grid_pca_dim": grid_pca_dim})}
    if grid_pca_dim is not None and not grid:
        raise ValueError("--grid-pca-dim reduces grid features: it goes with --grid")
    for option in PREPARE_OPTIONS:  # the command line's checks, for Python callers too
        if option.name in given:
            if given[option.name] is None:
                raise ValueError(f"{option.option_string} must be given")
            option.check(given[option.name])
    if not os.path.isdir(images_dir):
        raise FileNotFoundError(f"--images {images_dir} is not a directory")
    if not is_image_name(os.path.abspath(images_dir)):  # its path starts every line of the urls files
        raise ValueError(f"--images {os.fspath(images_dir)!r}: the urls files hold one image path a "
                         "line, and this folder's path has a line break or control character")
    out_dir = os.path.abspath(os.fspath(out_dir))
    check_outputs(out_dir, OUTPUT_FILES, "prepare", overwrite)  # before the work, not only after
    corpus = read_captions(captions_file, split_lists)
    images_dir = os.path.abspath(images_dir)
    dropped = collections.Counter(corpus.dropped)
    # Each name resolved once: the path checked to be inside --images is the one opened and
    # the one the urls files hold.
    path_of = {name: os.path.normpath(os.path.join(images_dir, name)) for name in corpus.images}
    found, missing = [], []
    for name, path in path_of.items():
        inside = os.path.commonpath([images_dir, path]) == images_dir
        (found if inside and os.path.isfile(path) else missing).append(name)
    if missing:
        dropped["images not found under --images"] = len(missing)
        say(f"{len(missing)} of {len(corpus.images)} images are not under {images_dir} and are "
            f"left out (first: {', '.join(missing[:3])})")
    if not found:
        raise ValueError(f"none of the {len(corpus.images)} images of {captions_file} is under "
                         f"--images {images_dir}")
    splits = _assign_splits(corpus, found, val_fraction, seed)
    names = {s: [n for n in found if splits[n] == s] for s in SPLITS}
    for s in SPLITS:
        if not names[s]:
            raise ValueError(f"{captions_file}: the {s} split has no images (of "
                             f"{len(found)} found)")

    caps = {s: [c for n in names[s] for c in corpus.images[n]] for s in SPLITS}
    idxs = {s: np.repeat(np.arange(len(names[s]), dtype=np.int32),
                         [len(corpus.images[n]) for n in names[s]]) for s in SPLITS}
    idx_to_word = build_vocab(caps["train"], min_count)
    word_to_idx = {w: i for i, w in enumerate(idx_to_word)}
    encoded = {s: encode_captions(caps[s], word_to_idx) for s in SPLITS}
    truncated = sum(len(t) > MAX_WORDS for s in SPLITS for t in caps[s])

    ext = Extractor(extractor, weights, threads)
    about = {"captions_file": os.path.abspath(captions_file), "captions_format": corpus.format,
             "images_dir": images_dir}  # where the data came from, in the record and manifest
    with writing(out_dir, OUTPUT_FILES, "prepare", overwrite, **about):
        record = _extract_and_write(out_dir, ext, names, path_of, encoded, idxs, idx_to_word,
                                    pca_dim, about, progress, say, grid, grid_pca_dim)
    shutil.rmtree(os.path.join(out_dir, PARTIAL_DIR), ignore_errors=True)
    return {"out": out_dir, "format": corpus.format, "vocab": len(idx_to_word),
            "images": {s: len(names[s]) for s in SPLITS},
            "captions": {s: len(caps[s]) for s in SPLITS}, "truncated": truncated,
            "dropped": dict(dropped), "feature_dim": ext.dim, "pca_dim": record["pca_dim"],
            "split_from_file": bool(corpus.split), "grid": record.get("grid")}


def _extract_and_write(out_dir, ext, names, path_of, encoded, idxs, idx_to_word, pca_dim, about,
                       progress, say, grid, grid_pca_dim):
    """The features (chunked, resumable), their PCA and every file of the directory (with
    ``grid``, the grid files too); returns the features record."""
    order = [path_of[n] for s in SPLITS for n in names[s]]
    partial = os.path.join(out_dir, PARTIAL_DIR)
    full = _extract_all(order, ext, partial, progress, grid)
    n_train = len(names["train"])
    full_by = {"train": full[:n_train], "val": full[n_train:]}
    mean, comps = fit_pca(full_by["train"], pca_dim)
    if comps.shape[1] < pca_dim:
        say(f"PCA: {comps.shape[1]}-d, not the {pca_dim} asked for (--pca-dim): a PCA has at most "
            f"as many dimensions as there are training images ({n_train}) and features "
            f"({ext.dim})")
    record = {**ext.record(), "pca_dim": int(comps.shape[1]), "pca_sha256": pca_digest(mean, comps),
              **about}

    # An old record would vouch for a directory half replaced: it goes first, comes back last.
    if os.path.lexists(os.path.join(out_dir, FEATURES_FILE)):
        os.unlink(os.path.join(out_dir, FEATURES_FILE))
    if grid:
        record["grid"] = _write_grid(out_dir, partial, ext, n_train, len(order), grid_pca_dim)
    for name in () if grid else (GRID_PCA_FILE, grid_name("train"), grid_name("val")):
        if os.path.lexists(os.path.join(out_dir, name)):  # another data set's (--overwrite)
            os.unlink(os.path.join(out_dir, name))
    _write_h5(os.path.join(out_dir, PCA_FILE), {"mean": mean, "components": comps})
    _write_h5(os.path.join(out_dir, "coco2014_captions.h5"), {
        **{f"{s}_captions": encoded[s] for s in SPLITS},
        **{f"{s}_image_idxs": idxs[s] for s in SPLITS}})
    for s in SPLITS:
        _write_h5(os.path.join(out_dir, f"{s}2014_vgg16_fc7.h5"), {"features": full_by[s]})
        _write_h5(os.path.join(out_dir, f"{s}2014_vgg16_fc7_pca.h5"),
                  {"features": apply_pca(full_by[s], mean, comps)})
        atomic_write_text(os.path.join(out_dir, f"{s}2014_urls.txt"),
                          "".join(f"{path_of[n]}\n" for n in names[s]))
    atomic_write_text(os.path.join(out_dir, "coco2014_vocab.json"),
                      json.dumps({"idx_to_word": idx_to_word,
                                  "word_to_idx": {w: i for i, w in enumerate(idx_to_word)}}))
    # Last: the record marks the directory complete (caption and train read it).
    atomic_write_text(os.path.join(out_dir, FEATURES_FILE), json.dumps(record, indent=2) + "\n")
    return record


def _write_grid(out_dir, partial, ext, n_train, n_total, pca_dim):
    """The grid files (and the PCA of their cells, with ``pca_dim``) from the saved chunks;
    returns the record's ``grid`` entry."""
    rows, cols, channels = ext.spec.grid
    entry = {"layer": ext.spec.grid_layer, "shape": [rows, cols], "channels": channels,
             "dim": channels, "dtype": "float16", "pca_dim": None, "pca_sha256": None}
    reduce = None
    if pca_dim is not None:
        # at most 512 MiB of float64 cells for the fit
        most = min(PCA_CELLS, (512 << 20) // (8 * channels))
        mean, comps = fit_pca(sample_cells(partial, CHUNK, n_train, most), pca_dim)
        entry.update(dim=int(comps.shape[1]), pca_dim=int(comps.shape[1]),
                     pca_sha256=pca_digest(mean, comps))
        _write_h5(os.path.join(out_dir, GRID_PCA_FILE), {"mean": mean, "components": comps})
        reduce = lambda block: apply_pca(block, mean, comps)  # noqa: E731
    write_grid_files(out_dir, partial, CHUNK, n_train, n_total, (rows, cols), entry["dim"], reduce)
    return entry
