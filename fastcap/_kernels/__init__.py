"""The kernel table: what every backend must provide.

A backend is one module under ``fastcap/_kernels/`` that defines every name in
``KERNELS`` as a function of exactly the arguments its ``Kernel`` lists
(``fastcap.runtime.backends.check_kernels`` refuses one that does not), writing only
the ones the contract says it writes (the parity tests check it). The table holds only what
differs per backend: the public layers in ``fastcap.rnn_layers`` (and the
model, solver and optimizers) validate their inputs, allocate outputs, and run
once, for every backend, the matrix products (BLAS), the reshaping and the row
gathers (NumPy indexing: the embedding lookup and the per-word projection
table, as fast as a compiled loop; see ``fastcap.model.sequence``); they call these
kernels for the recurrences and the elementwise and scatter work in between.
Two kernels are a whole loop, products included: ``greedy_decode`` (the model's
greedy decoding) and ``sample_decode`` (the same loop drawing each word), so that
the Cython backend runs every step in C instead of returning to Python per
operation; their definition is the reference loop in
``fastcap/_kernels/greedy.py``, which the other backends run over their kernels.
``cider_df`` returns a backend-specific table (as ``recurrent_pack`` returns packed
weights) that only the same backend's ``cider_d`` reads.
Kernels therefore trust their inputs:

* float arrays all share one dtype, float32 or float64;
* index arrays are int64 (``np.intp``) and every index is in range;
* every array argument is C-contiguous; ``*_out`` arguments are preallocated
  and fully overwritten by the kernel (never read first), unless a kernel says
  it updates in place.

Shapes use N batch, T time, D input, H hidden, V vocabulary, W word vector,
M = N*T flattened rows. LSTM gates are packed ``i, f, o, g`` along the 4H axis.

Sigmoid is evaluated as ``1/(1+exp(-x))`` for x >= 0 and
``exp(x)/(1+exp(x))`` for x < 0 by every backend, so no backend overflows and
float64 results agree to rounding.
"""
from typing import NamedTuple


class Kernel(NamedTuple):
    """One kernel's contract: its arguments in order (every backend's function takes exactly
    these names, which fastcap.runtime.backends checks when it loads a backend), the ones it writes
    (outputs, and state it updates in place; the parity tests check that it writes nothing
    else and the case table takes them from here), and what it computes, with shapes."""

    args: tuple
    writes: tuple
    doc: str


