"""Greedy decoding written as a Python loop over kernels: the reference of ``greedy_decode``,
``sample_decode`` and ``attention_greedy_decode``.

Every backend's ``greedy_decode`` kernel for the cases the compiled engine does
not take (the NumPy and Numba backends always; the Cython backend for float64
or with the engine off) calls ``greedy_decode`` here with that backend's own
kernels (its recurrences with T = 1, ``argmax_words``, ``matmul_bf16``). It is
the definition of the loop the engine runs in C (fastcap/_kernels/engine/decode.c):

* every step feeds each running caption's last word (``start`` first): its
  input projection is row ``word`` of the per-word table W_embed @ Wx + b,
  filled for the words not ``known`` yet (one product for all of them);
* one recurrent step; scores = h @ W_vocab; the next word is the first argmax
  of scores + b_vocab (``argmax_words``: np.argmax's rules);
* a caption that emits ``end`` leaves the batch (its rows of h and c are
  dropped, the others keep their order) and its later words stay ``null``;
  the loop ends after ``L`` words or when every caption has ended.

``sample_decode`` is the same loop with the next word drawn by ``sample_words``
(caption n's word t at ``uniforms[n, t]``) instead of ``argmax_words``.
``attention_greedy_decode`` is the same loop with the attention model's step
(``attention_recurrence_forward``, T = 1, on the running captions' features), which
also records each word's attention weights.

Products read their right operand as this module's ``pack_matrix`` leaves it
(the matrix itself, BLAS) or as ``pack_bf16`` packs it (the bfloat16 mode: both
operands rounded to bf16, float32 sums).

Shapes: N captions, L words, H hidden, G = gates * H, V vocabulary, W word vector.
"""
import numpy as np


def pack_matrix(b):
    """The loop takes float products' operands as they are (BLAS)."""
    return b


def _product(kernels, a, bp):
    """a (M, K) @ the operand bp (a matrix: BLAS; else a pack_bf16 of the backend: bf16)."""
    if isinstance(bp, np.ndarray):
        return np.dot(a, bp)
    out = np.empty((a.shape[0], bp.shape[1]), dtype=np.float32)
    kernels.matmul_bf16(a, bp, out)
    return out


class _Cells:
    """The running rows of an LSTM (c given) or vanilla RNN (c None): one recurrent step per call."""

    def __init__(self, kernels, Whp, h, c):
        self.kernels, self.Whp, self.h, self.c = kernels, Whp, h, c

    def step(self, xw, t, alive):
        """Feed xw (n, G) at step t (alive: the captions of the rows) -> h (n, H)."""
        batch = np.array([xw.shape[0]], dtype=np.intp)
        h = np.empty_like(self.h)
        if self.c is None:
            self.kernels.rnn_recurrence_forward(xw, self.h, self.Whp, batch, h)
        else:
            c = np.empty_like(self.c)
            self.kernels.lstm_recurrence_forward(xw, self.h, self.c, self.Whp, batch,
                                                 np.empty_like(xw), c, h)
            self.c = c
        self.h = h
        return h

    def keep(self, rows):
        """Keep only the rows `rows` (a boolean mask), in their order."""
        self.h = self.h[rows]
        self.c = None if self.c is None else self.c[rows]


class _Attending(_Cells):
    """The running rows of the attention model: its step (attention_recurrence_forward) over
    their features a (n, L, D) and enc (n, L, A), each step's weights into alpha_out."""

    def __init__(self, kernels, Wp, h, c, a, enc, b_beta, w_att, alpha_out):
        super().__init__(kernels, Wp, h, c)
        self.a, self.enc, self.b_beta, self.w_att, self.alpha_out = a, enc, b_beta, w_att, alpha_out

    def step(self, xw, t, alive):
        n, (L, D), A, dtype = xw.shape[0], self.a.shape[1:], self.enc.shape[2], self.h.dtype
        h, alpha = np.empty_like(self.h), np.empty((n, L), dtype)
        c, ifog = (None, None) if self.c is None else (np.empty_like(self.c), np.empty_like(xw))
        self.kernels.attention_recurrence_forward(
            xw, self.h, self.c, self.a, self.enc, self.Whp, self.b_beta, self.w_att,
            np.array([n], dtype=np.intp), ifog, c, h, alpha, np.empty((n, D), dtype),
            np.empty((n, D), dtype), np.empty((n, A), dtype))
        self.alpha_out[alive, t] = alpha
        self.h, self.c = h, c
        return h

    def keep(self, rows):
        super().keep(rows)
        self.a, self.enc = self.a[rows], self.enc[rows]


