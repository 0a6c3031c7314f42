/* recurrence.h -- the compiled recurrent engine (float32): the whole packed
 * time loop of a vanilla RNN or an LSTM, forward and backward, in C.
 *
 * Layout (as fastcap.model.sequence.Packing): sequences sorted longest first; at step t
 * the first n_t = offsets[t+1] - offsets[t] sequences run, and their rows are
 * offsets[t] .. offsets[t+1]-1 of the packed (P, ...) arrays. G = H (RNN) or
 * 4H (LSTM, gates i, f, o, g). All arrays are C-contiguous float32. The
 * caller (the wrappers of recurrence_engine.pxi) has checked every shape and offset.
 *
 * Per step, the recurrent product (n_t x H) @ (H x G) runs as register tiles
 * of FC_MR rows x FC_PW columns over weights packed once per call into
 * panels of FC_PW columns (fc_pack, pack.h), and each tile's accumulators go straight
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

#include "pack.h"

/* The recurrences with bf16 weights (packed with bf16 = 1) read their A
 * operands (h_{t-1} forward, da_{t+1} backward) in bf16 from `ab`, which they
 * fill: forward (N + P, ceil(H/2)*2) uint16, backward (P, ceil(G/2)*2),
 * zeroed by the caller. With float32 weights ab is not used (NULL). */

/* h (P, H) from xw (P, H) = x @ Wx + b and h0 (N, H). Wp: FC_PACK_PLAIN. */
void fc_rnn_forward(const float *xw, const float *h0, const fc_packed *Wp,
                    const ptrdiff_t *offsets, int T, int N, float *h_out, uint16_t *ab,
                    int nthreads);

/* da (P, H) gate gradients and dh0 (N, H) from dh (P, H), h (P, H). WTp: FC_PACK_TRANSPOSED. */
void fc_rnn_backward(const float *dh, const fc_packed *WTp, const float *h,
                     const ptrdiff_t *offsets, int T, int N, float *da_out, float *dh0_out,
                     uint16_t *ab, int nthreads);

/* ifog (P, 4H), c (P, H), h (P, H) from xw (P, 4H), h0, c0 (N, H; c0 NULL = 0). Wp: FC_PACK_GATES. */
void fc_lstm_forward(const float *xw, const float *h0, const float *c0, const fc_packed *Wp,
                     const ptrdiff_t *offsets, int T, int N, float *ifog_out, float *c_out,
                     float *h_out, uint16_t *ab, int nthreads);

/* da (P, 4H), dh0 (N, H) from dh (P, H), ifog, c and c0 (NULL = 0). dc_work: (N, H) scratch,
 * zeroed by the caller. WTp: FC_PACK_TRANSPOSED. */
void fc_lstm_backward(const float *dh, const float *c0, const fc_packed *WTp, const float *ifog,
                      const float *c, const ptrdiff_t *offsets, int T, int N, float *da_out,
                      float *dh0_out, float *dc_work, uint16_t *ab, int nthreads);

#endif
