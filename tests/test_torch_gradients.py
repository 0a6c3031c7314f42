"""CaptioningRNN.loss and every one of its gradients against PyTorch autograd, both cells.

The same model is written in PyTorch from its definition (image feature ->
h0 = features @ W_proj + b_proj, word embedding, ``nn.RNN`` (tanh) or
``nn.LSTM`` run through ``torch.func.functional_call`` on weights made from
fastcap's parameters, vocabulary scores h @ W_vocab + b_vocab, cross-entropy
over the non-<NULL> targets summed over time and divided by N), and autograd
differentiates it: an implementation of the recurrence, the gate order and
the backward pass independent of fastcap's. The batch has NULL-padded
captions of different lengths (and a <NULL> inside one caption), so the
packing and the mask are exercised. float64 on the reference backend to
1e-10; float32 on every backend within a scaled tolerance of float64 autograd.
"""
import numpy as np
import pytest

import fastcap
from fastcap import CaptioningRNN
from fastcap.gradient_check import rel_error
from fastcap.model.sequence import CELL_TYPES

from conftest import REQUIRE_ALL
from parity import scaled_error

if not REQUIRE_ALL:  # CI installs the [torch] extra: there a missing torch is a failure
    pytest.importorskip("torch", reason='the PyTorch reference needs the `[torch]` extra: `pip install -e ".[torch]"`')
import torch  # noqa: E402
from torch.func import functional_call  # noqa: E402
from torch.nn import functional as F  # noqa: E402

WORDS = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(16)]
NULL, START, END = 0, 1, 2
N, T, D, W, H = 6, 9, 7, 5, 8
# float32 against float64 autograd on the same weights, max|a - b| / max|b|:
# measured at most 8e-9 (loss) and 4.4e-7 (a gradient) over the backends; about 10x that.
FLOAT32_LOSS_TOL, FLOAT32_GRAD_TOL = 1e-7, 4e-6


def _batch(rng):
    """features (N, D) and (N, T) captions: <START>, words, <END>, <NULL> padding,
    lengths from 1 word to the full T, one <NULL> inside a caption (not scored)."""
    captions = np.full((N, T), NULL, dtype=np.int64)
    captions[:, 0] = START
    for n, length in enumerate([T - 2, 1, 4, T - 2, 2, 6]):
        captions[n, 1:length + 1] = rng.integers(4, len(WORDS), length)
        captions[n, length + 1] = END
    captions[3, 3] = NULL
    return rng.standard_normal((N, D)), captions


def _model(cell, dtype):
    return CaptioningRNN({w: i for i, w in enumerate(WORDS)}, input_dim=D, wordvec_dim=W, hidden_dim=H,
                         cell_type=cell, dtype=dtype, rng=np.random.default_rng(5))


def _torch_loss(cell, params, features, captions):
    """(loss, {name: gradient}) of the model by PyTorch autograd, in float64."""
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    x = F.embedding(torch.tensor(captions[:, :-1]), p["W_embed"])  # (N, T-1, W)
    h0 = (torch.tensor(features) @ p["W_proj"] + p["b_proj"]).unsqueeze(0)  # (1, N, H)
    wx, wh, b = p["Wx"].T, p["Wh"].T, p["b"]
    if cell == "lstm":
        # fastcap packs the gates i, f, o, g; PyTorch i, f, g, o
        i, f, o, g = (slice(k * H, (k + 1) * H) for k in range(4))
        wx, wh, b = (torch.cat([a[i], a[f], a[g], a[o]]) for a in (wx, wh, b))
        rnn, state = torch.nn.LSTM(W, H, batch_first=True), (h0, torch.zeros_like(h0))
    else:
        rnn, state = torch.nn.RNN(W, H, nonlinearity="tanh", batch_first=True), h0
    weights = {"weight_ih_l0": wx, "weight_hh_l0": wh, "bias_ih_l0": b,
               "bias_hh_l0": torch.zeros_like(b)}
    h, _ = functional_call(rnn.double(), weights, (x, state))
    scores = h @ p["W_vocab"] + p["b_vocab"]  # (N, T-1, V)
    loss = F.cross_entropy(scores.reshape(-1, len(WORDS)), torch.tensor(captions[:, 1:]).reshape(-1),
                           ignore_index=NULL, reduction="sum") / N
    loss.backward()
    return loss.item(), {k: t.grad.numpy() for k, t in p.items()}


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_float64_loss_and_gradients_match_autograd(cell):
    model = _model(cell, np.float64)
    features, captions = _batch(np.random.default_rng(0))
    want_loss, want = _torch_loss(cell, model.params, features, captions)
    with fastcap.use_backend("numpy"):
        loss, grads = model.loss(features, captions)
    assert set(grads) == set(want) == set(model.params)
    assert rel_error(loss, want_loss) <= 1e-12
    for k in want:
        assert rel_error(grads[k], want[k]) <= 1e-10, k


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_float32_loss_and_gradients_match_autograd(backend, cell):
    model = _model(cell, np.float32)
    features, captions = _batch(np.random.default_rng(1))
    want_loss, want = _torch_loss(cell, model.params, features, captions)  # on the same float32 weights
    loss, grads = model.loss(features, captions)
    assert scaled_error(loss, want_loss) <= FLOAT32_LOSS_TOL
    for k in want:
        assert grads[k].dtype == np.float32, k
        assert scaled_error(grads[k], want[k]) <= FLOAT32_GRAD_TOL, k
