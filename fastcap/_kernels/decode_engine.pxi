# Greedy decoding and sampling on the compiled engine (included by cython_backend.pyx
# after recurrence_engine.pxi): ``pack_matrix`` packs the float32 operands of the
# products once per decoding, and ``greedy_decode`` / ``sample_decode`` run the whole
# word loop in one call without the GIL (fastcap/_kernels/engine/decode.c), which the
# model calls instead of a Python loop of kernels (fastcap/_kernels/greedy.py, the
# reference, still runs float64 and the engine switched off).
#
# The wrapper checks every size and index the C code uses before it runs, so
# inconsistent arguments raise ValueError naming the argument instead of
# reaching memory.
from libc.stdint cimport int32_t, uint8_t

from fastcap._kernels import greedy as _greedy

# This backend's kernels the reference loop calls.
_DECODE_KERNELS = _types.SimpleNamespace(
    rnn_recurrence_forward=rnn_recurrence_forward, lstm_recurrence_forward=lstm_recurrence_forward,
    argmax_words=argmax_words, sample_words=sample_words, matmul_bf16=matmul_bf16)

cdef extern from "engine/engine.h" nogil:
    ctypedef struct fc_attention:
        int L, D, A, H, G, lstm, Nf
        const float *a
        const float *enc
        const float *b_beta
        const float *w_att
        const fc_packed *att
        const fc_packed *cell
    ctypedef struct fc_decode:
        int N, L, H, G, V, W
        int lstm
        const float *h0
        const float *c0
        const float *W_embed
        const fc_packed *Wx
        const float *b
        const fc_packed *Wh
        const fc_packed *Wv
        const float *b_vocab
        float *table
        uint8_t *known
        Py_ssize_t start, end, null
        const double *uniforms
        int32_t *captions
        const fc_attention *att
        float *alpha
    int fc_greedy_decode(const fc_decode *d, int nthreads)


def pack_matrix(b):  # IN (K, N) -> PackedPanels of float32 panels (float32, engine on); else b
    if not isinstance(b, np.ndarray) or b.dtype != np.float32 or not _engine_on:
        return _greedy.pack_matrix(b)
    cdef const float[:, ::1] b_ = np.ascontiguousarray(b)
    cdef Py_ssize_t K = b_.shape[0], N = b_.shape[1]
    if K > _INT_MAX or N > _INT_MAX:
        raise ValueError(f"pack_matrix: dimensions above {_INT_MAX}: {(K, N)}")
    cdef PackedPanels packed = PackedPanels.__new__(PackedPanels)
    packed.shape = (K, N)
    cdef int rc = 0, nth = _engine_threads
    cdef const float *src = &b_[0, 0] if K and N else NULL
    with nogil:
        rc = fc_pack_matrix_f32(&packed.p, src, <int>K, <int>N, nth)
    if rc != 0:
        raise MemoryError(f"pack_matrix: out of memory packing a ({K}, {N}) matrix")
    return packed


cdef _array(str name, a, int ndim, dtype, str kernel="greedy_decode"):
    """a if it is a C-contiguous ndim array of dtype, else ValueError naming it."""
    if not isinstance(a, np.ndarray) or a.ndim != ndim or a.dtype != dtype or not a.flags.c_contiguous:
        raise ValueError(f"{kernel}: {name} must be a C-contiguous {ndim}-d {np.dtype(dtype)} array, got "
                         f"{type(a).__name__} {getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}")
    return a


def greedy_decode(h0,  # IN (N, H) initial hidden state
                  c0,  # IN (N, H) initial cell state (LSTM), None (RNN)
                  W_embed,  # IN (V, W)
                  Wxp,  # IN Wx (W, G) by pack_matrix (float32 products) or pack_bf16 (bf16)
                  b,  # IN (G,)
                  Whp,  # IN Wh (H, G) by recurrent_pack (not transposed)
                  W_vocabp,  # IN W_vocab (H, V) by pack_matrix or pack_bf16, as Wxp
                  b_vocab,  # IN (V,)
                  table,  # IN/OUT (V, G) row w = W_embed[w] @ Wx + b where known[w]
                  known,  # IN/OUT (V,) bool: rows of table filled
                  start,  # IN first word fed, in [0, V)
                  end,  # IN the word that ends a caption, in [0, V) (-1: none)
                  null,  # IN the word after a caption's end, in [0, V)
                  captions_out):  # OUT (N, L) int32
    _decode(h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known, start, end, null, None,
            captions_out)


def sample_decode(h0,  # IN (N, H) initial hidden state
                  c0,  # IN (N, H) initial cell state (LSTM), None (RNN)
                  W_embed,  # IN (V, W)
                  Wxp,  # IN Wx (W, G) by pack_matrix (float32 products) or pack_bf16 (bf16)
                  b,  # IN (G,)
                  Whp,  # IN Wh (H, G) by recurrent_pack (not transposed)
                  W_vocabp,  # IN W_vocab (H, V) by pack_matrix or pack_bf16, as Wxp
                  b_vocab,  # IN (V,)
                  table,  # IN/OUT (V, G) row w = W_embed[w] @ Wx + b where known[w]
                  known,  # IN/OUT (V,) bool: rows of table filled
                  start,  # IN first word fed, in [0, V)
                  end,  # IN the word that ends a caption, in [0, V) (-1: none)
                  null,  # IN the word after a caption's end, in [0, V)
                  uniforms,  # IN (N, L) float64 in [0, 1): caption n's word t is drawn at [n, t]
                  captions_out):  # OUT (N, L) int32
    _decode(h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known, start, end, null,
            uniforms, captions_out)


