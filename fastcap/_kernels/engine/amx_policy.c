/* amx_policy.c -- the decision whether the bf16 GEMM runs on AMX tiles (amx.h).
 *
 * Made once, at the first bf16 product: ask the OS for the tile state, then
 * run a small product on the tiles and on the vector tiles and keep the tiles
 * only if the two agree within float32 rounding (a tile program that was
 * wrong on some CPU would otherwise give wrong products silently). The
 * caller maps the reason to a message and warns where the CPU has AMX but
 * the OS or the check said no.
 */
#include "amx.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>

#include "gemm.h"
#include "pack.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* one decision at a time */
static fc_amx_decision state = {0, FC_AMX_NOT_ASKED, FC_AMX_TILES};

/* The check: (CM, CK) @ (CK, CN), sizes that leave partial row, column and k blocks
 * of the tiles (16 rows, 16 pairs, 32 columns). */
enum { CM = 40, CK = 70, CN = 50 };

/* Uniform in [-1, 1): the check's operands (any values with exact bf16 products do). */
static float next_value(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return (float)(*s >> 8) / (float)(1u << 23) - 1.0f;
}

/* Whether `candidate` gives the vector tiles' product within float32 rounding on the check
 * (the mode is left at FC_AMX_OFF). Out of memory counts as a failure: the tiles unproven. */
static int check_passes(int candidate, int nthreads)
{
    static float a[CM * CK], b[CK * CN], want[CM * CN], got[CM * CN];
    uint32_t s = 2463534242u;
    float amax = 0.0f;
    for (int i = 0; i < CM * CK; i++) {
        a[i] = next_value(&s);
        amax = fabsf(a[i]) > amax ? fabsf(a[i]) : amax;
    }
    for (int i = 0; i < CK * CN; i++) b[i] = next_value(&s);
    fc_packed bp;
    if (fc_pack_matrix_bf16(&bp, b, CN, 1, CK, CN, nthreads) != 0) return 0;
    int ok = fc_amx_set_mode(FC_AMX_OFF) == 0
             && fc_gemm_bf16(a, CK, 1, CM, &bp, want, CN, nthreads) == 0
             && fc_amx_set_mode(candidate) == 0
             && fc_gemm_bf16(a, CK, 1, CM, &bp, got, CN, nthreads) == 0;
    fc_amx_set_mode(FC_AMX_OFF);
    fc_packed_free(&bp);
    /* the same exact products summed in another order: float32 rounding apart (|b| < 1, so
     * CK * 5 * amax is a generous bound on every partial sum); a NaN fails */
    const float tol = 1e-5f * amax * CK * 5;
    for (int i = 0; ok && i < CM * CN; i++) ok = fabsf(got[i] - want[i]) <= tol;
    return ok;
}

/* fc_amx_try under the lock. */
static int try_locked(int granted, int candidate, int nthreads)
{
    fc_amx_set_mode(FC_AMX_OFF);
    state.candidate = candidate;
    if (granted != FC_AMX_GRANTED) state.reason = granted;
    else if (check_passes(candidate, nthreads) && fc_amx_set_mode(candidate) == 0)
        state.reason = FC_AMX_GRANTED;
    else state.reason = FC_AMX_CHECK_FAILED;
    return state.reason;
}

int fc_amx_try(int granted, int candidate, int nthreads)
{
    pthread_mutex_lock(&lock);
    const int reason = try_locked(granted, candidate, nthreads);
    pthread_mutex_unlock(&lock);
    return reason;
}

int fc_amx_decide(int allowed, int nthreads, int *decided_now)
{
    pthread_mutex_lock(&lock);
    *decided_now = !state.decided;
    if (!state.decided) {
        state.decided = 1;
        if (!allowed) state.reason = FC_AMX_SWITCHED_OFF;
        else try_locked(fc_amx_enable(), FC_AMX_TILES, nthreads);
    }
    const int reason = state.reason;
    pthread_mutex_unlock(&lock);
    return reason;
}

int fc_amx_use(int mode)
{
    pthread_mutex_lock(&lock);
    const int rc = fc_amx_set_mode(mode);
    if (rc == 0) state.decided = 1;
    pthread_mutex_unlock(&lock);
    return rc;
}

fc_amx_decision fc_amx_status(void)
{
    pthread_mutex_lock(&lock);
    const fc_amx_decision s = state;
    pthread_mutex_unlock(&lock);
    return s;
}
