/* gemv_bf16.c -- the bf16 product of a few rows over packed panels (gemm.h): decoding's
 * scores and input projections at small batches. fc_gemm_bf16's tile holds 4 accumulator
 * chains per row, and with one row each waits on the pair dot product's latency; here a
 * row runs over two panels at once (tile_bf16_row2, 8 chains). Every element is the same
 * sum in the same order as fc_gemm_bf16's tiles, so the bits are the same. Threads split
 * the panel pairs; each element is one thread's sum.
 */
#include "gemm.h"

#include "pool.h"
#include "tiles.h"

typedef struct {
    const uint32_t *Ab; /* (M, Kp) bf16 pairs of A */
    int M;
    const fc_packed *B;
    float *C;
    ptrdiff_t ldc;
} gemv_job;

static void store(const gemv_job *g, int m, int p, const vf acc[4])
{
    for (int v = 0; v < 4; v++) {
        const int col = p * FC_PW + v * FC_VW, nu = lanes(g->B->cols, col);
        if (nu) vf_store_n(g->C + (ptrdiff_t)m * g->ldc + col, acc[v], nu);
    }
}

static void gemv_task(void *ctx, int tid, int nth)
{
    const gemv_job *g = ctx;
    const int Kp = g->B->krows, npairs = (g->B->npanels + 1) / 2;
    const int q0 = (int)((long)npairs * tid / nth), q1 = (int)((long)npairs * (tid + 1) / nth);
    for (int q = q0; q < q1; q++) {
        const int p = 2 * q;
        const uint32_t *panel = (const uint32_t *)g->B->data + (ptrdiff_t)p * Kp * FC_PW;
        FC_CHECK(p < g->B->npanels);
        for (int m = 0; m < g->M; m++) {
            const uint32_t *a = g->Ab + (ptrdiff_t)m * Kp;
            if (p + 1 < g->B->npanels) {
                vf acc[2][4];
                tile_bf16_row2(a, panel, panel + (ptrdiff_t)Kp * FC_PW, Kp, acc);
                store(g, m, p, acc[0]);
                store(g, m, p + 1, acc[1]);
            } else {
                vf acc[FC_MR][4];
                tile_bf16(1, a, Kp, panel, Kp, acc);
                store(g, m, p, acc[0]);
            }
        }
    }
}

int fc_gemv_bf16(const float *A, ptrdiff_t lda, int M, const fc_packed *Bp, float *C,
                 ptrdiff_t ldc, uint32_t *Ab, int nthreads)
{
    FC_CHECK(Bp->bf16 && Bp->kind == FC_PACK_PLAIN && Bp->krows == (Bp->K + 1) / 2);
    if (M <= 0 || Bp->cols <= 0) return 0;
    for (int m = 0; m < M; m++) fc_bf16_pairs(A + (ptrdiff_t)m * lda, Bp->K, Ab + (ptrdiff_t)m * Bp->krows);
    gemv_job g = {Ab, M, Bp, C, ldc};
    fc_pool_run(gemv_task, &g, nthreads);
    return 0;
}
