/* cider.h -- CIDEr-D over captions of word ids: the document frequencies of a reference
 * corpus, then the scores of candidates against references, as pycocoevalcap's
 * CiderScorer computes them (Vedantam, Zitnick and Parikh 2015, with the clipping and the
 * length penalty of CIDEr-D).
 *
 * Why in C: pycocoevalcap builds a Python dict per caption and walks it per reference;
 * 5,000 images with 5 references take seconds, and self-critical training scores every
 * batch. Here an n-gram is a 128-bit key (its word ids + 1, 32 bits each, 0 where the
 * n-gram is shorter), the corpus's document frequencies a hash table of those keys, and a
 * caption's tf-idf vector a small table of its distinct keys: a candidate meets a
 * reference in one pass over the reference's n-grams, with no string or Python object in
 * the loop.
 *
 * A caption set is tokens (word ids in [0, 2^32 - 1)) and starts: caption c is
 * tokens[starts[c]:starts[c + 1]]. The caller (the Cython wrapper in vocab.pxi) has
 * checked every start, range and word id.
 */
#ifndef FASTCAP_ENGINE_CIDER_H
#define FASTCAP_ENGINE_CIDER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t lo, hi; /* the n-gram's key: words 1-2 and 3-4; lo == 0 marks an empty slot */
    double log_df;   /* log(df), df how many images have the n-gram in a reference (while
                        building: df itself) */
} fc_cider_slot;     /* one cache access per probe */

typedef struct {
    fc_cider_slot *slots; /* (S,) */
    size_t mask;          /* S - 1: S is a power of 2, the table at most half full */
    size_t count;         /* n-grams held */
    ptrdiff_t images;     /* I, the corpus's images: idf = log(I) - log(max(1, df)), where an
                             n-gram the table does not hold has df 0 */
} fc_cider_table;

/* The document frequencies of the n-grams (n = 1..4) of I images' references, image i's
 * being captions images[i] .. images[i + 1] - 1 (the counting on the calling thread, the
 * table's logs over nthreads). 0 on success, -1 if out of memory (*t is then empty). */
int fc_cider_df(fc_cider_table *t, const ptrdiff_t *tokens, const ptrdiff_t *starts,
                const ptrdiff_t *images, ptrdiff_t I, int nthreads);

void fc_cider_free(fc_cider_table *t);

/* scores[k] (k < K) = CIDEr-D of candidate caption k against reference captions
 * refs[2k] .. refs[2k + 1] - 1 (at least one) with t's document frequencies; longest: the
 * most words of any of those captions (for the scratch). Candidates are split over the
 * pool's threads, each scored by one thread. 0 on success, -1 if out of memory. */
int fc_cider_d(const fc_cider_table *t, const ptrdiff_t *cand_tokens, const ptrdiff_t *cand_starts,
               ptrdiff_t K, const ptrdiff_t *ref_tokens, const ptrdiff_t *ref_starts,
               const ptrdiff_t *refs, ptrdiff_t longest, double *scores, int nthreads);

#endif
