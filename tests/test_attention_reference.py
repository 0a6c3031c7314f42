"""The attention model's NumPy reference against PyTorch autograd (float64), the model of issue
26 written a second time, independently, in torch's terms."""
import numpy as np
import pytest

from fastcap.model import attention_reference as R

from conftest import REQUIRE_ALL

if not REQUIRE_ALL:  # CI installs the [torch] extra: there a missing torch is a failure
    pytest.importorskip("torch", reason='the autograd check needs the `[torch]` extra')
import torch  # noqa: E402

NULL, START, END = 0, 1, 2


def _torch_loss(p, a, captions, reg, cell):
    t = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    a_ = torch.tensor(a)
    cap = torch.tensor(captions)
    x_in, y = cap[:, :-1], cap[:, 1:]
    mask = (y != NULL).double()
    N, L, D = a_.shape
    H = t["Wh"].shape[0]
    h = a_.mean(1) @ t["W_proj"] + t["b_proj"]
    c = torch.zeros_like(h)
    P = a_ @ t["W_enc"] + t["b_enc"]
    total = torch.zeros((), dtype=torch.float64)
    alpha_sum = torch.zeros(N, L, dtype=torch.float64)
    for s in range(x_in.shape[1]):
        e = torch.tanh(P + (h @ t["W_dec"]).unsqueeze(1)) @ t["w_att"]
        alpha = torch.softmax(e, dim=1)
        z = torch.sigmoid(h @ t["W_beta"] + t["b_beta"]) * (alpha.unsqueeze(2) * a_).sum(1)
        x = torch.cat([t["W_embed"][x_in[:, s]], z], dim=1)
        pre = x @ t["Wx"] + h @ t["Wh"] + t["b"]
        if cell == "lstm":
            i, f, o = (torch.sigmoid(pre[:, k * H:(k + 1) * H]) for k in range(3))
            c = f * c + i * torch.tanh(pre[:, 3 * H:])
            h = o * torch.tanh(c)
        else:
            h = torch.tanh(pre)
        logp = torch.log_softmax(h @ t["W_vocab"] + t["b_vocab"], dim=1)
        total = total - (logp[torch.arange(N), y[:, s]] * mask[:, s]).sum()
        alpha_sum = alpha_sum + alpha * mask[:, s:s + 1]
    value = (total + reg * ((1 - alpha_sum) ** 2).sum()) / N
    value.backward()
    return value.item(), {k: v.grad.numpy() for k, v in t.items()}


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("reg", [0.0, 1.0])
def test_loss_and_every_gradient_match_autograd(cell, reg):
    rng = np.random.default_rng(3)
    N, L, D, W, H, A, V, T = 4, 5, 6, 3, 7, 8, 12, 6
    p = R.init_params(V, D, W, H, A, cell, rng)
    p = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()}  # biases not 0
    a = rng.standard_normal((N, L, D))
    captions = rng.integers(3, V, (N, T + 1))
    captions[:, 0] = START
    captions[0, 3:] = NULL  # captions of different lengths: the mask and the reg term
    captions[1, 5] = END
    captions[1, 6:] = NULL
    want, want_g = _torch_loss(p, a, captions, reg, cell)
    got, got_g = R.loss(p, a, captions, NULL, reg, cell)
    assert abs(got - want) <= 1e-12 * abs(want)
    assert set(got_g) == set(R.PARAM_SHAPES) == set(want_g)
    for k in want_g:
        err = np.abs(got_g[k] - want_g[k]).max() / max(np.abs(want_g[k]).max(), 1e-300)
        assert err <= 1e-10, (k, err)


def test_greedy_attention_sums_to_one_and_stops_at_end():
    rng = np.random.default_rng(0)
    N, L, D, W, H, A, V = 5, 4, 6, 3, 7, 8, 10
    p = R.init_params(V, D, W, H, A, "lstm", rng)
    p["b_vocab"][END] += 2.0  # captions end early
    words, att = R.greedy(p, rng.standard_normal((N, L, D)), START, END, NULL, 9, "lstm")
    assert words.shape == (N, 9) and att.shape == (N, 9, L)
    for n in range(N):
        ended = np.flatnonzero(words[n] == END)
        stop = ended[0] + 1 if ended.size else 9
        np.testing.assert_allclose(att[n, :stop].sum(axis=1), 1.0, rtol=1e-12)
        assert (words[n, stop:] == NULL).all() and (att[n, stop:] == 0).all()
