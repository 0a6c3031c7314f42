"""The soft-attention captioner (Show, Attend and Tell), written out in NumPy: the reference.

The model of issue 26, exactly; every backend's kernels are tested against this file, and
this file against PyTorch autograd (tests/test_attention_reference.py). It favours reading
over speed: a Python loop over the words, full (N, T) batches (padding computed, then
masked), every array of every step kept.

Shapes: N images, L cells of the feature grid, D channels, T words (captions_in), A the
attention size, H hidden, G = 4H (LSTM, gates i, f, o, g) or H (RNN), W word vector,
V vocabulary. Parameters (``PARAM_SHAPES``): W_embed (V, W); W_proj (D, H), b_proj (H,);
W_enc (D, A), b_enc (A,); W_dec (H, A); w_att (A,); W_beta (H, D), b_beta (D,);
Wx (W + D, G) (the first W rows take the word vector, the next D the context); Wh (H, G);
b (G,); W_vocab (H, V); b_vocab (V,).

Forward, for features a (N, L, D) and captions (N, T + 1):
    h0 = mean_L(a) @ W_proj + b_proj;  c0 = 0;  P = a @ W_enc + b_enc            (N, L, A)
    for t in 0..T-1, h = h_{t-1}:
        e_t = tanh(P + (h @ W_dec)[:, None, :]) @ w_att                          (N, L)
        alpha_t = softmax over L of e_t
        z_t = sigmoid(h @ W_beta + b_beta) * sum_l alpha_t[:, l, None] * a[:, l, :]  (N, D)
        x_t = [W_embed[captions_in[:, t]], z_t];  (h_t, c_t) = cell(x_t @ Wx + h @ Wh + b)
        scores_t = h_t @ W_vocab + b_vocab
    loss = sum over scored words of -log softmax(scores)[target] / N
           + attention_reg * sum_n sum_l (1 - sum_{t: mask[n,t]} alpha_t[n, l])**2 / N
"""
import numpy as np

__all__ = ["PARAM_SHAPES", "gates", "init_params", "loss", "greedy"]

# The parameters and their shapes in the dims V, W, D, A, H, G (= gates * H), E = W + D.
PARAM_SHAPES = {"W_embed": ("V", "W"), "W_proj": ("D", "H"), "b_proj": ("H",),
                "W_enc": ("D", "A"), "b_enc": ("A",), "W_dec": ("H", "A"), "w_att": ("A",),
                "W_beta": ("H", "D"), "b_beta": ("D",), "Wx": ("E", "G"), "Wh": ("H", "G"),
                "b": ("G",), "W_vocab": ("H", "V"), "b_vocab": ("V",)}  # fmt: skip


def gates(cell):
    return {"lstm": 4, "rnn": 1}[cell]


def init_params(V, D, W, H, A, cell, rng):
    """float64 parameters drawn as CaptioningRNN draws its own (a standard normal over the
    square root of the fan-in; biases 0; W_embed / 100)."""
    G = gates(cell) * H
    r = rng.standard_normal
    return {"W_embed": r((V, W)) / 100, "W_proj": r((D, H)) / np.sqrt(D), "b_proj": np.zeros(H),
            "W_enc": r((D, A)) / np.sqrt(D), "b_enc": np.zeros(A), "W_dec": r((H, A)) / np.sqrt(H),
            "w_att": r(A) / np.sqrt(A), "W_beta": r((H, D)) / np.sqrt(H), "b_beta": np.zeros(D),
            "Wx": r((W + D, G)) / np.sqrt(W + D), "Wh": r((H, G)) / np.sqrt(H), "b": np.zeros(G),
            "W_vocab": r((H, V)) / np.sqrt(H), "b_vocab": np.zeros(V)}


def _sigmoid(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def _softmax(e):
    e = e - e.max(axis=-1, keepdims=True)
    p = np.exp(e)
    return p / p.sum(axis=-1, keepdims=True)


def _attend(p, a, h, P):
    """One step's attention from h = h_{t-1}: (T = tanh(P + h W_dec) (N, L, A), alpha (N, L),
    ctx (N, D), beta (N, D), z (N, D))."""
    Tt = np.tanh(P + (h @ p["W_dec"])[:, None, :])
    alpha = _softmax(Tt @ p["w_att"])
    ctx = np.einsum("nl,nld->nd", alpha, a)
    beta = _sigmoid(h @ p["W_beta"] + p["b_beta"])
    return Tt, alpha, ctx, beta, beta * ctx


def _cell_forward(cell, xh, c):
    """Gate pre-activations xh (N, G), c_{t-1} -> (h, c, acts)."""
    if cell == "rnn":
        h = np.tanh(xh)
        return h, None, h
    H = xh.shape[1] // 4
    i, f, o = (_sigmoid(xh[:, k * H:(k + 1) * H]) for k in range(3))
    g = np.tanh(xh[:, 3 * H:])
    c = f * c + i * g
    return o * np.tanh(c), c, (i, f, o, g)


def _cell_backward(cell, dh, dc, c_prev, c, acts):
    """-> (d pre-activations (N, G), dc_{t-1})."""
    if cell == "rnn":
        return dh * (1 - acts**2), None
    i, f, o, g = acts
    tc = np.tanh(c)
    dc = dc + dh * o * (1 - tc**2)
    da = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dh * tc * o * (1 - o),
                         dc * i * (1 - g**2)], axis=1)
    return da, dc * f


