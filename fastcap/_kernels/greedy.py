"""Greedy decoding written as a Python loop over kernels: the reference of ``greedy_decode``
and ``sample_decode``.

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


def greedy_decode(kernels, h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known, start,
                  end, null, captions_out, uniforms=None):
    """Greedy captions into captions_out (N, L) int32 from h0 (N, H) and c0 (N, H) (None:
    a vanilla RNN); table (V, G) and known (V,) bool are the per-word input projections,
    filled here where missing; uniforms (N, L) float64: sampled captions instead. See the
    module docstring."""
    N, L = captions_out.shape
    captions_out.fill(null)
    h, c = h0, c0
    alive = np.arange(N)  # caption of each running row
    word = np.full(N, start, dtype=np.intp)  # (n,) last word of each running caption
    for t in range(L if N else 0):
        fresh = np.unique(word[~known[word]])
        if fresh.size:
            table[fresh] = _product(kernels, W_embed[fresh], Wxp) + b
            known[fresh] = True
        xw, n = table[word], word.shape[0]
        batch = np.array([n], dtype=np.intp)
        h_next = np.empty_like(h)
        if c is None:
            kernels.rnn_recurrence_forward(xw, h, Whp, batch, h_next)
        else:
            c_next, ifog = np.empty_like(c), np.empty_like(xw)
            kernels.lstm_recurrence_forward(xw, h, c, Whp, batch, ifog, c_next, h_next)
            c = c_next
        h = h_next
        scores = _product(kernels, h, W_vocabp)
        if uniforms is None:
            ended = kernels.argmax_words(scores, b_vocab, end, word)
        else:
            ended = kernels.sample_words(scores, b_vocab, np.ascontiguousarray(uniforms[alive, t]),
                                         end, word)
        captions_out[alive, t] = word
        if ended:
            keep = word != end
            alive, word, h = alive[keep], word[keep], h[keep]
            c = None if c is None else c[keep]
            if not alive.size:
                break


def kernels(backend):
    """The table's decoding kernels of a backend that decodes with this loop over its own
    kernels (`backend`: the backend module): (pack_matrix, greedy_decode, sample_decode),
    each with the table's arguments."""

    def greedy_decode_kernel(h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known, start,
                             end, null, captions_out):
        greedy_decode(backend, h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known,
                      start, end, null, captions_out)

    def sample_decode_kernel(h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known, start,
                             end, null, uniforms, captions_out):
        greedy_decode(backend, h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known,
                      start, end, null, captions_out, uniforms)

    greedy_decode_kernel.__name__ = greedy_decode_kernel.__qualname__ = "greedy_decode"
    sample_decode_kernel.__name__ = sample_decode_kernel.__qualname__ = "sample_decode"
    return pack_matrix, greedy_decode_kernel, sample_decode_kernel
