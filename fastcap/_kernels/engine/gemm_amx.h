/* gemm_amx.h -- the AMX tile program of the bf16 GEMM, included by gemm.c
 * once per operation set of amx_tiles.h: AMX(op) names the operation (amx_hw_op,
 * the CPU's; amx_em_op, the emulation), AMX_FN(name) this copy's functions,
 * AMX_ATTR their attributes.
 *
 * A is the rounded copy g->Ab, padded with zero rows to g->Mpad (a multiple
 * of 32) and zero pairs to g->lda (a multiple of 16); B is the packed panels,
 * FC_PW columns of pair rows, read as tiles of 16 pair rows x 16 columns
 * (stride one panel row). A panel's last partial block of 16 pair rows is
 * copied into a zero-padded `tail` first, so every tile load is a full
 * 16 x 64 bytes inside an allocation. Each element of C is one thread's sum,
 * in k order by blocks of 32, so results do not depend on the thread count.
 */

#define AMX_RB 64 /* rows of a task: two 32-row blocks */

/* Tile t (16 x 16 float32) into C at rows r.., columns col..: straight when
 * it lies inside C, else through `spill`, keeping the part inside. */
#define AMX_STORE(t, r, col)                                                               \
    do {                                                                                   \
        if ((r) < g->M && (col) < N) {                                                     \
            float *dst_ = g->C + (ptrdiff_t)(r) * g->ldc + (col);                          \
            if ((r) + 16 <= g->M && (col) + 16 <= N) {                                     \
                AMX(store)(t, dst_, (long)g->ldc * 4);                                     \
            } else {                                                                       \
                AMX(store)(t, spill, 64);                                                  \
                const int nr_ = g->M - (r) < 16 ? g->M - (r) : 16, nc_ = N - (col) < 16 ? N - (col) : 16; \
                for (int i_ = 0; i_ < nr_; i_++)                                           \
                    memcpy(dst_ + (ptrdiff_t)i_ * g->ldc, spill + 16 * i_, (size_t)nc_ * 4); \
            }                                                                              \
        }                                                                                  \
    } while (0)

/* C rows [r, r + 32) x columns [c0 + c, c0 + c + 32) of panel `panel`. */
AMX_ATTR static void AMX_FN(amx_block)(const gemm_job *g, const uint32_t *panel,
                                       const uint32_t *tail, int r, int c, int c0, float *spill)
{
    const int N = g->B->cols, full = g->Kp / 16 * 16;
    const long sa = (long)g->lda * 4, sb = FC_PW * 4;
    const uint32_t *a0 = g->Ab + (ptrdiff_t)r * g->lda, *a1 = a0 + (ptrdiff_t)16 * g->lda;
    FC_CHECK(r + 32 <= g->Mpad && c + 32 <= FC_PW && g->lda % 16 == 0 && g->lda >= g->Kp);
    AMX(zero)(0);
    AMX(zero)(1);
    AMX(zero)(2);
    AMX(zero)(3);
    for (int kb = 0; kb < g->lda; kb += 16) {
        const uint32_t *b = (kb < full ? panel + (ptrdiff_t)kb * FC_PW : tail) + c;
        FC_CHECK(kb + 16 <= g->Kp || kb == full); /* a whole block of the panel, or its tail */
        AMX(load)(4, a0 + kb, sa);
        AMX(load)(5, a1 + kb, sa);
        AMX(load)(6, b, sb);
        AMX(load)(7, b + 16, sb);
        AMX(dp)(0, 4, 6);
        AMX(dp)(1, 4, 7);
        AMX(dp)(2, 5, 6);
        AMX(dp)(3, 5, 7);
    }
    AMX_STORE(0, r, c0 + c);
    AMX_STORE(1, r, c0 + c + 16);
    AMX_STORE(2, r + 16, c0 + c);
    AMX_STORE(3, r + 16, c0 + c + 16);
}

/* Phase 2 of gemm_task on tiles: this thread's (panel, 64-row block) tasks. */
AMX_ATTR static void AMX_FN(amx_tasks)(const gemm_job *g, int tid, int nth)
{
    const int Kp = g->Kp, full = Kp / 16 * 16, N = g->B->cols;
    const int nrb = (g->Mpad + AMX_RB - 1) / AMX_RB, ntasks = g->B->npanels * nrb;
    const int t0 = (int)((long)ntasks * tid / nth), t1 = (int)((long)ntasks * (tid + 1) / nth);
    uint32_t tail[16 * FC_PW] __attribute__((aligned(64)));
    float spill[16 * 16] __attribute__((aligned(64)));
    const fc_tilecfg cfg = fc_amx_config();
    AMX(config)(&cfg);
    int tail_of = -1; /* the panel whose tail `tail` holds */
    for (int task = t0; task < t1; task++) {
        const int p = task / nrb, r0 = (task % nrb) * AMX_RB;
        const int r1 = r0 + AMX_RB < g->Mpad ? r0 + AMX_RB : g->Mpad;
        const uint32_t *panel = (const uint32_t *)g->B->data + (ptrdiff_t)p * Kp * FC_PW;
        FC_CHECK(p < g->B->npanels && g->B->krows == Kp);
        if (full < g->lda && tail_of != p) {
            memset(tail, 0, sizeof tail);
            memcpy(tail, panel + (ptrdiff_t)full * FC_PW, (size_t)(Kp - full) * FC_PW * 4);
            tail_of = p;
        }
        for (int r = r0; r < r1; r += 32)
            for (int c = 0; c < FC_PW && p * FC_PW + c < N; c += 32)
                AMX_FN(amx_block)(g, panel, tail, r, c, p * FC_PW, spill);
    }
    AMX(release)();
}

#undef AMX_STORE
#undef AMX_RB
