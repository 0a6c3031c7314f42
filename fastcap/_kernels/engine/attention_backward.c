/* attention_backward.c -- the attention model's backward time loop: see attention.h for the
 * contract and the design.
 *
 * Per step t, last to first (n rows; from = the rows of step t + 1):
 *   1. the gradient at h_t: dh + datt_{t+1} @ [W_dec | W_beta].T + dhz_{t+1}[:, :H] (rows below
 *      from; dh alone for the others) as tiles over the transposed panels, straight into the
 *      cell's backward (the gate gradients da_t); after step 0 the same tiles give dh0;
 *   2. dhz = da_t @ [[Wh], [0], [Wz]].T (n, Kc), whose last D columns are dz;
 *   3. the gradient at alpha, dal[r, l] = sum_j dz beta a[r, l, j] + dalpha, per (row, cell);
 *   4. per row, through the softmax: de = alpha (dal - sum_l alpha dal); the gate's datt;
 *   5. per (row, FC_PW attention units), over the cells: S = tanh(enc + hd) recomputed,
 *      dwatt += de S, ds = de w_att (1 - S^2), datt += ds, denc += ds.
 * As the reference loop (fastcap/_kernels/attention_recurrence.py) sums them.
 */
#include "attention.h"

#include <stdlib.h>
#include <string.h>

#include "attention_parts.h"
#include "bf16.h"
#include "cells.h"
#include "pool.h"
#include "simd.h"
#include "tiles.h"
#include "vecmath.h"

typedef struct {
    const fc_attention *m;
    const float *dh, *dalpha, *c0, *ifog, *c, *h, *alpha, *z, *beta, *hd;
    const ptrdiff_t *off;
    int T, N, Hp, Kc, E, Gb, Eb; /* Gb, Eb: G and E rounded up to even (rows of dab, dattb) */
    ptrdiff_t P;
    float *da, *datt, *dwatt, *denc, *dh0;
    float *dc;        /* (N, H) the gradient at c from the step after, zeroed */
    float *dhz;       /* (N, Kc) da_t @ [[Wh], [0], [Wz]].T */
    float *de;        /* (N, L) the gradient at alpha, then at the scores */
    uint16_t *dab;    /* (P, Gb) bf16 copies of da (bf16 weights), else NULL */
    uint16_t *dattb;  /* (P, Eb) bf16 copies of datt (bf16 weights), else NULL */
} bjob;

#define ROWS(t) ((int)(j->off[(t) + 1] - j->off[(t)]))

/* The cell backward of row r of step t at units u0.. (t = -1: dh0) from the tile's acc, the
 * product's part of the gradient at h_t (rows of step t + 1; 0 for the others). */
FC_INLINE void cell_row(const bjob *j, int t, int r, int u0, const vf acc[4], int from)
{
    const int H = j->m->H, G = j->m->G;
    for (int v = 0; v < 4; v++) {
        const int u = u0 + v * FC_VW, nu = lanes(H, u);
        if (!nu) break;
        vf carry = r < from ? acc[v] + vf_load_n(j->dhz + (ptrdiff_t)r * j->Kc + u, nu) : vf_set1(0.0f);
        if (t < 0) {
            FC_CHECK(r < j->N);
            vf_store_n(j->dh0 + (ptrdiff_t)r * H + u, carry, nu);
            continue;
        }
        const ptrdiff_t R = j->off[t] + r;
        FC_CHECK(R < j->off[t + 1] && j->off[t + 1] <= j->P && r < j->N);
        vf dh = vf_load_n(j->dh + R * H + u, nu) + carry;
        if (j->m->lstm) {
            vf cp = t > 0 ? vf_load_n(j->c + (j->off[t - 1] + r) * H + u, nu)
                    : j->c0 ? vf_load_n(j->c0 + (ptrdiff_t)r * H + u, nu) : vf_set1(0.0f);
            fc_lstm_cell_backward(dh, j->ifog + R * G + u, H, nu, vf_load_n(j->c + R * H + u, nu), cp,
                                  j->dc + (ptrdiff_t)r * H + u, j->da + R * G + u,
                                  j->dab ? j->dab + R * j->Gb + u : NULL);
        } else {
            vf h = vf_load_n(j->h + R * H + u, nu);
            vf da = (1.0f - h * h) * dh;
            vf_store_n(j->da + R * H + u, da, nu);
            if (j->dab) vh_store_n(j->dab + R * j->Gb + u, da, nu);
        }
    }
}

