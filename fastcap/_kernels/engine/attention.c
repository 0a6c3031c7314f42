/* attention.c -- the attention model's forward time loop: see attention.h for the contract
 * and the design. */
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
    const float *xw, *h0, *c0;
    const ptrdiff_t *off, *rows;
    int T, N, Hp, Kc, Kb, E; /* Kb: a row of hzb, Kc rounded up to even */
    ptrdiff_t P;
    float *ifog, *c, *h, *alpha, *z, *beta, *hd;
    float *hab;       /* (N, E) h_{t-1} @ [W_dec | W_beta] */
    float *scores;    /* (N, L) */
    float *hz[2];     /* (N, Kc) [h_{t-1}, 0 (H odd), z_t], swapped every step */
    uint16_t *hzb[2]; /* (N, Kb) their bf16 copies (bf16 weights), else NULL */
} fjob;

#define ROWS(t) ((int)(j->off[(t) + 1] - j->off[(t)]))
/* the A operand of a tile from row r: [h, z] of the step (float32 and bf16) */
#define HZ_ROWS(r) j->hz[cur] + (ptrdiff_t)(r) * j->Kc, j->Kc, \
    j->hzb[cur] ? j->hzb[cur] + (ptrdiff_t)(r) * j->Kb : NULL, j->Kb

/* The row of a and enc that running row r reads. */
FC_INLINE ptrdiff_t feature_row(const fjob *j, int r)
{
    const ptrdiff_t q = j->rows ? j->rows[r] : r;
    FC_CHECK(r < j->N && q >= 0 && q < j->m->Nf);
    return q;
}

/* 1. hab = h_{t-1} @ [W_dec | W_beta] for rows [0, n), this thread's panels; hd_out too. */
FC_INLINE void attention_product(const fjob *j, int t, int n, int cur, int tid, int nth, int bf)
{
    const int E = j->E, A = j->m->A;
    int p0, p1;
    fc_thread_panels(j->m->att->npanels, tid, nth, &p0, &p1);
    for (int p = p0; p < p1; p++) {
        const int c0 = p * FC_PW;
#define BODY(mr, r)                                                                          \
    {                                                                                        \
        vf acc[FC_MR][4];                                                                    \
        fc_tile_rows(mr, bf, HZ_ROWS(r), j->m->att, p, acc);                                 \
        store_tile(mr, acc, j->hab + (ptrdiff_t)(r) * E, E, c0, E);                          \
        for (int m = 0; m < (mr); m++) {                                                     \
            const ptrdiff_t R = j->off[t] + (r) + m;                                         \
            FC_CHECK(R < j->off[t + 1]);                                                     \
            for (int v = 0; v < 4; v++) {                                                    \
                const int col = c0 + v * FC_VW, nh = lanes(A, col);                          \
                if (nh) vf_store_n(j->hd + R * A + col, acc[m][v], nh);                      \
            }                                                                                \
        }                                                                                    \
    }
        FC_ROW_TILES(0, n, BODY);
#undef BODY
    }
}

/* 2. the scores of this thread's (row, cell) items. */
static void scores(const fjob *j, int n, int tid, int nth)
{
    const int L = j->m->L, A = j->m->A;
    long i0, i1;
    fc_thread_items((long)n * L, tid, nth, &i0, &i1);
    for (long i = i0; i < i1; i++) {
        const int r = (int)(i / L), l = (int)(i % L);
        const float *enc = j->m->enc + (feature_row(j, r) * L + l) * A;
        j->scores[i] = fc_attention_score(enc, j->hab + (ptrdiff_t)r * j->E, j->m->w_att, A);
    }
}

/* 3. alpha = the softmax of this thread's rows (as the Cython step kernel: NaN wins the max). */
static void softmax(const fjob *j, int t, int n, int tid, int nth)
{
    const int L = j->m->L;
    long r0, r1;
    fc_thread_items(n, tid, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        const float *s = j->scores + r * L;
        float *alpha = j->alpha + (j->off[t] + r) * L, mx = s[0], total = 0.0f;
        for (int l = 1; l < L; l++)
            if (s[l] > mx || s[l] != s[l]) mx = s[l];
        for (int l = 0; l < L; l++) {
            alpha[l] = fc_exp_nonpos_f(s[l] - mx);
            total += alpha[l];
        }
        for (int l = 0; l < L; l++) alpha[l] /= total;
    }
}

