/* sample.h -- the next word of a caption from one row of scores: the argmax (greedy
 * decoding) or a draw from the softmax (sampling), in float and double, for the decoding
 * loop (decode.c) and the Cython argmax_words / sample_words kernels alike.
 *
 * The draw is the inverse of the distribution at a uniform u in [0, 1), defined exactly
 * as the NumPy reference (fastcap/_kernels/numpy_backend.py sample_words) computes it, so
 * that a backend changes a drawn word only where its scores differ: s = scores + b_vocab
 * in the row's type; e_j = exp(s_j - max s) in double; the first j whose running sum
 * e_0 + ... + e_j (sequential, in double) exceeds u * total, else (u * total rounded up
 * to total) the last j with e_j > 0. A row whose max is not finite (a NaN, +inf, or every
 * entry -inf) takes the argmax, as greedy decoding would.
 */
#ifndef FASTCAP_ENGINE_SAMPLE_H
#define FASTCAP_ENGINE_SAMPLE_H

#include <math.h>
#include <stddef.h>

#include "vecmath.h"

/* The first argmax of s + b over V >= 1 entries, with np.argmax's rules (a NaN wins at
 * its first position). */
#define FC_DEFINE_ARGMAX(name, T)                                               \
    static inline ptrdiff_t name(const T *s, const T *b, ptrdiff_t V)             \
    {                                                                             \
        T top = s[0] + b[0];                                                      \
        ptrdiff_t best = 0;                                                       \
        if (top != top) return 0;                                                 \
        for (ptrdiff_t j = 1; j < V; j++) {                                       \
            const T x = s[j] + b[j];                                              \
            if (x > top) {                                                        \
                top = x;                                                          \
                best = j;                                                         \
            } else if (x != x) {                                                  \
                return j;                                                         \
            }                                                                     \
        }                                                                         \
        return best;                                                              \
    }

/* The word drawn at u from softmax(s + b), V >= 1 entries; e: V doubles of scratch. The
 * exponentials run in their own loop (it vectorizes); the two sums stay sequential, so
 * the running sum reaches the total bit for bit. */
#define FC_DEFINE_SAMPLE(name, argmax, T)                                       \
    static inline ptrdiff_t name(const T *s, const T *b, ptrdiff_t V, double u,   \
                                 double *e)                                       \
    {                                                                             \
        const ptrdiff_t best = argmax(s, b, V);                                   \
        const double top = (double)(T)(s[best] + b[best]);                        \
        if (!isfinite(top)) return best;                                          \
        for (ptrdiff_t j = 0; j < V; j++)                                         \
            e[j] = fc_exp_nonpos_d((double)(T)(s[j] + b[j]) - top);               \
        double total = 0.0, running = 0.0;                                        \
        for (ptrdiff_t j = 0; j < V; j++) total += e[j];                          \
        const double target = u * total;                                          \
        ptrdiff_t last = best;                                                    \
        for (ptrdiff_t j = 0; j < V; j++) {                                       \
            running += e[j];                                                      \
            if (running > target) return j;                                       \
            if (e[j] > 0.0) last = j;                                             \
        }                                                                         \
        return last;                                                              \
    }

FC_DEFINE_ARGMAX(fc_argmax_f, float)
FC_DEFINE_ARGMAX(fc_argmax_d, double)
FC_DEFINE_SAMPLE(fc_sample_f, fc_argmax_f, float)
FC_DEFINE_SAMPLE(fc_sample_d, fc_argmax_d, double)

#endif
