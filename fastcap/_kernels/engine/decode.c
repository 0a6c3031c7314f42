/* decode.c -- greedy decoding and sampling, the whole word loop in C: see decode.h for the
 * contract.
 *
 * Per step (n captions still running): the table rows of words fed for the first time
 * (one product for all of them), the n rows of xw gathered from the table, one
 * recurrent step on the engine (T = 1), the scores h @ W_vocab (n, V), the argmax (or the
 * draw, sample.h) of every row (rows split over the threads when there are many), then on
 * the calling
 * thread the removal of the captions that ended (their rows of h and c move up, in
 * order, as the reference's state.select(keep)).
 * The products and the recurrent step run on the engine's pool, whose workers spin
 * between the step's tasks instead of sleeping, so a step costs its arithmetic and a
 * few wake-ups, not a Python round trip per operation.
 */
#include "decode.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gemm.h"
#include "pool.h"
#include "recurrence.h"
#include "sample.h"

/* Up to this many rows, bf16 products run as fc_gemv_bf16 (8 dot-product chains per row)
 * rather than fc_gemm_bf16 (whose tiles of FC_MR rows are faster from here on). */
#define GEMV_ROWS 2

typedef struct {
    float *h[2], *c[2]; /* (N, H) state before / after the step, swapped every step */
    float *xw;          /* (N, G) the fed words' input projections */
    float *ifog;        /* (N, G) LSTM gates; scratch for the table's new rows first */
    float *scores;      /* (N, V) h @ W_vocab */
    float *x;           /* (N, W) embeddings of the words fed for the first time */
    ptrdiff_t *words;   /* (N,) last word of every running caption */
    ptrdiff_t *alive;   /* (N,) caption of every running row */
    ptrdiff_t *fresh;   /* (N,) words fed for the first time this step */
    uint16_t *ab;       /* (2N, H rounded up to even) the bf16 recurrence's A rows, zeroed */
    uint32_t *pairs;    /* (GEMV_ROWS, max(H, W) / 2 + 1) bf16 pairs of fc_gemv_bf16's rows */
    double *e;          /* (threads, V) each thread's exponentials of a row (sampling only) */
    float *att;         /* the attention model: (N, cells + 2D + A) its step's alpha, z, beta, hd */
} work;

static void *alloc(size_t count, size_t size) { return calloc(count ? count : 1, size); }

static void free_work(work *w)
{
    for (int i = 0; i < 2; i++) {
        free(w->h[i]);
        free(w->c[i]);
    }
    free(w->xw);
    free(w->ifog);
    free(w->scores);
    free(w->x);
    free(w->words);
    free(w->alive);
    free(w->fresh);
    free(w->ab);
    free(w->pairs);
    free(w->e);
    free(w->att);
}

static int alloc_work(const fc_decode *d, work *w, int nthreads)
{
    const size_t N = (size_t)d->N, H = (size_t)d->H, G = (size_t)d->G;
    memset(w, 0, sizeof *w);
    for (int i = 0; i < 2; i++) {
        w->h[i] = alloc(N * H, sizeof(float));
        w->c[i] = alloc(N * H, sizeof(float));
    }
    w->xw = alloc(N * G, sizeof(float));
    w->ifog = alloc(N * G, sizeof(float));
    w->scores = alloc(N * (size_t)d->V, sizeof(float));
    w->x = alloc(N * (size_t)d->W, sizeof(float));
    w->words = alloc(N, sizeof(ptrdiff_t));
    w->alive = alloc(N, sizeof(ptrdiff_t));
    w->fresh = alloc(N, sizeof(ptrdiff_t));
    w->ab = !d->att && d->Wh->bf16 ? alloc(2 * N * ((H + 1) / 2 * 2), sizeof(uint16_t)) : NULL;
    w->att = d->att ? alloc(N * (size_t)(d->att->L + 2 * d->att->D + d->att->A), sizeof(float)) : NULL;
    w->pairs = alloc(GEMV_ROWS * ((H > (size_t)d->W ? H : (size_t)d->W) / 2 + 1), sizeof(uint32_t));
    /* a task runs on at most that many threads (fc_pool_run clamps) */
    const size_t threads = nthreads < 1 ? 1 : nthreads > FC_MAX_THREADS ? FC_MAX_THREADS : (size_t)nthreads;
    w->e = d->uniforms ? alloc(threads * (size_t)d->V, sizeof(double)) : NULL;
    int ok = w->h[0] && w->h[1] && w->c[0] && w->c[1] && w->xw && w->ifog && w->scores && w->x
             && w->words && w->alive && w->fresh && w->pairs && (w->ab || d->att || !d->Wh->bf16)
             && (w->e || !d->uniforms) && (w->att || !d->att);
    if (!ok) free_work(w);
    return ok ? 0 : -1;
}