def loss(p, a, captions, null, attention_reg, cell, grads=True):
    """(loss, grads dict or None) of features a (N, L, D) and captions (N, T + 1)."""
    N, L, D = a.shape
    W = p["W_embed"].shape[1]
    x_in, y = captions[:, :-1], captions[:, 1:]
    mask = y != null
    T = x_in.shape[1]
    h0 = a.mean(axis=1) @ p["W_proj"] + p["b_proj"]
    P = a @ p["W_enc"] + p["b_enc"]
    emb = p["W_embed"][x_in]  # (N, T, W)
    h, c = h0, np.zeros_like(h0)
    steps = []
    total, alpha_sum = 0.0, np.zeros((N, L))
    for t in range(T):
        Tt, alpha, ctx, beta, z = _attend(p, a, h, P)
        x = np.concatenate([emb[:, t], z], axis=1)
        h_new, c_new, acts = _cell_forward(cell, x @ p["Wx"] + h @ p["Wh"] + p["b"], c)
        scores = h_new @ p["W_vocab"] + p["b_vocab"]
        s = scores - scores.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        total -= (logp[np.arange(N), y[:, t]] * mask[:, t]).sum()
        alpha_sum += alpha * mask[:, t, None]
        steps.append((h, c, Tt, alpha, ctx, beta, z, x, h_new, c_new, acts, logp))
        h, c = h_new, c_new
    reg = ((1 - alpha_sum) ** 2).sum()
    value = (total + attention_reg * reg) / N
    if not grads:
        return value, None

    g = {k: np.zeros_like(v) for k, v in p.items()}
    dP = np.zeros_like(P)
    dh_next, dc_next = np.zeros_like(h0), np.zeros_like(h0)
    dalpha_reg = attention_reg * 2 * (alpha_sum - 1) / N  # d(reg term)/d alpha_t, scored steps
    for t in reversed(range(T)):
        h, c, Tt, alpha, ctx, beta, z, x, h_new, c_new, acts, logp = steps[t]
        dscores = np.exp(logp)
        dscores[np.arange(N), y[:, t]] -= 1
        dscores *= mask[:, t, None] / N
        g["W_vocab"] += h_new.T @ dscores
        g["b_vocab"] += dscores.sum(axis=0)
        dh = dscores @ p["W_vocab"].T + dh_next
        da, dc_prev = _cell_backward(cell, dh, dc_next, c, c_new, acts)
        g["Wx"] += x.T @ da
        g["Wh"] += h.T @ da
        g["b"] += da.sum(axis=0)
        dx = da @ p["Wx"].T
        np.add.at(g["W_embed"], x_in[:, t], dx[:, :W])
        dz = dx[:, W:]
        dbeta_pre = dz * ctx * beta * (1 - beta)
        dctx = dz * beta
        g["W_beta"] += h.T @ dbeta_pre
        g["b_beta"] += dbeta_pre.sum(axis=0)
        dalpha = np.einsum("nd,nld->nl", dctx, a) + dalpha_reg * mask[:, t, None]
        de = alpha * (dalpha - (alpha * dalpha).sum(axis=1, keepdims=True))
        g["w_att"] += np.einsum("nl,nla->a", de, Tt)
        dS = de[:, :, None] * p["w_att"] * (1 - Tt**2)  # (N, L, A)
        dP += dS
        dhd = dS.sum(axis=1)
        g["W_dec"] += h.T @ dhd
        dh_next = da @ p["Wh"].T + dhd @ p["W_dec"].T + dbeta_pre @ p["W_beta"].T
        dc_next = dc_prev
    g["W_enc"] = np.einsum("nld,nla->da", a, dP)
    g["b_enc"] = dP.sum(axis=(0, 1))
    g["W_proj"] = a.mean(axis=1).T @ dh_next
    g["b_proj"] = dh_next.sum(axis=0)
    return value, g


def greedy(p, a, start, end, null, max_length, cell):
    """Greedy captions (N, max_length) int32 and their attention (N, max_length, L): the
    first argmax each step (lowest index on ties); after a caption's `end` its words are
    `null` and its attention 0."""
    N, L, _ = a.shape
    h = a.mean(axis=1) @ p["W_proj"] + p["b_proj"]
    c = np.zeros_like(h)
    P = a @ p["W_enc"] + p["b_enc"]
    words = np.full(N, start)
    out = np.full((N, max_length), null, np.int32)
    att = np.zeros((N, max_length, L))
    running = np.ones(N, bool)
    for t in range(max_length):
        _, alpha, _, _, z = _attend(p, a, h, P)
        x = np.concatenate([p["W_embed"][words], z], axis=1)
        h, c, _ = _cell_forward(cell, x @ p["Wx"] + h @ p["Wh"] + p["b"], c)
        words = np.argmax(h @ p["W_vocab"] + p["b_vocab"], axis=1)
        out[running, t] = words[running]
        att[running, t] = alpha[running]
        running &= words != end
        if not running.any():
            break
    return out, att
