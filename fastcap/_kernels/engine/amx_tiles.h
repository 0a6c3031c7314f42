/* amx_tiles.h -- the three AMX tile operations of the bf16 GEMM's tile
 * program (gemm_amx.h), twice: the CPU's instructions (amx_hw_*) and a C
 * emulation of them (amx_em_*, amx_emulation.c) that runs on any CPU.
 *
 * Why an emulation: the tile program was written before a machine with AMX
 * could run the tests, and one that loads from a wrong address or stride
 * would not show it until it ran on one. gemm_amx.h is one source compiled
 * against both operation sets, so the tests run the very tile program
 * (addresses, strides, padding, the pair layout) through the emulation on
 * every host, and the hardware build differs only in the operations
 * themselves (tests/test_amx.py runs both where the CPU has AMX).
 *
 * Tiles of the GEMM: 0-3 accumulators C (16 rows x 16 float32), 4-5 A (16
 * rows x 16 bf16 pairs), 6-7 B (16 pair rows x 16 columns, the pairs of the
 * packed panels: k even in the low half, as TDPBF16PS reads them). All eight
 * are 16 rows x 64 bytes, so one configuration serves every call.
 */
#ifndef FASTCAP_ENGINE_AMX_TILES_H
#define FASTCAP_ENGINE_AMX_TILES_H

#include <stdint.h>
#include <string.h>

/* The hardware tiles need an x86-64 compiler that knows them (GCC 11, clang 12)
 * and are used by the avx512bf16 build only: every AMX CPU has AVX512-BF16. */
#if defined(__x86_64__) && defined(__AVX512BF16__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define FC_AMX_HW 1
#include <immintrin.h>
#else
#define FC_AMX_HW 0
#endif

/* The 64-byte tile configuration (palette 1): every tile 16 rows x 64 bytes. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) fc_tilecfg;

static inline fc_tilecfg fc_amx_config(void)
{
    fc_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = 64;
        c.rows[t] = 16;
    }
    return c;
}

/* --- the emulation (TDPBF16PS as the Intel SDM defines it) -------------- */

void amx_em_config(const fc_tilecfg *cfg);
void amx_em_release(void);
void amx_em_zero(int t);
void amx_em_load(int t, const void *base, long stride);
void amx_em_store(int t, void *base, long stride);
void amx_em_dp(int c, int a, int b);

/* --- the hardware: tile numbers must be literals, hence macros ---------- */

#if FC_AMX_HW
#define FC_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bf16")))
#define amx_hw_config(cfg) _tile_loadconfig(cfg)
#define amx_hw_release() _tile_release()
#define amx_hw_zero(t) _tile_zero(t)
#define amx_hw_load(t, base, stride) _tile_loadd(t, base, stride)
#define amx_hw_store(t, base, stride) _tile_stored(t, base, stride)
#define amx_hw_dp(c, a, b) _tile_dpbf16ps(c, a, b)
#endif

#endif
