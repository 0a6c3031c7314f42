"""Caption metrics: fastcap.train.metrics against the COCO caption evaluation's own scorers."""
import math

import numpy as np
import pytest

from fastcap.data.generated import generate_coco_data
from fastcap.train.metrics import caption_metrics, decode_for_metrics, normalize, references_by_image

Bleu = pytest.importorskip("pycocoevalcap.bleu.bleu").Bleu
Cider = pytest.importorskip("pycocoevalcap.cider.cider").Cider

# A fixed example: three images, several references each, imperfect candidates.
REFS = [
    ["a man is sitting on the beach with a kite", "a man sitting on the beach",
     "there is a man sitting on a beach near a red kite"],
    ["two dogs are running in the park", "two brown dogs running in a park",
     "dogs running in the park", "two dogs run on the grass"],
    ["a white cat sleeping on a bench", "a cat is sleeping on the bench",
     "a small white cat lying on a bench in the garden"],
]
CANDS = ["a man sitting on the beach with a red kite", "two dogs running in the park",
         "a black cat sitting on a bench"]


def test_matches_pycocoevalcap_on_a_fixed_example():
    gts = {i: refs for i, refs in enumerate(REFS)}
    res = {i: [c] for i, c in enumerate(CANDS)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    got = caption_metrics(REFS, CANDS)
    assert set(got) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider"}
    for n in range(4):
        assert got[f"bleu{n + 1}"] == pytest.approx(bleu[n], rel=1e-12, abs=1e-15)
    assert got["cider"] == pytest.approx(cider, rel=1e-12)
    # and the numbers are in the plausible range for this example
    assert 0.5 < got["bleu1"] <= 1 and 0 < got["bleu4"] < got["bleu1"] and got["cider"] > 0


def test_identical_candidate_and_reference_score_one():
    refs = [["a man riding a red bicycle down the street"], ["three zebras standing in a field"]]
    cands = [r[0] for r in refs]
    got = caption_metrics(refs, cands)
    for n in range(1, 5):
        assert got[f"bleu{n}"] == pytest.approx(1.0, abs=1e-8)
    # Two images with no n-gram in common: every idf is log(2), each cosine 1, length
    # penalty exp(0) = 1, so CIDEr-D = 10 * mean over n of 1 = 10.
    assert got["cider"] == pytest.approx(10.0, rel=1e-12)


def test_hand_checked_bleu():
    # One image, candidate "a b c d" against reference "a b c e": 3/4 unigrams, 2/3
    # bigrams, 1/2 trigrams, 0/1 4-grams match; equal lengths, so no brevity penalty.
    got = caption_metrics([["a b c e"]], ["a b c d"])
    assert got["bleu1"] == pytest.approx(3 / 4, rel=1e-8)
    assert got["bleu2"] == pytest.approx(math.sqrt(3 / 4 * 2 / 3), rel=1e-8)
    assert got["bleu3"] == pytest.approx((3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3), rel=1e-8)
    assert got["bleu4"] < 1e-3  # no matching 4-gram
    # A candidate half the reference length: brevity penalty exp(1 - 8/4).
    got = caption_metrics([["a b c d e f g h"]], ["a b c d"])
    assert got["bleu1"] == pytest.approx(math.exp(1 - 2), rel=1e-8)


def test_bleu_uses_all_references():
    # The candidate equals only the second reference of its image.
    refs = [["a dog on the grass", "a black dog lying on the grass"]]
    got = caption_metrics(refs, ["a black dog lying on the grass"])
    assert got["bleu4"] == pytest.approx(1.0, abs=1e-8)
    only_first = caption_metrics([refs[0][:1]], ["a black dog lying on the grass"])
    assert only_first["bleu4"] < 0.5


def test_clipped_counts_and_no_overlap():
    # "the the the the" against "the cat": unigram precision clipped to 1/4.
    got = caption_metrics([["the cat"]], ["the the the the"])
    assert got["bleu1"] == pytest.approx(1 / 4, rel=1e-8)
    got = caption_metrics([["a man on a horse"], ["two birds in a tree"]], ["xyz", "qqq"])
    assert got["bleu1"] < 1e-6 and got["cider"] == 0.0


def test_normalize_drops_special_tokens_and_case():
    assert normalize("<START> A  Man <END>") == "a man"
    assert normalize("<unk> dog <NULL> <NULL>") == "<unk> dog"
    a = caption_metrics(REFS, CANDS)
    b = caption_metrics([[f"<START> {r.upper()} <END>" for r in refs] for refs in REFS],
                        [f"{c} <END>" for c in CANDS])
    assert a == b


def test_bad_arguments():
    with pytest.raises(ValueError, match="one candidate per image"):
        caption_metrics(REFS, CANDS[:2])
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics([[]], ["a"])
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics(["a man"], ["a man"])  # a string is not a list of references
    with pytest.raises(ValueError, match="empty"):
        caption_metrics([], [])


def test_references_by_image_groups_all_captions_of_each_image():
    data = generate_coco_data(num_train_images=8, num_val_images=6, captions_per_image=3,
                              pca_dim=8, full_dim=8, seed=2)
    # Shuffle the caption rows: grouping must follow image_idxs, not row order.
    perm = np.random.default_rng(0).permutation(len(data["val_captions"]))
    data["val_captions"], data["val_image_idxs"] = data["val_captions"][perm], data["val_image_idxs"][perm]
    ids, refs = references_by_image(data, "val")
    assert ids.tolist() == list(range(6))
    for img, r in zip(ids, refs):
        rows = np.flatnonzero(data["val_image_idxs"] == img)
        assert sorted(r) == sorted(decode_for_metrics(data["val_captions"][rows], data["idx_to_word"]))
        assert len(r) == 3 and all("<START>" not in s and "<END>" not in s for s in r)
    ids, refs = references_by_image(data, "val", [4, 1])
    assert ids.tolist() == [4, 1] and len(refs) == 2
    with pytest.raises(ValueError, match="no captions"):
        references_by_image(data, "val", [99])


def test_decode_for_metrics_stops_at_end():
    idx_to_word = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "dog"]
    caps = np.array([[1, 4, 5, 2, 4, 4], [4, 3, 5, 0, 0, 0], [2, 4, 4, 4, 4, 4]])
    assert decode_for_metrics(caps, idx_to_word) == ["a dog", "a <UNK> dog", ""]
