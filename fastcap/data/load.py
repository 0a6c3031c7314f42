"""The training data of a run: loaded (generated, or a CS231n directory) from a config's data spec and checked.

A data spec is a config's ``data`` entry (see fastcap.train.run_config); the data dict
is ``fastcap.coco_utils.load_coco_data``'s.
"""
import os

import numpy as np

from ..model.validate import SPECIAL_TOKENS
from .generated import GENERATED_DEFAULTS, generate_coco_data
from ..coco_utils import load_coco_data
from ..runtime.memory import allocating

__all__ = ["DataError", "describe_data", "load_data", "check_data", "subsample_train"]


class DataError(ValueError):
    """Training data that cannot be used (shapes, vocabulary, missing data)."""


def describe_data(spec):
    """The data of a spec in a few words: ``DIR (resnet50 PCA features)``, the CS231n files'
    ``DIR (PCA features)`` / ``DIR (fc7 features)``, or the generated data's size."""
    if spec["source"] in ("dir", "none"):
        record = spec.get("features") or {}
        net = record.get("extractor")
        if spec.get("pca", True):
            kind = f"{net} PCA features" if net else "PCA features"
        else:
            kind = f"{net} features" if net else "fc7 features"
        where = spec["path"] if spec["source"] == "dir" else "data not recorded"
        return f"{where} ({kind})"
    return (f"generated data ({spec['num_train_images']} train / {spec['num_val_images']} val "
            f"images, {spec['captions_per_image']} captions each, seed {spec['seed']})")


def load_data(spec, dtype=None):
    """The data dict of a data spec (see the module docstring), checked for consistency.

    dtype: the model's (a NumPy float dtype or its name); the features are cast to it
    here, once, and checked after the cast (float64 1e300 is finite, its float32 is not).
    """
    if spec["source"] == "generated":
        kwargs = {k: spec[k] for k in GENERATED_DEFAULTS}
        pca = spec.get("pca", True)
        data = generate_coco_data(**kwargs, full_features=not pca)
        if not pca:
            for split in ("train", "val"):
                data[f"{split}_features"] = data.pop(f"{split}_features_full")
        source = "the generated data"
    elif spec["source"] == "dir":
        path = spec["path"]
        if not os.path.isdir(path):
            raise DataError(f"data directory {path} does not exist (pass --data DIR; "
                            "`fastcap make-data DIR` writes a generated one)")
        data = load_coco_data(path, max_train=None, pca_features=spec.get("pca", True))
        source = path
    elif spec["source"] == "none":
        raise DataError("the checkpoint does not record its data (a model saved from Python "
                        "without its data directory): pass --data DIR")
    else:
        raise DataError(f"unknown data source {spec['source']!r}")
    check_data(data, source, dtype)
    return data


def check_data(data, source, dtype=None):
    """Raise DataError when the data cannot train or evaluate a captioning model.

    With ``dtype``, the features are first cast to it (in ``data``, in place of the dict
    entries), so that what is checked is what the model computes with."""
    for token in SPECIAL_TOKENS:
        if token not in data["word_to_idx"]:
            raise DataError(f"{source}: the vocabulary has no {token} token")
    dims = set()
    for split in ("train", "val"):
        caps, feats = data[f"{split}_captions"], data[f"{split}_features"]
        if caps.ndim != 2 or caps.shape[1] < 2:
            raise DataError(f"{source}: {split}_captions must be (num_captions, T) with T >= 2, "
                            f"got shape {caps.shape}")
        if caps.shape[0] == 0:
            raise DataError(f"{source}: {split}_captions is empty")
        if feats.ndim != 2 or feats.shape[1] == 0:
            raise DataError(f"{source}: {split} features must be (num_images, D), got {feats.shape}")
        if dtype is not None and feats.dtype != np.dtype(dtype):
            with allocating(f"the {split} features as {np.dtype(dtype).name}", source,
                            feats.size * np.dtype(dtype).itemsize), np.errstate(over="ignore"):
                feats = data[f"{split}_features"] = feats.astype(dtype)  # checked just below
        if not np.isfinite(feats).all():
            beyond = (f" (as {feats.dtype.name}: values beyond +-{np.finfo(feats.dtype).max:.3g} "
                      "overflow)") if dtype is not None else ""
            raise DataError(f"{source}: the {split} features hold NaN or infinite values{beyond}")
        dims.add(feats.shape[1])
    if len(dims) > 1:
        raise DataError(f"{source}: train features are {data['train_features'].shape[1]}-d but val "
                        f"features are {data['val_features'].shape[1]}-d")


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
