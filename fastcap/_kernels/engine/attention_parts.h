/* attention_parts.h -- what the attention model's forward (attention.c), backward
 * (attention_backward.c) and decoding share: sums over a row in 16 fixed lanes, and the
 * split of work items over threads.
 */
#ifndef FASTCAP_ENGINE_ATTENTION_PARTS_H
#define FASTCAP_ENGINE_ATTENTION_PARTS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "pack.h"
#include "simd.h"
#include "tiles.h"
#include "vecmath.h"

/* Vectors of one 16-lane accumulator: a dot product over A or D sums element j into lane
 * j % 16 and then the 16 lanes in a fixed tree, so its bits do not depend on FC_VW. The
 * attention's sums multiply and add apart (no FMA), as the baseline build must: so every
 * build gives the bf16 mode's kernels, whose products' pair sums are exact, the same bits. */
#define FC_S16 (16 / FC_VW)

typedef struct {
    vf v[FC_S16];
} fc_sum16;

FC_INLINE void sum16_zero(fc_sum16 *s)
{
    for (int i = 0; i < FC_S16; i++) s->v[i] = vf_set1(0.0f);
}

/* The 16 lanes of s summed pairwise, halves first. */
FC_INLINE float sum16_total(const fc_sum16 *s)
{
    float x[16];
    memcpy(x, s->v, sizeof x);
    for (int w = 8; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) x[i] += x[i + w];
    return x[0];
}

/* The sum over j < n of term (an expression of the vector lanes j.., nu of them valid, the
 * others loaded as 0) in 16 fixed lanes. */
#define FC_SUM16(n, term)                                                      \
    ({                                                                         \
        fc_sum16 s_;                                                           \
        sum16_zero(&s_);                                                       \
        for (int j0 = 0; j0 < (n); j0 += 16)                                   \
            for (int i_ = 0; i_ < FC_S16; i_++) {                              \
                const int j = j0 + i_ * FC_VW, nu = lanes((n), j);             \
                if (!nu) break;                                                \
                s_.v[i_] = s_.v[i_] + (term);                                  \
            }                                                                  \
        sum16_total(&s_);                                                      \
    })

/* sum_j tanh(enc[j] + hd[j]) * w[j] over j < A: a cell's attention score. */
FC_INLINE float fc_attention_score(const float *enc, const float *hd, const float *w, int A)
{
    return FC_SUM16(A, vf_tanh(vf_load_n(enc + j, nu) + vf_load_n(hd + j, nu)) * vf_load_n(w + j, nu));
}

/* sum_j x[j] * y[j] * a[j] over j < D. */
FC_INLINE float fc_dot3(const float *x, const float *y, const float *a, int D)
{
    return FC_SUM16(D, vf_load_n(x + j, nu) * vf_load_n(y + j, nu) * vf_load_n(a + j, nu));
}

/* acc = mr rows of A @ panel p of W: float32 rows A (lda floats apart) or, for bf16 weights,
 * bf16 rows Ab (ldb, even, apart). */
FC_INLINE void fc_tile_rows(int mr, int bf, const float *A, ptrdiff_t lda, const uint16_t *Ab,
                            ptrdiff_t ldb, const fc_packed *W, int p, vf acc[FC_MR][4])
{
    const float *panel = W->data + (ptrdiff_t)p * W->krows * FC_PW;
    if (bf) tile_bf16(mr, (const uint32_t *)Ab, ldb / 2, (const uint32_t *)panel, W->krows, acc);
    else tile(mr, A, lda, panel, W->K, acc);
}

/* Items [*i0, *i1) of n for thread tid of nth. */
FC_INLINE void fc_thread_items(long n, int tid, int nth, long *i0, long *i1)
{
    *i0 = n * tid / nth;
    *i1 = n * (tid + 1) / nth;
}

#endif
