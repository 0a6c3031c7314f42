# The attention model's kernels (included by cython_backend.pyx after decode_engine.pxi).
#
# The per-step attention, forward and backward, in C over fused float types: per row the
# L scores (a tanh over A values and their dot with w_att), the softmax over L, the
# context (a sum over L of D-vectors) and the gate. float64 (and float32 with the engine
# off) runs the reference loops (fastcap/_kernels/attention_recurrence.py,
# fastcap/_kernels/greedy.py) around these and this module's cell kernels; float32 and the
# bf16 mode run on the engine (attention_engine.pxi, the contracts:
# fastcap/_kernels/__init__.py).
from fastcap._kernels import attention_recurrence as _attention_recurrence


cdef _sizes(str kernel, dict arrays, dict want):
    """Raise ValueError unless every array has the shape `want` gives it (the loops below
    index with a's and enc's sizes): O(1) checks, so a direct call with inconsistent
    arguments is refused instead of reaching memory."""
    for name, shape in want.items():
        if tuple(arrays[name].shape[:len(shape)]) != shape:
            raise ValueError(f"{kernel}: {name} must have shape {shape}, got "
                             f"{tuple(arrays[name].shape[:len(shape)])}")


def attention_step_forward(const floating_t[:, :, ::1] a,  # IN (N, L, D) features
                           const floating_t[:, :, ::1] enc,  # IN (N, L, A) a @ W_enc + b_enc
                           const floating_t[:, ::1] hab,  # IN (N, A + D) h @ [W_dec | W_beta]
                           const floating_t[::1] b_beta,  # IN (D,)
                           const floating_t[::1] w_att,  # IN (A,)
                           floating_t[:, ::1] alpha_out,  # OUT (N, L) softmax over L of the scores
                           floating_t[:, ::1] z_out,  # OUT (N, D) beta * the context
                           floating_t[:, ::1] beta_out):  # OUT (N, D) the gate
    cdef Py_ssize_t N = a.shape[0], L = a.shape[1], D = a.shape[2], A = enc.shape[2], n, l, j
    cdef floating_t s, mx, total, w, b
    _sizes("attention_step_forward",
           dict(enc=enc, hab=hab, b_beta=b_beta, w_att=w_att, alpha_out=alpha_out, z_out=z_out, beta_out=beta_out),
           dict(enc=(N, L, A), hab=(N, A + D), b_beta=(D,), w_att=(A,), alpha_out=(N, L), z_out=(N, D),
                beta_out=(N, D)))
    with nogil:
        for n in range(N):
            for l in range(L):
                s = 0
                for j in range(A):
                    s = s + _tanh(enc[n, l, j] + hab[n, j]) * w_att[j]
                alpha_out[n, l] = s
            mx = alpha_out[n, 0] if L else 0
            for l in range(1, L):
                if alpha_out[n, l] > mx or alpha_out[n, l] != alpha_out[n, l]:
                    mx = alpha_out[n, l]
            total = 0
            for l in range(L):
                alpha_out[n, l] = _exp_nonpos(alpha_out[n, l] - mx)
                total = total + alpha_out[n, l]
            for l in range(L):
                alpha_out[n, l] = alpha_out[n, l] / total
            for j in range(D):
                z_out[n, j] = 0
            for l in range(L):
                w = alpha_out[n, l]
                for j in range(D):
                    z_out[n, j] = z_out[n, j] + w * a[n, l, j]
            for j in range(D):
                b = _sigmoid(hab[n, A + j] + b_beta[j])
                beta_out[n, j] = b
                z_out[n, j] = z_out[n, j] * b


