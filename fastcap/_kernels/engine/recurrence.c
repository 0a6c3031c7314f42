/* recurrence.c -- see recurrence.h for the contract and the design. */
#include "recurrence.h"

#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "cells.h"
#include "pool.h"
#include "simd.h"
#include "tiles.h"
#include "vecmath.h"

typedef struct {
    const float *xw, *h0, *c0, *dh, *ifog, *c, *h;
    const fc_packed *W;
    /* bf16 weights (W->bf16): the bf16 copy of every row the tiles read as A.
     * Forward: rows 0..N-1 = h0, row N + R = h of packed row R, ldb = H
     * rounded up to even; backward: row R = da of packed row R, ldb = G
     * rounded up to even. Pad columns are 0 (the caller zeroes the buffer). */
    uint16_t *ab;
    ptrdiff_t ldb;
    const ptrdiff_t *off;
    int T, N; /* steps, sequences (rows of h0, c0, dh0, dc) */
    ptrdiff_t P; /* rows of the packed arrays: offsets[T] */
    float *ifog_out, *c_out, *h_out, *da_out, *dh0_out, *dc;
} job;

#define ROWS(t) ((int)(j->off[(t) + 1] - j->off[(t)]))

/* The packed row of row r of step t, whose units from u0 a cell updates (the
 * range checks of debug builds, for every cell's forward and backward). */
FC_INLINE ptrdiff_t packed_row(const job *j, int t, int r, int u0)
{
    const ptrdiff_t R = j->off[t] + r;
    FC_CHECK(R < j->off[t + 1] && j->off[t + 1] <= j->P && r < j->N && u0 < j->W->units);
    FC_CHECK(t == 0 || j->off[t - 1] + r < j->off[t]);
    return R;
}

/* ---------------------------------------------------------------------------
 * LSTM forward */

FC_INLINE void lstm_fwd_row(const job *j, int t, int r, int u0, vf acc[4])
{
    const int H = j->W->units, G = 4 * H, nu = lanes(H, u0);
    const ptrdiff_t R = packed_row(j, t, r, u0);
    vf cp = t > 0 ? vf_load_n(j->c_out + (j->off[t - 1] + r) * H + u0, nu)
            : j->c0 ? vf_load_n(j->c0 + (ptrdiff_t)r * H + u0, nu) : vf_set1(0.0f);
    vf h = fc_lstm_cell_forward(acc, j->xw + R * G + u0, H, nu, cp, j->ifog_out + R * G + u0,
                                j->c_out + R * H + u0, j->h_out + R * H + u0);
    if (j->ab) vh_store_n(j->ab + (j->N + R) * j->ldb + u0, h, nu);
}

FC_INLINE void rnn_fwd_row(const job *j, int t, int r, int u0, vf acc[4]);

/* The forward time loop of both cells: per step, each thread's panels of
 * h_{t-1} @ Wh as tiles, each tile's rows straight into the cell (lstm: a
 * constant in each caller, so each gets its own copy with the cell inlined).
 * A panel covers FC_VW units (LSTM: 4 gates of them) or FC_PW (RNN). */