def _decode(kernels, rows, W_embed, Wxp, b, W_vocabp, b_vocab, table, known, start, end, null,
            captions_out, uniforms=None):
    """The greedy loop of the module docstring over the running rows' recurrence `rows`
    (uniforms (N, L) float64: words drawn, not argmax)."""
    N, L = captions_out.shape
    captions_out.fill(null)
    alive = np.arange(N)  # caption of each running row
    word = np.full(N, start, dtype=np.intp)  # (n,) last word of each running caption
    for t in range(L if N else 0):
        fresh = np.unique(word[~known[word]])
        if fresh.size:
            table[fresh] = _product(kernels, W_embed[fresh], Wxp) + b
            known[fresh] = True
        h = rows.step(table[word], t, alive)
        scores = _product(kernels, h, W_vocabp)
        if uniforms is None:
            ended = kernels.argmax_words(scores, b_vocab, end, word)
        else:
            ended = kernels.sample_words(scores, b_vocab, np.ascontiguousarray(uniforms[alive, t]),
                                         end, word)
        captions_out[alive, t] = word
        if ended:
            keep = word != end
            alive, word = alive[keep], word[keep]
            rows.keep(keep)
            if not alive.size:
                break


def greedy_decode(kernels, h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known, start,
                  end, null, captions_out, uniforms=None):
    """Greedy captions into captions_out (N, L) int32 from h0 (N, H) and c0 (N, H) (None:
    a vanilla RNN); table (V, G) and known (V,) bool are the per-word input projections,
    filled here where missing; uniforms (N, L) float64: sampled captions instead. See the
    module docstring."""
    _decode(kernels, _Cells(kernels, Whp, h0, c0), W_embed, Wxp, b, W_vocabp, b_vocab, table,
            known, start, end, null, captions_out, uniforms)


def attention_greedy_decode(kernels, h0, c0, a, enc, W_embed, Wxp, b, Wp, b_beta, w_att, W_vocabp,
                            b_vocab, table, known, start, end, null, captions_out, alpha_out):
    """greedy_decode of the attention model (fastcap._kernels.KERNELS): Wxp the word rows of
    Wx packed, Wp = attention_pack(...); alpha_out (N, L, cells) the weights of every word,
    0 after a caption's end."""
    alpha_out.fill(0)
    rows = _Attending(kernels, Wp, h0, c0, a, enc, b_beta, w_att, alpha_out)
    _decode(kernels, rows, W_embed, Wxp, b, W_vocabp, b_vocab, table, known, start, end, null,
            captions_out)


def kernels(backend):
    """The table's decoding kernels of a backend that decodes with this loop over its own
    kernels (`backend`: the backend module): (pack_matrix, greedy_decode, sample_decode,
    attention_greedy_decode), each with the table's arguments."""

    def greedy_decode_kernel(h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known, start,
                             end, null, captions_out):
        greedy_decode(backend, h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known,
                      start, end, null, captions_out)

    def sample_decode_kernel(h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known, start,
                             end, null, uniforms, captions_out):
        greedy_decode(backend, h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known,
                      start, end, null, captions_out, uniforms)

    def attention_greedy_decode_kernel(h0, c0, a, enc, W_embed, Wxp, b, Wp, b_beta, w_att,
                                       W_vocabp, b_vocab, table, known, start, end, null,
                                       captions_out, alpha_out):
        attention_greedy_decode(backend, h0, c0, a, enc, W_embed, Wxp, b, Wp, b_beta, w_att,
                                W_vocabp, b_vocab, table, known, start, end, null, captions_out,
                                alpha_out)

    greedy_decode_kernel.__name__ = greedy_decode_kernel.__qualname__ = "greedy_decode"
    sample_decode_kernel.__name__ = sample_decode_kernel.__qualname__ = "sample_decode"
    attention_greedy_decode_kernel.__name__ = "attention_greedy_decode"
    attention_greedy_decode_kernel.__qualname__ = "attention_greedy_decode"
    return pack_matrix, greedy_decode_kernel, sample_decode_kernel, attention_greedy_decode_kernel
