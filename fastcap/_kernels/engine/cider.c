/* cider.c -- CIDEr-D over captions of word ids: see cider.h for the contract.
 *
 * The document frequencies: an open-addressing hash table of 128-bit n-gram keys (linear
 * probing, at most half full, doubled as it fills), each image's references counted once
 * per n-gram by remembering the last image that counted it. A score: the candidate's and
 * each reference's distinct n-grams, sorted by key with their tf-idf weights, met in one
 * merge. Sums run in double, in pycocoevalcap's order of operations per n-gram order and
 * reference; only the order in which one vector's entries are added differs (sorted here,
 * first occurrence there), which moves a score by rounding alone.
 */
#include "cider.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "pool.h"

#define NGRAMS 4          /* n = 1..4 */
#define SIGMA 6.0         /* the length penalty's, as pycocoevalcap's default */
#define FIRST_SLOTS 4096  /* the table's first size (a power of 2) */
#define SORT_SMALL 32     /* up to this many entries an insertion sort, else qsort */
#define TASK_MIN 64       /* fewer candidates run on the calling thread */

typedef struct {
    uint64_t lo, hi;
} key;

typedef struct {
    key k;
    double w; /* the tf-idf weight */
} entry;

/* SplitMix64's output function: a bijection of 64-bit words whose every output bit
 * depends on every input bit. */
static inline uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The key of the n words at w: each word id + 1 in 32 bits (ids < 2^32 - 1), 0 past n. */
static inline key key_of(const ptrdiff_t *w, int n)
{
    key k = {(uint64_t)(w[0] + 1), 0};
    if (n > 1) k.lo |= (uint64_t)(w[1] + 1) << 32;
    if (n > 2) k.hi = (uint64_t)(w[2] + 1);
    if (n > 3) k.hi |= (uint64_t)(w[3] + 1) << 32;
    return k;
}

/* n of a key: how many of its 32-bit words are set. */
static inline int order_of(key k) { return k.hi ? (k.hi >> 32 ? 4 : 3) : (k.lo >> 32 ? 2 : 1); }

static inline int compare(key a, key b)
{
    if (a.lo != b.lo) return a.lo < b.lo ? -1 : 1;
    return a.hi < b.hi ? -1 : a.hi > b.hi;
}

/* The slot holding k, or the empty slot where it belongs (the table is never full). */
static size_t find(const fc_cider_table *t, key k)
{
    size_t s = (size_t)mix(k.lo ^ mix(k.hi + 0x9E3779B97F4A7C15ULL)) & t->mask;
    while (t->lo[s] && (t->lo[s] != k.lo || t->hi[s] != k.hi)) s = (s + 1) & t->mask;
    return s;
}

void fc_cider_free(fc_cider_table *t)
{
    free(t->lo);
    free(t->hi);
    free(t->df);
    t->lo = t->hi = NULL;
    t->df = NULL;
    t->mask = t->count = 0;
}

static int table_alloc(fc_cider_table *t, size_t slots, int32_t **seen)
{
    t->lo = calloc(slots, sizeof *t->lo);
    t->hi = calloc(slots, sizeof *t->hi);
    t->df = calloc(slots, sizeof *t->df);
    *seen = calloc(slots, sizeof **seen);
    t->mask = slots - 1;
    t->count = 0;
    if (t->lo && t->hi && t->df && *seen) return 0;
    fc_cider_free(t);
    free(*seen);
    *seen = NULL;
    return -1;
}

/* Double the table (seen: the last image that counted each n-gram, + 1, moves with it). */
static int grow(fc_cider_table *t, int32_t **seen)
{
    fc_cider_table old = *t;
    int32_t *old_seen = *seen;
    if (table_alloc(t, 2 * (old.mask + 1), seen)) {
        *t = old;
        *seen = old_seen;
        return -1;
    }
    for (size_t s = 0; s <= old.mask; s++) {
        if (!old.lo[s]) continue;
        const key k = {old.lo[s], old.hi[s]};
        const size_t d = find(t, k);
        t->lo[d] = k.lo;
        t->hi[d] = k.hi;
        t->df[d] = old.df[s];
        (*seen)[d] = old_seen[s];
    }
    t->count = old.count;
    t->images = old.images;
    fc_cider_free(&old);
    free(old_seen);
    return 0;
}

