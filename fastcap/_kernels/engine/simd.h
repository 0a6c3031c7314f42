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
 * exp, sigmoid and tanh are in vecmath.h, beside their scalar forms.
 */
#ifndef FASTCAP_ENGINE_SIMD_H
#define FASTCAP_ENGINE_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define FC_VW 16
#define FC_MR 6
#if defined(__AVX512BF16__)
#define FC_ISA "avx512bf16" /* bf16.h's tiles are then vdpbf16ps */
#else
#define FC_ISA "avx512"
#endif
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

#endif
