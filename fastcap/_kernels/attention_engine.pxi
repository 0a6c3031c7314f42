# The attention model on the compiled engine (included by cython_backend.pyx after
# attention.pxi): ``attention_pack`` packs the step's two products' weights once per call
# (a ``PackedAttention``; float64 or the engine off: the reference loop's weights), and
# ``attention_recurrence_forward`` / ``_backward`` and ``attention_greedy_decode`` run the
# whole time loop in C without the GIL (fastcap/_kernels/engine/attention.h: the products
# on register tiles, the attention and the cells fused between them). Which path a call
# takes is decided by what attention_pack returned.
#
# The wrappers check every size the C code indexes with before it runs, so inconsistent
# arguments raise ValueError naming the argument instead of reaching memory.
cdef extern from "engine/engine.h" nogil:
    int fc_pack_cell(fc_packed *out, const float *W, int K, int H, int G, int kind, int bf16,
                     int nthreads)
    int fc_attention_forward(const fc_attention *m, const float *xw, const float *h0,
                             const float *c0, const Py_ssize_t *offsets, int T, int N,
                             const Py_ssize_t *rows, float *ifog_out, float *c_out, float *h_out,
                             float *alpha_out, float *z_out, float *beta_out, float *hd_out,
                             int nthreads)
    int fc_attention_backward(const fc_attention *m, const float *dh, const float *dalpha,
                              const float *c0, const float *ifog, const float *c, const float *h,
                              const float *alpha, const float *z, const float *beta,
                              const float *hd, const Py_ssize_t *offsets, int T, int N,
                              float *da_out, float *datt_out, float *dwatt_out, float *denc_out,
                              float *dh0_out, int nthreads)


cdef class PackedAttention:
    """The attention step's weights packed for the engine (made by attention_pack, read-only):
    [W_dec | W_beta] (H, A + D) and [[Wh], [0 if H is odd], [Wz]] (Hp + D, G)."""
    cdef fc_packed att, cell
    cdef readonly int H, D, A, G
    cdef readonly bint transpose, bf16

    def __dealloc__(self):
        fc_packed_free(&self.att)
        fc_packed_free(&self.cell)


def attention_pack(Wh,  # IN (H, G) float32 -> PackedAttention; float64 -> the reference's
                   Wz,  # IN (D, G) the context's rows of Wx
                   W_dec,  # IN (H, A)
                   W_beta,  # IN (H, D)
                   bint transpose,  # IN pack for the backward products
                   bint bf16=False):  # IN pack as bf16 pairs (the bfloat16 mode)
    if Wh.dtype != np.float32 or not _engine_on:
        return _loop_pack(Wh, Wz, W_dec, W_beta, transpose, bf16)
    cdef Py_ssize_t H = Wh.shape[0], G = Wh.shape[1], D = Wz.shape[0], A = W_dec.shape[1]
    if H < 1 or G not in (H, 4 * H) or D < 1 or A < 1 or max(G, A + D, H + 1 + D) > _INT_MAX:
        raise ValueError(f"attention_pack: Wh must have shape (H, H) or (H, 4H), and Wz (D, G), W_dec "
                         f"(H, A), W_beta (H, D) with H, D, A >= 1; got {Wh.shape}, {Wz.shape}, "
                         f"{W_dec.shape}, {W_beta.shape}")
    _sizes("attention_pack", dict(Wz=Wz, W_dec=W_dec, W_beta=W_beta),
           dict(Wz=(D, G), W_dec=(H, A), W_beta=(H, D)))
    cdef Py_ssize_t Hp = (H + 1) // 2 * 2
    cdef const float[:, ::1] att = np.ascontiguousarray(np.concatenate([W_dec, W_beta], axis=1), np.float32)
    cdef const float[:, ::1] cell = np.ascontiguousarray(
        np.concatenate([Wh, np.zeros((Hp - H, G), np.float32), Wz]), np.float32)
    cdef PackedAttention packed = PackedAttention.__new__(PackedAttention)
    cdef int nth = _engine_threads, rc1, rc2
    cdef int kind = FC_PACK_GATES if G == 4 * H else FC_PACK_PLAIN
    with nogil:
        if transpose:
            rc1 = fc_pack(&packed.att, &att[0, 0], <int>H, <int>(A + D), FC_PACK_TRANSPOSED, bf16, nth)
            rc2 = fc_pack(&packed.cell, &cell[0, 0], <int>(Hp + D), <int>G, FC_PACK_TRANSPOSED, bf16, nth)
        else:
            rc1 = (fc_pack_matrix_bf16(&packed.att, &att[0, 0], A + D, 1, <int>H, <int>(A + D), nth) if bf16
                   else fc_pack_matrix_f32(&packed.att, &att[0, 0], <int>H, <int>(A + D), nth))
            rc2 = fc_pack_cell(&packed.cell, &cell[0, 0], <int>(Hp + D), <int>H, <int>G, kind, bf16, nth)
    if rc1 or rc2:
        raise MemoryError("attention_pack: out of memory packing the attention step's weights")
    packed.H, packed.D, packed.A, packed.G, packed.transpose, packed.bf16 = H, D, A, G, transpose, bf16
    return packed