/* 1. this thread's panels of the gradient at h_t (t = -1: h0) and the cell's backward. */
FC_INLINE void hidden(const bjob *j, int t, int tid, int nth, int bf)
{
    const int n = t >= 0 ? ROWS(t) : j->N, from = t + 1 < j->T ? ROWS(t + 1) : 0;
    const ptrdiff_t o = j->off[t + 1];
    FC_CHECK(from <= n && n <= j->N);
    int p0, p1;
    fc_thread_panels(j->m->att->npanels, tid, nth, &p0, &p1);
    for (int p = p0; p < p1; p++) {
#define BODY(mr, r)                                                                          \
    {                                                                                        \
        vf acc[FC_MR][4];                                                                    \
        fc_tile_rows(mr, bf, j->datt + (o + (r)) * j->E, j->E,                               \
                     j->dattb ? j->dattb + (o + (r)) * j->Eb : NULL, j->Eb, j->m->att, p, acc); \
        for (int m = 0; m < (mr); m++) cell_row(j, t, (r) + m, p * FC_PW, acc[m], from);     \
    }
        FC_ROW_TILES(0, from, BODY);
#undef BODY
        const vf zero[4] = {vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f)};
        for (int r = from; r < n; r++) cell_row(j, t, r, p * FC_PW, zero, from);
    }
}

/* 2. dhz = da_t @ the cell's weights transposed, this thread's panels. */
FC_INLINE void context_grad(const bjob *j, int t, int tid, int nth, int bf)
{
    const int n = ROWS(t), G = j->m->G;
    const ptrdiff_t o = j->off[t];
    int p0, p1;
    fc_thread_panels(j->m->cell->npanels, tid, nth, &p0, &p1);
    for (int p = p0; p < p1; p++) {
#define BODY(mr, r)                                                                          \
    {                                                                                        \
        vf acc[FC_MR][4];                                                                    \
        fc_tile_rows(mr, bf, j->da + (o + (r)) * G, G, j->dab ? j->dab + (o + (r)) * j->Gb : NULL, \
                     j->Gb, j->m->cell, p, acc);                                             \
        store_tile(mr, acc, j->dhz + (ptrdiff_t)(r) * j->Kc, j->Kc, p * FC_PW, j->Kc);       \
    }
        FC_ROW_TILES(0, n, BODY);
#undef BODY
    }
}

/* 3. the gradient at alpha of this thread's (row, cell) items. */
static void alpha_grad(const bjob *j, int t, int tid, int nth)
{
    const int L = j->m->L, D = j->m->D;
    long i0, i1;
    fc_thread_items((long)ROWS(t) * L, tid, nth, &i0, &i1);
    for (long i = i0; i < i1; i++) {
        const int r = (int)(i / L), l = (int)(i % L);
        const ptrdiff_t R = j->off[t] + r;
        FC_CHECK(R < j->off[t + 1] && r < j->m->Nf);
        j->de[i] = fc_dot3(j->dhz + (ptrdiff_t)r * j->Kc + j->Hp, j->beta + R * D,
                           j->m->a + ((ptrdiff_t)r * L + l) * D, D) + j->dalpha[R * L + l];
    }
}

/* 4. through the softmax (de, in place), and the gate's part of datt, this thread's rows. */
static void softmax_grad(const bjob *j, int t, int tid, int nth)
{
    const int L = j->m->L, D = j->m->D, A = j->m->A;
    long r0, r1;
    fc_thread_items(ROWS(t), tid, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        const ptrdiff_t R = j->off[t] + r;
        const float *alpha = j->alpha + R * L;
        float *de = j->de + r * L, weighted = 0.0f;
        for (int l = 0; l < L; l++) weighted += alpha[l] * de[l];
        for (int l = 0; l < L; l++) de[l] = alpha[l] * (de[l] - weighted);
        const float *dz = j->dhz + r * j->Kc + j->Hp;
        for (int d = 0; d < D; d += FC_VW) {
            const int nu = lanes(D, d);
            vf g = vf_load_n(dz + d, nu) * vf_load_n(j->z + R * D + d, nu) *
                   (1.0f - vf_load_n(j->beta + R * D + d, nu));
            vf_store_n(j->datt + R * j->E + A + d, g, nu);
            if (j->dattb) vh_store_n(j->dattb + R * j->Eb + A + d, g, nu);
        }
    }
}

