/* gemm.c -- the bf16 matrix product of fastcap's bfloat16 mode:
 * C (M, N) = bf16(A) (M, K) @ bf16(B) (K, N), accumulated in float32.
 *
 * B comes packed by fc_pack_matrix_bf16 (panels of FC_PW columns, pairs of k);
 * A is read through strides (so A may be a transposed view) and rounded into
 * bf16 pair rows here. Threads split (panel, row block) tasks, panel-major,
 * so each keeps a panel in L2 while its row tiles stream past; every element
 * of C is one thread's sum in k order, so results do not depend on the
 * thread count.
 */
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "recurrence.h"
#include "tiles.h"

#define FC_RB (8 * FC_MR) /* rows of a task */

typedef struct {
    const float *A;
    ptrdiff_t ars, acs;
    int M, Kp;
    uint32_t *Ab; /* (M, Kp) pairs */
    const fc_packed *B;
    float *C;
    ptrdiff_t ldc;
} gemm_job;

/* Rows [m0, m1) of A into bf16 pairs; a K column past the end is 0. Blocks
 * of 16 rows read A along k when it is a transposed view (acs > ars). */
static void round_rows(const gemm_job *g, int m0, int m1)
{
    const int K = g->B->K;
    for (int mb = m0; mb < m1; mb += 16) {
        const int me = mb + 16 < m1 ? mb + 16 : m1;
        for (int kp = 0; kp < g->Kp; kp++) {
            const int k = 2 * kp;
            for (int m = mb; m < me; m++) {
                const float *a = g->A + (ptrdiff_t)m * g->ars;
                uint32_t lo = fc_bf16(a[(ptrdiff_t)k * g->acs]);
                uint32_t hi = k + 1 < K ? fc_bf16(a[(ptrdiff_t)(k + 1) * g->acs]) : 0;
                g->Ab[(ptrdiff_t)m * g->Kp + kp] = lo | hi << 16;
            }
        }
    }
}

static void gemm_task(void *ctx, int tid, int nth)
{
    const gemm_job *g = ctx;
    const int M = g->M, N = g->B->H, Kp = g->Kp;
    /* 1. this thread's rows of A in bf16, then wait for the others' */
    round_rows(g, (int)((long)M * tid / nth), (int)((long)M * (tid + 1) / nth));
    fc_pool_barrier(nth);
    /* 2. this thread's tasks */
    const int nrb = (M + FC_RB - 1) / FC_RB, ntasks = g->B->npanels * nrb;
    const int t0 = (int)((long)ntasks * tid / nth), t1 = (int)((long)ntasks * (tid + 1) / nth);
    for (int task = t0; task < t1; task++) {
        const int p = task / nrb, r0 = (task % nrb) * FC_RB;
        const int r1 = r0 + FC_RB < M ? r0 + FC_RB : M;
        const uint32_t *panel = (const uint32_t *)g->B->data + (ptrdiff_t)p * Kp * FC_PW;
        const int c0 = p * FC_PW;
#define BODY(mr, r)                                                                    \
    {                                                                                  \
        vf acc[FC_MR][4];                                                              \
        tile_bf16(mr, g->Ab + (ptrdiff_t)(r) * Kp, Kp, panel, Kp, acc);                \
        for (int m = 0; m < (mr); m++)                                                 \
            for (int v = 0; v < 4; v++) {                                              \
                const int col = c0 + v * FC_VW, nu = lanes(N, col);                    \
                if (nu) vf_store_n(g->C + (ptrdiff_t)((r) + m) * g->ldc + col, acc[m][v], nu); \
            }                                                                          \
    }
        FC_ROW_TILES(r0, r1, BODY);
#undef BODY
    }
}

int fc_gemm_bf16(const float *A, ptrdiff_t ars, ptrdiff_t acs, int M, const fc_packed *Bp,
                 float *C, ptrdiff_t ldc, int nthreads)
{
    const int Kp = Bp->krows;
    if (M <= 0 || Bp->H <= 0) return 0;
    uint32_t *Ab = malloc((size_t)M * (size_t)(Kp ? Kp : 1) * sizeof(uint32_t));
    if (!Ab) return -1;
    gemm_job g = {A, ars, acs, M, Kp, Ab, Bp, C, ldc};
    fc_pool_run(gemm_task, &g, nthreads);
    free(Ab);
    return 0;
}
