/* cells.h -- the LSTM cell's vector math on FC_VW hidden units, forward and backward, shared
 * by the recurrences (recurrence.c) and the attention model's (attention.c,
 * attention_backward.c): the same order of operations as the Cython cell kernels, so float32
 * rounds alike everywhere.
 *
 * Gates are packed i, f, o, g, H apart; nu (0..FC_VW) lanes are valid, the rest are loaded
 * as 0 and never stored.
 */
#ifndef FASTCAP_ENGINE_CELLS_H
#define FASTCAP_ENGINE_CELLS_H

#include "bf16.h"
#include "simd.h"
#include "tiles.h"
#include "vecmath.h"

/* One forward step: x the row of xw at the units (gates H apart), acc the recurrent
 * products of the four gates, cp c_{t-1}; writes ifog at q (gates H apart), c and h. Returns h. */
FC_INLINE vf fc_lstm_cell_forward(const vf acc[4], const float *x, int H, int nu, vf cp, float *q,
                                  float *c_out, float *h_out)
{
    vf i = vf_sigmoid(acc[0] + vf_load_n(x, nu));
    vf f = vf_sigmoid(acc[1] + vf_load_n(x + H, nu));
    vf o = vf_sigmoid(acc[2] + vf_load_n(x + 2 * H, nu));
    vf g = vf_tanh(acc[3] + vf_load_n(x + 3 * H, nu));
    vf c = f * cp + i * g;
    vf h = o * vf_tanh(c);
    vf_store_n(q, i, nu);
    vf_store_n(q + H, f, nu);
    vf_store_n(q + 2 * H, o, nu);
    vf_store_n(q + 3 * H, g, nu);
    vf_store_n(c_out, c, nu);
    vf_store_n(h_out, h, nu);
    return h;
}

/* One backward step: dh the gradient at h_t, q the forward's ifog at the units, cc = c_t,
 * cp = c_{t-1}, dc (IN/OUT) the gradient at c_t from step t + 1, replaced by the one at
 * c_{t-1}; writes the gate gradients at d (gates H apart) and, with b, their bf16 copies. */
FC_INLINE void fc_lstm_cell_backward(vf dh, const float *q, int H, int nu, vf cc, vf cp, float *dc,
                                     float *d, uint16_t *b)
{
    vf i = vf_load_n(q, nu), f = vf_load_n(q + H, nu);
    vf o = vf_load_n(q + 2 * H, nu), g = vf_load_n(q + 3 * H, nu);
    vf tc = vf_tanh(cc);
    vf dct = vf_load_n(dc, nu) + dh * o * (1.0f - tc * tc);
    vf di = dct * g * i * (1.0f - i), df = dct * cp * f * (1.0f - f);
    vf dout = dh * tc * o * (1.0f - o), dg = dct * i * (1.0f - g * g);
    vf_store_n(d, di, nu);
    vf_store_n(d + H, df, nu);
    vf_store_n(d + 2 * H, dout, nu);
    vf_store_n(d + 3 * H, dg, nu);
    vf_store_n(dc, dct * f, nu);
    if (b) {
        vh_store_n(b, di, nu);
        vh_store_n(b + H, df, nu);
        vh_store_n(b + 2 * H, dout, nu);
        vh_store_n(b + 3 * H, dg, nu);
    }
}

#endif