def attention_step_backward(const floating_t[:, ::1] dz,  # IN (N, D) gradient at z
                            const floating_t[:, ::1] dalpha,  # IN (N, L) gradient at alpha from outside
                            const floating_t[:, :, ::1] a,  # IN (N, L, D)
                            const floating_t[:, :, ::1] enc,  # IN (N, L, A)
                            const floating_t[:, ::1] hd,  # IN (N, A) h @ W_dec
                            const floating_t[::1] w_att,  # IN (A,)
                            const floating_t[:, ::1] alpha,  # IN (N, L)
                            const floating_t[:, ::1] z,  # IN (N, D)
                            const floating_t[:, ::1] beta,  # IN (N, D)
                            floating_t[:, ::1] datt_out,  # OUT (N, A + D) gradient at hab
                            floating_t[:, ::1] dwatt_out,  # OUT (N, A) each row's share of dw_att
                            floating_t[:, :, ::1] denc):  # IN/OUT (N, L, A) += gradient at enc
    cdef Py_ssize_t N = a.shape[0], L = a.shape[1], D = a.shape[2], A = enc.shape[2], n, l, j
    cdef floating_t one = 1, s, weighted, de, ds
    _sizes("attention_step_backward",
           dict(dz=dz, dalpha=dalpha, enc=enc, hd=hd, w_att=w_att, alpha=alpha, z=z, beta=beta,
                datt_out=datt_out, dwatt_out=dwatt_out, denc=denc),
           dict(dz=(N, D), dalpha=(N, L), enc=(N, L, A), hd=(N, A), w_att=(A,), alpha=(N, L), z=(N, D),
                beta=(N, D), datt_out=(N, A + D), dwatt_out=(N, A), denc=(N, L, A)))
    # the gradient at alpha of one row: scratch, written before it is read
    dal_buf = np.empty(L, dtype=np.float32 if floating_t is float else np.float64)
    cdef floating_t[::1] dal = dal_buf
    with nogil:
        for n in range(N):
            for j in range(D):  # the gate: z * (1 - beta) = context * beta * (1 - beta)
                datt_out[n, A + j] = dz[n, j] * z[n, j] * (one - beta[n, j])
            weighted = 0  # sum_l alpha * dal, for the softmax's backward
            for l in range(L):
                s = 0
                for j in range(D):
                    s = s + dz[n, j] * beta[n, j] * a[n, l, j]
                dal[l] = s + dalpha[n, l]
                weighted = weighted + alpha[n, l] * dal[l]
            for j in range(A):
                datt_out[n, j] = 0
                dwatt_out[n, j] = 0
            for l in range(L):
                de = alpha[n, l] * (dal[l] - weighted)  # at the score of cell l
                for j in range(A):
                    s = _tanh(enc[n, l, j] + hd[n, j])  # recomputed: never stored over the steps
                    dwatt_out[n, j] = dwatt_out[n, j] + de * s
                    ds = de * w_att[j] * (one - s * s)
                    datt_out[n, j] = datt_out[n, j] + ds
                    denc[n, l, j] = denc[n, l, j] + ds


cdef extern from "engine/engine.h" nogil:
    int fc_gemm_f32(const float *A, Py_ssize_t lda, int M, const fc_packed *Bp, float *C,
                    Py_ssize_t ldc, int nthreads)

# This module's kernels, for the reference loops.
_ATTENTION_KERNELS = _types.SimpleNamespace(
    attention_step_forward=attention_step_forward, attention_step_backward=attention_step_backward,
    **vars(_CELL_KERNELS))
# The reference loop's kernels (float64, or the engine off); attention_engine.pxi's take
# float32 and the bf16 mode to the engine.
_loop_pack, _loop_forward, _loop_backward = _attention_recurrence.kernels(_ATTENTION_KERNELS)


def _panel_product(a, b, out):
    """out (M, N) float32 = a (M, K) @ b (PackedPanels of either precision: pack_matrix's
    float32 panels or pack_bf16's): the products of the reference decoding loop, which
    multiplies matrices by BLAS and packed operands here."""
    cdef PackedPanels bp = b
    if bp.p.bf16:
        return matmul_bf16(a, b, out)
    cdef const float[:, ::1] a_ = np.ascontiguousarray(a, dtype=np.float32)
    cdef float[:, ::1] o_ = out
    _check("b", bp.shape, (a_.shape[1], o_.shape[1]))
    _check("out", (o_.shape[0], o_.shape[1]), (a_.shape[0], bp.shape[1]))
    cdef int M = <int>a_.shape[0], nth = _engine_threads
    if M == 0 or o_.shape[1] == 0:
        return
    if a_.shape[1] == 0:
        out[...] = 0
        return
    with nogil:
        fc_gemm_f32(&a_[0, 0], a_.shape[1], M, &bp.p, &o_[0, 0], o_.shape[1], nth)
