/* amx.c -- AMX for the bf16 GEMM (see amx.h): asking the OS for the tile
 * state, and the mode fc_gemm_bf16 reads.
 */
#include "amx.h"

#include "amx_tiles.h"
#include "simd.h"

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

static int amx_granted = FC_AMX_NOT_ASKED; /* fc_amx_enable's answer, once asked */
static int amx_mode = FC_AMX_OFF;

static int ask(void)
{
#if !FC_AMX_HW
    return FC_AMX_NO_CODE;
#else
    unsigned a, b, c, d;
    /* cpuid leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24)))
        return FC_AMX_NO_CPU;
    /* The OS saves the tile state (XCR0 bits 17, 18) only if it uses XSAVE (OSXSAVE). */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))
        return FC_AMX_NO_XCR0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17))
        return FC_AMX_NO_XCR0;
#if defined(__linux__)
    /* Linux (5.16 and later) keeps the tile data off until a process asks. */
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, FC_ARCH_REQ_XCOMP_PERM, FC_XFEATURE_XTILEDATA) != 0 ||
        syscall(SYS_arch_prctl, FC_ARCH_GET_XCOMP_PERM, &perm) != 0 ||
        !(perm & (1ul << FC_XFEATURE_XTILEDATA)))
        return FC_AMX_OS_REFUSED;
    return FC_AMX_GRANTED;
#else
    return FC_AMX_OS_REFUSED; /* no known way to ask: not used */
#endif
#endif
}

int fc_amx_enable(void)
{
    if (amx_granted == FC_AMX_NOT_ASKED) amx_granted = ask();
    return amx_granted;
}

int fc_amx_mode(void) { return amx_mode; }

int fc_amx_set_mode(int mode)
{
    if (mode == FC_AMX_TILES && (!FC_AMX_HW || fc_amx_enable() != FC_AMX_GRANTED)) return -1;
    if (mode == FC_AMX_EMULATED && FC_PW % 32 != 0) return -1; /* gemm.c compiles no tile program */
    if (mode != FC_AMX_OFF && mode != FC_AMX_TILES && mode != FC_AMX_EMULATED) return -1;
    amx_mode = mode;
    return 0;
}