/* 4. z = beta * the context, beta = sigmoid(hab[:, A:] + b_beta), for this thread's (row,
 * FC_PW channels) items; z also into [h, z] for the cell's product. */
static void context(const fjob *j, int t, int n, int cur, int tid, int nth)
{
    const int L = j->m->L, D = j->m->D, A = j->m->A, chunks = (D + FC_PW - 1) / FC_PW;
    long i0, i1;
    fc_thread_items((long)n * chunks, tid, nth, &i0, &i1);
    for (long i = i0; i < i1; i++) {
        const int r = (int)(i / chunks), d0 = (int)(i % chunks) * FC_PW;
        const ptrdiff_t R = j->off[t] + r;
        const float *alpha = j->alpha + R * L, *a = j->m->a + feature_row(j, r) * L * D;
        vf acc[4] = {vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f)};
        for (int l = 0; l < L; l++) {
            const vf w = vf_set1(alpha[l]);
            for (int v = 0; v < 4; v++) {
                const int col = d0 + v * FC_VW, nu = lanes(D, col);
                if (nu) acc[v] = acc[v] + w * vf_load_n(a + (ptrdiff_t)l * D + col, nu);
            }
        }
        for (int v = 0; v < 4; v++) {
            const int col = d0 + v * FC_VW, nu = lanes(D, col);
            if (!nu) break;
            vf b = vf_sigmoid(vf_load_n(j->hab + (ptrdiff_t)r * j->E + A + col, nu) +
                              vf_load_n(j->m->b_beta + col, nu));
            vf z = acc[v] * b;
            vf_store_n(j->beta + R * D + col, b, nu);
            vf_store_n(j->z + R * D + col, z, nu);
            vf_store_n(j->hz[cur] + (ptrdiff_t)r * j->Kc + j->Hp + col, z, nu);
            if (j->hzb[cur]) vh_store_n(j->hzb[cur] + (ptrdiff_t)r * j->Kb + j->Hp + col, z, nu);
        }
    }
}

/* The cell of row r at units u0.. from the tile's acc; h also into next's [h, z]. */
FC_INLINE void cell_row(const fjob *j, int t, int r, int u0, vf acc[4], int next)
{
    const int H = j->m->H, G = j->m->G;
    const ptrdiff_t R = j->off[t] + r;
    FC_CHECK(R < j->off[t + 1] && j->off[t + 1] <= j->P && r < j->N && u0 < H);
    float *hz = j->hz[next] + (ptrdiff_t)r * j->Kc;
    uint16_t *hzb = j->hzb[next] ? j->hzb[next] + (ptrdiff_t)r * j->Kb : NULL;
    if (j->m->lstm) {
        const int nu = lanes(H, u0);
        vf cp = t > 0 ? vf_load_n(j->c + (j->off[t - 1] + r) * H + u0, nu)
                : j->c0 ? vf_load_n(j->c0 + (ptrdiff_t)r * H + u0, nu) : vf_set1(0.0f);
        vf h = fc_lstm_cell_forward(acc, j->xw + R * G + u0, H, nu, cp, j->ifog + R * G + u0,
                                    j->c + R * H + u0, j->h + R * H + u0);
        vf_store_n(hz + u0, h, nu);
        if (hzb) vh_store_n(hzb + u0, h, nu);
        return;
    }
    for (int v = 0; v < 4; v++) {
        const int u = u0 + v * FC_VW, nu = lanes(H, u);
        if (!nu) break;
        vf h = vf_tanh(acc[v] + vf_load_n(j->xw + R * H + u, nu));
        vf_store_n(j->h + R * H + u, h, nu);
        vf_store_n(hz + u, h, nu);
        if (hzb) vh_store_n(hzb + u, h, nu);
    }
}

