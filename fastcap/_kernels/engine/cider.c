/* cider.c -- CIDEr-D over captions of word ids: see cider.h for the contract.
 *
 * The document frequencies: an open-addressing hash table of 128-bit n-gram keys (linear
 * probing, at most half full, doubled as it fills), each image's references' n-grams
 * made distinct in a small table of their own, then counted once. A caption's probes are
 * prefetched together (the table outgrows the caches). A score: the candidate's and each
 * reference's distinct n-grams with their tf-idf weights, each caption's in a small table
 * of its own (in the cache), the candidate's looked up once per n-gram of the reference.
 * Sums run in double, in pycocoevalcap's order of operations per n-gram order and
 * reference; only the order in which one vector's entries are added differs (the
 * reference's n-grams here, the candidate's there), which moves a score by rounding alone.
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
#define TASK_MIN 64       /* fewer candidates run on the calling thread */

typedef struct {
    uint64_t lo, hi;
} key;

typedef struct {
    key k;
    size_t h; /* the slot of the corpus's table the key hashes to */
    size_t s; /* its slot in the caption's own table */
} entry;

typedef struct {
    key k;    /* lo == 0: empty */
    double w; /* the n-gram's count in the caption, then its tf-idf weight */
} local;

/* A caption's tf-idf vector: its distinct n-grams (e[0..d)) in a small table of its own
 * (one probe finds an n-gram, so a candidate meets a reference in one pass over the
 * reference's n-grams), and its norm per n. */
typedef struct {
    entry *e;     /* (room) */
    local *slots; /* (mask + 1), a power of 2 >= 2 room */
    size_t mask;
    ptrdiff_t d;
    double norm[NGRAMS];
} vector;

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

static inline size_t hash_of(key k, size_t mask) { return (size_t)mix(k.lo ^ mix(k.hi + 0x9E3779B97F4A7C15ULL)) & mask; }

/* The n-grams (n = 1..4) of the l words at w into e, each with its slot in a table of
 * `mask` + 1 slots, whose cache lines are fetched now: a caption's probes then overlap
 * their memory latency instead of waiting for each in turn. Returns how many. */
static ptrdiff_t ngrams_of(const ptrdiff_t *w, ptrdiff_t l, const fc_cider_slot *slots, size_t mask,
                           entry *e)
{
    ptrdiff_t m = 0;
    for (int n = 1; n <= NGRAMS; n++) {
        for (ptrdiff_t j = 0; j + n <= l; j++, m++) {
            e[m].k = key_of(w + j, n);
            e[m].h = hash_of(e[m].k, mask);
            __builtin_prefetch(slots + e[m].h);
        }
    }
    return m;
}

/* The slot holding k, or the empty slot where it belongs (the table is never full),
 * probing from slot h. */
static size_t find(const fc_cider_table *t, key k, size_t h)
{
    while (t->slots[h].lo && (t->slots[h].lo != k.lo || t->slots[h].hi != k.hi)) h = (h + 1) & t->mask;
    return h;
}

void fc_cider_free(fc_cider_table *t)
{
    free(t->slots);
    t->slots = NULL;
    t->mask = t->count = 0;
}

/* Double the table until `more` n-grams fit at most half full. */
static int make_room(fc_cider_table *t, size_t more)
{
    size_t size = t->mask + 1;
    while (2 * (t->count + more) > size) size *= 2;
    if (size == t->mask + 1) return 0;
    fc_cider_slot *slots = calloc(size, sizeof *slots);
    if (!slots) return -1;
    fc_cider_table old = *t;
    t->slots = slots;
    t->mask = size - 1;
    for (size_t s = 0; s <= old.mask; s++) {
        if (!old.slots[s].lo) continue;
        const key k = {old.slots[s].lo, old.slots[s].hi};
        t->slots[find(t, k, hash_of(k, t->mask))] = old.slots[s];
    }
    free(old.slots);
    return 0;
}

static inline int same(key a, key b) { return a.lo == b.lo && a.hi == b.hi; }

static int vector_alloc(vector *v, ptrdiff_t room)
{
    size_t slots = 2;
    while (slots < 2 * (size_t)room) slots *= 2;
    v->e = malloc((size_t)room * sizeof *v->e);
    v->slots = calloc(slots, sizeof *v->slots);
    v->mask = slots - 1;
    v->d = 0;
    return v->e && v->slots ? 0 : -1;
}

static void vector_free(vector *v)
{
    free(v->e);
    free(v->slots);
}