FC_INLINE void forward_loop(const job *j, int tid, int nth, int lstm, int bf)
{
    const int H = j->W->units, K = j->W->K, KR = j->W->krows;
    const ptrdiff_t lda2 = j->ldb / 2; /* bf16 A rows, in pairs */
    int p0, p1;
    fc_thread_panels(j->W->npanels, tid, nth, &p0, &p1);
    for (int t = 0; t < j->T; t++) {
        const int n = ROWS(t);
        FC_CHECK(n <= (t == 0 ? j->N : ROWS(t - 1)));
        const float *A = t == 0 ? j->h0 : j->h_out + j->off[t - 1] * H;
        const uint32_t *A2 = bf ? (const uint32_t *)(j->ab + (t == 0 ? 0 : j->N + j->off[t - 1]) * j->ldb)
                                : NULL;
        int p = p0;
        if (bf && n == 1) /* one row (decoding): two panels per tile, the same sums */
            for (; p + 1 < p1; p += 2) {
                const uint32_t *q = (const uint32_t *)(j->W->data + (ptrdiff_t)p * KR * FC_PW);
                vf acc[2][4];
                tile_bf16_row2(A2, q, q + (ptrdiff_t)KR * FC_PW, KR, acc);
                for (int i = 0; i < 2; i++) {
                    if (lstm) lstm_fwd_row(j, t, 0, (p + i) * FC_VW, acc[i]);
                    else rnn_fwd_row(j, t, 0, (p + i) * FC_PW, acc[i]);
                }
            }
        for (; p < p1; p++) {
            const float *panel = j->W->data + (ptrdiff_t)p * KR * FC_PW;
#define BODY(mr, r)                                                                   \
    {                                                                                 \
        vf acc[FC_MR][4];                                                             \
        if (bf) tile_bf16(mr, A2 + (ptrdiff_t)(r) * lda2, lda2, (const uint32_t *)panel, KR, acc); \
        else tile(mr, A + (ptrdiff_t)(r) * H, H, panel, K, acc);                      \
        for (int m = 0; m < (mr); m++) {                                              \
            if (lstm) lstm_fwd_row(j, t, (r) + m, p * FC_VW, acc[m]);                 \
            else rnn_fwd_row(j, t, (r) + m, p * FC_PW, acc[m]);                       \
        }                                                                             \
    }
            FC_ROW_TILES(0, n, BODY);
#undef BODY
        }
        fc_pool_barrier(nth);
    }
}

static void lstm_forward_task(void *ctx, int tid, int nth) { forward_loop(ctx, tid, nth, 1, 0); }
static void lstm_forward_task_bf16(void *ctx, int tid, int nth) { forward_loop(ctx, tid, nth, 1, 1); }

/* The bf16 copy of h0 (rows 0..N-1 of ab), before the loop reads it: a vector of units
 * at a time (fc_bf16's rounding, lane by lane), as decoding calls this at every word. */
static void h0_to_bf16(const job *j)
{
    const int H = j->W->units;
    for (int r = 0; r < j->N; r++)
        for (int u = 0; u < H; u += FC_VW) {
            const int nu = lanes(H, u);
            vh_store_n(j->ab + (ptrdiff_t)r * j->ldb + u, vf_load_n(j->h0 + (ptrdiff_t)r * H + u, nu), nu);
        }
}

void fc_lstm_forward(const float *xw, const float *h0, const float *c0, const fc_packed *Wp,
                     const ptrdiff_t *offsets, int T, int N, float *ifog_out, float *c_out,
                     float *h_out, uint16_t *ab, int nthreads)
{
    job j = {.xw = xw, .h0 = h0, .c0 = c0, .W = Wp, .off = offsets, .T = T, .N = N, .P = offsets[T],
             .ifog_out = ifog_out, .c_out = c_out, .h_out = h_out,
             .ab = Wp->bf16 ? ab : NULL, .ldb = (Wp->units + 1) / 2 * 2};
    if (j.ab) h0_to_bf16(&j);
    fc_pool_run(Wp->bf16 ? lstm_forward_task_bf16 : lstm_forward_task, &j, nthreads);
}

/* ---------------------------------------------------------------------------
 * RNN forward */

FC_INLINE void rnn_fwd_row(const job *j, int t, int r, int u0, vf acc[4])
{
    const int H = j->W->units;
    const ptrdiff_t R = packed_row(j, t, r, u0);
    for (int v = 0; v < 4; v++) {
        int u = u0 + v * FC_VW, nu = lanes(H, u);
        if (!nu) continue;
        vf h = vf_tanh(acc[v] + vf_load_n(j->xw + R * H + u, nu));
        vf_store_n(j->h_out + R * H + u, h, nu);
        if (j->ab) vh_store_n(j->ab + (j->N + R) * j->ldb + u, h, nu);
    }
}

