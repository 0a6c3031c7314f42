/* tiles.h -- the engine's register tiles, float32 and bf16, shared by the
 * recurrences (recurrence.c), the packing (pack.c) and the products (gemm.c,
 * gemm_f32.c, gemv_bf16.c): the tiles, their epilogue, and how rows and
 * panels are split into tiles and over threads.
 *
 * A tile computes acc[m][v] = sum_k A[m, k] * panel[k, v*FC_VW : (v+1)*FC_VW]
 * for m < mr rows (a compile-time constant after inlining, so acc lives in
 * registers) over a panel of FC_PW = 4 vectors of columns packed by fc_pack.
 */
#ifndef FASTCAP_ENGINE_TILES_H
#define FASTCAP_ENGINE_TILES_H

#include <stddef.h>
#include <stdint.h>

#include "bf16.h"
#include "check.h"
#include "simd.h"

#define FC_INLINE static inline __attribute__((always_inline))

FC_INLINE void tile(int mr, const float *A, ptrdiff_t lda, const float *panel, int K,
                    vf acc[FC_MR][4])
{
#pragma GCC unroll 8
    for (int m = 0; m < FC_MR; m++)
        for (int v = 0; v < 4; v++) acc[m][v] = vf_set1(0.0f);
    for (int k = 0; k < K; k++) {
        const float *w = panel + (ptrdiff_t)k * FC_PW;
        vf w0 = vf_load(w), w1 = vf_load(w + FC_VW), w2 = vf_load(w + 2 * FC_VW),
           w3 = vf_load(w + 3 * FC_VW);
#pragma GCC unroll 8
        for (int m = 0; m < mr; m++) {
            vf a = vf_set1(A[m * lda + k]);
            acc[m][0] = fc_fma(a, w0, acc[m][0]);
            acc[m][1] = fc_fma(a, w1, acc[m][1]);
            acc[m][2] = fc_fma(a, w2, acc[m][2]);
            acc[m][3] = fc_fma(a, w3, acc[m][3]);
        }
    }
}

/* The bf16 tile: the same over pairs, A (mr, 2*Kp) bf16 rows of lda pairs,
 * the panel Kp pair rows of FC_PW lanes. */
FC_INLINE void tile_bf16(int mr, const uint32_t *A, ptrdiff_t lda, const uint32_t *panel, int Kp,
                         vf acc[FC_MR][4])
{
#pragma GCC unroll 8
    for (int m = 0; m < FC_MR; m++)
        for (int v = 0; v < 4; v++) acc[m][v] = vf_set1(0.0f);
    for (int k = 0; k < Kp; k++) {
        const uint32_t *w = panel + (ptrdiff_t)k * FC_PW;
        vu w0 = vu_load(w), w1 = vu_load(w + FC_VW), w2 = vu_load(w + 2 * FC_VW),
           w3 = vu_load(w + 3 * FC_VW);
#pragma GCC unroll 8
        for (int m = 0; m < mr; m++) {
            uint32_t a = A[m * lda + k];
            acc[m][0] = fc_dot2(acc[m][0], a, w0);
            acc[m][1] = fc_dot2(acc[m][1], a, w1);
            acc[m][2] = fc_dot2(acc[m][2], a, w2);
            acc[m][3] = fc_dot2(acc[m][3], a, w3);
        }
    }
}

/* tile_bf16 for one row over two panels: 8 independent accumulator chains where one row's
 * 4 would wait on the pair dot product's latency (vdpbf16ps: a single row, as in decoding,
 * ran at about half the rate of several). Each element is tile_bf16's sum, in the same order,
 * so the results have the same bits. */
FC_INLINE void tile_bf16_row2(const uint32_t *A, const uint32_t *panel0, const uint32_t *panel1,
                              int Kp, vf acc[2][4])
{
    for (int i = 0; i < 2; i++)
        for (int v = 0; v < 4; v++) acc[i][v] = vf_set1(0.0f);
    for (int k = 0; k < Kp; k++) {
        const uint32_t *w = panel0 + (ptrdiff_t)k * FC_PW, *x = panel1 + (ptrdiff_t)k * FC_PW;
        const uint32_t a = A[k];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            acc[0][v] = fc_dot2(acc[0][v], a, vu_load(w + v * FC_VW));
            acc[1][v] = fc_dot2(acc[1][v], a, vu_load(x + v * FC_VW));
        }
    }
}

/* Valid lanes of vector v of a FC_PW-wide panel starting at unit u0. */
FC_INLINE int lanes(int H, int u) { return H - u >= FC_VW ? FC_VW : H - u > 0 ? H - u : 0; }

/* The mr rows of a tile's accumulators into C (rows ldc apart, from row pointer C) at
 * columns c0.., keeping the columns below N. */
FC_INLINE void store_tile(int mr, vf acc[FC_MR][4], float *C, ptrdiff_t ldc, int c0, int N)
{
    for (int m = 0; m < mr; m++)
        for (int v = 0; v < 4; v++) {
            const int col = c0 + v * FC_VW, nu = lanes(N, col);
            if (nu) vf_store_n(C + (ptrdiff_t)m * ldc + col, acc[m][v], nu);
        }
}

/* Panels [*p0, *p1) of thread tid of n. */
FC_INLINE void fc_thread_panels(int npanels, int tid, int n, int *p0, int *p1)
{
    *p0 = (int)((long)npanels * tid / n);
    *p1 = (int)((long)npanels * (tid + 1) / n);
}

/* Run body(mr, r) over rows [r0, r1) in tiles of FC_MR and one remainder tile. */
#define FC_ROW_TILES(r0, r1, body)                                              \
    do {                                                                        \
        int r_ = (r0);                                                          \
        for (; r_ + FC_MR <= (r1); r_ += FC_MR) body(FC_MR, r_);                \
        switch ((r1) - r_) {                                                    \
        case 1: body(1, r_); break;                                             \
        case 2: if (FC_MR > 2) { body((FC_MR > 2 ? 2 : 1), r_); } break;        \
        case 3: if (FC_MR > 3) { body((FC_MR > 3 ? 3 : 1), r_); } break;        \
        case 4: if (FC_MR > 4) { body((FC_MR > 4 ? 4 : 1), r_); } break;        \
        case 5: if (FC_MR > 5) { body((FC_MR > 5 ? 5 : 1), r_); } break;        \
        default: break;                                                         \
        }                                                                       \
    } while (0)

#endif
