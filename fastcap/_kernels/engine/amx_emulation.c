/* amx_emulation.c -- the AMX tile operations of amx_tiles.h in C, for the
 * tile program's tests on any CPU: one tile file per thread, TDPBF16PS as the
 * Intel SDM defines it.
 */
#include "amx_tiles.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static _Thread_local struct {
    uint8_t data[8][16][64];
    int rows[8], colsb[8];
} em;

void amx_em_config(const fc_tilecfg *cfg)
{
    memset(&em, 0, sizeof em); /* LDTILECFG zeroes the tiles */
    for (int t = 0; t < 8; t++) {
        em.rows[t] = cfg->rows[t];
        em.colsb[t] = cfg->colsb[t];
    }
}

void amx_em_release(void) { memset(&em, 0, sizeof em); }

void amx_em_zero(int t) { memset(em.data[t], 0, sizeof em.data[t]); }

void amx_em_load(int t, const void *base, long stride)
{
    memset(em.data[t], 0, sizeof em.data[t]);
    for (int r = 0; r < em.rows[t]; r++)
        memcpy(em.data[t][r], (const uint8_t *)base + (ptrdiff_t)r * stride, (size_t)em.colsb[t]);
}

void amx_em_store(int t, void *base, long stride)
{
    for (int r = 0; r < em.rows[t]; r++)
        memcpy((uint8_t *)base + (ptrdiff_t)r * stride, em.data[t][r], (size_t)em.colsb[t]);
}

/* A bf16 as float32, a subnormal read as zero (TDPBF16PS: DAZ). */
static float bf16_in(uint32_t bits16)
{
    uint32_t u = bits16 << 16;
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A float32 result, a subnormal flushed to zero (FTZ). */
static float ftz(float x) { return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x; }

/* TDPBF16PS c += a . b: for row m, pair k, column n, the even products then the odd
 * (Intel SDM pseudocode), each sum rounded to float32. */
void amx_em_dp(int c, int a, int b)
{
    for (int m = 0; m < em.rows[c]; m++) {
        float acc[16];
        uint32_t arow[16];
        memcpy(acc, em.data[c][m], sizeof acc);
        memcpy(arow, em.data[a][m], sizeof arow);
        for (int k = 0; k < em.colsb[a] / 4; k++) {
            uint32_t brow[16];
            memcpy(brow, em.data[b][k], sizeof brow);
            for (int n = 0; n < em.colsb[c] / 4; n++) {
                acc[n] = ftz(acc[n] + bf16_in(arow[k] & 0xffffu) * bf16_in(brow[n] & 0xffffu));
                acc[n] = ftz(acc[n] + bf16_in(arow[k] >> 16) * bf16_in(brow[n] >> 16));
            }
        }
        memcpy(em.data[c][m], acc, sizeof acc);
    }
}