/* The slot of v's table holding k, or the empty one where it belongs. */
static inline size_t local_find(const vector *v, key k, size_t h)
{
    size_t s = h & v->mask;
    while (v->slots[s].k.lo && !same(v->slots[s].k, k)) s = (s + 1) & v->mask;
    return s;
}

/* The m n-grams in v->e -> v's distinct ones, first to last (v->e[0..v->d)), each counted
 * in its slot of v's table. */
static void distinct(vector *v, ptrdiff_t m)
{
    ptrdiff_t d = 0;
    for (ptrdiff_t a = 0; a < m; a++) {
        const size_t s = local_find(v, v->e[a].k, v->e[a].h);
        if (!v->slots[s].k.lo) {
            v->slots[s].k = v->e[a].k;
            v->slots[s].w = 0.0;
            v->e[d] = v->e[a];
            v->e[d++].s = s;
        }
        v->slots[s].w += 1.0;
    }
    v->d = d;
}

/* Empty v's table for the next caption (only the slots it used). */
static void clear(vector *v)
{
    for (ptrdiff_t a = 0; a < v->d; a++) v->slots[v->e[a].s].k.lo = 0;
    v->d = 0;
}

/* Each counted slot's df -> log(df), this thread's share of the slots. */
static void log_task(void *ctx, int tid, int nth)
{
    fc_cider_slot *slots = ((fc_cider_table *)ctx)->slots;
    const size_t n = ((fc_cider_table *)ctx)->mask + 1, share = n / (size_t)nth;
    const size_t end = tid == nth - 1 ? n : share * (size_t)(tid + 1);
    for (size_t s = share * (size_t)tid; s < end; s++)
        if (slots[s].lo) slots[s].log_df = log(slots[s].log_df);
}

int fc_cider_df(fc_cider_table *t, const ptrdiff_t *tokens, const ptrdiff_t *starts,
                const ptrdiff_t *images, ptrdiff_t I, int nthreads)
{
    ptrdiff_t most = 0, words = 0; /* an image's references' words, at most; in all */
    for (ptrdiff_t i = 0; i < I; i++) {
        FC_CHECK(images[i] <= images[i + 1] && starts[images[i]] <= starts[images[i + 1]]);
        const ptrdiff_t n = starts[images[i + 1]] - starts[images[i]];
        most = n > most ? n : most;
        words += n;
    }
    /* Sized for a distinct n-gram per word at most half full (real captions have about
     * one per word and a fourth of their n-grams), so that it rarely grows. */
    size_t slots = FIRST_SLOTS;
    while (slots < 2 * (size_t)words) slots *= 2;
    vector v;
    memset(t, 0, sizeof *t);
    t->images = I;
    t->slots = calloc(slots, sizeof *t->slots);
    t->mask = slots - 1;
    int rc = vector_alloc(&v, NGRAMS * most + 1) || !t->slots ? -1 : 0;
    /* Each image's n-grams made distinct in a small table first, then counted once in the
     * corpus's: the references of an image share many of theirs. */
    for (ptrdiff_t i = 0; i < I && !rc; i++) {
        if ((rc = make_room(t, (size_t)(NGRAMS * (starts[images[i + 1]] - starts[images[i]]))))) break;
        ptrdiff_t m = 0;
        for (ptrdiff_t c = images[i]; c < images[i + 1]; c++) {
            FC_CHECK(starts[c] <= starts[c + 1] && m + NGRAMS * (starts[c + 1] - starts[c]) <= NGRAMS * most);
            m += ngrams_of(tokens + starts[c], starts[c + 1] - starts[c], t->slots, t->mask, v.e + m);
        }
        distinct(&v, m);
        for (ptrdiff_t a = 0; a < v.d; a++) {
            fc_cider_slot *s = t->slots + find(t, v.e[a].k, v.e[a].h);
            if (!s->lo) {
                s->lo = v.e[a].k.lo;
                s->hi = v.e[a].k.hi;
                t->count++;
            }
            s->log_df += 1.0;
        }
        clear(&v);
    }
    /* a log per n-gram here, not per use; a slot's log is one thread's, so any count gives
     * the same table */
    const int threads = nthreads < 1 ? 1 : nthreads > FC_MAX_THREADS ? FC_MAX_THREADS : nthreads;
    if (!rc && threads > 1 && t->mask + 1 >= (size_t)FIRST_SLOTS * threads)
        fc_pool_run(log_task, t, threads);
    else if (!rc) log_task(t, 0, 1);
    vector_free(&v);
    if (rc) fc_cider_free(t);
    return rc;
}