static void rnn_forward_task(void *ctx, int tid, int nth) { forward_loop(ctx, tid, nth, 0, 0); }
static void rnn_forward_task_bf16(void *ctx, int tid, int nth) { forward_loop(ctx, tid, nth, 0, 1); }

void fc_rnn_forward(const float *xw, const float *h0, const fc_packed *Wp,
                    const ptrdiff_t *offsets, int T, int N, float *h_out, uint16_t *ab, int nthreads)
{
    job j = {.xw = xw, .h0 = h0, .W = Wp, .off = offsets, .T = T, .N = N, .P = offsets[T],
             .h_out = h_out, .ab = Wp->bf16 ? ab : NULL, .ldb = (Wp->units + 1) / 2 * 2};
    if (j.ab) h0_to_bf16(&j);
    fc_pool_run(Wp->bf16 ? rnn_forward_task_bf16 : rnn_forward_task, &j, nthreads);
}

/* ---------------------------------------------------------------------------
 * backward: shared time loop. At step t (last to first), for the rows that
 * step t+1 sent a gradient to (the first n_{t+1}), acc = da_{t+1} @ Wh.T is
 * the tile; the other rows of step t get acc = 0. Then the cell backward of
 * step t runs on the tile (row_fn). After step 0, dh0 = da_0 @ Wh.T. */

FC_INLINE void row_fn(const job *j, int t, int r, int u0, vf acc[4], int lstm);

/* lstm: a constant in each caller, so each gets its own copy of the loop with
 * the cell inlined into the tile's epilogue. */
FC_INLINE void backward_loop(const job *j, int tid, int nth, int lstm, int bf)
{
    const int H = j->W->units, K = j->W->K, G = K, KR = j->W->krows; /* Wh.T is (G, H) */
    const ptrdiff_t lda2 = j->ldb / 2; /* bf16 A rows, in pairs */
    int p0, p1;
    fc_thread_panels(j->W->npanels, tid, nth, &p0, &p1);
    for (int t = j->T - 1; t >= -1; t--) {
        /* t = -1: the gradient into h0 */
        const int n = t >= 0 ? ROWS(t) : j->N;
        const int from = t + 1 < j->T ? ROWS(t + 1) : 0;
        FC_CHECK(n <= j->N && from <= n && j->off[j->T] == j->P);
        const float *A = j->da_out + j->off[t + 1] * G;
        const uint32_t *A2 = bf ? (const uint32_t *)(j->ab + j->off[t + 1] * j->ldb) : NULL;
        for (int p = p0; p < p1; p++) {
            const float *panel = j->W->data + (ptrdiff_t)p * KR * FC_PW;
            const int u0 = p * FC_PW;
#define BODY(mr, r)                                                              \
    {                                                                            \
        vf acc[FC_MR][4];                                                        \
        if (bf) tile_bf16(mr, A2 + (ptrdiff_t)(r) * lda2, lda2, (const uint32_t *)panel, KR, acc); \
        else tile(mr, A + (ptrdiff_t)(r) * G, G, panel, K, acc);                 \
        for (int m = 0; m < (mr); m++) {                                         \
            if (t >= 0) row_fn(j, t, (r) + m, u0, acc[m], lstm);                       \
            else for (int v = 0; v < 4; v++)                                     \
                vf_store_n(j->dh0_out + (ptrdiff_t)((r) + m) * H + u0 + v * FC_VW, \
                           acc[m][v], lanes(H, u0 + v * FC_VW));                 \
        }                                                                        \
    }
            FC_ROW_TILES(0, from < n ? from : n, BODY);
#undef BODY
            for (int r = from; r < n; r++) {
                vf zero[4] = {vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f)};
                if (t >= 0) row_fn(j, t, r, u0, zero, lstm);
                else for (int v = 0; v < 4; v++)
                    vf_store_n(j->dh0_out + (ptrdiff_t)r * H + u0 + v * FC_VW, zero[v],
                               lanes(H, u0 + v * FC_VW));
            }
        }
        if (t >= 0) fc_pool_barrier(nth);
    }
}

