"""Peer: the same captioning model as a PyTorch user writes it.

``nn.Linear`` projects the image feature to h0, ``nn.Embedding`` looks the
words up, ``nn.LSTM`` / ``nn.RNN`` (tanh, batch_first) runs the sequence,
``nn.Linear`` scores the vocabulary, and the loss is
``F.cross_entropy(..., ignore_index=NULL, reduction='sum') / N`` (fastcap's
loss: summed over scored tokens, averaged over the batch). Training uses
``torch.optim.Adam``; greedy decoding steps an ``nn.LSTMCell`` /
``nn.RNNCell`` (sharing the trained weights) with argmax under
``torch.inference_mode()``.

The weights are copied from the fastcap parameter dict (float32), so both
compute the same function: fastcap packs LSTM gates i, f, o, g and PyTorch
i, f, g, o, and PyTorch's two recurrent biases get b and 0.

``autocast=True`` runs the forward passes under ``torch.autocast("cpu",
dtype=torch.bfloat16)``: PyTorch's fastest CPU mode on CPUs with bf16 units
(the peer of fastcap's bfloat16 precision mode); the weights, the Adam state
and the gradients stay float32 there too.

Threads: callers set ``torch.set_num_threads`` to fastcap's thread count
(``set_threads``); nothing here changes it.
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def set_threads(n):
    torch.set_num_threads(int(n))
    return torch.get_num_threads()


def version():
    return torch.__version__


def _ifog_to_ifgo(a, H):
    # rows of a (4H, ...) in fastcap gate order -> PyTorch gate order
    i, f, o, g = (a[k * H : (k + 1) * H] for k in range(4))
    return np.concatenate([i, f, g, o])


class Captioner(nn.Module):
    def __init__(self, params, cell_type, null=0, start=1):
        super().__init__()
        V, W = params["W_embed"].shape
        D, H = params["W_proj"].shape
        self.cell_type, self.null, self.start, self.V, self.H = cell_type, null, start, V, H
        self.proj = nn.Linear(D, H)
        self.embed = nn.Embedding(V, W)
        if cell_type == "lstm":
            self.rnn = nn.LSTM(W, H, batch_first=True)
        else:
            self.rnn = nn.RNN(W, H, nonlinearity="tanh", batch_first=True)
        self.vocab = nn.Linear(H, V)
        self.load_fastcap_params(params)

    @torch.no_grad()
    def load_fastcap_params(self, p):
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        H = self.H
        self.proj.weight.copy_(t(p["W_proj"].T))
        self.proj.bias.copy_(t(p["b_proj"]))
        self.embed.weight.copy_(t(p["W_embed"]))
        wx, wh, b = p["Wx"].T, p["Wh"].T, p["b"]
        if self.cell_type == "lstm":
            wx, wh, b = _ifog_to_ifgo(wx, H), _ifog_to_ifgo(wh, H), _ifog_to_ifgo(b, H)
        self.rnn.weight_ih_l0.copy_(t(wx))
        self.rnn.weight_hh_l0.copy_(t(wh))
        self.rnn.bias_ih_l0.copy_(t(b))
        self.rnn.bias_hh_l0.zero_()
        self.vocab.weight.copy_(t(p["W_vocab"].T))
        self.vocab.bias.copy_(t(p["b_vocab"]))

    def loss(self, features, captions):
        """features (N, D) float32, captions (N, T) int64 -> scalar loss."""
        N = features.shape[0]
        h0 = self.proj(features).unsqueeze(0)  # (1, N, H)
        x = self.embed(captions[:, :-1])  # (N, T-1, W)
        if self.cell_type == "lstm":
            h, _ = self.rnn(x, (h0, torch.zeros_like(h0)))
        else:
            h, _ = self.rnn(x, h0)
        scores = self.vocab(h)  # (N, T-1, V)
        targets = captions[:, 1:]
        loss = F.cross_entropy(scores.reshape(-1, self.V), targets.reshape(-1),
                               ignore_index=self.null, reduction="sum")
        return loss / N

    def make_cell(self):
        """An LSTMCell / RNNCell sharing this model's recurrent weights."""
        W, H = self.embed.embedding_dim, self.H
        cell = nn.LSTMCell(W, H) if self.cell_type == "lstm" else nn.RNNCell(W, H, nonlinearity="tanh")
        with torch.no_grad():
            cell.weight_ih.copy_(self.rnn.weight_ih_l0)
            cell.weight_hh.copy_(self.rnn.weight_hh_l0)
            cell.bias_ih.copy_(self.rnn.bias_ih_l0)
            cell.bias_hh.copy_(self.rnn.bias_hh_l0)
        return cell

    def sample(self, features, max_length=30, cell=None):
        """Greedy decoding: features (N, D) -> (N, max_length) int64 word indices."""
        cell = self.make_cell() if cell is None else cell
        N = features.shape[0]
        with torch.inference_mode():
            h = self.proj(features)
            c = torch.zeros_like(h)
            word = torch.full((N,), self.start, dtype=torch.long)
            captions = torch.full((N, max_length), self.null, dtype=torch.long)
            for t in range(max_length):
                x = self.embed(word)
                if self.cell_type == "lstm":
                    h, c = cell(x, (h, c))
                else:
                    h = cell(x, h)
                word = self.vocab(h).argmax(dim=1)
                captions[:, t] = word
        return captions


class Trainer:
    """model.loss, backward, Adam step: one PyTorch training step."""

    def __init__(self, params, cell_type, batches, learning_rate, autocast=False):
        self.model = Captioner(params, cell_type)
        self.autocast = _autocast(autocast)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        self.batches = [(torch.from_numpy(f), torch.from_numpy(c.astype(np.int64))) for f, c in batches]
        self._i = 0

    def loss(self, i=0):
        f, c = self.batches[i]
        with torch.no_grad(), self.autocast():
            return float(self.model.loss(f, c))

    def step(self):
        features, captions = self.batches[self._i % len(self.batches)]
        self._i += 1
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.model.loss(features, captions)
        loss.backward()
        self.opt.step()
        return loss.item()


class Sampler:
    def __init__(self, params, cell_type, autocast=False):
        self.model = Captioner(params, cell_type)
        self.cell = self.model.make_cell()
        self.autocast = _autocast(autocast)

    def sample(self, features, max_length):
        with self.autocast():
            return self.model.sample(torch.from_numpy(features), max_length, self.cell).numpy()


def _autocast(on):
    """A context factory: bf16 autocast on the CPU, or nothing."""
    if on:
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext
