/* simd.h -- the recurrent engine's vector type and vector math, for the
 * instruction set this translation unit is compiled for.
 *
 * The same sources are compiled three times by setup.py (baseline SSE2,
 * AVX2+FMA, AVX-512); the macros below pick the vector width FC_VW (floats per
 * register) and the number of rows FC_MR of the register tile (FC_MR rows x 4
 * vectors of accumulators must fit the register file: with AVX-512 6 x 4
 * accumulators, 4 weight vectors and a broadcast take 29 of 32 zmm; with 16
 * ymm/xmm, 3 x 4 accumulators and the broadcast, the weights taken as memory
 * operands of the FMAs (measured with the AVX2 build: 3 rows ran an LSTM
 * training step 1.23x faster than 2).
 * GCC vector extensions keep the code one source for all three; FMA is asked
 * for explicitly (fc_fma) because the builds compile with -ffp-contract=off.
 *
 * exp, sigmoid and tanh are the vector forms of the scalar functions of
 * cython_backend.pyx (same range reduction, polynomial and stable forms), so
 * the engine's gates round like the Cython cell kernels'.
 */
#ifndef FASTCAP_ENGINE_SIMD_H
#define FASTCAP_ENGINE_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define FC_VW 16
#define FC_MR 6
#define FC_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FC_VW 8
#define FC_MR 3
#define FC_ISA "avx2"
#else
#if defined(__SSE2__)
#include <emmintrin.h> /* SSE2: part of every x86-64 CPU */
#endif
#define FC_VW 4
#define FC_MR 3
#define FC_ISA "baseline" /* SSE2 on x86-64; GCC's generic 4-float vectors elsewhere */
#endif

#define FC_PW (4 * FC_VW) /* columns of a packed weight panel: 4 vectors */

typedef float vf __attribute__((vector_size(FC_VW * 4)));
typedef int32_t vi __attribute__((vector_size(FC_VW * 4)));

static inline vf vf_load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vf_store(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vf_set1(float s) /* every lane s (0 + s would turn -0.0 into +0.0) */
{
#if defined(__AVX512F__)
    return (vf)_mm512_set1_ps(s);
#elif FC_VW == 8
    return (vf)_mm256_set1_ps(s);
#elif defined(__SSE2__)
    return (vf)_mm_set1_ps(s);
#else /* another architecture: GCC's generic vectors */
    vf v;
    for (int i = 0; i < FC_VW; i++) v[i] = s;
    return v;
#endif
}

/* The first n (0..FC_VW) lanes; the rest of a loaded vector is 0. */
static inline vf vf_load_n(const float *p, int n)
{
    if (n >= FC_VW) return vf_load(p);
    vf v = {0};
    memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}
static inline void vf_store_n(float *p, vf v, int n)
{
    if (n >= FC_VW) vf_store(p, v);
    else memcpy(p, &v, (size_t)n * sizeof(float));
}

static inline vf fc_fma(vf a, vf b, vf c) /* a*b + c, rounded once where the CPU can */
{
#if defined(__AVX512F__)
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif FC_VW == 8
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

static inline vf vf_select(vi mask, vf a, vf b) /* mask ? a : b, lane by lane */
{
    return (vf)(((vi)a & mask) | ((vi)b & ~mask));
}

/* exp(x) for x <= 0: x = k*ln2 + r (Cody-Waite), degree-7 Taylor polynomial
 * in r, 2^k built in the exponent bits from the 1.5*2^23 shifter; 0 below
 * -87. NaN stays NaN. */
static inline vf vf_exp_nonpos(vf x)
{
    const vf lo = vf_set1(-87.0f), shifter = vf_set1(12582912.0f);
    vi under = x < lo;
    vf xc = vf_select(under, lo, x);
    vf t = xc * 1.44269504088896341f + shifter;
    vf k = t - shifter;
    vf r = (xc - k * 0.693359375f) - k * -2.12194440e-4f;
    vf p = vf_set1(1.0f / 5040.0f);
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vf scale = (vf)(((vi)t + 127) << 23);
    return vf_select(under, vf_set1(0.0f), p * scale);
}

static inline vf vf_neg_abs(vf x) { return (vf)((vi)x | (vi)vf_set1(-0.0f)); }

/* The stable sigmoid: 1/(1+e) for x >= 0, e/(1+e) below, e = exp(-|x|). */
static inline vf vf_sigmoid(vf x)
{
    vf e = vf_exp_nonpos(vf_neg_abs(x));
    return vf_select(x >= 0.0f, vf_set1(1.0f), e) / (1.0f + e);
}

/* tanh(x) = sign(x) (1-e)/(1+e), e = exp(-2|x|); the odd series below 1/8. */
static inline vf vf_tanh(vf x)
{
    vf na = vf_neg_abs(x);
    vf a = -na;
    vf e = vf_exp_nonpos(na + na);
    vf t = (1.0f - e) / (1.0f + e);
    vf a2 = a * a;
    vf s = (float)(-929569.0 / 638512875.0) * a2 + (float)(21844.0 / 6081075.0);
    s = s * a2 + (float)(-1382.0 / 155925.0);
    s = s * a2 + (float)(62.0 / 2835.0);
    s = s * a2 + (float)(-17.0 / 315.0);
    s = s * a2 + (float)(2.0 / 15.0);
    s = s * a2 + (float)(-1.0 / 3.0);
    s = a + a * a2 * s;
    t = vf_select(a < 0.125f, s, t);
    /* copy the sign of x (NaN: t is NaN already) */
    return (vf)((vi)t | ((vi)x & (vi)vf_set1(-0.0f)));
}

#endif
