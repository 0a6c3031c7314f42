/* half.h -- IEEE half-precision bits to float32 and float64, exactly: the grid features'
 * storage type (fastcap.data.grid). NumPy converts halves one at a time (about 2.5 ns each,
 * 25 ms a minibatch of 100 ResNet grids, on the background reader's core while the step
 * trains); this is integer selects that vectorize on any build, with no F16C needed, so
 * every build converts alike.
 */
#ifndef FASTCAP_ENGINE_HALF_H
#define FASTCAP_ENGINE_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The value of half h (its 16 bits): every half is a float32. */
static inline float fc_half_value(uint32_t h)
{
    const uint32_t em = h & 0x7fffu; /* exponent and mantissa */
    const float small = (float)(int32_t)em * 0x1p-24f; /* zero and the subnormals: m 2^-24 */
    uint32_t bits;
    memcpy(&bits, &small, sizeof bits);
    if (em >= 0x7c00u) bits = (em << 13) + (224u << 23);      /* infinity, NaN (payload kept) */
    else if (em >= 0x0400u) bits = (em << 13) + (112u << 23); /* normal: exponent - 15 + 127 */
    bits |= (h & 0x8000u) << 16;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* out[i] = the value of raw[i] for i < n (one loop: it vectorizes). */
static inline void fc_half_to_float(const uint16_t *raw, float *out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) out[i] = fc_half_value(raw[i]);
}

/* 1 if one of raw[0..n) is an infinity or a NaN (every exponent bit set). */
static inline int fc_half_special(const uint16_t *raw, ptrdiff_t n)
{
    uint32_t most = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        const uint32_t em = raw[i] & 0x7fffu;
        most = em > most ? em : most;
    }
    return most >= 0x7c00u;
}

#endif
