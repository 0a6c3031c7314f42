"""CIDEr-D, compiled: ``Cider`` gives pycocoevalcap's scores from the active backend's kernels.

``Cider().compute_score(gts, res)`` has the interface and the results of
pycocoevalcap's ``Cider`` (``pycocoevalcap.cider.cider``, the scorer behind the
published COCO numbers, which stays the reference the tests hold this one to:
the corpus score and the per-image array agree to 1e-9): CIDEr-D, the TF-IDF
weighted n-grams (n = 1..4) of a candidate against each reference, the
candidate's weights clipped at the reference's, a Gaussian penalty (sigma 6)
on the difference of their lengths, averaged over n and the references, times
10. ``Cider()`` takes its document frequencies from the references of the
images it scores, as pycocoevalcap does (scores over different image sets are
not comparable, and a single image scores 0); ``Cider(references)`` fixes
them once from a reference corpus (self-critical training's rewards: the
training references, counted once per run).

A caption is a string (split on whitespace, as pycocoevalcap's tokens are) or
a sequence of word ids (fastcap's captions: no string work at all);
``caption_set`` turns a matrix of fastcap captions into the kernels' form
(tokens and starts) without a Python loop, and ``Cider.score_sets`` scores in
that form. The kernels (``cider_df``, ``cider_d``: fastcap._kernels) are those
of the backend active when the scorer is made, whose document-frequency table
only they can read.
"""
import numpy as np

from .runtime.compute import resolve

__all__ = ["Cider", "caption_set"]

_MAX_WORD = (1 << 32) - 2  # the kernels' n-gram keys hold each word id + 1 in 32 bits


def caption_set(captions, end=None, skip=()):
    """Word-id captions (n, T) -> (tokens (W,) intp, starts (n+1,) intp), caption i being
    tokens[starts[i]:starts[i+1]]: each row's ids before its first `end` (None: all), less
    those in `skip` (e.g. '<NULL>' and '<START>')."""
    c = np.asarray(captions)
    if c.ndim != 2 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"captions must be an (n, T) integer array of word ids, got {c.dtype} "
                         f"of shape {c.shape}")
    keep = np.ones(c.shape, bool)
    for word in skip:  # a few words: comparisons beat np.isin's sort
        keep &= c != word
    if end is not None:  # the columns before each row's first `end` (a cumsum costs 2x)
        hit = c == end
        first = np.where(hit.any(axis=1), hit.argmax(axis=1), c.shape[1])
        keep &= np.arange(c.shape[1]) < first[:, None]
    starts = np.zeros(c.shape[0] + 1, dtype=np.intp)
    np.cumsum(np.count_nonzero(keep, axis=1), out=starts[1:])
    return _word_ids("captions", c[keep]), starts


def _word_ids(name, tokens):
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() > _MAX_WORD):
        bad = tokens.min() if tokens.min() < 0 else tokens.max()
        raise ValueError(f"{name} holds word id {bad}, outside [0, {_MAX_WORD}]")
    return np.ascontiguousarray(tokens, dtype=np.intp)