# name -> contract. The order is the order the parity table tests.
KERNELS = {
    # --- recurrent cells: one timestep of elementwise work after the GEMMs ---
    "rnn_cell_forward": Kernel(
        ('xw', 'hw', 'h_out'), ('h_out',),
        '(xw (N,H), hw (N,H), h_out (N,H)): h = tanh(xw + hw)'),
    "rnn_cell_backward": Kernel(
        ('dh', 'h', 'da_out'), ('da_out',),
        '(dh (N,H), h (N,H), da_out (N,H)): da = dh * (1 - h**2)'),
    "lstm_cell_forward": Kernel(
        ('xw', 'hw', 'c_prev', 'ifog_out', 'c_out', 'h_out'), ('ifog_out', 'c_out', 'h_out'),
        '(xw (N,4H), hw (N,4H), c_prev (N,H), ifog_out (N,4H), c_out (N,H), h_out (N,H)): a = '
        'xw + hw; ifog = sigmoid(a[:, :3H]) | tanh(a[:, 3H:]); c = f*c_prev + i*g; h = '
        'o*tanh(c)'),
    "lstm_cell_backward": Kernel(
        ('dh', 'dc', 'ifog', 'c_prev', 'c', 'da_out', 'dc_prev_out'), ('da_out', 'dc_prev_out'),
        '(dh (N,H), dc (N,H), ifog (N,4H), c_prev (N,H), c (N,H), da_out (N,4H), dc_prev_out '
        '(N,H)): gradients wrt the gate pre-activations a and c_prev, where dc is the gradient '
        'arriving at c from the next timestep'),
    # --- recurrences: the whole packed time loop (see fastcap.model.sequence.Packing) ---
    # batch_sizes (T,) intp, non-increasing, sum P: at step t the first
    # batch_sizes[t] sequences run, on rows offsets[t] : offsets[t] + batch_sizes[t].
    "recurrent_pack": Kernel(
        ('Wh', 'gates', 'transpose', 'bf16'), (),
        '(Wh (H,G), gates int, transpose bool, bf16 bool = False) -> packed: Wh in the layout '
        "this backend's recurrence kernels take (transpose: for the backward product da @ Wh.T; "
        "bf16: the bfloat16 mode, where every step's product reads both operands rounded to "
        'bf16 and sums in float32); made once per call and used for every step'),
    "rnn_recurrence_forward": Kernel(
        ('xw', 'h0', 'Whp', 'batch_sizes', 'h_out'), ('h_out',),
        '(xw (P,H), h0 (N,H), Whp packed, batch_sizes (T,), h_out (P,H)): h_t = tanh(xw_t + '
        'h_{t-1} @ Wh) for every step'),
    "rnn_recurrence_backward": Kernel(
        ('dh', 'h0', 'WhTp', 'h', 'batch_sizes', 'da_out', 'dh0_out'), ('da_out', 'dh0_out'),
        '(dh (P,H), h0 (N,H), WhTp packed transposed, h (P,H), batch_sizes, da_out (P,H), '
        "dh0_out (N,H)): da = gradient at every step's pre-activation, dh gives the gradient "
        'arriving at each h_t from outside the recurrence; dh0 = gradient at h0 (0 for '
        'sequences of length 0)'),
    "lstm_recurrence_forward": Kernel(
        ('xw', 'h0', 'c0', 'Whp', 'batch_sizes', 'ifog_out', 'c_out', 'h_out'), ('ifog_out', 'c_out', 'h_out'),
        '(xw (P,4H), h0 (N,H), c0 (N,H), Whp packed, batch_sizes, ifog_out (P,4H), c_out (P,H), '
        'h_out (P,H)): the LSTM cell of lstm_cell_forward at every step from (h0, c0)'),
    "lstm_recurrence_backward": Kernel(
        ('dh', 'c0', 'WhTp', 'ifog', 'c', 'batch_sizes', 'da_out', 'dh0_out'), ('da_out', 'dh0_out'),
        '(dh (P,H), c0 (N,H), WhTp packed transposed, ifog (P,4H), c (P,H), batch_sizes, da_out '
        "(P,4H), dh0_out (N,H)): gradients at every step's gate pre-activations and at h0"),
    # --- the bfloat16 mode's matrix products (fastcap._kernels.bf16 is the reference) ---
    "pack_bf16": Kernel(
        ('b',), (),
        '(b (K,N) float32, any strides) -> packed: b rounded to bf16 in the layout this '
        "backend's matmul_bf16 takes; made once for many products (decoding's W_vocab)"),
    "matmul_bf16": Kernel(
        ('a', 'b', 'out'), ('out',),
        '(a (M,K) float32, b (K,N) float32 or pack_bf16(b), any strides; out (M,N) float32): '
        'out = bf16(a) @ bf16(b), operands rounded to nearest even, float32 sums'),
    # --- word embedding backward (the forward is a row gather: NumPy indexing) ---
    "embedding_backward": Kernel(
        ('dout', 'idx', 'dW_out'), ('dW_out',),
        '(dout (M,W), idx (M,) int64, dW_out (V,W)): dW = scatter-add of dout rows at idx'),
    # --- masked softmax cross-entropy ---
    "softmax_loss": Kernel(
        ('x', 'y', 'mask', 'scale', 'weight', 'dx_out'), ('dx_out',),
        '(x (M,V), y (M,) int64, mask (M,) bool, scale float, weight (M,) float64 or None (1 for '
        'every row), dx_out (M,V)) -> float: returns scale * sum over rows with mask of '
        'weight[m] * -log softmax(x[m])[y[m]]; dx_out = scale * weight[m] * (softmax(x) - '
        'onehot(y)) on those rows and 0 on masked-out rows (self-critical training weighs each '
        "caption's words by its reward's advantage)"),
    # --- greedy decoding: the next word of every caption ---
    "argmax_words": Kernel(
        ('scores', 'b_vocab', 'end', 'words_out'), ('words_out',),
        '(scores (N,V), b_vocab (V,), end int, words_out (N,) intp) -> int: words_out[n] = the '
        "first argmax over v of scores[n, v] + b_vocab[v] (np.argmax's rules: lowest index on "
        'ties, a NaN wins at its first position); returns how many rows picked `end`'),
    "sample_words": Kernel(
        ('scores', 'b_vocab', 'uniforms', 'end', 'words_out'), ('words_out',),
        '(scores (N,V), b_vocab (V,), uniforms (N,) float64 in [0, 1), end int, words_out (N,) '
        'intp) -> int: words_out[n] = a word drawn from softmax(scores[n] + b_vocab) by the '
        'inverse of its distribution at uniforms[n]: with s = scores[n] + b_vocab (in the '
        "array dtype) and e_j = exp(s_j - max s) in float64, the first j whose running sum "
        'e_0 + ... + e_j (in order, float64) exceeds uniforms[n] * (e_0 + ... + e_{V-1}), else '
        'the last j with e_j > 0; a row whose max is not finite (NaN, +inf, all -inf) takes '
        "argmax_words' word; returns how many rows picked `end`"),
    "pack_matrix": Kernel(
        ('b',), (),
        '(b (K,N) float32 or float64) -> packed: b in the layout this backend\'s greedy_decode '
        'takes for its float products (the bfloat16 mode passes pack_bf16(b) instead); made '
        'once per decoding'),
    "greedy_decode": Kernel(
        ('h0', 'c0', 'W_embed', 'Wxp', 'b', 'Whp', 'W_vocabp', 'b_vocab', 'table', 'known', 'start',
         'end', 'null', 'captions_out'), ('table', 'known', 'captions_out'),
        '(h0 (N,H), c0 (N,H) or None (RNN), W_embed (V,W), Wxp = pack_matrix(Wx) or '
        'pack_bf16(Wx), b (G,), Whp = recurrent_pack(Wh) (not transposed, bf16 as Wxp), '
        'W_vocabp packed as Wxp, b_vocab (V,), table (V,G), known (V,) bool, start, end (-1: '
        'none), null, captions_out (N,L) int32): greedy captions, the loop of '
        'fastcap._kernels.greedy: each step feeds every running caption\'s last word (start '
        'first) through table row w = W_embed[w] @ Wx + b (filled where not known, known set), '
        'one recurrent step, and keeps argmax_words of h @ W_vocab + b_vocab; a caption that '
        'emits `end` leaves the batch, its later words are `null`'),
    "sample_decode": Kernel(
        ('h0', 'c0', 'W_embed', 'Wxp', 'b', 'Whp', 'W_vocabp', 'b_vocab', 'table', 'known', 'start',
         'end', 'null', 'uniforms', 'captions_out'), ('table', 'known', 'captions_out'),
        '(the arguments of greedy_decode, and uniforms (N,L) float64 in [0, 1)): sampled '
        "captions, greedy_decode's loop with sample_words in place of argmax_words: caption n's "
        "word t is drawn at uniforms[n, t] (the random stream is the caller's, so the captions "
        'do not depend on the backend or the thread count)'),
    # --- CIDEr-D (fastcap.metrics.Cider): captions as word ids, n-grams n = 1..4 ---
    # A caption set is tokens (T,) intp word ids in [0, 2**32 - 1) and starts (C+1,) intp:
    # caption c is tokens[starts[c]:starts[c+1]].
    "cider_df": Kernel(
        ('tokens', 'starts', 'images'), (),
        '(tokens, starts: reference captions, images (I+1,) intp: image i\'s references are '
        'captions images[i]:images[i+1]) -> table: the document frequency of every n-gram of '
        'the references (how many images have it in a reference) and I, in the layout this '
        "backend's cider_d takes; made once per reference corpus"),
    "cider_d": Kernel(
        ('table', 'cand_tokens', 'cand_starts', 'ref_tokens', 'ref_starts', 'refs', 'scores_out'),
        ('scores_out',),
        '(table = cider_df(...), candidates (cand_tokens, cand_starts: K captions), references '
        '(ref_tokens, ref_starts), refs (K,2) intp, scores_out (K,) float64): scores_out[k] = '
        "CIDEr-D of candidate k against reference captions refs[k,0]:refs[k,1] (pycocoevalcap's "
        'CiderScorer with the table\'s document frequencies: tf-idf vectors per n, idf = '
        'log(I) - log(max(1, df)), the candidate\'s entries clipped at the reference\'s, '
        'cosine per n, times exp(-(bigrams_c - bigrams_r)**2 / 72), averaged over n and '
        'references, times 10)'),
    # --- the attention model (fastcap.model.attention; fastcap/_kernels/attention_recurrence.py
    # is the reference of the whole-loop kernels). Per packed row: L cells, D channels, A the
    # attention size, E = A + D. a (N,L,D) are the features and enc (N,L,A) = a @ W_enc + b_enc,
    # sorted as the sequences are, so the n sequences running at a step are their first n rows.
    # One step from h = h_{t-1}: hab = h @ [W_dec | W_beta] (n,E); S = tanh(enc + hab[:, :A]);
    # alpha = softmax over L of S @ w_att; beta = sigmoid(hab[:, A:] + b_beta); z = beta *
    # sum_l alpha[:, l] a[:, l]; the cell's gate pre-activations xw + [h, z] @ [[Wh], [Wz]]
    # (Wz = Wx[W:], the context's rows). The bfloat16 mode rounds the operands of those two
    # products only: the per-step attention (tanh, the dot with w_att, softmax, context, gate)
    # computes in float32, as the cell math does.
    "attention_step_forward": Kernel(
        ('a', 'enc', 'hab', 'b_beta', 'w_att', 'alpha_out', 'z_out', 'beta_out'),
        ('alpha_out', 'z_out', 'beta_out'),
        '(a (N,L,D), enc (N,L,A), hab (N,A+D) = h @ [W_dec | W_beta], b_beta (D,), w_att (A,), '
        'alpha_out (N,L), z_out (N,D), beta_out (N,D)): one step\'s attention: alpha = '
        'softmax over L of tanh(enc + hab[:, None, :A]) @ w_att; beta = sigmoid(hab[:, A:] + '
        'b_beta); z = beta * sum_l alpha[:, l, None] * a[:, l]'),
    "attention_step_backward": Kernel(
        ('dz', 'dalpha', 'a', 'enc', 'hd', 'w_att', 'alpha', 'z', 'beta', 'datt_out', 'dwatt_out',
         'denc'), ('datt_out', 'dwatt_out', 'denc'),
        '(dz (N,D) gradient at z, dalpha (N,L) gradient arriving at alpha from outside (the '
        'penalty), a (N,L,D), enc (N,L,A), hd (N,A) = h @ W_dec, w_att (A,), alpha (N,L), z '
        '(N,D), beta (N,D) of attention_step_forward, datt_out (N,A+D), dwatt_out (N,A), denc '
        '(N,L,A) updated in place): S = tanh(enc + hd[:, None]) recomputed; datt = [gradient at '
        'hd, gradient at the gate\'s pre-activation hab[:, A:] + b_beta]; dwatt[n] = sum_l '
        'de[n,l] * S[n,l] (de: the gradient at the scores S @ w_att), each row\'s share of '
        'dw_att; denc += the gradient at enc'),
    "attention_pack": Kernel(
        ('Wh', 'Wz', 'W_dec', 'W_beta', 'transpose', 'bf16'), (),
        '(Wh (H,G), Wz (D,G) = Wx[W:], W_dec (H,A), W_beta (H,D), transpose bool, bf16 bool = '
        "False) -> packed: the step's two products' weights, [W_dec | W_beta] and [[Wh], [Wz]], "
        "in the layout this backend's attention kernels take (transpose: for the backward "
        'products; bf16 as recurrent_pack); G = 4H is an LSTM, G = H a vanilla RNN'),
    "attention_recurrence_forward": Kernel(
        ('xw', 'h0', 'c0', 'a', 'enc', 'Wp', 'b_beta', 'w_att', 'batch_sizes', 'ifog_out', 'c_out',
         'h_out', 'alpha_out', 'z_out', 'beta_out', 'hd_out'),
        ('ifog_out', 'c_out', 'h_out', 'alpha_out', 'z_out', 'beta_out', 'hd_out'),
        '(xw (P,G) = W_embed[words] @ Wx[:W] + b, h0 (N,H), c0 (N,H) (LSTM) or None (RNN), a '
        '(N,L,D), enc (N,L,A), Wp = attention_pack(not transposed), b_beta (D,), w_att (A,), '
        'batch_sizes, ifog_out (P,G) (LSTM; None: RNN), c_out (P,H) (LSTM; None: RNN), h_out '
        '(P,H), alpha_out (P,L), z_out (P,D), beta_out (P,D), hd_out (P,A)): every step of the '
        'packed batch: attention_step_forward from h_{t-1}, then the LSTM (or RNN) cell of '
        'xw + [h_{t-1}, z] @ [[Wh], [Wz]]; hd = h_{t-1} @ W_dec, kept so that the backward '
        'pass recomputes tanh(enc + hd) instead of storing (P,L,A) values'),
    "attention_recurrence_backward": Kernel(
        ('dh', 'dalpha', 'c0', 'a', 'enc', 'WTp', 'w_att', 'ifog', 'c', 'h', 'alpha', 'z', 'beta',
         'hd', 'batch_sizes', 'da_out', 'datt_out', 'dwatt_out', 'denc_out', 'dh0_out'),
        ('da_out', 'datt_out', 'dwatt_out', 'denc_out', 'dh0_out'),
        '(dh (P,H) and dalpha (P,L): the gradients arriving at every h_t and alpha_t from '
        'outside the recurrence (the scores, the penalty), c0 (N,H) or None (RNN), a, enc, WTp = '
        'attention_pack(transposed), w_att, and the forward\'s ifog, c (None: RNN), h, alpha, '
        'z, beta, hd; da_out (P,G) gradients at the gate pre-activations, datt_out (P,A+D) '
        'at hab (attention_step_backward\'s datt), dwatt_out (P,A) each row\'s share of dw_att, '
        'denc_out (N,L,A) the gradient at enc summed over the steps, dh0_out (N,H)): the weight '
        'gradients are then GEMMs over all rows: [h_{t-1}, z]^T da, h_{t-1}^T datt'),
    "attention_greedy_decode": Kernel(
        ('h0', 'c0', 'a', 'enc', 'W_embed', 'Wxp', 'b', 'Wp', 'b_beta', 'w_att', 'W_vocabp',
         'b_vocab', 'table', 'known', 'start', 'end', 'null', 'captions_out', 'alpha_out'),
        ('table', 'known', 'captions_out', 'alpha_out'),
        '(h0 (N,H), c0 (N,H) or None (RNN), a (N,L,D), enc (N,L,A), W_embed (V,W), Wxp = '
        'pack_matrix(Wx[:W]) or pack_bf16(Wx[:W]), b (G,), Wp = attention_pack (not transposed, '
        'bf16 as Wxp), b_vocab (V,), W_vocabp packed as Wxp, table (V,G), known (V,) bool, start, '
        'end (-1: none), null, captions_out (N,T) int32, alpha_out (N,T,L)): greedy_decode\'s '
        'loop with attention_recurrence_forward\'s step; alpha_out[n, t] = the attention of '
        "caption n's word t, 0 after its end"),
    # --- data: grid features are stored as float16 (fastcap.data.grid) ---
    "half_to_float": Kernel(
        ('raw', 'out'), ('out',),
        '(raw (N,M) uint16 IEEE half-precision bits, out (N,M)) -> int: out = the halves\' '
        'values (exact: every half is a float32 and a float64); returns the first row holding an '
        'infinity or a NaN, -1 if none'),
    # --- update rules, in place on w and on the optimizer state ---
    "sgd_update": Kernel(
        ('w', 'dw', 'lr'), ('w',),
        '(w, dw, lr): w -= lr * dw'),
    "sgd_momentum_update": Kernel(
        ('w', 'dw', 'velocity', 'lr', 'momentum'), ('w', 'velocity'),
        '(w, dw, velocity, lr, momentum): v = momentum*v - lr*dw; w += v'),
    "rmsprop_update": Kernel(
        ('w', 'dw', 'cache', 'lr', 'decay_rate', 'eps'), ('w', 'cache'),
        '(w, dw, cache, lr, decay_rate, eps): cache = decay*cache + (1-decay)*dw**2; w -= lr * '
        'dw / (sqrt(cache) + eps)'),
    "adam_update": Kernel(
        ('w', 'dw', 'm', 'v', 'alpha', 'beta1', 'beta2', 'eps'), ('w', 'm', 'v'),
        '(w, dw, m, v, alpha, beta1, beta2, eps): m = b1*m + (1-b1)*dw; v = b2*v + '
        '(1-b2)*dw**2; w -= alpha * m / (sqrt(v) + eps); alpha already holds the bias '
        'correction lr*sqrt(1-b2**t)/(1-b1**t)'),
}

KERNEL_NAMES = tuple(KERNELS)
