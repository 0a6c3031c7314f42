/* recurrence.h -- the compiled recurrent engine (float32): the whole packed
 * time loop of a vanilla RNN or an LSTM, forward and backward, in C.
 *
 * Layout (as fastcap._sequence.Packing): sequences sorted longest first; at step t
 * the first n_t = offsets[t+1] - offsets[t] sequences run, and their rows are
 * offsets[t] .. offsets[t+1]-1 of the packed (P, ...) arrays. G = H (RNN) or
 * 4H (LSTM, gates i, f, o, g). All arrays are C-contiguous float32. The
 * caller (the wrappers of recurrence_engine.pxi) has checked every shape and offset.
 *
 * Per step, the recurrent product (n_t x H) @ (H x G) runs as register tiles
 * of FC_MR rows x FC_PW columns over weights packed once per call into
 * panels of FC_PW columns (fc_pack), and each tile's accumulators go straight
 * into the cell math (the tile of the LSTM forward holds i, f, o and g of the
 * same FC_VW hidden units). Backward, dprev_h = da_t @ Wh.T runs on the
 * transposed packing and feeds the cell backward of step t-1 the same way.
 * Threads split the panels (hidden units); each output element is computed
 * by one thread in a fixed order, so results do not depend on the thread
 * count. One barrier per step.
 */
#ifndef FASTCAP_ENGINE_RECURRENCE_H
#define FASTCAP_ENGINE_RECURRENCE_H

#include <stddef.h>
#include <stdint.h>

enum {
    FC_PACK_GATES = 0,      /* LSTM forward: Wh (H, 4H), a panel = i,f,o,g of FC_VW units */
    FC_PACK_PLAIN = 1,      /* RNN forward: Wh (H, H), a panel = FC_PW consecutive units */
    FC_PACK_TRANSPOSED = 2  /* backward: Wh.T (G, H), a panel = FC_PW consecutive units */
};

/* Packed weights. float32: a panel is K rows of FC_PW floats. bf16 (the
 * bfloat16 mode, bf16.h): a panel is krows = ceil(K/2) rows of FC_PW pairs
 * of bf16 (uint32), k even in the low half. H is the number of columns
 * (hidden units for the recurrences, N for a GEMM operand). */
typedef struct {
    float *data;  /* npanels * krows * FC_PW floats or pairs, 64-byte aligned; unused columns are 0 */
    int kind, H, G, K, krows, bf16, npanels;
} fc_packed;

/* Pack Wh (H, G) row-major for `kind`, in float32 or (bf16) rounded to bf16
 * pairs, on nthreads threads; 0 on success, -1 if out of memory. */
int fc_pack(fc_packed *out, const float *Wh, int H, int G, int kind, int bf16, int nthreads);
/* Pack B (K, N), element (k, n) at B[k * rs + n * cs], as bf16 panels for fc_gemm_bf16. */
int fc_pack_matrix_bf16(fc_packed *out, const float *B, ptrdiff_t rs, ptrdiff_t cs, int K, int N,
                        int nthreads);
/* Pack B (K, N) row-major as float32 panels of FC_PW columns (FC_PACK_PLAIN, K rows), for
 * fc_gemm_f32 (decode.h). */
int fc_pack_matrix_f32(fc_packed *out, const float *B, int K, int N, int nthreads);
void fc_packed_free(fc_packed *p);

/* C (M, N) = bf16(A) @ B, float32 sums: A (M, K) element (m, k) at A[m * ars + k * acs], B
 * from fc_pack_matrix_bf16, C rows ldc apart. 0 on success, -1 if out of memory (gemm.c). */
int fc_gemm_bf16(const float *A, ptrdiff_t ars, ptrdiff_t acs, int M, const fc_packed *Bp,
                 float *C, ptrdiff_t ldc, int nthreads);

/* The build's instruction set ("baseline", "avx2", "avx512", "avx512bf16") and vector
 * width; whether its bf16 tiles are the CPU's own instruction (vdpbf16ps) or two FMAs. */
const char *fc_engine_isa(void);
int fc_engine_vector_width(void);
int fc_engine_bf16_native(void);

/* The recurrences with bf16 weights (packed with bf16 = 1) read their A
 * operands (h_{t-1} forward, da_{t+1} backward) in bf16 from `ab`, which they
 * fill: forward (N + P, ceil(H/2)*2) uint16, backward (P, ceil(G/2)*2),
 * zeroed by the caller. With float32 weights ab is not used (NULL). */

/* h (P, H) from xw (P, H) = x @ Wx + b and h0 (N, H). Wp: FC_PACK_PLAIN. */
void fc_rnn_forward(const float *xw, const float *h0, const fc_packed *Wp,
                    const ptrdiff_t *offsets, int T, int N, float *h_out, uint16_t *ab,
                    int nthreads);

/* da (P, H) gate gradients and dh0 (N, H) from dh (P, H), h (P, H). WTp: FC_PACK_TRANSPOSED. */
void fc_rnn_backward(const float *dh, const fc_packed *WTp, const float *h,
                     const ptrdiff_t *offsets, int T, int N, float *da_out, float *dh0_out,
                     uint16_t *ab, int nthreads);

/* ifog (P, 4H), c (P, H), h (P, H) from xw (P, 4H), h0, c0 (N, H; c0 NULL = 0). Wp: FC_PACK_GATES. */
void fc_lstm_forward(const float *xw, const float *h0, const float *c0, const fc_packed *Wp,
                     const ptrdiff_t *offsets, int T, int N, float *ifog_out, float *c_out,
                     float *h_out, uint16_t *ab, int nthreads);

/* da (P, 4H), dh0 (N, H) from dh (P, H), ifog, c and c0 (NULL = 0). dc_work: (N, H) scratch,
 * zeroed by the caller. WTp: FC_PACK_TRANSPOSED. */
void fc_lstm_backward(const float *dh, const float *c0, const fc_packed *WTp, const float *ifog,
                      const float *c, const ptrdiff_t *offsets, int T, int N, float *da_out,
                      float *dh0_out, float *dc_work, uint16_t *ab, int nthreads);

#endif