int fc_cider_df(fc_cider_table *t, const ptrdiff_t *tokens, const ptrdiff_t *starts,
                const ptrdiff_t *images, ptrdiff_t I)
{
    int32_t *seen = NULL;
    memset(t, 0, sizeof *t);
    if (table_alloc(t, FIRST_SLOTS, &seen)) return -1;
    t->images = I;
    for (ptrdiff_t i = 0; i < I; i++) {
        FC_CHECK(images[i] <= images[i + 1]);
        for (ptrdiff_t c = images[i]; c < images[i + 1]; c++) {
            const ptrdiff_t *w = tokens + starts[c], l = starts[c + 1] - starts[c];
            FC_CHECK(l >= 0);
            for (int n = 1; n <= NGRAMS; n++) {
                for (ptrdiff_t j = 0; j + n <= l; j++) {
                    if (2 * (t->count + 1) > t->mask + 1 && grow(t, &seen)) {
                        fc_cider_free(t);
                        free(seen);
                        return -1;
                    }
                    const key k = key_of(w + j, n);
                    const size_t s = find(t, k);
                    if (!t->lo[s]) {
                        t->lo[s] = k.lo;
                        t->hi[s] = k.hi;
                        t->count++;
                    }
                    if (seen[s] != (int32_t)(i + 1)) { /* once per image */
                        seen[s] = (int32_t)(i + 1);
                        t->df[s]++;
                    }
                }
            }
        }
    }
    free(seen);
    return 0;
}

static int entry_order(const void *a, const void *b)
{
    return compare(((const entry *)a)->k, ((const entry *)b)->k);
}

static void sort_entries(entry *e, ptrdiff_t m)
{
    if (m > SORT_SMALL) {
        qsort(e, (size_t)m, sizeof *e, entry_order);
        return;
    }
    for (ptrdiff_t i = 1; i < m; i++) {
        const entry x = e[i];
        ptrdiff_t j = i;
        for (; j > 0 && compare(e[j - 1].k, x.k) > 0; j--) e[j] = e[j - 1];
        e[j] = x;
    }
}

/* The tf-idf vector of a caption of l words at w: its distinct n-grams sorted by key into
 * e (room for 4l), each weighted tf * (ref_len - log(max(1, df))); norm[n - 1] = the
 * Euclidean norm of its n-grams' weights. Returns how many. */
static ptrdiff_t vector_of(const fc_cider_table *t, double ref_len, const ptrdiff_t *w, ptrdiff_t l,
                           entry *e, double norm[NGRAMS])
{
    ptrdiff_t m = 0, d = 0;
    for (int n = 1; n <= NGRAMS; n++)
        for (ptrdiff_t j = 0; j + n <= l; j++) e[m++].k = key_of(w + j, n);
    sort_entries(e, m);
    for (int n = 0; n < NGRAMS; n++) norm[n] = 0.0;
    for (ptrdiff_t a = 0; a < m;) {
        ptrdiff_t b = a + 1;
        while (b < m && compare(e[b].k, e[a].k) == 0) b++;
        const size_t s = find(t, e[a].k);
        const double df = t->lo[s] ? (double)t->df[s] : 0.0;
        const double weight = (double)(b - a) * (ref_len - log(df > 1.0 ? df : 1.0));
        e[d].k = e[a].k;
        e[d++].w = weight;
        norm[order_of(e[a].k) - 1] += weight * weight;
        a = b;
    }
    for (int n = 0; n < NGRAMS; n++) norm[n] = sqrt(norm[n]);
    return d;
}

