/* attention.h -- the attention model's recurrence (Show, Attend and Tell's soft attention)
 * in C, float32 and the bfloat16 mode, forward and backward: the whole packed time loop,
 * the contracts of the table's attention_recurrence_forward / _backward
 * (fastcap/_kernels/__init__.py; the reference loop is fastcap/_kernels/attention_recurrence.py).
 *
 * Per step, from h = h_{t-1} of the n running rows:
 *   1. hab = h @ [W_dec | W_beta] (n, E = A + D): register tiles over the packed panels;
 *   2. the scores e[r, l] = sum_j tanh(enc[r, l, j] + hab[r, j]) w_att[j], one (row, cell)
 *      per work item;
 *   3. alpha = softmax over L, a row per item;
 *   4. z = sigmoid(hab[:, A:] + b_beta) * sum_l alpha[:, l] a[:, l] (n, D), a (row, FC_PW
 *      channels) per item;
 *   5. the gates xw + [h, z] @ [[Wh], [Wz]] as tiles over the packed cell panels, the cell
 *      math (LSTM or RNN) in the tile's epilogue, as recurrence.c's.
 * The backward pass runs the same phases in reverse and recomputes tanh(enc + hd) from hd
 * (P, A) instead of storing (P, L, A) values. Threads split the panels of the products and
 * the items of the attention; a barrier ends each phase. Every output element is one
 * thread's, summed in a fixed order that depends neither on the thread count nor on the
 * vector width (the sums over A and D run in 16 fixed lanes, then a fixed tree), so every
 * thread count gives the same bits, and so do the AVX2 and AVX-512 builds.
 *
 * Layout: the cell's weights are packed with Hp = H rounded up to even rows for h (a zero
 * row when H is odd) and then D rows for z, so that [h, z] is one operand whose bf16 pairs
 * never straddle h and z, and h alone is its first Hp / 2 pairs (the operand of product 1).
 * The bf16 mode (weights packed bf16) rounds the operands of the two products only; the
 * attention and the cells compute in float32 (docs/design.md, the numerics contract).
 *
 * Shapes: N sequences (sorted longest first, the packing of recurrence.h), L cells, D
 * channels, A attention, H hidden, G = 4H (LSTM) or H (RNN), E = A + D, Kc = Hp + D. Every
 * array is C-contiguous float32; the caller (attention_engine.pxi) has checked them.
 */
#ifndef FASTCAP_ENGINE_ATTENTION_H
#define FASTCAP_ENGINE_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "pack.h"

typedef struct {
    int L, D, A, H, G, lstm;
    int Nf;              /* rows of a and enc */
    const float *a;      /* (Nf, L, D) features */
    const float *enc;    /* (Nf, L, A) a @ W_enc + b_enc */
    const float *b_beta; /* (D,) forward only */
    const float *w_att;  /* (A,) */
    /* forward: [W_dec | W_beta] (H, E) by fc_pack_matrix_f32 / _bf16, and [[Wh], [0], [Wz]]
     * (Kc, G) by fc_pack_cell (pack.h); backward: both by fc_pack(..., FC_PACK_TRANSPOSED) */
    const fc_packed *att, *cell;
} fc_attention;

/* The forward time loop: ifog (P, G; LSTM), c (P, H; LSTM), h, alpha (P, L), z, beta (P, D)
 * and hd (P, A) = h_{t-1} @ W_dec from xw (P, G), h0 and c0 (N, H; c0 NULL for the RNN).
 * rows: NULL (sequence r reads row r of a and enc, N <= Nf), or (N,) the row in [0, Nf) that
 * sequence r reads (decoding's running captions). 0, or -1 if out of memory. */
int fc_attention_forward(const fc_attention *m, const float *xw, const float *h0, const float *c0,
                         const ptrdiff_t *offsets, int T, int N, const ptrdiff_t *rows,
                         float *ifog_out, float *c_out, float *h_out, float *alpha_out,
                         float *z_out, float *beta_out, float *hd_out, int nthreads);

/* The backward time loop: da (P, G), datt (P, E), dwatt (P, A), denc (N, L, A) summed over the
 * steps, dh0 (N, H) from dh (P, H), dalpha (P, L) and the forward's c0 (NULL: RNN), ifog, c,
 * h, alpha, z, beta, hd. 0, or -1 if out of memory. */
int fc_attention_backward(const fc_attention *m, const float *dh, const float *dalpha,
                          const float *c0, const float *ifog, const float *c, const float *h,
                          const float *alpha, const float *z, const float *beta, const float *hd,
                          const ptrdiff_t *offsets, int T, int N, float *da_out, float *datt_out,
                          float *dwatt_out, float *denc_out, float *dh0_out, int nthreads);

#endif
