"""The benchmark workload of docs/design.md, built once and shared by every benchmark.

COCO-shaped: V = 1004 words, D = 512 feature size, W = 256 word-vector size,
H = 512 hidden units, captions of 17 tokens (``<START>``, up to 15 words,
``<END>``, ``<NULL>`` padding: 16 scored steps), float32, batch N = 25 and 100.

Caption lengths are not all 16 scored tokens: they are drawn from the
Flickr8k length table of docs/design.md, hard-coded below so the benchmarks need no
corpus. Where the corpus is present (``shared/data/flickr8k``),
``flickr8k_length_counts`` recomputes the table from it (training split,
lower-cased words ``[a-z]+``, plus ``<END>``, truncated at 16) and the suite
cross-checks it. Words follow a Zipf law over the vocabulary (the most common
word about 1000 times the rarest), so the embedding backward's scatter-add
sees the repeated rows a real corpus gives it.

Everything here is deterministic (``np.random.default_rng(seed)``).
"""
import os
import pathlib
import re
from collections import Counter

import numpy as np

from fastcap.runtime import env as _env
from fastcap.model import sequence as _sequence
from fastcap.model.sequence import CELL_TYPES

V, D, W, H = 1004, 512, 256, 512
T = 17  # caption columns; the model scores T - 1 = 16 of them
BATCHES = (25, 100)
SAMPLE_BATCHES = (1, 100)
SAMPLE_LENGTH = 30
CELLS = CELL_TYPES
DTYPE = np.float32
NULL, START, END, UNK = 0, 1, 2, 3
LEARNING_RATE = 1e-3  # the steady-state cost of Adam does not depend on it
# fastcap in the bfloat16 precision mode, as benchmark implementations
# ("<backend>-bf16"): the Cython backend's engine (the others emulate the mode).
BF16_IMPLS = ("cython-bf16",)

# Scored tokens per caption (words + <END>, truncated at 16) -> captions, in
# the 30,000 Flickr8k training captions (docs/design.md, "Benchmark workload").
LENGTH_COUNTS = {
    3: 15, 4: 125, 5: 342, 6: 856, 7: 1952, 8: 2502, 9: 2923, 10: 3311,
    11: 3314, 12: 3137, 13: 2765, 14: 2333, 15: 1865, 16: 4560,
}  # fmt: skip

_LENGTHS = np.array(sorted(LENGTH_COUNTS), dtype=np.int64)
_LENGTH_P = np.array([LENGTH_COUNTS[k] for k in sorted(LENGTH_COUNTS)], dtype=np.float64)
_LENGTH_P /= _LENGTH_P.sum()
# Zipf law over the ordinary words 4..V-1 (rank r has weight 1/r).
_WORD_P = 1.0 / np.arange(1, V - 4 + 1, dtype=np.float64)
_WORD_P /= _WORD_P.sum()


def mean_scored_tokens():
    """Mean scored tokens per caption of the table (about 11.5 of 16)."""
    return float((_LENGTHS * _LENGTH_P).sum())


def word_to_idx():
    """A vocabulary of V words with the CS231n special tokens at 0-3."""
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(4, V)]
    return {w: i for i, w in enumerate(words)}


def draw_lengths(n, rng):
    """n caption lengths in scored tokens (3..16), drawn from the Flickr8k table."""
    return rng.choice(_LENGTHS, size=n, p=_LENGTH_P)


def make_captions(n, rng):
    """(n, 17) int32 captions: <START>, words, <END>, <NULL> padding."""
    lengths = draw_lengths(n, rng)
    captions = np.full((n, T), NULL, dtype=np.int32)
    captions[:, 0] = START
    for i, k in enumerate(lengths):  # k scored tokens = k - 1 words + <END>
        captions[i, 1:k] = 4 + rng.choice(V - 4, size=k - 1, p=_WORD_P)
        captions[i, k] = END
    return captions


def make_features(n, rng):
    """(n, D) float32 image features (PCA'd fc7 features are roughly unit scale)."""
    return rng.standard_normal((n, D)).astype(DTYPE)


def make_batches(n, count=4, seed=0):
    """`count` (features, captions) minibatches of size n; training cycles through them."""
    rng = np.random.default_rng(seed + n)
    return [(make_features(n, rng), make_captions(n, rng)) for _ in range(count)]


def make_params(cell, seed=0, suppress_end=False):
    """The model's parameters (CaptioningRNN's names and initialisation), float32.

    With ``suppress_end``, ``b_vocab[<END>]`` is -30 so greedy decoding never
    emits ``<END>``: every implementation then decodes all SAMPLE_LENGTH
    words, and the sampling benchmarks compare equal work (an untrained model
    would otherwise stop after a data-dependent number of steps).
    """
    rng = np.random.default_rng(seed)
    G = _sequence.CELLS[cell].gates * H
    p = {
        "W_embed": rng.standard_normal((V, W)) / 100,
        "W_proj": rng.standard_normal((D, H)) / np.sqrt(D),
        "b_proj": np.zeros(H),
        "Wx": rng.standard_normal((W, G)) / np.sqrt(W),
        "Wh": rng.standard_normal((H, G)) / np.sqrt(H),
        "b": np.zeros(G),
        "W_vocab": rng.standard_normal((H, V)) / np.sqrt(H),
        "b_vocab": np.zeros(V),
    }
    if suppress_end:
        p["b_vocab"][END] = -30.0
    return {k: v.astype(DTYPE) for k, v in p.items()}