cdef _decode(h0, c0, W_embed, Wxp, b, Whp, W_vocabp, b_vocab, table, known, start, end, null,
             uniforms, captions_out):
    """greedy_decode (uniforms None) or sample_decode: the arguments checked, then the loop."""
    cdef bint engine = (isinstance(Whp, PackedRecurrent) and isinstance(Wxp, PackedPanels)
                        and isinstance(W_vocabp, PackedPanels))
    if not engine:  # float64, or the engine off: the reference loop on this backend's kernels
        return _greedy.greedy_decode(_DECODE_KERNELS, h0, c0, W_embed, Wxp, b, Whp, W_vocabp,
                                     b_vocab, table, known, start, end, null, captions_out, uniforms)
    cdef PackedRecurrent Wh = Whp
    cdef PackedPanels Wx = Wxp, Wv = W_vocabp
    cdef Py_ssize_t H = Wh.H, G = Wh.G
    cdef fc_decode d
    cdef bint lstm = G == 4 * H and c0 is not None
    if Wh.transpose or not (lstm or (G == H and c0 is None)):
        raise ValueError(f"greedy_decode: Whp (H = {H}, G = {G}, transpose = {Wh.transpose}) and c0 "
                         f"({'given' if c0 is not None else 'None'}) are neither an LSTM's (G = 4H, c0 "
                         "given) nor a vanilla RNN's (G = H, c0 None) forward weights")
    kernel = "greedy_decode" if uniforms is None else "sample_decode"
    _decode_operands(&d, kernel, Wh.bf16, lstm, H, G, h0, c0, W_embed, Wx, b, Wv, b_vocab, table,
                     known, start, end, null, captions_out)
    cdef const double[:, ::1] u_
    if uniforms is not None:
        _check("uniforms", _array("uniforms", uniforms, 2, np.float64, kernel).shape, (d.N, d.L))
        u_ = uniforms
        d.uniforms = &u_[0, 0] if d.N and d.L else NULL
    d.Wh, d.att, d.alpha = &Wh.p, NULL, NULL
    cdef int rc, nth = _engine_threads
    with nogil:
        rc = fc_greedy_decode(&d, nth)
    if rc != 0:
        raise MemoryError(f"{kernel}: out of memory decoding {d.N} captions")


cdef _decode_operands(fc_decode *d, str kernel, bint bf16, bint lstm, Py_ssize_t H, Py_ssize_t G, h0, c0,
                      W_embed, PackedPanels Wx, b, PackedPanels Wv, b_vocab, table, known, start, end,
                      null, captions_out):
    """Check the operands both greedy decodings and sampling share (the recurrent weights,
    packed in precision bf16, gave H and G) and point d at them (d.uniforms NULL: greedy);
    ValueError naming the one that does not fit. The arrays must outlive d."""
    cdef Py_ssize_t N, L, V, W
    if not (bf16 == Wx.p.bf16 == Wv.p.bf16):
        raise ValueError(f"{kernel}: Whp, Wxp and W_vocabp must be packed in one precision "
                         f"(bf16: {bf16}, {bool(Wx.p.bf16)}, {bool(Wv.p.bf16)})")
    _array("h0", h0, 2, np.float32, kernel)
    _array("W_embed", W_embed, 2, np.float32, kernel)
    _array("b", b, 1, np.float32, kernel)
    _array("b_vocab", b_vocab, 1, np.float32, kernel)
    _array("table", table, 2, np.float32, kernel)
    _array("known", known, 1, np.bool_, kernel)
    _array("captions_out", captions_out, 2, np.int32, kernel)
    # the packed weights give the dimensions (Whp: H and G), h0 the captions: the rest must fit
    W, V = Wx.shape[0], Wv.shape[1]
    N, L = h0.shape[0], captions_out.shape[1]
    _check("Wxp", Wx.shape, (W, G))
    _check("W_vocabp", Wv.shape, (H, V))
    _check("W_embed", W_embed.shape, (V, W))
    _check("h0", h0.shape, (N, H))
    _check("captions_out", captions_out.shape, (N, L))
    if lstm:
        _check("c0", _array("c0", c0, 2, np.float32, kernel).shape, (N, H))
    _check("b", b.shape, (G,))
    _check("b_vocab", b_vocab.shape, (V,))
    _check("table", table.shape, (V, G))
    _check("known", known.shape, (V,))
    for name, word, lo in (("start", start, 0), ("end", end, -1), ("null", null, 0)):
        if not lo <= word < V:
            raise ValueError(f"{kernel}: {name} must be a word index in [{lo}, V = {V}), got {word}")
    if max(N, L, V, W, G) > _INT_MAX:
        raise ValueError(f"{kernel}: dimensions above {_INT_MAX}: {(N, L, V, W, G)}")
    cdef const float[:, ::1] h0_ = h0
    cdef const float[:, ::1] c0_ = c0 if lstm else h0
    cdef const float[:, ::1] We_ = W_embed
    cdef const float[::1] b_ = b
    cdef const float[::1] bv_ = b_vocab
    cdef float[:, ::1] table_ = table
    cdef uint8_t[::1] known_ = known.view(np.uint8)
    cdef int32_t[:, ::1] cap_ = captions_out
    d.N, d.L, d.H, d.G, d.V, d.W, d.lstm = <int>N, <int>L, <int>H, <int>G, <int>V, <int>W, lstm
    d.h0 = _p(h0_)
    d.c0 = _p(c0_) if lstm else NULL
    d.W_embed = _p(We_)
    d.Wx, d.Wv = &Wx.p, &Wv.p
    d.b = &b_[0] if G else NULL
    d.b_vocab = &bv_[0] if V else NULL
    d.table = _w(table_)
    d.known = &known_[0] if V else NULL
    d.start, d.end, d.null = start, end, null
    d.uniforms = NULL
    d.captions = &cap_[0, 0] if N and L else NULL