/* v = the tf-idf vector of the l words at w: each distinct n-gram weighted
 * tf * (ref_len - log(max(1, df))), as pycocoevalcap's counts2vec. */
static void vector_of(const fc_cider_table *t, double ref_len, const ptrdiff_t *w, ptrdiff_t l,
                      vector *v)
{
    distinct(v, ngrams_of(w, l, t->slots, t->mask, v->e));
    for (int n = 0; n < NGRAMS; n++) v->norm[n] = 0.0;
    for (ptrdiff_t a = 0; a < v->d; a++) {
        const fc_cider_slot *g = t->slots + find(t, v->e[a].k, v->e[a].h);
        local *x = v->slots + v->e[a].s;
        x->w *= ref_len - (g->lo ? g->log_df : 0.0); /* log(max(1, df)): df >= 1 where held */
        v->norm[order_of(x->k) - 1] += x->w * x->w;
    }
    for (int n = 0; n < NGRAMS; n++) v->norm[n] = sqrt(v->norm[n]);
}

typedef struct {
    const fc_cider_table *t;
    double ref_len;
    const ptrdiff_t *cand_tokens, *cand_starts, *ref_tokens, *ref_starts, *refs;
    ptrdiff_t K, room; /* candidates; n-grams a caption may have (4 * longest) */
    vector *vectors;   /* (threads, 2) */
    double *scores;
} cider_job;

/* CIDEr-D of candidate k (see cider.h); c, r: the two vectors' scratch. */
static double score_of(const cider_job *j, ptrdiff_t k, vector *c, vector *r)
{
    double score[NGRAMS] = {0.0};
    const ptrdiff_t cl = j->cand_starts[k + 1] - j->cand_starts[k];
    const ptrdiff_t r0 = j->refs[2 * k], r1 = j->refs[2 * k + 1];
    FC_CHECK(cl >= 0 && cl * NGRAMS <= j->room && r0 < r1);
    vector_of(j->t, j->ref_len, j->cand_tokens + j->cand_starts[k], cl, c);
    for (ptrdiff_t ref = r0; ref < r1; ref++) {
        const ptrdiff_t rl = j->ref_starts[ref + 1] - j->ref_starts[ref];
        FC_CHECK(rl >= 0 && rl * NGRAMS <= j->room);
        vector_of(j->t, j->ref_len, j->ref_tokens + j->ref_starts[ref], rl, r);
        double val[NGRAMS] = {0.0};
        for (ptrdiff_t a = 0; a < r->d; a++) {
            const local *y = r->slots + r->e[a].s, *x = c->slots + local_find(c, y->k, r->e[a].h);
            if (x->k.lo) /* the candidate's weight clipped at the reference's */
                val[order_of(y->k) - 1] += (x->w < y->w ? x->w : y->w) * y->w;
        }
        clear(r);
        /* pycocoevalcap's length is the bigrams' count */
        const double delta = (double)(cl > 1 ? cl - 1 : 0) - (double)(rl > 1 ? rl - 1 : 0);
        const double penalty = exp(-(delta * delta) / (2.0 * SIGMA * SIGMA));
        for (int n = 0; n < NGRAMS; n++) {
            if (c->norm[n] != 0.0 && r->norm[n] != 0.0) val[n] /= c->norm[n] * r->norm[n];
            score[n] += val[n] * penalty;
        }
    }
    clear(c);
    double mean = 0.0;
    for (int n = 0; n < NGRAMS; n++) mean += score[n];
    return mean / NGRAMS / (double)(r1 - r0) * 10.0;
}

static void cider_task(void *ctx, int tid, int nth)
{
    const cider_job *j = ctx;
    vector *v = j->vectors + 2 * tid;
    const ptrdiff_t k0 = j->K * tid / nth, k1 = j->K * (tid + 1) / nth;
    for (ptrdiff_t k = k0; k < k1; k++) j->scores[k] = score_of(j, k, &v[0], &v[1]);
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
    j.vectors = calloc(2 * (size_t)threads, sizeof *j.vectors);
    int rc = j.vectors ? 0 : -1;
    for (int i = 0; i < 2 * threads && !rc; i++) rc = vector_alloc(j.vectors + i, j.room);
    if (!rc && threads > 1) fc_pool_run(cider_task, &j, threads);
    else if (!rc) cider_task(&j, 0, 1);
    for (int i = 0; j.vectors && i < 2 * threads; i++) vector_free(j.vectors + i);
    free(j.vectors);
    return rc;
}
