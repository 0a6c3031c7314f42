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

/* Rows [m0, m1) of A into bf16 pairs; a K column past the end is 0. A row-major A
 * is read along its rows; a transposed view (acs != 1) in blocks of 16 rows, so
 * each k reads 16 neighbouring floats. */
static inline uint32_t a_pair(const gemm_job *g, int m, int k)
{
    return fc_bf16_pair(g->A + (ptrdiff_t)m * g->ars + (ptrdiff_t)k * g->acs, g->acs, k, g->B->K);
}

static void round_rows(const gemm_job *g, int m0, int m1)
{
    if (g->acs == 1) {
        for (int m = m0; m < m1; m++) fc_bf16_pairs(g->A + (ptrdiff_t)m * g->ars, g->B->K, g->Ab + (ptrdiff_t)m * g->Kp);
        return;
    }
    if (g->ars == 1) { /* A = X.T: FC_VW rows of A are neighbours in each row k of X */
        const int K = g->B->K;
        int mb = m0;
        for (; mb + FC_VW <= m1; mb += FC_VW) {
            for (int kp = 0; kp < g->Kp; kp++) {
                const float *x = g->A + mb + (ptrdiff_t)(2 * kp) * g->acs;
                vu lo = vu_bf16_bits(vf_load(x));
                vu hi = 2 * kp + 1 < K ? vu_bf16_bits(vf_load(x + g->acs)) : (vu){0};
                vu pair = lo | hi << 16;
                for (int m = 0; m < FC_VW; m++) g->Ab[(ptrdiff_t)(mb + m) * g->Kp + kp] = pair[m];
            }
        }
        m0 = mb;
    }
    for (int mb = m0; mb < m1; mb += 16) {
        const int me = mb + 16 < m1 ? mb + 16 : m1;
        for (int kp = 0; kp < g->Kp; kp++)
            for (int m = mb; m < me; m++) g->Ab[(ptrdiff_t)m * g->Kp + kp] = a_pair(g, m, 2 * kp);
    }
}

static void gemm_task(void *ctx, int tid, int nth)
{
    const gemm_job *g = ctx;
    const int M = g->M, N = g->B->H, Kp = g->Kp;
    /* 1. this thread's rows of A in bf16, then wait for the others' */
    FC_CHECK(g->Kp == (g->B->K + 1) / 2);
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
        FC_CHECK((r) + (mr) <= M && c0 < N && (ptrdiff_t)p * Kp * FC_PW < (ptrdiff_t)g->B->npanels * Kp * FC_PW); \
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
