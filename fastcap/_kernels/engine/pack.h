/* pack.h -- operands packed into the panels that the engine's tiles read
 * (tiles.h): recurrent weights for the recurrences (recurrence.h) and matrix
 * operands for the products (gemm.h), packed once per call.
 *
 * A panel holds FC_PW = 4 vectors of columns of the operand, all K of its
 * rows, so a tile streams it top to bottom. float32: a panel is K rows of
 * FC_PW floats. bf16 (the bfloat16 mode, bf16.h): a panel is krows =
 * ceil(K/2) rows of FC_PW pairs of bf16 (uint32), k even in the low half.
 */
#ifndef FASTCAP_ENGINE_PACK_H
#define FASTCAP_ENGINE_PACK_H

#include <stddef.h>

enum {
    FC_PACK_GATES = 0,      /* LSTM forward: Wh (H, 4H), a panel = i,f,o,g of FC_VW units */
    FC_PACK_PLAIN = 1,      /* RNN forward Wh (H, H), or a matrix: a panel = FC_PW consecutive columns */
    FC_PACK_TRANSPOSED = 2  /* backward: Wh.T (G, H), a panel = FC_PW consecutive units */
};

typedef struct {
    float *data;  /* npanels * krows * FC_PW floats or pairs, 64-byte aligned; unused columns are 0 */
    int kind;     /* FC_PACK_* */
    int K;        /* rows of the operand: the k of the products that read it */
    int cols;     /* columns of the operand: G of Wh (GATES, PLAIN), H of Wh.T, N of a matrix */
    int units;    /* what the panels split: hidden units H of a recurrence (a GATES panel
                   * holds the 4 gate columns of FC_VW units); for the other kinds = cols */
    int krows;    /* rows of a panel: K (float32) or ceil(K/2) pairs (bf16) */
    int bf16;     /* 1: bf16 pairs, 0: float32 */
    int npanels;
} fc_packed;

/* Pack Wh (H, G) row-major for `kind`, in float32 or (bf16) rounded to bf16
 * pairs, on nthreads threads; 0 on success, -1 if out of memory. */
int fc_pack(fc_packed *out, const float *Wh, int H, int G, int kind, int bf16, int nthreads);
/* Pack B (K, N), element (k, n) at B[k * rs + n * cs], as bf16 panels for fc_gemm_bf16
 * and fc_gemv_bf16 (gemm.h). */
int fc_pack_matrix_bf16(fc_packed *out, const float *B, ptrdiff_t rs, ptrdiff_t cs, int K, int N,
                        int nthreads);
/* Pack B (K, N) row-major as float32 panels (FC_PACK_PLAIN, K rows), for fc_gemm_f32 (gemm.h). */
int fc_pack_matrix_f32(fc_packed *out, const float *B, int K, int N, int nthreads);
/* Pack W (K, G) row-major for a recurrence's forward tiles, `kind` FC_PACK_GATES (LSTM, G = 4H)
 * or FC_PACK_PLAIN (RNN, G = H), over H units and K >= H rows (the attention model's cell
 * reads [h, z]: K = H + D, attention.h). */
int fc_pack_cell(fc_packed *out, const float *W, int K, int H, int G, int kind, int bf16,
                 int nthreads);
void fc_packed_free(fc_packed *p);

#endif
