"""fastcap.metrics.Cider against pycocoevalcap's Cider, the reference: the corpus score and
the per-image array agree to 1e-9, on every backend.

On generated captions (always: few words, so n-grams repeat within and across captions;
empty and one-word captions; one image, which scores 0) and on the Flickr8k captions
(when ../shared/data/flickr8k is present: real word frequencies and lengths). The
document frequencies fixed from a reference corpus (self-critical training's rewards)
are checked against pycocoevalcap's scorer given the whole corpus.
"""
import collections
import io
import json
import os
import re

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider as ReferenceCider
from pycocoevalcap.cider.cider_scorer import CiderScorer

import fastcap
from fastcap.cli.main import main as fastcap_main
from fastcap.metrics import Cider, caption_set
from fastcap.train import metrics as train_metrics
from fastcap.train.trainer import Trainer

TOL = 1e-9
FLICKR8K = next((d for d in (os.environ.get("FASTCAP_FLICKR8K_DIR", ""),
                             os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "flickr8k"))
                 if d and os.path.isfile(os.path.join(d, "Flickr8k.token.txt"))), None)


def generated(n_images, seed, words=8):
    """gts, res of n_images with 1 to 5 references each; candidates of 0 to 12 words of
    `words` (some copy a reference, some are empty)."""
    rng = np.random.default_rng(seed)

    def caption():
        return " ".join(f"w{i}" for i in rng.integers(0, words, rng.integers(0, 13)))

    gts = {f"img{i}": [caption() for _ in range(rng.integers(1, 6))] for i in range(n_images)}
    res = {k: [refs[0] if rng.random() < 0.2 else caption()] for k, refs in gts.items()}
    res[next(iter(res))] = [""]
    return gts, res


def assert_agrees(gts, res, scorer=None):
    want, want_all = ReferenceCider().compute_score(gts, res)
    got, got_all = (scorer or Cider()).compute_score(gts, res)
    assert isinstance(got, float) and got_all.shape == (len(gts),) and got_all.dtype == np.float64
    assert abs(got - want) <= TOL and np.max(np.abs(got_all - want_all)) <= TOL, (got, want)
    return got_all


@pytest.mark.parametrize("n_images, seed", [(2, 0), (3, 1), (50, 2), (400, 3)])
def test_generated_captions_score_as_pycocoevalcap(backend, n_images, seed):
    scores = assert_agrees(*generated(n_images, seed))
    assert (scores > 0).sum() > n_images // 3  # n-grams really matched


def test_the_same_scores_for_any_thread_count(backend):
    """Large enough that the table's logs and the candidates are split over the pool: the
    scores are the same bits at 1, 2 and 3 threads."""
    gts, res = generated(1500, 5, words=40)
    previous, scores = fastcap.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            fastcap.set_num_threads(threads)
            scores.append(Cider().compute_score(gts, res)[1])
    finally:
        fastcap.set_num_threads(previous)
    assert all(np.array_equal(scores[0], s) for s in scores[1:])
    assert (scores[0] > 0).sum() > 100


def test_word_ids_score_as_the_same_words(backend):
    gts, res = generated(60, 4)
    ids = {f"w{i}": i for i in range(8)}
    to_ids = lambda c: [ids[w] for w in c.split()]  # noqa: E731
    want = Cider().compute_score(gts, res)[1]
    got = Cider().compute_score({k: [to_ids(c) for c in v] for k, v in gts.items()},
                                {k: [np.array(to_ids(v[0]), np.int64)] for k, v in res.items()})[1]
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)  # other ids: other orders of the sums


def test_one_image_scores_zero_as_pycocoevalcap(backend):
    gts, res = {"a": ["a dog runs", "the dog runs"]}, {"a": ["a dog runs"]}
    assert assert_agrees(gts, res)[0] == 0.0


def test_fixed_document_frequencies_are_the_corpus(backend):
    """Cider(corpus) scores a subset of the corpus's images with the document frequencies
    and the image count of the whole corpus: pycocoevalcap's scores of those images when
    it scores the whole corpus."""
    gts, res = generated(80, 5)
    reference = CiderScorer(n=4, sigma=6.0)
    for k in gts:
        reference += (res[k][0], gts[k])
    _, want = reference.compute_score()
    subset = list(gts)[::3]
    got = Cider(list(gts.values())).score([res[k][0] for k in subset], [gts[k] for k in subset])
    assert np.max(np.abs(got - want[::3])) <= TOL
    # and it is not what the subset's own frequencies give
    assert np.max(np.abs(got - Cider().score([res[k][0] for k in subset], [gts[k] for k in subset]))) > 1e-3


