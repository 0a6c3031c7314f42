/* amx.h -- whether the bf16 GEMM (gemm.c) runs its products on Intel AMX
 * tiles: the OS permission, the mode fc_gemm_bf16 reads, and the decision
 * made once, at the first bf16 product.
 *
 * The tile state must be granted by the kernel before the first tile
 * instruction (Linux: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA));
 * without it the process dies of SIGILL. fc_amx_enable (amx.c) asks once.
 * The tiles themselves, on the CPU or emulated, are amx_tiles.h.
 */
#ifndef FASTCAP_ENGINE_AMX_H
#define FASTCAP_ENGINE_AMX_H

/* Which tiles fc_gemm_bf16 runs products of 16 rows or more on. */
enum {
    FC_AMX_OFF = 0,      /* the vector tiles (tiles.h) */
    FC_AMX_TILES = 1,    /* the CPU's AMX tiles */
    FC_AMX_EMULATED = 2  /* the same tile program on emulated tiles (tests, on any CPU) */
};

/* Why the products do not run on AMX tiles: fc_amx_enable's answer (1-4) or the
 * decision's (FC_AMX_GRANTED when they do). */
enum {
    FC_AMX_NOT_ASKED = -1,    /* no decision yet: the first bf16 product decides */
    FC_AMX_GRANTED = 0,       /* the OS granted the tile state (and the tiles passed the check) */
    FC_AMX_NO_CPU = 1,        /* no amx_bf16 (or amx_tile) in cpuid */
    FC_AMX_NO_XCR0 = 2,       /* the OS does not save the tile state (XCR0 bits 17, 18) */
    FC_AMX_OS_REFUSED = 3,    /* arch_prctl(ARCH_REQ_XCOMP_PERM) refused */
    FC_AMX_NO_CODE = 4,       /* this build has no AMX code (only the avx512bf16 build has) */
    FC_AMX_CHECK_FAILED = 5,  /* the tiles disagreed with the vector tiles on the check */
    FC_AMX_SWITCHED_OFF = 6   /* the caller said no (FASTCAP_AMX=off) */
};

/* Ask the OS for the tile state once: FC_AMX_GRANTED or the reason (1-4) (amx.c). */
int fc_amx_enable(void);
/* The tiles fc_gemm_bf16 runs (FC_AMX_OFF, _TILES, _EMULATED); setting FC_AMX_TILES needs
 * fc_amx_enable() == FC_AMX_GRANTED, FC_AMX_EMULATED panels of whole 32-column tile pairs.
 * 0, or -1 (the mode unchanged) (amx.c). */
int fc_amx_mode(void);
int fc_amx_set_mode(int mode);

/* --- the decision (amx_policy.c) ---------------------------------------- */

/* Decide once, at the first bf16 product (it may ask the OS, which changes the process, so
 * never at import): with `allowed` (FASTCAP_AMX, read by the caller), ask the OS and, if it
 * grants the tile state, keep the CPU's tiles only if they pass fc_amx_try's check. Later
 * calls return the first answer. Returns the reason (FC_AMX_GRANTED: the tiles are on);
 * *decided_now says whether this call decided (so the caller warns once). Thread-safe. */
int fc_amx_decide(int allowed, int nthreads, int *decided_now);

/* Given fc_amx_enable's answer `granted`, use the tiles `candidate` (FC_AMX_TILES or
 * FC_AMX_EMULATED) if granted is FC_AMX_GRANTED and they pass a check against the vector
 * tiles on a small product (edges of rows, columns and k included); else the vector tiles.
 * Returns the reason, and records it (tests drive it with any answer). */
int fc_amx_try(int granted, int candidate, int nthreads);

/* Set the mode as fc_amx_set_mode does and count that as the decision: the first bf16
 * product keeps it (tests, benchmarks). 0, or -1 (nothing changed). */
int fc_amx_use(int mode);

/* The decision so far: made or not, its reason, and the tiles it was about. */
typedef struct {
    int decided;    /* fc_amx_decide or fc_amx_use ran */
    int reason;     /* FC_AMX_NOT_ASKED until fc_amx_decide or fc_amx_try ran */
    int candidate;  /* the tiles the last check ran (FC_AMX_TILES or _EMULATED) */
} fc_amx_decision;
fc_amx_decision fc_amx_status(void);

#endif