cdef PackedAttention _attention_for(str kernel, object Wp, bint transpose, c0):
    """Wp as the engine's packed weights, after checking its direction and its cell (c0 given:
    an LSTM, G = 4H; None: a vanilla RNN, G = H)."""
    cdef PackedAttention W = Wp
    if W.transpose != transpose or (W.G == 4 * W.H) != (c0 is not None):
        raise ValueError(f"{kernel}: Wp is packed for transpose = {W.transpose}, G = {W.G}, H = {W.H}; this "
                         f"call needs transpose = {transpose} and {'an LSTM' if c0 is not None else 'an RNN'}")
    return W


cdef _fill_model(fc_attention *m, PackedAttention W, str kernel, Py_ssize_t N, a, enc, w_att):
    """Check a (N, L, D), enc (N, L, A), w_att (A,) against W and point m at them (and at W)."""
    cdef Py_ssize_t L = a.shape[1] if a.ndim == 3 else 0
    if L < 1 or L > _INT_MAX:
        raise ValueError(f"{kernel}: a must have shape (N, L, D) with L >= 1 cells, got {a.shape}")
    _sizes(kernel, dict(a=a, enc=enc, w_att=w_att), dict(a=(N, L, W.D), enc=(N, L, W.A), w_att=(W.A,)))
    cdef const float[:, :, ::1] a_ = a
    cdef const float[:, :, ::1] enc_ = enc
    cdef const float[::1] w_ = w_att
    m.L, m.D, m.A, m.H, m.G, m.lstm, m.Nf = <int>L, W.D, W.A, W.H, W.G, W.G == 4 * W.H, <int>N
    m.a = &a_[0, 0, 0] if N else NULL
    m.enc = &enc_[0, 0, 0] if N else NULL
    m.w_att, m.b_beta = &w_[0], NULL
    m.att, m.cell = &W.att, &W.cell


_NO_ROWS = np.empty((0, 0), dtype=np.float32)  # ifog and c of an RNN: never read or written


