"""The training data of a run: loaded (generated, or a CS231n directory) from a config's data spec and checked.

A data spec is a config's ``data`` entry (see fastcap.train.run_config); the data dict
is ``fastcap.coco_utils.load_coco_data``'s.
"""
import os

import numpy as np

from ..model.validate import SPECIAL_TOKENS
from .generated import GENERATED_DEFAULTS, generate_coco_data
from .grid import GridFile, grid_name, grid_path
from .stream import StreamedFeatures
from ..coco_utils import check_consistent, load_coco_data, load_coco_text
from ..runtime.memory import allocating, reserve

__all__ = ["DataError", "describe_data", "load_data", "check_data", "subsample_train",
           "close_data", "grid_shape_of"]


class DataError(ValueError):
    """Training data that cannot be used (shapes, vocabulary, missing data)."""


def describe_data(spec):
    """The data of a spec in a few words: ``DIR (resnet50 PCA features)``, the CS231n files'
    ``DIR (PCA features)`` / ``DIR (fc7 features)``, ``DIR (resnet50 grid features)``, or the
    generated data's size (and grid)."""
    grid = spec.get("grid")
    if spec["source"] in ("dir", "none"):
        record = spec.get("features") or {}
        net = record.get("extractor")
        if grid:
            kind = f"{net} grid features" if net else "grid features"
        elif spec.get("pca", True):
            kind = f"{net} PCA features" if net else "PCA features"
        else:
            kind = f"{net} features" if net else "fc7 features"
        where = spec["path"] if spec["source"] == "dir" else "data not recorded"
        return f"{where} ({kind})"
    kind = f", {grid['grid_size']}x{grid['grid_size']}x{grid['grid_dim']} grids" if grid else ""
    return (f"generated data ({spec['num_train_images']} train / {spec['num_val_images']} val "
            f"images, {spec['captions_per_image']} captions each{kind}, seed {spec['seed']})")


def load_data(spec, dtype=None, stream=True):
    """The data dict of a data spec (see the module docstring), checked for consistency.

    dtype: the model's (a NumPy float dtype or its name); the features are cast to it
    here, once, and checked after the cast (float64 1e300 is finite, its float32 is not).
    A spec with ``grid`` gives grid features, (num_images, L, D): the generated ones in
    memory; a directory's read from its grid files a minibatch at a time
    (fastcap.data.stream.StreamedFeatures), or with ``stream=False`` read whole into memory.
    ``close_data`` closes the files of streamed features.
    """
    grid = spec.get("grid")
    if spec["source"] == "generated":
        kwargs = {k: spec[k] for k in GENERATED_DEFAULTS}
        pca = spec.get("pca", True)
        data = generate_coco_data(**kwargs, full_features=not pca and not grid,
                                  **(grid or {}))
        for split in ("train", "val"):
            if grid:
                data[f"{split}_features"] = data.pop(f"{split}_grid")
            elif not pca:
                data[f"{split}_features"] = data.pop(f"{split}_features_full")
        source = "the generated data"
    elif spec["source"] == "dir":
        path = spec["path"]
        if not os.path.isdir(path):
            raise DataError(f"data directory {path} does not exist (pass --data DIR; "
                            "`fastcap make-data DIR` writes a generated one)")
        if grid:
            data = _load_grid_dir(path, dtype, stream)
        else:
            data = load_coco_data(path, max_train=None, pca_features=spec.get("pca", True))
        source = path
    elif spec["source"] == "none":
        raise DataError("the checkpoint does not record its data (a model saved from Python "
                        "without its data directory): pass --data DIR")
    else:
        raise DataError(f"unknown data source {spec['source']!r}")
    try:
        check_data(data, source, dtype, grid=bool(grid))
    except BaseException:
        close_data(data)
        raise
    return data


