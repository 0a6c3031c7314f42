/* decode.h -- greedy decoding and sampling of the captioning model, the whole word loop in C.
 *
 * Why in C: at batch 1 a decoding step's arithmetic is a few tens of microseconds, and the
 * Python loop around the kernels (indexing, allocations, one kernel call per operation)
 * cost more than that, which hid the bfloat16 mode's halved weight bytes. Here one call
 * runs every step: the fed words' input projections (a per-word table filled as words
 * are first fed), one recurrent step (fc_lstm_forward / fc_rnn_forward with T = 1), the
 * scores h @ W_vocab, the argmax with b_vocab, and dropping the captions that ended.
 * The loop's semantics are those of the reference, fastcap/_kernels/greedy.py.
 *
 * Shapes: N captions, L words each, H hidden, G = gates * H, V vocabulary, W word vector.
 * All arrays C-contiguous; the caller (decode_engine.pxi) has checked every shape, that
 * the three packed operands share one precision, and that start is in [0, V).
 */
#ifndef FASTCAP_ENGINE_DECODE_H
#define FASTCAP_ENGINE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "attention.h"
#include "pack.h"

typedef struct {
    int N, L, H, G, V, W;
    int lstm;                /* 1: LSTM (G = 4H, c0 given), 0: vanilla RNN (G = H) */
    const float *h0, *c0;    /* (N, H) initial state; c0 NULL for the RNN */
    const float *W_embed;    /* (V, W) */
    const fc_packed *Wx;     /* (W, G) FC_PACK_PLAIN: fc_pack_matrix_f32 or _bf16 */
    const float *b;          /* (G,) */
    const fc_packed *Wh;     /* recurrent weights, FC_PACK_GATES (LSTM) or FC_PACK_PLAIN */
    const fc_packed *Wv;     /* W_vocab (H, V) FC_PACK_PLAIN */
    const float *b_vocab;    /* (V,) */
    float *table;            /* (V, G) IN/OUT: row w = W_embed[w] @ Wx + b where known[w] */
    uint8_t *known;          /* (V,) IN/OUT: rows of table filled (0 or 1) */
    ptrdiff_t start, end, null; /* end: -1 for none */
    const double *uniforms;  /* (N, L) in [0, 1): sample caption n's word t at uniforms[n, t];
                                NULL: greedy */
    int32_t *captions;       /* (N, L) OUT */
    /* The attention model (NULL: CaptioningRNN): its step replaces the recurrent one (Wh
     * unused, att->Nf = N rows of features), and alpha (N, L, att->L) OUT receives the
     * attention of every word, 0 after a caption's end. */
    const fc_attention *att;
    float *alpha;
} fc_decode;

/* Greedy captions of d (every element of d->captions written): each step feeds every
 * running caption's last word (start first) and keeps the first argmax of
 * h @ W_vocab + b_vocab (np.argmax's rules: lowest index on ties, a NaN wins at its
 * first position), or with d->uniforms the word drawn from its softmax (sample.h); a
 * caption that emits `end` leaves the batch and its later words stay `null`. Products run in the precision the operands were packed in (bf16: rounded
 * operands, float32 sums). 0 on success, -1 if out of memory. */
int fc_greedy_decode(const fc_decode *d, int nthreads);

#endif