typedef struct {
    const fc_cider_table *t;
    double ref_len;
    const ptrdiff_t *cand_tokens, *cand_starts, *ref_tokens, *ref_starts, *refs;
    ptrdiff_t K, room; /* candidates; entries of scratch per vector (4 * longest) */
    entry *scratch;    /* (threads, 2, room) */
    double *scores;
} cider_job;

/* CIDEr-D of candidate k (see cider.h); c, r: scratch for the two vectors. */
static double score_of(const cider_job *j, ptrdiff_t k, entry *c, entry *r)
{
    double cn[NGRAMS], rn[NGRAMS], score[NGRAMS] = {0.0};
    const ptrdiff_t cl = j->cand_starts[k + 1] - j->cand_starts[k];
    const ptrdiff_t cm = vector_of(j->t, j->ref_len, j->cand_tokens + j->cand_starts[k], cl, c, cn);
    const ptrdiff_t r0 = j->refs[2 * k], r1 = j->refs[2 * k + 1];
    FC_CHECK(cl >= 0 && cl * NGRAMS <= j->room && r0 < r1);
    for (ptrdiff_t ref = r0; ref < r1; ref++) {
        const ptrdiff_t rl = j->ref_starts[ref + 1] - j->ref_starts[ref];
        FC_CHECK(rl >= 0 && rl * NGRAMS <= j->room);
        const ptrdiff_t rm = vector_of(j->t, j->ref_len, j->ref_tokens + j->ref_starts[ref], rl, r, rn);
        double val[NGRAMS] = {0.0};
        for (ptrdiff_t a = 0, b = 0; a < cm && b < rm;) {
            const int order = compare(c[a].k, r[b].k);
            if (order) {
                a += order < 0;
                b += order > 0;
                continue;
            }
            const double x = c[a].w, y = r[b].w; /* the candidate's weight clipped at the reference's */
            val[order_of(c[a].k) - 1] += (x < y ? x : y) * y;
            a++;
            b++;
        }
        /* pycocoevalcap's length is the bigrams' count */
        const double delta = (double)(cl > 1 ? cl - 1 : 0) - (double)(rl > 1 ? rl - 1 : 0);
        const double penalty = exp(-(delta * delta) / (2.0 * SIGMA * SIGMA));
        for (int n = 0; n < NGRAMS; n++) {
            if (cn[n] != 0.0 && rn[n] != 0.0) val[n] /= cn[n] * rn[n];
            score[n] += val[n] * penalty;
        }
    }
    double mean = 0.0;
    for (int n = 0; n < NGRAMS; n++) mean += score[n];
    return mean / NGRAMS / (double)(r1 - r0) * 10.0;
}

static void cider_task(void *ctx, int tid, int nth)
{
    const cider_job *j = ctx;
    entry *c = j->scratch + (ptrdiff_t)tid * 2 * j->room, *r = c + j->room;
    const ptrdiff_t k0 = j->K * tid / nth, k1 = j->K * (tid + 1) / nth;
    for (ptrdiff_t k = k0; k < k1; k++) j->scores[k] = score_of(j, k, c, r);
}

int fc_cider_d(const fc_cider_table *t, const ptrdiff_t *cand_tokens, const ptrdiff_t *cand_starts,
               ptrdiff_t K, const ptrdiff_t *ref_tokens, const ptrdiff_t *ref_starts,
               const ptrdiff_t *refs, ptrdiff_t longest, double *scores, int nthreads)
{
    if (K <= 0) return 0;
    int threads = K < TASK_MIN || nthreads < 1 ? 1 : nthreads;
    if (threads > FC_MAX_THREADS) threads = FC_MAX_THREADS;
    cider_job j = {t, log((double)t->images), cand_tokens, cand_starts, ref_tokens, ref_starts, refs,
                   K, NGRAMS * (longest > 0 ? longest : 1), NULL, scores};
    j.scratch = malloc((size_t)threads * 2 * (size_t)j.room * sizeof(entry));
    if (!j.scratch) return -1;
    if (threads > 1) fc_pool_run(cider_task, &j, threads);
    else cider_task(&j, 0, 1);
    free(j.scratch);
    return 0;
}