def test_score_sets_of_caption_matrices(backend):
    """fastcap's captions (<START> words <END> <NULL>...) scored as word ids, several
    candidates per image, equal the strings they decode to."""
    rng = np.random.default_rng(6)
    NULL, START, END = 0, 1, 2

    def matrix(n):
        c = np.zeros((n, 10), np.int32)
        c[:, 0] = START
        for i, L in enumerate(rng.integers(0, 9, n)):
            c[i, 1:L + 1] = rng.integers(3, 9, L)
            c[i, L + 1] = END
        return c

    refs, cands = matrix(20), matrix(12)
    text = lambda row: " ".join(f"w{w}" for w in row[1:][: list(row[1:]).index(END)])  # noqa: E731
    ranges = np.array([[4 * (k % 5), 4 * (k % 5) + 4] for k in range(12)])  # 5 images x 4 references
    corpus = [[text(r) for r in refs[a:b]] for a, b in ranges[:5]]
    cider = Cider([[np.asarray(r[1:][: list(r[1:]).index(END)]) for r in refs[a:b]] for a, b in ranges[:5]])
    got = cider.score_sets(caption_set(cands, END, (NULL, START)), caption_set(refs, END, (NULL, START)), ranges)
    want = Cider(corpus).score([text(c) for c in cands], [corpus[k % 5] for k in range(12)])
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_caption_set_cuts_at_end_and_skips():
    tokens, starts = caption_set(np.array([[1, 5, 0, 6, 2, 7], [1, 2, 5, 5, 5, 5], [1, 8, 9, 4, 4, 4]]), 2, (0, 1))
    np.testing.assert_array_equal(tokens, [5, 6, 8, 9, 4, 4, 4])
    np.testing.assert_array_equal(starts, [0, 2, 2, 7])


@pytest.mark.parametrize("call, words", [
    (lambda: Cider().compute_score({"a": ["x"]}, {"b": ["x"]}), ["same images"]),
    (lambda: Cider().compute_score({"a": ["x"]}, {"a": ["x", "y"]}), ["res['a']", "one candidate"]),
    (lambda: Cider().compute_score({"a": []}, {"a": ["x"]}), ["image 0", "non-empty"]),
    (lambda: Cider().score([[1, -3]], [[[1]]]), ["word id -3"]),
    (lambda: Cider().score(["a b"], [[[1, 2]]]), ["word ids", "strings"]),
    (lambda: Cider().score([], []), ["empty"]),
    (lambda: Cider([["a b"]]).score_sets((np.zeros(0, int), [0]), (np.zeros(0, int), [0]), np.zeros((0, 2))),
     ["word ids", "strings"]),
    (lambda: Cider([[[1]]]).score_sets((np.array([1]), [0, 1]), (np.array([1]), [0, 1]), [[0, 2]]),
     ["refs", "non-empty ranges"]),
])
def test_bad_input_is_named(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for w in words:
        assert w in str(info.value)


class Recording(Cider):
    """fastcap's scorer, recording each corpus it scores with its result."""

    calls = []

    def compute_score(self, gts, res):
        score, scores = super().compute_score(gts, res)
        self.calls.append((gts, res, score))
        return score, scores


def test_the_epochs_and_evaluate_score_cider_with_it(tmp_path, monkeypatch, capsys):
    """A run's per-epoch CIDEr and `fastcap evaluate`'s are fastcap.metrics.Cider's, and equal
    pycocoevalcap's on the same captions."""
    monkeypatch.setattr(train_metrics, "Cider", Recording)
    monkeypatch.setattr(Recording, "calls", [])
    options = dict(num_train_images=40, num_val_images=8, captions_per_image=3, hidden_dim=16,
                   wordvec_dim=16, batch_size=20, epochs=3, dtype="float64", eval_images=0, lr=5e-3)
    with fastcap.use_backend("numpy"):
        Trainer(options, tmp_path / "r", progress=False, stdout=io.StringIO()).run()
    history = json.loads((tmp_path / "r" / "history.json").read_text())["epochs"]
    assert [score for _, _, score in Recording.calls[:4]] == [e["cider"] for e in history]
    assert fastcap_main(["evaluate", str(tmp_path / "r"), "--backend", "numpy", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["cider"] == Recording.calls[-1][2]
    assert len(Recording.calls) == 5 and max(score for _, _, score in Recording.calls) > 0  # n-grams matched
    for gts, res, score in Recording.calls:
        assert abs(score - ReferenceCider().compute_score(gts, res)[0]) <= TOL


def _flickr8k(limit):
    captions = collections.defaultdict(list)
    with open(os.path.join(FLICKR8K, "Flickr8k.token.txt"), encoding="utf-8") as f:
        for line in f:
            key, _, text = line.rstrip("\n").partition("\t")
            captions[key.split("#")[0]].append(" ".join(re.findall(r"[a-z]+", text.lower())))
    with open(os.path.join(FLICKR8K, "Flickr_8k.devImages.txt")) as f:
        images = [line.strip() for line in f if line.strip()][:limit]
    return images, captions


@pytest.mark.skipif(FLICKR8K is None, reason="the Flickr8k captions (../shared/data/flickr8k or "
                                              "FASTCAP_FLICKR8K_DIR) are not here")
def test_flickr8k_captions_score_as_pycocoevalcap(backend):
    """The 1,000 Flickr8k validation images: each image's first caption against the other
    four (a human caption), or another image's caption (a wrong one)."""
    images, captions = _flickr8k(1000)
    gts = {im: captions[im][1:] for im in images}
    res = {im: [captions[im][0] if i % 2 else captions[images[(7 * i + 3) % len(images)]][0]]
           for i, im in enumerate(images)}
    scores = assert_agrees(gts, res)
    assert scores[1::2].mean() > 5 * scores[::2].mean()  # the right captions score far higher