def attention_recurrence_forward(xw, h0, c0, a, enc, Wp, b_beta, w_att, batch_sizes, ifog_out, c_out,
                                 h_out, alpha_out, z_out, beta_out, hd_out):
    if not isinstance(Wp, PackedAttention):
        return _loop_forward(xw, h0, c0, a, enc, Wp, b_beta, w_att, batch_sizes, ifog_out, c_out, h_out,
                             alpha_out, z_out, beta_out, hd_out)
    cdef str k = "attention_recurrence_forward"
    cdef PackedAttention W = _attention_for(k, Wp, False, c0)
    cdef bint lstm = c0 is not None
    cdef Py_ssize_t N = h0.shape[0], P = xw.shape[0], H = W.H, G = W.G, D = W.D, A = W.A
    cdef const float[:, ::1] xw_ = xw  # IN (P, G) W_embed[words] @ Wx[:W] + b
    cdef const float[:, ::1] h0_ = h0  # IN (N, H)
    cdef const float[:, ::1] c0_ = c0 if lstm else _NO_ROWS  # IN (N, H) (LSTM)
    cdef const float[::1] bb_ = b_beta  # IN (D,)
    cdef float[:, ::1] ifog_ = ifog_out if lstm else _NO_ROWS  # OUT (P, G) (LSTM)
    cdef float[:, ::1] c_ = c_out if lstm else _NO_ROWS  # OUT (P, H) (LSTM)
    cdef float[:, ::1] h_ = h_out  # OUT (P, H)
    cdef float[:, ::1] al_ = alpha_out  # OUT (P, L)
    cdef float[:, ::1] z_ = z_out  # OUT (P, D)
    cdef float[:, ::1] be_ = beta_out  # OUT (P, D)
    cdef float[:, ::1] hd_ = hd_out  # OUT (P, A)
    cdef fc_attention m
    _fill_model(&m, W, k, N, a, enc, w_att)
    arrays = dict(xw=xw, h0=h0, b_beta=b_beta, h_out=h_out, alpha_out=alpha_out, z_out=z_out,
                  beta_out=beta_out, hd_out=hd_out)
    want = dict(xw=(P, G), h0=(N, H), b_beta=(D,), h_out=(P, H), alpha_out=(P, m.L), z_out=(P, D),
                beta_out=(P, D), hd_out=(P, A))
    if lstm:
        arrays.update(c0=c0, ifog_out=ifog_out, c_out=c_out)
        want.update(c0=(N, H), ifog_out=(P, G), c_out=(P, H))
    _sizes(k, arrays, want)
    cdef Py_ssize_t[::1] off = _offsets(batch_sizes, N, P)
    cdef int T = <int>(off.shape[0] - 1), nth = _engine_threads, rc
    m.b_beta = &bb_[0]
    with nogil:
        rc = fc_attention_forward(&m, _p(xw_), _p(h0_), _p(c0_) if lstm else NULL, &off[0], T, <int>N, NULL,
                                  _w(ifog_), _w(c_), _w(h_), _w(al_), _w(z_), _w(be_), _w(hd_), nth)
    if rc != 0:
        raise MemoryError(f"{k}: out of memory")


def attention_recurrence_backward(dh, dalpha, c0, a, enc, WTp, w_att, ifog, c, h, alpha, z, beta, hd,
                                  batch_sizes, da_out, datt_out, dwatt_out, denc_out, dh0_out):
    if not isinstance(WTp, PackedAttention):
        return _loop_backward(dh, dalpha, c0, a, enc, WTp, w_att, ifog, c, h, alpha, z, beta, hd,
                              batch_sizes, da_out, datt_out, dwatt_out, denc_out, dh0_out)
    cdef str k = "attention_recurrence_backward"
    cdef PackedAttention W = _attention_for(k, WTp, True, c0)
    cdef bint lstm = c0 is not None
    cdef Py_ssize_t N = dh0_out.shape[0], P = dh.shape[0], H = W.H, G = W.G, D = W.D, A = W.A
    cdef const float[:, ::1] dh_ = dh  # IN (P, H) gradient arriving at every h_t
    cdef const float[:, ::1] dal_ = dalpha  # IN (P, L) gradient arriving at every alpha_t
    cdef const float[:, ::1] c0_ = c0 if lstm else _NO_ROWS  # IN (N, H) (LSTM)
    cdef const float[:, ::1] ifog_ = ifog if lstm else _NO_ROWS  # IN (P, G) (LSTM)
    cdef const float[:, ::1] c_ = c if lstm else _NO_ROWS  # IN (P, H) (LSTM)
    cdef const float[:, ::1] h_ = h  # IN (P, H)
    cdef const float[:, ::1] al_ = alpha  # IN (P, L)
    cdef const float[:, ::1] z_ = z  # IN (P, D)
    cdef const float[:, ::1] be_ = beta  # IN (P, D)
    cdef const float[:, ::1] hd_ = hd  # IN (P, A)
    cdef float[:, ::1] da_ = da_out  # OUT (P, G)
    cdef float[:, ::1] datt_ = datt_out  # OUT (P, A + D)
    cdef float[:, ::1] dw_ = dwatt_out  # OUT (P, A)
    cdef float[:, :, ::1] denc_ = denc_out  # OUT (N, L, A)
    cdef float[:, ::1] dh0_ = dh0_out  # OUT (N, H)
    cdef fc_attention m
    _fill_model(&m, W, k, N, a, enc, w_att)
    arrays = dict(dh=dh, dalpha=dalpha, h=h, alpha=alpha, z=z, beta=beta, hd=hd, da_out=da_out,
                  datt_out=datt_out, dwatt_out=dwatt_out, denc_out=denc_out, dh0_out=dh0_out)
    want = dict(dh=(P, H), dalpha=(P, m.L), h=(P, H), alpha=(P, m.L), z=(P, D), beta=(P, D), hd=(P, A),
                da_out=(P, G), datt_out=(P, A + D), dwatt_out=(P, A), denc_out=(N, m.L, A), dh0_out=(N, H))
    if lstm:
        arrays.update(c0=c0, ifog=ifog, c=c)
        want.update(c0=(N, H), ifog=(P, G), c=(P, H))
    _sizes(k, arrays, want)
    cdef Py_ssize_t[::1] off = _offsets(batch_sizes, N, P)
    cdef int T = <int>(off.shape[0] - 1), nth = _engine_threads, rc
    with nogil:
        rc = fc_attention_backward(&m, _p(dh_), _p(dal_), _p(c0_) if lstm else NULL, _p(ifog_), _p(c_),
                                   _p(h_), _p(al_), _p(z_), _p(be_), _p(hd_), &off[0], T, <int>N, _w(da_),
                                   _w(datt_), _w(dw_), &denc_[0, 0, 0] if N else NULL, _w(dh0_), nth)
    if rc != 0:
        raise MemoryError(f"{k}: out of memory")