FC_INLINE void rnn_bwd_row(const job *j, int t, int r, int u0, vf acc[4])
{
    const int H = j->W->units;
    const ptrdiff_t R = packed_row(j, t, r, u0);
    for (int v = 0; v < 4; v++) {
        int u = u0 + v * FC_VW, nu = lanes(H, u);
        if (!nu) continue;
        vf dh = vf_load_n(j->dh + R * H + u, nu) + acc[v];
        vf h = vf_load_n(j->h + R * H + u, nu);
        vf da = (1.0f - h * h) * dh;
        vf_store_n(j->da_out + R * H + u, da, nu);
        if (j->ab) vh_store_n(j->ab + R * j->ldb + u, da, nu);
    }
}

/* The LSTM cell backward of one row on 4 vectors of units (order of operations
 * as the cell kernels', so float32 rounds alike). */
FC_INLINE void lstm_bwd_row(const job *j, int t, int r, int u0, vf acc[4])
{
    const int H = j->W->units, G = 4 * H;
    const ptrdiff_t R = packed_row(j, t, r, u0);
    for (int v = 0; v < 4; v++) {
        int u = u0 + v * FC_VW, nu = lanes(H, u);
        if (!nu) continue;
        vf dh = vf_load_n(j->dh + R * H + u, nu) + acc[v];
        vf cp = t > 0 ? vf_load_n(j->c + (j->off[t - 1] + r) * H + u, nu)
                : j->c0 ? vf_load_n(j->c0 + (ptrdiff_t)r * H + u, nu) : vf_set1(0.0f);
        fc_lstm_cell_backward(dh, j->ifog + R * G + u, H, nu, vf_load_n(j->c + R * H + u, nu), cp,
                              j->dc + (ptrdiff_t)r * H + u, j->da_out + R * G + u,
                              j->ab ? j->ab + R * j->ldb + u : NULL);
    }
}

FC_INLINE void row_fn(const job *j, int t, int r, int u0, vf acc[4], int lstm)
{
    if (lstm) lstm_bwd_row(j, t, r, u0, acc);
    else rnn_bwd_row(j, t, r, u0, acc);
}

static void rnn_backward_task(void *ctx, int tid, int nth) { backward_loop(ctx, tid, nth, 0, 0); }
static void rnn_backward_task_bf16(void *ctx, int tid, int nth) { backward_loop(ctx, tid, nth, 0, 1); }

void fc_rnn_backward(const float *dh, const fc_packed *WTp, const float *h,
                     const ptrdiff_t *offsets, int T, int N, float *da_out, float *dh0_out,
                     uint16_t *ab, int nthreads)
{
    job j = {.dh = dh, .h = h, .W = WTp, .off = offsets, .T = T, .N = N, .P = offsets[T],
             .da_out = da_out, .dh0_out = dh0_out, .ab = WTp->bf16 ? ab : NULL,
             .ldb = (WTp->K + 1) / 2 * 2};
    fc_pool_run(WTp->bf16 ? rnn_backward_task_bf16 : rnn_backward_task, &j, nthreads);
}

static void lstm_backward_task(void *ctx, int tid, int nth) { backward_loop(ctx, tid, nth, 1, 0); }
static void lstm_backward_task_bf16(void *ctx, int tid, int nth) { backward_loop(ctx, tid, nth, 1, 1); }

void fc_lstm_backward(const float *dh, const float *c0, const fc_packed *WTp, const float *ifog,
                      const float *c, const ptrdiff_t *offsets, int T, int N, float *da_out,
                      float *dh0_out, float *dc_work, uint16_t *ab, int nthreads)
{
    job j = {.dh = dh, .c0 = c0, .ifog = ifog, .c = c, .W = WTp, .off = offsets, .T = T,
             .N = N, .P = offsets[T], .da_out = da_out, .dh0_out = dh0_out, .dc = dc_work,
             .ab = WTp->bf16 ? ab : NULL, .ldb = (WTp->K + 1) / 2 * 2};
    fc_pool_run(WTp->bf16 ? lstm_backward_task_bf16 : lstm_backward_task, &j, nthreads);
}