class Cider:
    """CIDEr-D as pycocoevalcap's ``Cider`` computes it, on compiled kernels.

    references: None (document frequencies from each scored set's references, as
    pycocoevalcap) or a reference corpus, one list of captions per image, whose
    document frequencies (and image count, for the idf) are fixed now.
    """

    def __init__(self, references=None):
        self._kernels = resolve().kernels  # the table below is this backend's
        self._words = {}  # word -> id, for captions given as strings
        self._strings = None  # whether this scorer's captions are strings (set by the first)
        self._table = None
        if references is not None:
            refs = self._references("references", list(references))
            self._table = self._kernels.cider_df(*refs)

    @classmethod
    def of_sets(cls, references, images):
        """A Cider whose document frequencies are fixed from a corpus in the kernels' form:
        references (tokens, starts) as ``caption_set`` makes them; images (I+1,) offsets,
        image i's references being captions images[i] .. images[i+1] - 1."""
        cider = cls()
        tokens, starts = _word_ids("reference tokens", references[0]), references[1]
        starts = _starts("reference starts", starts, len(tokens))
        images = _starts("images", images, len(starts) - 1)
        cider._strings, cider._table = False, cider._kernels.cider_df(tokens, starts, images)
        return cider

    def method(self):
        return "CIDEr"

    def compute_score(self, gts, res):
        """pycocoevalcap's interface: gts {image: [reference captions]}, res {image: [one
        candidate caption]} with the same keys -> (corpus score (float), per-image scores
        (I,) float64, in the order of gts' keys)."""
        if not isinstance(gts, dict) or not isinstance(res, dict) or gts.keys() != res.keys():
            raise ValueError("gts and res must be dicts with the same images as keys")
        ids = list(gts)
        for i in ids:
            if not isinstance(res[i], list) or len(res[i]) != 1:
                raise ValueError(f"res[{i!r}] must be a list of one candidate caption, got {res[i]!r}")
        scores = self.score([res[i][0] for i in ids], [gts[i] for i in ids])
        return float(np.mean(scores)), scores

    def score(self, candidates, references):
        """CIDEr-D of each candidate against its image's references: candidates, one caption
        per image; references, one non-empty list of captions per image -> (I,) float64."""
        candidates, references = list(candidates), list(references)
        if len(candidates) != len(references):
            raise ValueError(f"need one candidate per image: {len(candidates)} candidates for "
                             f"{len(references)} images")
        ref_tokens, ref_starts, images = self._references("references", references)
        cand_tokens, cand_starts = self._captions("candidates", candidates)
        refs = np.ascontiguousarray(np.stack([images[:-1], images[1:]], axis=1))
        table = self._table
        if table is None:
            if not references:
                raise ValueError("cannot score an empty set of captions")
            table = self._kernels.cider_df(ref_tokens, ref_starts, images)
        return self._score(table, cand_tokens, cand_starts, ref_tokens, ref_starts, refs)

    def score_sets(self, candidates, references, refs):
        """The kernels' form, for scoring many candidates of word ids against a fixed
        reference set (self-critical training): candidates and references (tokens,
        starts) as ``caption_set`` makes them; refs (K, 2): candidate k's references are
        captions refs[k, 0] .. refs[k, 1] - 1 (at least one). Needs the document
        frequencies of ``Cider(references)``. -> (K,) float64."""
        if self._table is None:
            raise ValueError("score_sets needs fixed document frequencies: Cider(references)")
        if self._strings:
            raise ValueError("score_sets takes word ids; this scorer's references were strings")
        (cand_tokens, cand_starts), (ref_tokens, ref_starts) = (
            (_word_ids(f"{name} tokens", t), _starts(f"{name} starts", s, len(t)))
            for name, (t, s) in (("candidate", candidates), ("reference", references)))
        K, R = cand_starts.shape[0] - 1, ref_starts.shape[0] - 1
        refs = np.ascontiguousarray(refs, dtype=np.intp)
        if refs.shape != (K, 2) or (K and (refs[:, 0].min() < 0 or refs[:, 1].max() > R
                                           or (refs[:, 1] <= refs[:, 0]).any())):
            raise ValueError(f"refs must be ({K}, 2) non-empty ranges of the {R} references, "
                             f"got shape {refs.shape}")
        return self._score(self._table, cand_tokens, cand_starts, ref_tokens, ref_starts, refs)

    def _score(self, table, cand_tokens, cand_starts, ref_tokens, ref_starts, refs):
        scores = np.empty(refs.shape[0], dtype=np.float64)
        self._kernels.cider_d(table, cand_tokens, cand_starts, ref_tokens, ref_starts, refs, scores)
        return scores

    # ------------------------------------------------------------ captions -> word ids
    def _references(self, name, references):
        """[[captions of image i]] -> (tokens, starts, images (I+1,)): image i's references
        are captions images[i] .. images[i+1] - 1."""
        counts = []
        for i, refs in enumerate(references):
            if isinstance(refs, (str, bytes)) or not hasattr(refs, "__len__") or len(refs) == 0:
                raise ValueError(f"{name}: image {i} needs a non-empty list of reference captions, "
                                 f"got {refs!r}")
            counts.append(len(refs))
        images = np.zeros(len(references) + 1, dtype=np.intp)
        np.cumsum(counts, out=images[1:])
        tokens, starts = self._captions(name, [c for refs in references for c in refs])
        return tokens, starts, images

    def _captions(self, name, captions):
        """Captions (all strings, or all sequences of word ids) -> (tokens, starts)."""
        strings = bool(captions) and isinstance(captions[0], str)
        if captions and self._strings is not None and strings != self._strings:
            kinds = ("word ids", "strings")
            raise ValueError(f"{name}: this scorer's captions are {kinds[self._strings]}, got "
                             f"{kinds[strings]}")
        if captions:
            self._strings = strings
        if strings:
            if not all(isinstance(c, str) for c in captions):
                raise ValueError(f"{name} must all be strings or all sequences of word ids")
            split = [c.split() for c in captions]
            words = self._words
            for w in {w for ws in split for w in ws}.difference(words):
                words[w] = len(words)
            lengths = [len(ws) for ws in split]
            tokens = np.array([words[w] for ws in split for w in ws], dtype=np.intp)
        else:
            arrays = [np.asarray(c) for c in captions]
            for i, a in enumerate(arrays):
                if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
                    raise ValueError(f"{name}[{i}] must be a string or a sequence of word ids, "
                                     f"got {a.dtype} of shape {a.shape}")
            lengths = [a.size for a in arrays]
            tokens = _word_ids(name, np.concatenate(arrays) if arrays else np.zeros(0, np.intp))
        starts = np.zeros(len(captions) + 1, dtype=np.intp)
        np.cumsum(lengths, out=starts[1:])
        return tokens, starts


def _starts(name, starts, size):
    starts = np.ascontiguousarray(starts, dtype=np.intp)
    if starts.ndim != 1 or starts.shape[0] < 1 or starts[0] != 0 or starts[-1] != size or (
            np.diff(starts) < 0).any():
        raise ValueError(f"{name} must be non-decreasing offsets from 0 to {size}")
    return starts