/* 5. the attention's gradients of this thread's (row, FC_PW units of A) items. */
static void score_grad(const bjob *j, int t, int tid, int nth)
{
    const int L = j->m->L, A = j->m->A, chunks = (A + FC_PW - 1) / FC_PW;
    long i0, i1;
    fc_thread_items((long)ROWS(t) * chunks, tid, nth, &i0, &i1);
    for (long i = i0; i < i1; i++) {
        const int r = (int)(i / chunks), a0 = (int)(i % chunks) * FC_PW;
        const ptrdiff_t R = j->off[t] + r;
        const float *enc = j->m->enc + (ptrdiff_t)r * L * A, *de = j->de + (ptrdiff_t)r * L;
        float *denc = j->denc + (ptrdiff_t)r * L * A;
        vf dw[4], dt[4], hd[4], w[4];
        int nu[4];
        for (int v = 0; v < 4; v++) {
            nu[v] = lanes(A, a0 + v * FC_VW);
            dw[v] = dt[v] = vf_set1(0.0f);
            hd[v] = vf_load_n(j->hd + R * A + a0 + v * FC_VW, nu[v]);
            w[v] = vf_load_n(j->m->w_att + a0 + v * FC_VW, nu[v]);
        }
        for (int l = 0; l < L; l++) {
            const vf g = vf_set1(de[l]);
            for (int v = 0; v < 4; v++) {
                if (!nu[v]) break;
                const ptrdiff_t q = (ptrdiff_t)l * A + a0 + v * FC_VW;
                vf S = vf_tanh(vf_load_n(enc + q, nu[v]) + hd[v]);
                vf ds = g * w[v] * (1.0f - S * S);
                dw[v] = dw[v] + g * S;
                dt[v] = dt[v] + ds;
                vf_store_n(denc + q, vf_load_n(denc + q, nu[v]) + ds, nu[v]);
            }
        }
        for (int v = 0; v < 4 && nu[v]; v++) {
            const int col = a0 + v * FC_VW;
            vf_store_n(j->dwatt + R * A + col, dw[v], nu[v]);
            vf_store_n(j->datt + R * j->E + col, dt[v], nu[v]);
            if (j->dattb) vh_store_n(j->dattb + R * j->Eb + col, dt[v], nu[v]);
        }
    }
}

FC_INLINE void backward_loop(const bjob *j, int tid, int nth, int bf)
{
    for (int t = j->T - 1; t >= 0; t--) {
        hidden(j, t, tid, nth, bf);
        fc_pool_barrier(nth);
        context_grad(j, t, tid, nth, bf);
        fc_pool_barrier(nth);
        alpha_grad(j, t, tid, nth);
        fc_pool_barrier(nth);
        softmax_grad(j, t, tid, nth);
        fc_pool_barrier(nth);
        score_grad(j, t, tid, nth);
        fc_pool_barrier(nth);
    }
    hidden(j, -1, tid, nth, bf); /* dh0 */
}

static void backward_task(void *ctx, int tid, int nth) { backward_loop(ctx, tid, nth, 0); }
static void backward_task_bf16(void *ctx, int tid, int nth) { backward_loop(ctx, tid, nth, 1); }

int fc_attention_backward(const fc_attention *m, const float *dh, const float *dalpha,
                          const float *c0, const float *ifog, const float *c, const float *h,
                          const float *alpha, const float *z, const float *beta, const float *hd,
                          const ptrdiff_t *offsets, int T, int N, float *da_out, float *datt_out,
                          float *dwatt_out, float *denc_out, float *dh0_out, int nthreads)
{
    const int H = m->H, Hp = (H + 1) / 2 * 2, Kc = Hp + m->D, E = m->A + m->D, bf = m->att->bf16;
    bjob j = {.m = m, .dh = dh, .dalpha = dalpha, .c0 = c0, .ifog = ifog, .c = c, .h = h,
              .alpha = alpha, .z = z, .beta = beta, .hd = hd, .off = offsets, .T = T, .N = N,
              .Hp = Hp, .Kc = Kc, .E = E, .Gb = (m->G + 1) / 2 * 2, .Eb = (E + 1) / 2 * 2,
              .P = offsets[T], .da = da_out, .datt = datt_out, .dwatt = dwatt_out, .denc = denc_out,
              .dh0 = dh0_out};
    const size_t n = (size_t)N, P = (size_t)j.P;
    if (N == 0) return 0;
    FC_CHECK(N <= m->Nf && m->att->K == E && m->att->units == H && m->cell->K == m->G);
    FC_CHECK(m->cell->units == Kc && m->cell->bf16 == bf);
    memset(denc_out, 0, n * m->L * m->A * sizeof(float));
    j.dc = calloc(n * H + 1, sizeof(float));
    j.dhz = calloc(n * Kc + 1, sizeof(float));
    j.de = malloc(n * m->L * sizeof(float) + 1);
    j.dab = bf ? calloc(P * j.Gb + 1, sizeof(uint16_t)) : NULL;
    j.dattb = bf ? calloc(P * j.Eb + 1, sizeof(uint16_t)) : NULL;
    const int ok = j.dc && j.dhz && j.de && (!bf || (j.dab && j.dattb));
    if (ok) fc_pool_run(bf ? backward_task_bf16 : backward_task, &j, nthreads);
    free(j.dc);
    free(j.dhz);
    free(j.de);
    free(j.dab);
    free(j.dattb);
    return ok ? 0 : -1;
}
