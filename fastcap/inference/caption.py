"""``fastcap caption``: captions of new images (files, folders, URLs) by a trained checkpoint.

The features are computed as the checkpoint's training data was made: the
network, weights and preprocessing of the record that ``fastcap prepare``
wrote (carried in the checkpoint's config, ``config.data.features``; else read
from its data directory), and that directory's PCA when the model was trained
on PCA features. Data that fastcap did not prepare (the CS231n files, the
generated data) has no record: such a checkpoint is refused unless an
extractor is named (``extractor=``), and then only when the model reads that
extractor's full (not PCA-reduced) features.
"""
import os
import urllib.parse

from ..data import features as F
from ..data.prepare import apply_pca, check_record, load_pca, read_features_record
from ..image_utils import fetch_image
from ..runtime.precision import use_precision
from ..train.checkpoint import CheckpointError, load_checkpoint
from ..train.evaluation import generate, suppressing
from ..train.metrics import decode_for_metrics

__all__ = ["IMAGE_SUFFIXES", "expand_images", "caption_files"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def expand_images(items):
    """Image sources in order: URLs as given, files as given, a folder's image files (by
    IMAGE_SUFFIXES, sorted, not recursive). A path that does not exist raises."""
    out = []
    for item in items:
        scheme = urllib.parse.urlsplit(item).scheme.lower()
        if scheme in ("http", "https", "file"):
            out.append(item)
        elif os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if n.lower().endswith(IMAGE_SUFFIXES)
                           and os.path.isfile(os.path.join(item, n)))
            if not found:
                raise ValueError(f"folder {item} holds no image files "
                                 f"({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise FileNotFoundError(f"image {item} does not exist (give image files, folders "
                                    "or http(s) URLs)")
    return out


def _feature_maker(ckpt, data_dir, extractor, weights, threads=None):
    """A function images -> model features, made as the checkpoint's data was."""
    spec = ckpt.config["data"]
    pca = spec.get("pca", True)
    data_dir = data_dir or (spec.get("path") if spec["source"] == "dir" else None)
    record = spec.get("features")
    if record is not None:  # a checkpoint is untrusted input
        check_record(record, f"checkpoint {ckpt.path}: config.data.features")
    if record is None and data_dir is not None and os.path.isdir(data_dir):
        record = read_features_record(data_dir)
    if extractor is not None:
        if record is not None and record["extractor"] != extractor:
            raise CheckpointError(f"checkpoint {ckpt.path} was trained on {record['extractor']} "
                                  f"features, not {extractor}")
        if record is None:
            if pca:
                raise CheckpointError(
                    f"checkpoint {ckpt.path} was trained on PCA-reduced features that fastcap "
                    "did not make: their PCA is unknown, so no extractor can reproduce them")
            # before the network is built (and its weights downloaded)
            ckpt.check_input_dim(F.EXTRACTORS[extractor].dim, f"extractor {extractor}")
            return F.Extractor(extractor, weights, threads).features
    if record is None:
        what = ("fastcap's generated data" if spec["source"] == "generated"
                else f"{data_dir}, data fastcap did not prepare (such as the CS231n files)")
        raise CheckpointError(
            f"checkpoint {ckpt.path} was trained on features of {what}; fastcap cannot compute "
            "them for a new image. Train on data made by `fastcap prepare`, or, for a model of "
            "full (--no-pca) features of a known network, pass --extractor "
            f"({', '.join(F.EXTRACTORS)})")
    ext = F.extractor_from_record(record, f"checkpoint {ckpt.path}", threads)
    if not pca:
        return ext.features
    if data_dir is None or not os.path.isdir(data_dir):
        raise FileNotFoundError(f"checkpoint {ckpt.path} was trained on {data_dir}, which is not "
                                "there any more (its PCA is needed); pass --data DIR")
    mean, comps = load_pca(data_dir, record)
    return lambda images: apply_pca(ext.features(images), mean, comps)


def caption_files(checkpoint, images, *, data_dir=None, extractor=None, weights="imagenet",
                  beam_size=1, max_length=30, batch_size=32, suppress=(), threads=None,
                  precision=None):
    """(checkpoint, [{"image", "caption"}]) for each image source (see expand_images);
    ``suppress``: words never generated (fastcap.train.evaluation.suppressing); ``precision``:
    of the model's products ('float32' or 'bfloat16'; None: the checkpoint's)."""
    ckpt = load_checkpoint(checkpoint)
    precision = precision or ckpt.config["train"].get("precision", "float32")
    sources = expand_images(images)
    make = _feature_maker(ckpt, data_dir, extractor, weights, threads)
    model = suppressing(ckpt.build_model(), suppress)
    idx_to_word = ckpt.idx_to_word
    out = []
    for a in range(0, len(sources), batch_size):
        batch = sources[a:a + batch_size]
        feats = make([fetch_image(s) for s in batch])
        ckpt.check_input_dim(feats.shape[1], "the extracted features")
        with use_precision(precision):
            caps = generate(model, feats.astype(model.dtype), beam_size, max_length)
        out += [{"image": src, "caption": text}
                for src, text in zip(batch, decode_for_metrics(caps, idx_to_word))]
    return ckpt, out
