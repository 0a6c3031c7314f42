/* amx.c -- AMX for the bf16 GEMM (see amx.h): asking the OS for the tile
 * state, the mode fc_gemm_bf16 reads, and the emulation of the tiles.
 */
#include "amx.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if FC_AMX_HW
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define FC_ARCH_GET_XCOMP_PERM 0x1022
#define FC_ARCH_REQ_XCOMP_PERM 0x1023
#define FC_XFEATURE_XTILEDATA 18
#endif
#endif

#include "simd.h"

static int amx_granted = -1; /* fc_amx_enable's answer, once asked */
static int amx_mode = FC_AMX_OFF;

static int ask(void)
{
#if !FC_AMX_HW
    return 4;
#else
    unsigned a, b, c, d;
    /* cpuid leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24)))
        return 1;
    /* The OS saves the tile state (XCR0 bits 17, 18) only if it uses XSAVE (OSXSAVE). */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))
        return 2;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17))
        return 2;
#if defined(__linux__)
    /* Linux (5.16 and later) keeps the tile data off until a process asks. */
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, FC_ARCH_REQ_XCOMP_PERM, FC_XFEATURE_XTILEDATA) != 0 ||
        syscall(SYS_arch_prctl, FC_ARCH_GET_XCOMP_PERM, &perm) != 0 ||
        !(perm & (1ul << FC_XFEATURE_XTILEDATA)))
        return 3;
    return 0;
#else
    return 3; /* no known way to ask: not used */
#endif
#endif
}

int fc_amx_enable(void)
{
    if (amx_granted < 0) amx_granted = ask();
    return amx_granted;
}

int fc_amx_mode(void) { return amx_mode; }

int fc_amx_set_mode(int mode)
{
    if (mode == FC_AMX_TILES && (!FC_AMX_HW || fc_amx_enable() != 0)) return -1;
    if (mode == FC_AMX_EMULATED && FC_PW % 32 != 0) return -1; /* gemm.c compiles no tile program */
    if (mode != FC_AMX_OFF && mode != FC_AMX_TILES && mode != FC_AMX_EMULATED) return -1;
    amx_mode = mode;
    return 0;
}

/* --- the emulation: one tile file per thread --------------------------- */

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