def make_model(cell, seed=0, suppress_end=False):
    """A fastcap CaptioningRNN at the workload sizes with make_params' weights."""
    from fastcap import CaptioningRNN

    model = CaptioningRNN(word_to_idx(), input_dim=D, wordvec_dim=W, hidden_dim=H,
                          cell_type=cell, dtype=DTYPE)
    model.params = make_params(cell, seed, suppress_end)
    return model


class FastcapTrainer:
    """One training step exactly as CaptioningSolver.step does it: model.loss
    on a minibatch, then ``optim.adam`` on every parameter (minibatches are
    pre-drawn and cycled, so sampling them is not timed)."""

    def __init__(self, cell, n, seed=0):
        from fastcap import optim

        self.model = make_model(cell, seed)
        self.batches = make_batches(n, seed=seed)
        self.configs = {p: {"learning_rate": LEARNING_RATE} for p in self.model.params}
        self._adam = optim.adam
        self._i = 0

    def step(self):
        features, captions = self.batches[self._i % len(self.batches)]
        self._i += 1
        loss, grads = self.model.loss(features, captions)
        params = self.model.params
        for p, w in params.items():
            params[p], self.configs[p] = self._adam(w, grads[p], self.configs[p])
        return loss


# ---------------------------------------------------------------- corpus cross-check


def find_flickr8k():
    """The Flickr8k corpus directory if one is reachable, else None."""
    here = pathlib.Path(__file__).resolve().parent
    candidates = [_env.read("FASTCAP_FLICKR8K_DIR") or ""]
    candidates += [str(p / "shared" / "data" / "flickr8k") for p in here.parents]
    candidates += ["/work/shared/data/flickr8k", "../shared/data/flickr8k"]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "Flickr8k.token.txt")):
            return c
    return None


def flickr8k_length_counts(corpus_dir):
    """Recompute LENGTH_COUNTS from the corpus: {scored tokens: captions}."""
    with open(os.path.join(corpus_dir, "Flickr_8k.trainImages.txt")) as f:
        train = set(f.read().split())
    counts = Counter()
    with open(os.path.join(corpus_dir, "Flickr8k.token.txt"), encoding="utf-8") as f:
        for line in f:
            key, _, caption = line.rstrip("\n").partition("\t")
            if key.split("#")[0] in train:
                counts[min(len(re.findall(r"[a-z]+", caption.lower())) + 1, T - 1)] += 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------- the limit


def step_gemm_flops(cell, n):
    """Matrix-product FLOPs of one training step on the workload's minibatches
    (mean over them): the products any implementation must compute, counted
    on the scored positions only (fastcap skips the padding; PyTorch's peer
    computes more). With P scored positions, U distinct input words, G = H
    (rnn) or 4H (lstm), each GEMM 2*m*k*n:

    h0 and dW_proj 2 * 2NDH; input projection per word and its two gradients
    3 * 2UWG; recurrent products forward, backward and dWh 3 * 2PHG;
    vocabulary projection and its two gradients 3 * 2PHV.
    """
    G = _sequence.CELLS[cell].gates * H
    total = []
    for _, captions in make_batches(n):
        scored = captions[:, 1:] != NULL
        P = int(scored.sum())
        lengths = scored.sum(axis=1)
        U = len(np.unique(np.concatenate([captions[i, :lengths[i]] for i in range(len(captions))])))
        total.append(4 * n * D * H + 6 * U * W * G + 6 * P * H * G + 6 * P * H * V)
    return float(np.mean(total))


# ---------------------------------------------------------------- the attention model (issue 26)

# Show, Attend and Tell at the workload's sizes: L cells of D channels per image (ResNet-50's
# 7x7 grid and VGG-16's 14x14), attention size A; the same captions, H, W and V as above.
ATTENTION_CELLS = (49, 196)
A = 512


def make_grid_features(n, cells, rng):
    """(n, cells, D) float32 grid features (post-ReLU CNN maps: non-negative, about unit scale)."""
    return np.abs(rng.standard_normal((n, cells, D))).astype(DTYPE)


def make_attention_batches(n, cells, count=2, seed=0):
    """`count` (grid features, captions) minibatches of size n."""
    rng = np.random.default_rng(seed + n + cells)
    return [(make_grid_features(n, cells, rng), make_captions(n, rng)) for _ in range(count)]


def make_attention_model(seed=0, suppress_end=False):
    """A fastcap AttentionCaptioningRNN (LSTM) at the workload sizes, float32; with
    ``suppress_end`` greedy decoding never emits <END> (as make_params')."""
    from fastcap import AttentionCaptioningRNN

    model = AttentionCaptioningRNN(word_to_idx(), input_dim=D, wordvec_dim=W, hidden_dim=H, attention_dim=A,
                                   cell_type="lstm", dtype=DTYPE, rng=np.random.default_rng(seed))
    if suppress_end:
        model.params["b_vocab"][END] = -30.0
    return model


class AttentionTrainer(FastcapTrainer):
    """FastcapTrainer's step (model.loss, then Adam on every parameter) for the attention model."""

    def __init__(self, n, cells, seed=0):
        from fastcap import optim

        self.model = make_attention_model(seed)
        self.batches = make_attention_batches(n, cells, seed=seed)
        self.configs = {p: {"learning_rate": LEARNING_RATE} for p in self.model.params}
        self._adam = optim.adam
        self._i = 0
