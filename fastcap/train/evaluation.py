"""Inference over many images: the loss of a caption set, captions by greedy or beam decoding, caption metrics and their text form.

Used by the training loop (per-epoch validation), ``fastcap sample`` /
``evaluate`` and the data-parallel evaluation (fastcap.train.distributed).
"""
import copy

import numpy as np

from . import metrics as _metrics
from ..data.stream import chunk_rows, rows
from ..model.beam import beam_search

__all__ = ["caption_loss", "generate", "suppressing", "caption_images", "evaluate_captions", "sample_records",
           "format_metrics", "format_samples"]


def _forward_loss(model, features, captions):
    """``model.loss(features, captions)[0]``: the training forward, without the backward pass."""
    return float(model.loss(features, captions, grads=False)[0])


def caption_loss(model, captions, features, chunk=500):
    """Mean per-caption loss (summed over time, as in training) over all ``captions``;
    ``features`` (an array or a stream of grid features, fastcap.data.stream) a chunk of at
    most ``chunk`` rows at a time."""
    total, n = 0.0, captions.shape[0]
    chunk = chunk_rows(features, chunk)
    for a in range(0, n, chunk):
        total += _forward_loss(model, features[a:a + chunk], captions[a:a + chunk]) * min(chunk, n - a)
    return total / n


def suppressing(model, words):
    """``model`` (a shallow copy) that never generates ``words`` (e.g. ``("<UNK>",)``): their
    vocabulary bias is -inf, so greedy and beam decoding alike never pick them."""
    if not words:
        return model
    idx = []
    for w in words:
        if w not in model.word_to_idx:
            raise ValueError(f"cannot suppress {w!r}: the vocabulary has no such word")
        idx.append(model.word_to_idx[w])
    m = copy.copy(model)
    m.__dict__.pop("_pack_cache", None)  # packs of its own, for its own b_vocab
    m.params = dict(model.params)
    b = m.params["b_vocab"] = model.params["b_vocab"].copy()
    b[idx] = -np.inf
    b.flags.writeable = model.params["b_vocab"].flags.writeable  # a frozen model's copy is frozen
    return m


def generate(model, features, beam_size=1, max_length=30, chunk=512):
    """Captions (N, max_length) for features, greedy (beam_size 1) or by beam search."""
    out = []
    chunk = chunk_rows(features, chunk)
    for a in range(0, features.shape[0], chunk):
        f = features[a:a + chunk]
        if beam_size == 1:
            out.append(model.sample(f, max_length=max_length))
        else:
            out.append(beam_search(model, f, beam_size=beam_size, max_length=max_length))
    return np.concatenate(out) if out else np.zeros((0, max_length), np.int32)


def caption_images(model, data, split, image_ids=None, beam_size=1, max_length=30):
    """(image_ids, references, candidates) for images of a split (default: every image with
    captions): their ground-truth captions and ``model``'s, as strings (fastcap.train.metrics)."""
    image_ids, references = _metrics.references_by_image(data, split, image_ids)
    captions = generate(model, rows(data[f"{split}_features"], image_ids), beam_size, max_length)
    return image_ids, references, _metrics.decode_for_metrics(captions, data["idx_to_word"])


def evaluate_captions(model, data, split, image_ids=None, beam_size=1, max_length=30):
    """Caption metrics of ``model`` over images of a split.

    Returns (metrics dict with bleu1..4 and cider, image_ids, references, candidates).
    """
    image_ids, references, candidates = caption_images(model, data, split, image_ids, beam_size, max_length)
    return _metrics.caption_metrics(references, candidates), image_ids, references, candidates


def sample_records(model, data, split, image_ids, beam_size=1, max_length=30):
    """``[{"image", "url", "generated", "references"}]`` for images of a split (samples.json,
    ``fastcap sample``)."""
    image_ids, references, candidates = caption_images(model, data, split, image_ids, beam_size, max_length)
    urls = data[f"{split}_urls"]
    return [{"image": int(i), "url": str(urls[i]), "generated": c, "references": r}
            for i, r, c in zip(image_ids.tolist(), references, candidates)]


def format_metrics(m):
    """One line: BLEU-1..4 and CIDEr of a metrics dict."""
    return "  ".join(f"{label} {m[key]:.3f}" for key, label in _metrics.METRIC_LABELS.items())


def format_samples(samples):
    """Human-readable ground truth against generated captions."""
    lines = []
    for s in samples:
        lines.append(f"image {s['image']}  {s['url']}")
        lines.append(f"  generated:    {s['generated']}")
        for r in s["references"]:
            lines.append(f"  ground truth: {r}")
        lines.append("")
    return "\n".join(lines)