# The kernels the reference decoding loop calls (float64, or the engine off).
_ATTENTION_DECODE_KERNELS = _types.SimpleNamespace(
    attention_recurrence_forward=attention_recurrence_forward, argmax_words=argmax_words,
    matmul_bf16=_panel_product)


def attention_greedy_decode(h0,  # IN (N, H)
                            c0,  # IN (N, H) (LSTM), None (RNN)
                            a,  # IN (N, L, D)
                            enc,  # IN (N, L, A)
                            W_embed,  # IN (V, W)
                            Wxp,  # IN Wx[:W] by pack_matrix or pack_bf16
                            b,  # IN (G,)
                            Wp,  # IN attention_pack(not transposed), the precision of Wxp
                            b_beta,  # IN (D,)
                            w_att,  # IN (A,)
                            W_vocabp,  # IN W_vocab (H, V) packed as Wxp
                            b_vocab,  # IN (V,)
                            table,  # IN/OUT (V, G)
                            known,  # IN/OUT (V,) bool
                            start, end, null,  # IN word indices (end -1: none)
                            captions_out,  # OUT (N, T) int32
                            alpha_out):  # OUT (N, T, L)
    if not (isinstance(Wp, PackedAttention) and isinstance(Wxp, PackedPanels)
            and isinstance(W_vocabp, PackedPanels)):
        return _greedy.attention_greedy_decode(_ATTENTION_DECODE_KERNELS, h0, c0, a, enc, W_embed, Wxp, b, Wp,
                                               b_beta, w_att, W_vocabp, b_vocab, table, known, start, end,
                                               null, captions_out, alpha_out)
    cdef str k = "attention_greedy_decode"
    cdef PackedAttention W = _attention_for(k, Wp, False, c0)
    cdef fc_decode d
    cdef fc_attention m
    _decode_operands(&d, k, W.bf16, c0 is not None, W.H, W.G, h0, c0, W_embed, Wxp, b, W_vocabp, b_vocab,
                     table, known, start, end, null, captions_out)
    _fill_model(&m, W, k, d.N, a, enc, w_att)
    _sizes(k, dict(b_beta=b_beta, alpha_out=_array("alpha_out", alpha_out, 3, np.float32, k)),
           dict(b_beta=(W.D,), alpha_out=(d.N, d.L, m.L)))
    cdef const float[::1] bb_ = b_beta
    cdef float[:, :, ::1] al_ = alpha_out
    m.b_beta = &bb_[0]
    d.Wh, d.att, d.alpha = &W.cell, &m, &al_[0, 0, 0] if al_.size else NULL
    cdef int rc, nth = _engine_threads
    with nogil:
        rc = fc_greedy_decode(&d, nth)
    if rc != 0:
        raise MemoryError(f"{k}: out of memory decoding {d.N} captions")
