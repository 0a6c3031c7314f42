/* gemm_f32.c -- the float32 product over packed panels (gemm.h): decoding's scores
 * h @ W_vocab and input projections x @ Wx run inside the C word loop, where NumPy's BLAS
 * cannot be called. The engine's register tile (tiles.h) over panels of FC_PW columns
 * packed once per decoding (fc_pack_matrix_f32); threads split (panel, row block) tasks,
 * panel-major, as fc_gemm_bf16 does, so each keeps a panel in L2 while its row tiles
 * stream past.
 */
#include "gemm.h"

#include "pool.h"
#include "tiles.h"

#define FC_RB (8 * FC_MR) /* rows of a task */

typedef struct {
    const float *A;
    ptrdiff_t lda;
    int M;
    const fc_packed *B;
    float *C;
    ptrdiff_t ldc;
} gemm_f32_job;

static void gemm_f32_task(void *ctx, int tid, int nth)
{
    const gemm_f32_job *g = ctx;
    const int M = g->M, N = g->B->cols, K = g->B->K;
    const int nrb = (M + FC_RB - 1) / FC_RB, ntasks = g->B->npanels * nrb;
    const int t0 = (int)((long)ntasks * tid / nth), t1 = (int)((long)ntasks * (tid + 1) / nth);
    for (int task = t0; task < t1; task++) {
        const int p = task / nrb, r0 = (task % nrb) * FC_RB;
        const int r1 = r0 + FC_RB < M ? r0 + FC_RB : M;
        const float *panel = g->B->data + (ptrdiff_t)p * K * FC_PW;
        const int c0 = p * FC_PW;
#define BODY(mr, r)                                                                    \
    {                                                                                  \
        vf acc[FC_MR][4];                                                              \
        FC_CHECK((r) >= 0 && (r) + (mr) <= M && c0 < N && p < g->B->npanels);          \
        tile(mr, g->A + (ptrdiff_t)(r) * g->lda, g->lda, panel, K, acc);               \
        store_tile(mr, acc, g->C + (ptrdiff_t)(r) * g->ldc, g->ldc, c0, N);            \
    }
        FC_ROW_TILES(r0, r1, BODY);
#undef BODY
    }
}

int fc_gemm_f32(const float *A, ptrdiff_t lda, int M, const fc_packed *Bp, float *C,
                ptrdiff_t ldc, int nthreads)
{
    FC_CHECK(!Bp->bf16 && Bp->kind == FC_PACK_PLAIN && Bp->krows == Bp->K);
    if (M <= 0 || Bp->cols <= 0) return 0;
    gemm_f32_job g = {A, lda, M, Bp, C, ldc};
    fc_pool_run(gemm_f32_task, &g, nthreads);
    return 0;
}