/* C (M, cols of B) = A (M, K) @ B in the precision B was packed in. */
static int product(const float *A, int K, int M, const fc_packed *B, float *C, work *w, int nth)
{
    FC_CHECK(B->K == K);
    if (B->bf16 && M <= GEMV_ROWS) return fc_gemv_bf16(A, K, M, B, C, B->cols, w->pairs, nth);
    if (B->bf16) return fc_gemm_bf16(A, K, 1, M, B, C, B->cols, nth);
    return fc_gemm_f32(A, K, M, B, C, B->cols, nth);
}

/* xw (n, G) = table rows of the n fed words, after filling the rows of the words fed
 * for the first time: W_embed[w] @ Wx, then + b (the reference's affine: the product,
 * then the bias, in float32). */
static int inputs(const fc_decode *d, work *w, int n, int nth)
{
    const int G = d->G, W = d->W;
    int u = 0;
    for (int r = 0; r < n; r++) {
        const ptrdiff_t word = w->words[r];
        FC_CHECK(word >= 0 && word < d->V);
        if (!d->known[word]) {
            d->known[word] = 1; /* filled below, before any row is read */
            w->fresh[u++] = word;
        }
    }
    if (u) {
        for (int i = 0; i < u; i++)
            memcpy(w->x + (ptrdiff_t)i * W, d->W_embed + w->fresh[i] * W, (size_t)W * sizeof(float));
        if (product(w->x, W, u, d->Wx, w->ifog, w, nth)) return -1;
        for (int i = 0; i < u; i++) {
            float *row = d->table + w->fresh[i] * G;
            const float *p = w->ifog + (ptrdiff_t)i * G;
            for (int j = 0; j < G; j++) row[j] = p[j] + d->b[j];
        }
    }
    for (int r = 0; r < n; r++)
        memcpy(w->xw + (ptrdiff_t)r * G, d->table + w->words[r] * G, (size_t)G * sizeof(float));
    return 0;
}

/* The attention model's step on the n running rows (their features: rows alive of a and
 * enc), from state cur into 1 - cur; each caption's weights into alpha[caption, t]. */
static int attention_step(const fc_decode *d, work *w, int n, int cur, int t, int nth)
{
    const fc_attention *m = d->att;
    const ptrdiff_t off[2] = {0, n}, cells = m->L;
    float *alpha = w->att, *z = alpha + (ptrdiff_t)n * cells, *beta = z + (ptrdiff_t)n * m->D;
    float *hd = beta + (ptrdiff_t)n * m->D;
    if (fc_attention_forward(m, w->xw, w->h[cur], d->lstm ? w->c[cur] : NULL, off, 1, n, w->alive,
                             w->ifog, d->lstm ? w->c[1 - cur] : NULL, w->h[1 - cur], alpha, z, beta,
                             hd, nth))
        return -1;
    for (int r = 0; r < n; r++) {
        FC_CHECK(w->alive[r] >= 0 && w->alive[r] < d->N);
        memcpy(d->alpha + (w->alive[r] * d->L + t) * cells, alpha + r * cells, (size_t)cells * sizeof(float));
    }
    return 0;
}

/* Below this many scores, the argmax runs on the calling thread (a pool task costs
 * microseconds); above, rows are split over the threads (a row is one thread's). The
 * parity case at N = 17, V = 1004 takes the threaded path. */
#define ARGMAX_GRAIN 16384

typedef struct {
    const fc_decode *d;
    work *w;
    int n, t; /* running captions, step */
} argmax_job;

/* words[r] = the argmax of row r, or the word drawn at its caption's uniform of step t,
 * for this thread's rows of the n running. */
