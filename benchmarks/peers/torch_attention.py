"""Peer: the attention captioner (issue 26) as a PyTorch user writes it.

The model of fastcap.model.attention_reference, step by step in eager PyTorch:
h0 = mean_L(a) @ W_proj + b_proj, P = a @ W_enc + b_enc once per image, then per
word the scores tanh(P + h W_dec) @ w_att, the softmax over L, the gated context
(``torch.bmm``), the LSTM cell on [word vector, context], and the scores of the
vocabulary for all steps at once; loss = cross-entropy summed over scored words / N
plus the attention penalty. Like every PyTorch implementation of Show, Attend and
Tell, it runs all T steps over the padded (N, T) grid (the mask only weighs the
loss), and autograd keeps every step's (N, L, A) tanh for the backward pass.

``autocast=True`` runs the forward under ``torch.autocast("cpu", dtype=torch.bfloat16)``
(the peer of fastcap's bfloat16 mode); ``compiled=True`` wraps the loss in
``torch.compile`` (the inductor backend: it needs a C++ compiler; callers skip it
where compiling fails). Decoding: greedy argmax over ``max_length`` words under
``torch.inference_mode()``. The weights are fastcap's parameter dict (float32,
gates i, f, o, g as fastcap packs them); threads are the caller's
(``torch_peer.set_threads``).
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .torch_peer import _autocast


class AttentionCaptioner(nn.Module):
    def __init__(self, params, attention_reg=1.0, null=0, start=1):
        super().__init__()
        self.p = nn.ParameterDict({k: nn.Parameter(torch.from_numpy(np.array(v, np.float32)))
                                   for k, v in params.items()})
        self.W, self.H = params["W_embed"].shape[1], params["Wh"].shape[0]
        self.reg, self.null, self.start = attention_reg, null, start

    def begin(self, a):
        """a (N, L, D) -> (h0, c0, P (N, L, A))."""
        p = self.p
        h = a.mean(1) @ p["W_proj"] + p["b_proj"]
        return h, torch.zeros_like(h), a @ p["W_enc"] + p["b_enc"]

    def step(self, xw, h, c, a, P):
        """One word: xw (N, 4H) the word's input projection -> (h, c, alpha (N, L))."""
        p, H = self.p, self.H
        e = torch.tanh(P + (h @ p["W_dec"])[:, None, :]) @ p["w_att"]
        alpha = torch.softmax(e, dim=1)
        beta = torch.sigmoid(h @ p["W_beta"] + p["b_beta"])
        z = beta * torch.bmm(alpha[:, None, :], a)[:, 0]
        gates = xw + h @ p["Wh"] + z @ p["Wx"][self.W:]
        i, f, o = (torch.sigmoid(gates[:, k * H:(k + 1) * H]) for k in range(3))
        c = f * c + i * torch.tanh(gates[:, 3 * H:])
        return o * torch.tanh(c), c, alpha

    def loss(self, a, captions):
        p, W = self.p, self.W
        N, T = captions.shape[0], captions.shape[1] - 1
        cin, cout = captions[:, :-1], captions[:, 1:]
        mask = (cout != self.null).to(a.dtype)
        h, c, P = self.begin(a)
        xw = p["W_embed"][cin] @ p["Wx"][:W] + p["b"]  # (N, T, 4H)
        hs, alphas = [], []
        for t in range(T):
            h, c, alpha = self.step(xw[:, t], h, c, a, P)
            hs.append(h)
            alphas.append(alpha)
        scores = torch.stack(hs, 1) @ p["W_vocab"] + p["b_vocab"]
        loss = F.cross_entropy(scores.reshape(N * T, -1).float(), cout.reshape(-1), ignore_index=self.null,
                               reduction="sum") / N
        attended = (torch.stack(alphas, 1).float() * mask[:, :, None]).sum(1)
        return loss + self.reg * ((1 - attended) ** 2).sum() / N

    @torch.inference_mode()
    def sample(self, a, max_length):
        p, W = self.p, self.W
        h, c, P = self.begin(a)
        word = torch.full((a.shape[0],), self.start, dtype=torch.long)
        captions = []
        for _ in range(max_length):
            h, c, _ = self.step(p["W_embed"][word] @ p["Wx"][:W] + p["b"], h, c, a, P)
            word = (h @ p["W_vocab"] + p["b_vocab"]).argmax(1)
            captions.append(word)
        return torch.stack(captions, 1)


class Trainer:
    """loss, backward, Adam step: one PyTorch training step of the attention model."""

    def __init__(self, params, batches, learning_rate, autocast=False, compiled=False):
        self.model = AttentionCaptioner(params)
        self.autocast = _autocast(autocast)
        self.loss_fn = torch.compile(self.model.loss) if compiled else self.model.loss
        self.opt = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        self.batches = [(torch.from_numpy(f), torch.from_numpy(c.astype(np.int64))) for f, c in batches]
        self._i = 0

    def step(self):
        a, captions = self.batches[self._i % len(self.batches)]
        self._i += 1
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.loss_fn(a, captions)
        loss.backward()
        self.opt.step()
        return loss.item()


class Sampler:
    """Greedy decoding of max_length words (the caller suppresses <END>, so all are computed)."""

    def __init__(self, params, autocast=False):
        self.model = AttentionCaptioner(params)
        self.autocast = _autocast(autocast)

    def sample(self, a, max_length):
        with self.autocast():
            return self.model.sample(torch.from_numpy(a), max_length).numpy()
