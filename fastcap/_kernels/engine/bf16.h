/* bf16.h -- bfloat16 for the engine: rounding float32 to bf16 and the pair
 * dot product of the bf16 tiles (fastcap's bfloat16 precision mode).
 *
 * A bf16 is the top 16 bits of a float32. Operands are rounded to nearest
 * even (as ml_dtypes, the NumPy reference's rounding); NaN stays a quiet NaN.
 * Two bf16 of consecutive k share a 32-bit lane, k even in the low half, so a
 * product over K runs over K/2 "pairs" and a packed panel row of pairs takes
 * the bytes of one float32 row.
 *
 * fc_dot2(acc, a, w): acc[l] += hi(a)*hi(w[l]) then += lo(a)*lo(w[l]), each
 * step rounded to float32 (a product of two bf16 is exact in float32, so this
 * is one rounding per k). With AVX512-BF16 (the avx512bf16 build) it is one
 * vdpbf16ps, which computes the same sum but flushes subnormals to zero; every
 * other build computes it with two FMAs (or a multiply and an add, which
 * round alike here), so any build runs the bf16 kernels and tests can check
 * them on CPUs without bf16 units.
 */
#ifndef FASTCAP_ENGINE_BF16_H
#define FASTCAP_ENGINE_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "simd.h"

#if defined(__AVX512BF16__) && FC_VW == 16
#define FC_BF16_NATIVE 1
#else
#define FC_BF16_NATIVE 0
#endif

typedef uint16_t vh __attribute__((vector_size(FC_VW * 2))); /* FC_VW bf16 */

static inline uint16_t fc_bf16(float x) /* round to nearest even */
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

typedef uint32_t vu __attribute__((vector_size(FC_VW * 4))); /* FC_VW bf16 pairs */

/* v rounded to bf16 (fc_bf16 lane by lane), in the low 16 bits of each lane. */
static inline vu vu_bf16_bits(vf v)
{
    vu u = (vu)v;
    vi nan = (u & 0x7fffffffu) > 0x7f800000u;
    vu r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    vu q = (u >> 16) | 0x40u;
    return (vu)(((vi)r & ~nan) | ((vi)q & nan));
}

/* The first n lanes of v, rounded to bf16, stored at p. */
static inline void vh_store_n(uint16_t *p, vf v, int n)
{
    vh h = __builtin_convertvector(vu_bf16_bits(v), vh);
    memcpy(p, &h, (size_t)(n < FC_VW ? n : FC_VW) * 2);
}

/* The pair (p[0], p[step]) rounded to bf16, the second 0 when k + 1 = K (k: p's index
 * along the paired dimension, K its length). */
static inline uint32_t fc_bf16_pair(const float *p, ptrdiff_t step, int k, int K)
{
    return (uint32_t)fc_bf16(p[0]) | (k + 1 < K ? (uint32_t)fc_bf16(p[step]) << 16 : 0u);
}

/* n contiguous floats -> ceil(n/2) bf16 pairs (the last one's high half 0 when n is odd). */
static inline void fc_bf16_pairs(const float *src, int n, uint32_t *dst)
{
    int i = 0;
    for (; i + 2 * FC_VW <= n; i += 2 * FC_VW) {
        vh h[2] = {__builtin_convertvector(vu_bf16_bits(vf_load(src + i)), vh),
                   __builtin_convertvector(vu_bf16_bits(vf_load(src + i + FC_VW)), vh)};
        memcpy(dst + i / 2, h, sizeof h);
    }
    for (; i < n; i += 2)
        dst[i / 2] = (uint32_t)fc_bf16(src[i]) | (i + 1 < n ? (uint32_t)fc_bf16(src[i + 1]) << 16 : 0);
}

/* acc += the pair products of a (two bf16, broadcast) and w (FC_VW pairs). */
static inline vf fc_dot2(vf acc, uint32_t a, vu w)
{
#if FC_BF16_NATIVE
    return (vf)_mm512_dpbf16_ps((__m512)acc, (__m512bh)_mm512_set1_epi32((int)a), (__m512bh)w);
#else
    float ahi, alo;
    uint32_t hi = a & 0xffff0000u, lo = a << 16;
    memcpy(&ahi, &hi, 4);
    memcpy(&alo, &lo, 4);
    acc = fc_fma(vf_set1(ahi), (vf)(w & 0xffff0000u), acc);
    return fc_fma(vf_set1(alo), (vf)(w << 16), acc);
#endif
}

static inline vu vu_load(const uint32_t *p) { vu v; memcpy(&v, p, sizeof v); return v; }

#endif
