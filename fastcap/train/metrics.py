"""Caption metrics as the captioning literature reports them.

BLEU-1..4 are computed by the COCO caption evaluation's scorer
(``pycocoevalcap``'s ``Bleu(4)``), the code behind the published COCO numbers,
not re-derived here; CIDEr-D by ``fastcap.metrics.Cider``, compiled, whose
scores equal pycocoevalcap's ``Cider()`` (the reference: tests/test_cider.py
holds them to 1e-9 on generated and on Flickr8k captions):

* BLEU is corpus BLEU: n-gram matches are clipped against every reference
  caption of the image and summed over the corpus, with the brevity penalty
  computed from the reference length closest to each candidate.
* CIDEr is CIDEr-D (TF-IDF weighted n-grams, n = 1..4, clipped, with a
  Gaussian length penalty of sigma 6, times 10). Its document frequencies come
  from the references of the images being scored, as in the COCO evaluation,
  so scores over different image sets are not comparable, and a single image
  scores 0.

Only the pure-Python BLEU scorer is imported, which needs no Java.
The COCO evaluation's PTB tokenizer does need Java; fastcap's captions are
already lower-case words separated by spaces, so ``normalize`` (lower-case,
split on whitespace, drop ``<START>``/``<END>``/``<NULL>``) stands in for it.
"""
import numpy as np

from ..metrics import Cider
from ..model.validate import SPECIAL_TOKENS

__all__ = ["caption_metrics", "normalize", "references_by_image", "decode_for_metrics",
           "METRIC_NAMES", "METRIC_LABELS"]

# metric key (in results, history.json and checkpoints) -> how it is printed
METRIC_LABELS = {"bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "cider": "CIDEr"}
METRIC_NAMES = tuple(METRIC_LABELS)
_DROP = frozenset(SPECIAL_TOKENS)


def _bleu():
    from pycocoevalcap.bleu.bleu import Bleu  # a dependency, imported when first scored

    return Bleu


def normalize(caption):
    """A caption string as the scorers see it: lower case, single spaces, no special tokens."""
    return " ".join(w for w in str(caption).lower().split() if w.upper() not in _DROP)


def caption_metrics(references, candidates):
    """Corpus BLEU-1..4 and CIDEr-D of ``candidates`` against ``references``.

    references: a sequence with one entry per image, each a non-empty list of
    reference caption strings (all of that image's captions); candidates: one
    generated caption string per image. Returns a dict with float values for
    ``bleu1``, ``bleu2``, ``bleu3``, ``bleu4`` and ``cider``.
    """
    references, candidates = list(references), list(candidates)
    if len(references) != len(candidates):
        raise ValueError(f"need one candidate per image: {len(candidates)} candidates for "
                         f"{len(references)} images")
    if not references:
        raise ValueError("cannot score an empty set of captions")
    gts, res = {}, {}
    for i, (refs, cand) in enumerate(zip(references, candidates)):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"image {i} needs a non-empty list of reference captions, got {refs!r}")
        gts[i] = [normalize(r) for r in refs]
        res[i] = [normalize(cand)]
    bleu, _ = _bleu()(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    out = {f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)}
    out["cider"] = float(cider)
    return out


def decode_for_metrics(captions, idx_to_word):
    """Word-index captions (N, T) -> N normalized strings (stops at <END>)."""
    out = []
    for row in np.asarray(captions):
        words = []
        for idx in row:
            word = idx_to_word[int(idx)]
            if word == "<END>":
                break
            if word not in _DROP:
                words.append(word)
        out.append(" ".join(words))
    return out


def references_by_image(data, split, image_ids=None):
    """All reference captions of each image of a split.

    Returns (image_ids, references): the images (rows of the split's feature
    matrix) that have at least one caption, in increasing order (or the given
    ``image_ids``), and for each a list of its decoded caption strings.
    """
    captions = data[f"{split}_captions"]
    idxs = np.asarray(data[f"{split}_image_idxs"])
    order = np.argsort(idxs, kind="stable")
    sorted_idxs = idxs[order]
    if image_ids is None:
        image_ids = np.unique(sorted_idxs)
    image_ids = np.asarray(image_ids, dtype=np.int64)
    lo = np.searchsorted(sorted_idxs, image_ids, side="left")
    hi = np.searchsorted(sorted_idxs, image_ids, side="right")
    idx_to_word = data["idx_to_word"]
    references = []
    for img, a, b in zip(image_ids.tolist(), lo.tolist(), hi.tolist()):
        if a == b:
            raise ValueError(f"{split} image {img} has no captions")
        references.append(decode_for_metrics(captions[order[a:b]], idx_to_word))
    return image_ids, references
