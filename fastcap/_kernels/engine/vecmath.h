/* vecmath.h -- exp, sigmoid and tanh of fastcap's compiled code, once: the
 * scalar forms (float and double) that the Cython kernels inline into their
 * loops, and the vector forms (simd.h's vf) of the engine's fused cells.
 *
 * Every form is the same algorithm with the same constants and order of
 * operations, so the scalar and vector float forms give the same bits (the
 * builds compile with -ffp-contract=off; tests/test_cython_backend.py checks
 * them against each other on every build): the engine's gates round like the
 * Cython cell kernels'.
 *
 * exp(x) is only needed for x <= 0 (sigmoid takes exp(-|x|), tanh
 * exp(-2|x|), softmax exp(x - max)). Sigmoid is the stable form, 1/(1+e) for
 * x >= 0 and e/(1+e) below, e = exp(-|x|); tanh(x) = sign(x) (1-e)/(1+e),
 * e = exp(-2|x|), with its odd Taylor series below |x| = 1/8, where 1 - e
 * would cancel. Measured against long double over [-800, 800] and down to
 * 1e-300: within 3 ulp (relative error 5.3e-16 in double, 2.8e-7 in float).
 */
#ifndef FASTCAP_ENGINE_VECMATH_H
#define FASTCAP_ENGINE_VECMATH_H

#include <math.h> /* fabs and copysign: compiled inline, no libm call */
#include <stdint.h>
#include <string.h>

#include "simd.h"

/* ---------------------------------------------------------------------------
 * scalar forms */

/* exp(x) for x <= 0 (x > 0 up to ~80 works too but no kernel needs it).
   x = k*ln2 + r: k = round(x*log2(e)) by the 1.5*2^23 shifter, whose low
   mantissa bits then hold k, so 2^k is built with integer ops only; r by
   Cody-Waite with ln2 split in a short high part (k*ln2_hi is exact) and
   a low part. Below the smallest normal exponent the result is 0. */
static inline float fc_exp_nonpos_f(float x)
{
    const float lo = -87.0f, shifter = 12582912.0f;
    float xc = x < lo ? lo : x;
    float t = xc * 1.44269504088896341f + shifter;
    float k = t - shifter;
    float r = (xc - k * 0.693359375f) - k * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits;
    float scale;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 127u) << 23;
    memcpy(&scale, &bits, sizeof scale);
    return x < lo ? 0.0f : p * scale;
}

/* The same algorithm in double (C has no generic functions; the
   constants and the polynomial's degree, 13, differ). */
static inline double fc_exp_nonpos_d(double x)
{
    const double lo = -708.0, shifter = 6755399441055744.0;
    double xc = x < lo ? lo : x;
    double t = xc * 1.44269504088896338700e+00 + shifter;
    double k = t - shifter;
    double r = (xc - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t bits;
    double scale;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023u) << 52;
    memcpy(&scale, &bits, sizeof scale);
    return x < lo ? 0.0 : p * scale;
}

static inline float fc_sigmoid_f(float x)
{
    float e = fc_exp_nonpos_f(x >= 0.0f ? -x : x);
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

static inline double fc_sigmoid_d(double x)
{
    double e = fc_exp_nonpos_d(x >= 0.0 ? -x : x);
    return (x >= 0.0 ? 1.0 : e) / (1.0 + e);
}

/* The odd series of tanh in a2 = a*a, |a| < 1/8 (truncation < 1e-17 relative). */
#define FC_TANH_SERIES(T, a, a2)                                                   \
    ((a) + (a) * (a2) * ((((((((T)(-929569.0 / 638512875.0) * (a2) + (T)(21844.0 / 6081075.0)) \
    * (a2) + (T)(-1382.0 / 155925.0)) * (a2) + (T)(62.0 / 2835.0)) * (a2) + (T)(-17.0 / 315.0)) \
    * (a2) + (T)(2.0 / 15.0)) * (a2) + (T)(-1.0 / 3.0))))

static inline float fc_tanh_f(float x)
{
    float a = fabsf(x);
    float e = fc_exp_nonpos_f(-(a + a));
    float t = (1.0f - e) / (1.0f + e);
    float a2 = a * a;
    t = a < 0.125f ? FC_TANH_SERIES(float, a, a2) : t;
    return copysignf(t, x); /* the sign of x, -0.0 and NaN included, as the vector form */
}

static inline double fc_tanh_d(double x)
{
    double a = fabs(x);
    double e = fc_exp_nonpos_d(-(a + a));
    double t = (1.0 - e) / (1.0 + e);
    double a2 = a * a;
    t = a < 0.125 ? FC_TANH_SERIES(double, a, a2) : t;
    return copysign(t, x); /* the sign of x, -0.0 and NaN included, as the vector form */
}

/* ---------------------------------------------------------------------------
 * vector forms (float) */

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