static void argmax_task(void *ctx, int tid, int nth)
{
    const argmax_job *a = ctx;
    const fc_decode *d = a->d;
    const int V = d->V;
    const int r0 = (int)((long)a->n * tid / nth), r1 = (int)((long)a->n * (tid + 1) / nth);
    for (int r = r0; r < r1; r++) {
        const float *row = a->w->scores + (ptrdiff_t)r * V;
        if (!d->uniforms) {
            a->w->words[r] = fc_argmax_f(row, d->b_vocab, V);
            continue;
        }
        const ptrdiff_t caption = a->w->alive[r];
        FC_CHECK(caption >= 0 && caption < d->N && a->t >= 0 && a->t < d->L && tid < FC_MAX_THREADS);
        a->w->words[r] = fc_sample_f(row, d->b_vocab, V, d->uniforms[caption * d->L + a->t],
                                     a->w->e + (ptrdiff_t)tid * V);
    }
}

int fc_greedy_decode(const fc_decode *d, int nthreads)
{
    const int N = d->N, L = d->L, H = d->H, V = d->V;
    for (ptrdiff_t i = 0; i < (ptrdiff_t)N * L; i++) d->captions[i] = (int32_t)d->null;
    if (d->att) memset(d->alpha, 0, (size_t)N * L * d->att->L * sizeof(float));
    if (N == 0 || L == 0) return 0;
    FC_CHECK(V >= 1 && d->start >= 0 && d->start < V);
    FC_CHECK(d->att ? d->att->Nf == N && d->att->H == H : d->Wh->units == H && d->Wh->cols == d->G);
    FC_CHECK(d->Wv->cols == V && d->Wv->K == H && d->Wx->cols == d->G && d->Wx->K == d->W);
    work w;
    if (alloc_work(d, &w, nthreads)) return -1;
    memcpy(w.h[0], d->h0, (size_t)N * H * sizeof(float));
    if (d->lstm) memcpy(w.c[0], d->c0, (size_t)N * H * sizeof(float));
    for (int r = 0; r < N; r++) {
        w.alive[r] = r;
        w.words[r] = d->start;
    }
    int n = N, cur = 0, rc = 0;
    for (int t = 0; t < L && n > 0; t++) {
        if ((rc = inputs(d, &w, n, nthreads))) break;
        const ptrdiff_t off[2] = {0, n};
        if (d->att) {
            if ((rc = attention_step(d, &w, n, cur, t, nthreads))) break;
        } else if (d->lstm)
            fc_lstm_forward(w.xw, w.h[cur], w.c[cur], d->Wh, off, 1, n, w.ifog, w.c[1 - cur],
                            w.h[1 - cur], w.ab, nthreads);
        else
            fc_rnn_forward(w.xw, w.h[cur], d->Wh, off, 1, n, w.h[1 - cur], w.ab, nthreads);
        cur = 1 - cur;
        if ((rc = product(w.h[cur], H, n, d->Wv, w.scores, &w, nthreads))) break;
        argmax_job aj = {d, &w, n, t};
        if ((ptrdiff_t)n * V >= ARGMAX_GRAIN) fc_pool_run(argmax_task, &aj, nthreads);
        else argmax_task(&aj, 0, 1);
        int kept = 0;
        for (int r = 0; r < n; r++) {
            const ptrdiff_t word = w.words[r];
            FC_CHECK(word >= 0 && word < V && w.alive[r] >= 0 && w.alive[r] < N);
            d->captions[w.alive[r] * L + t] = (int32_t)word;
            if (word == d->end) continue; /* this caption ended: its row leaves the batch */
            if (kept != r) {
                memcpy(w.h[cur] + (ptrdiff_t)kept * H, w.h[cur] + (ptrdiff_t)r * H, (size_t)H * sizeof(float));
                if (d->lstm)
                    memcpy(w.c[cur] + (ptrdiff_t)kept * H, w.c[cur] + (ptrdiff_t)r * H, (size_t)H * sizeof(float));
                w.alive[kept] = w.alive[r];
            }
            w.words[kept++] = word;
        }
        n = kept;
    }
    free_work(&w);
    return rc;
}