/* 5. the gates [h_{t-1}, z_t] @ [[Wh], [0], [Wz]] and the cell, this thread's panels. */
FC_INLINE void cell_product(const fjob *j, int t, int n, int cur, int tid, int nth, int bf)
{
    const int width = j->m->lstm ? FC_VW : FC_PW;
    int p0, p1;
    fc_thread_panels(j->m->cell->npanels, tid, nth, &p0, &p1);
    for (int p = p0; p < p1; p++) {
#define BODY(mr, r)                                                                          \
    {                                                                                        \
        vf acc[FC_MR][4];                                                                    \
        fc_tile_rows(mr, bf, HZ_ROWS(r), j->m->cell, p, acc);                                \
        for (int m = 0; m < (mr); m++) cell_row(j, t, (r) + m, p * width, acc[m], 1 - cur); \
    }
        FC_ROW_TILES(0, n, BODY);
#undef BODY
    }
}

FC_INLINE void forward_loop(const fjob *j, int tid, int nth, int bf)
{
    for (int t = 0, cur = 0; t < j->T; t++, cur = 1 - cur) {
        const int n = ROWS(t);
        FC_CHECK(n <= (t == 0 ? j->N : ROWS(t - 1)));
        attention_product(j, t, n, cur, tid, nth, bf);
        fc_pool_barrier(nth);
        scores(j, n, tid, nth);
        fc_pool_barrier(nth);
        softmax(j, t, n, tid, nth);
        fc_pool_barrier(nth);
        context(j, t, n, cur, tid, nth);
        fc_pool_barrier(nth);
        cell_product(j, t, n, cur, tid, nth, bf);
        fc_pool_barrier(nth);
    }
}

static void forward_task(void *ctx, int tid, int nth) { forward_loop(ctx, tid, nth, 0); }
static void forward_task_bf16(void *ctx, int tid, int nth) { forward_loop(ctx, tid, nth, 1); }

int fc_attention_forward(const fc_attention *m, const float *xw, const float *h0, const float *c0,
                         const ptrdiff_t *offsets, int T, int N, const ptrdiff_t *rows,
                         float *ifog_out, float *c_out, float *h_out, float *alpha_out,
                         float *z_out, float *beta_out, float *hd_out, int nthreads)
{
    const int H = m->H, Hp = (H + 1) / 2 * 2, Kc = Hp + m->D, bf = m->cell->bf16;
    fjob j = {.m = m, .xw = xw, .h0 = h0, .c0 = c0, .off = offsets, .rows = rows, .T = T, .N = N,
              .Hp = Hp, .Kc = Kc, .Kb = (Kc + 1) / 2 * 2, .E = m->A + m->D, .P = offsets[T],
              .ifog = ifog_out, .c = c_out, .h = h_out, .alpha = alpha_out, .z = z_out,
              .beta = beta_out, .hd = hd_out};
    if (T == 0 || N == 0) return 0;
    FC_CHECK((rows || N <= m->Nf) && m->att->K == H && m->att->cols == j.E);
    FC_CHECK(m->cell->K == Kc && m->cell->cols == m->G && m->cell->units == H);
    const size_t n = (size_t)N;
    j.hab = malloc(n * j.E * sizeof(float) + 1);
    j.scores = malloc(n * m->L * sizeof(float) + 1);
    int ok = j.hab && j.scores;
    for (int i = 0; i < 2; i++) {
        j.hz[i] = calloc(n * Kc + 1, sizeof(float));
        j.hzb[i] = bf ? calloc(n * j.Kb + 1, sizeof(uint16_t)) : NULL;
        ok = ok && j.hz[i] && (j.hzb[i] || !bf);
    }
    if (ok) {
        for (int r = 0; r < N; r++) {
            memcpy(j.hz[0] + (ptrdiff_t)r * Kc, h0 + (ptrdiff_t)r * H, (size_t)H * sizeof(float));
            for (int u = 0; bf && u < H; u += FC_VW)
                vh_store_n(j.hzb[0] + (ptrdiff_t)r * j.Kb + u, vf_load_n(h0 + (ptrdiff_t)r * H + u, lanes(H, u)),
                           lanes(H, u));
        }
        fc_pool_run(bf ? forward_task_bf16 : forward_task, &j, nthreads);
    }
    free(j.hab);
    free(j.scores);
    for (int i = 0; i < 2; i++) {
        free(j.hz[i]);
        free(j.hzb[i]);
    }
    return ok ? 0 : -1;
}
