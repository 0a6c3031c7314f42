"""The workload itself: the hard-coded length table, and the captions built from it."""
import numpy as np
import pytest
import workload as wl


def test_flickr8k_lengths():
    """The hard-coded table is what the Flickr8k corpus gives (when the corpus is here)."""
    corpus = wl.find_flickr8k()
    if corpus is None:
        pytest.skip("the Flickr8k corpus (shared/data/flickr8k) is not on this machine")
    assert wl.flickr8k_length_counts(corpus) == wl.LENGTH_COUNTS


def test_captions_follow_the_layout_and_the_table():
    assert sum(wl.LENGTH_COUNTS.values()) == 30000
    assert wl.mean_scored_tokens() == pytest.approx(11.5, abs=0.05)
    captions = wl.make_captions(20000, np.random.default_rng(0))
    assert captions.shape == (20000, wl.T) and captions.dtype == np.int32
    assert (captions[:, 0] == wl.START).all()
    scored = (captions[:, 1:] != wl.NULL).sum(axis=1)  # words + <END>
    ends = np.argmax(captions == wl.END, axis=1)
    assert (scored == ends).all() and ((captions[:, 1:] == wl.END).sum(axis=1) == 1).all()
    assert scored.mean() == pytest.approx(wl.mean_scored_tokens(), abs=0.05)
    words = captions[(captions >= 4)]
    assert words.max() < wl.V
