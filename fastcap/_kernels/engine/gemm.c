/* gemm.c -- the bf16 matrix product of fastcap's bfloat16 mode:
 * C (M, N) = bf16(A) (M, K) @ bf16(B) (K, N), accumulated in float32.
 *
 * B comes packed by fc_pack_matrix_bf16 (panels of FC_PW columns, pairs of k);
 * A is read through strides (so A may be a transposed view) and rounded into
 * bf16 pair rows here. Threads split (panel, row block) tasks, panel-major,
 * so each keeps a panel in L2 while its row tiles stream past; every element
 * of C is one thread's sum in k order, so results do not depend on the
 * thread count.
 *
 * Where the AMX mode says so (amx.h: the CPU has AMX, the OS granted the
 * tile state and the tiles passed the check), products of at least 16 rows
 * run on the tile program of gemm_amx.h (over the operations of amx_tiles.h)
 * instead of the vector tiles; A is then padded to whole tiles.
 */
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "amx_tiles.h"
#include "pool.h"
#include "tiles.h"

#define FC_RB (8 * FC_MR) /* rows of a task */

typedef struct {
    const float *A;
    ptrdiff_t ars, acs;
    int M, Kp;
    uint32_t *Ab; /* (Mpad, lda) pairs: rows [M, Mpad) and pairs [Kp, lda) are 0 */
    int lda, Mpad, amx; /* amx: FC_AMX_*; without it lda = Kp, Mpad = M */
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
        for (int m = m0; m < m1; m++) fc_bf16_pairs(g->A + (ptrdiff_t)m * g->ars, g->B->K, g->Ab + (ptrdiff_t)m * g->lda);
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
                for (int m = 0; m < FC_VW; m++) g->Ab[(ptrdiff_t)(mb + m) * g->lda + kp] = pair[m];
            }
        }
        m0 = mb;
    }
    for (int mb = m0; mb < m1; mb += 16) {
        const int me = mb + 16 < m1 ? mb + 16 : m1;
        for (int kp = 0; kp < g->Kp; kp++)
            for (int m = mb; m < me; m++) g->Ab[(ptrdiff_t)m * g->lda + kp] = a_pair(g, m, 2 * kp);
    }
}

/* The AMX tile program, once on the emulated tiles (every build whose panels
 * hold whole 32-column tile pairs) and once on the CPU's (the avx512bf16 build). */
#define FC_AMX_EMULABLE (FC_PW % 32 == 0)
#if FC_AMX_EMULABLE
#define AMX(op) amx_em_##op
#define AMX_FN(name) name##_em
#define AMX_ATTR
#include "gemm_amx.h"
#undef AMX
#undef AMX_FN
#undef AMX_ATTR
#endif
#if FC_AMX_HW
#define AMX(op) amx_hw_##op
#define AMX_FN(name) name##_hw
#define AMX_ATTR FC_AMX_TARGET
#include "gemm_amx.h"
#undef AMX
#undef AMX_FN
#undef AMX_ATTR
#endif

static void gemm_task(void *ctx, int tid, int nth)
{
    const gemm_job *g = ctx;
    const int M = g->M, N = g->B->cols, Kp = g->Kp;
    /* 1. this thread's rows of A in bf16, then wait for the others' */
    FC_CHECK(g->Kp == (g->B->K + 1) / 2);
    round_rows(g, (int)((long)M * tid / nth), (int)((long)M * (tid + 1) / nth));
    fc_pool_barrier(nth);
    /* 2. this thread's tasks, on AMX tiles or on the vector tiles */
#if FC_AMX_HW
    if (g->amx == FC_AMX_TILES) {
        amx_tasks_hw(g, tid, nth);
        return;
    }
#endif
#if FC_AMX_EMULABLE
    if (g->amx == FC_AMX_EMULATED) {
        amx_tasks_em(g, tid, nth);
        return;
    }
#endif
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
        tile_bf16(mr, g->Ab + (ptrdiff_t)(r) * g->lda, g->lda, panel, Kp, acc);        \
        store_tile(mr, acc, g->C + (ptrdiff_t)(r) * g->ldc, g->ldc, c0, N);            \
    }
        FC_ROW_TILES(r0, r1, BODY);
#undef BODY
    }
}

int fc_gemm_bf16(const float *A, ptrdiff_t ars, ptrdiff_t acs, int M, const fc_packed *Bp,
                 float *C, ptrdiff_t ldc, int nthreads)
{
    const int Kp = Bp->krows;
    if (M <= 0 || Bp->cols <= 0) return 0;
    /* Tiles pay for a product of at least one full tile of rows; below that (decoding
     * a few captions) the vector tiles waste nothing. */
    const int amx = M >= 16 && Kp > 0 ? fc_amx_mode() : FC_AMX_OFF;
    const int lda = amx ? (Kp + 15) / 16 * 16 : Kp, Mpad = amx ? (M + 31) / 32 * 32 : M;
    uint32_t *Ab = amx ? calloc((size_t)Mpad * (size_t)lda, sizeof(uint32_t))
                       : malloc((size_t)M * (size_t)(Kp ? Kp : 1) * sizeof(uint32_t));
    if (!Ab) return -1;
    gemm_job g = {A, ars, acs, M, Kp, Ab, lda, Mpad, amx, Bp, C, ldc};
    fc_pool_run(gemm_task, &g, nthreads);
    free(Ab);
    return 0;
}
