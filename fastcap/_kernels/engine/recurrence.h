/* recurrence.h -- the compiled recurrent engine (float32): the whole packed
 * time loop of a vanilla RNN or an LSTM, forward and backward, in C.
 *
 * Layout (as fastcap._sequence.Packing): sequences sorted longest first; at step t
 * the first n_t = offsets[t+1] - offsets[t] sequences run, and their rows are
 * offsets[t] .. offsets[t+1]-1 of the packed (P, ...) arrays. G = H (RNN) or
 * 4H (LSTM, gates i, f, o, g). All arrays are C-contiguous float32. The
 * caller (cython_backend.pyx) has validated every shape and offset.
 *
 * Per step, the recurrent product (n_t x H) @ (H x G) runs as register tiles
 * of FC_MR rows x FC_PW columns over weights packed once per call into
 * panels of FC_PW columns (fc_pack), and each tile's accumulators go straight
 * into the cell math (the tile of the LSTM forward holds i, f, o and g of the
 * same FC_VW hidden units). Backward, dprev_h = da_t @ Wh.T runs on the
 * transposed packing and feeds the cell backward of step t-1 the same way.
 * Threads split the panels (hidden units); each output element is computed
 * by one thread in a fixed order, so results do not depend on the thread
 * count. One barrier per step.
 */
#ifndef FASTCAP_ENGINE_RECURRENCE_H
#define FASTCAP_ENGINE_RECURRENCE_H

#include <stddef.h>
#include <stdint.h>

enum {
    FC_PACK_GATES = 0,      /* LSTM forward: Wh (H, 4H), a panel = i,f,o,g of FC_VW units */
    FC_PACK_PLAIN = 1,      /* RNN forward: Wh (H, H), a panel = FC_PW consecutive units */
    FC_PACK_TRANSPOSED = 2  /* backward: Wh.T (G, H), a panel = FC_PW consecutive units */
};

typedef struct {
    float *data;  /* npanels * K * FC_PW floats, 64-byte aligned; unused columns are 0 */
    int kind, H, G, K, npanels;
} fc_packed;

/* Pack Wh (H, G) row-major for `kind` on nthreads threads; 0 on success, -1 if out of memory. */
int fc_pack(fc_packed *out, const float *Wh, int H, int G, int kind, int nthreads);
void fc_packed_free(fc_packed *p);

/* The build's instruction set ("baseline", "avx2", "avx512") and vector width. */
const char *fc_engine_isa(void);
int fc_engine_vector_width(void);

/* h (P, H) from xw (P, H) = x @ Wx + b and h0 (N, H). Wp: FC_PACK_PLAIN. */
void fc_rnn_forward(const float *xw, const float *h0, const fc_packed *Wp,
                    const ptrdiff_t *offsets, int T, int N, float *h_out, int nthreads);

/* da (P, H) gate gradients and dh0 (N, H) from dh (P, H), h (P, H). WTp: FC_PACK_TRANSPOSED. */
void fc_rnn_backward(const float *dh, const fc_packed *WTp, const float *h,
                     const ptrdiff_t *offsets, int T, int N, float *da_out, float *dh0_out,
                     int nthreads);

/* ifog (P, 4H), c (P, H), h (P, H) from xw (P, 4H), h0, c0 (N, H; c0 NULL = 0). Wp: FC_PACK_GATES. */
void fc_lstm_forward(const float *xw, const float *h0, const float *c0, const fc_packed *Wp,
                     const ptrdiff_t *offsets, int T, int N, float *ifog_out, float *c_out,
                     float *h_out, int nthreads);

/* da (P, 4H), dh0 (N, H) from dh (P, H), ifog, c and c0 (NULL = 0). dc_work: (N, H) scratch,
 * zeroed by the caller. WTp: FC_PACK_TRANSPOSED. */
void fc_lstm_backward(const float *dh, const float *c0, const fc_packed *WTp, const float *ifog,
                      const float *c, const ptrdiff_t *offsets, int T, int N, float *da_out,
                      float *dh0_out, float *dc_work, int nthreads);

#endif