def _load_grid_dir(path, dtype, stream):
    """The data of a directory with grid files: streamed, or read whole (``stream=False``)."""
    for split in ("train", "val"):
        if not os.path.lexists(grid_path(path, split)):
            raise DataError(f"{path} has no grid features ({grid_name(split)}): attention reads "
                            "grid features, (images, L cells, D), not the pooled ones; write "
                            "them with `fastcap prepare --grid` or `fastcap make-data --grid`")
    data = load_coco_text(path)
    dtype = np.dtype(dtype or np.float32)
    try:
        for split in ("train", "val"):
            grid = GridFile(grid_path(path, split))
            if stream:
                data[f"{split}_features"] = StreamedFeatures(grid, dtype)
                continue
            with grid:
                what = f"the {split} grid features as {dtype.name}"
                reserve(int(np.prod(grid.shape, dtype=np.int64)) * dtype.itemsize, what, grid.path)
                with allocating(what, grid.path):
                    data[f"{split}_features"] = grid.read_all(dtype)
                data[f"{split}_grid_shape"] = grid.grid_shape
        check_consistent(data, path)
    except BaseException:
        close_data(data)
        raise
    return data


def grid_shape_of(data, split="train"):
    """(rows, cols) of a data dict's grid features: a stream's file says, generated data
    records it; None for pooled features."""
    feats = data[f"{split}_features"]
    if isinstance(feats, StreamedFeatures):
        return feats.grid_shape
    if getattr(feats, "ndim", 2) != 3:
        return None
    return tuple(data.get(f"{split}_grid_shape") or data.get("grid_shape")
                 or (1, feats.shape[1]))


def close_data(data):
    """Close the grid files a data dict streams from (nothing for arrays)."""
    for split in ("train", "val"):
        feats = data.get(f"{split}_features")
        if isinstance(feats, StreamedFeatures):
            feats.close()


def check_data(data, source, dtype=None, grid=False):
    """Raise DataError when the data cannot train or evaluate a captioning model.

    With ``dtype``, the features are first cast to it (in ``data``, in place of the dict
    entries), so that what is checked is what the model computes with. ``grid``: the
    features must be grids (num_images, L, D), else pooled (num_images, D); streamed grids
    are checked as each minibatch is read (fastcap.data.grid.GridFile.read)."""
    for token in SPECIAL_TOKENS:
        if token not in data["word_to_idx"]:
            raise DataError(f"{source}: the vocabulary has no {token} token")
    dims = set()
    want = "(num_images, L, D) grid features" if grid else "(num_images, D) pooled features"
    for split in ("train", "val"):
        caps, feats = data[f"{split}_captions"], data[f"{split}_features"]
        if caps.ndim != 2 or caps.shape[1] < 2:
            raise DataError(f"{source}: {split}_captions must be (num_captions, T) with T >= 2, "
                            f"got shape {caps.shape}")
        if caps.shape[0] == 0:
            raise DataError(f"{source}: {split}_captions is empty")
        if feats.ndim != (3 if grid else 2) or 0 in feats.shape[1:]:
            raise DataError(f"{source}: the {split} features must be {want} (L >= 1, D >= 1), "
                            f"got shape {feats.shape}")
        dims.add(feats.shape[1:])
        if isinstance(feats, StreamedFeatures):
            continue
        if dtype is not None and feats.dtype != np.dtype(dtype):
            with allocating(f"the {split} features as {np.dtype(dtype).name}", source,
                            feats.size * np.dtype(dtype).itemsize), np.errstate(over="ignore"):
                feats = data[f"{split}_features"] = feats.astype(dtype)  # checked just below
        if not np.isfinite(feats).all():
            beyond = (f" (as {feats.dtype.name}: values beyond +-{np.finfo(feats.dtype).max:.3g} "
                      "overflow)") if dtype is not None else ""
            raise DataError(f"{source}: the {split} features hold NaN or infinite values{beyond}")
    if len(dims) > 1:
        shape = {s: "x".join(map(str, data[f"{s}_features"].shape[1:])) + ("" if grid else "-d")
                 for s in ("train", "val")}
        raise DataError(f"{source}: train features are {shape['train']} but val features are "
                        f"{shape['val']}")
    if grid and grid_shape_of(data, "train") != grid_shape_of(data, "val"):
        raise DataError(f"{source}: the train grid is {grid_shape_of(data, 'train')} cells but the "
                        f"val grid {grid_shape_of(data, 'val')}")


def subsample_train(data, max_train, seed):
    """Keep ``max_train`` training captions, drawn without replacement (deterministic in seed)."""
    n = data["train_captions"].shape[0]
    if max_train is None or max_train >= n:
        return data
    keep = np.sort(np.random.default_rng([seed, 1]).choice(n, size=max_train, replace=False))
    data = dict(data)
    data["train_captions"] = data["train_captions"][keep]
    data["train_image_idxs"] = data["train_image_idxs"][keep]
    return data
