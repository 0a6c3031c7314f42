/* pool.c -- see pool.h. Workers are started on first use and live until the
 * process exits; after fork() the child starts with none (pthread_atfork). */
#include "pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FC_PAUSE() _mm_pause()
#else
#define FC_PAUSE() ((void)0)
#endif

/* How long an idle worker spins for the next task before it sleeps, and how
 * long a thread spins at a barrier before it starts yielding the core (which
 * matters only when the machine has fewer free cores than threads). */
#define FC_IDLE_SPIN_NS 100000L
#define FC_BARRIER_SPIN 4000

static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER; /* one task at a time */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static int nworkers;          /* started workers (tid 1..nworkers); under run_lock */
static fc_task cur_task;      /* the task of generation `generation` */
static void *cur_ctx;
static int cur_n;
static int last_n = 1;
static atomic_uint generation;
static atomic_int remaining;  /* workers that have not finished this generation */
static atomic_int bar_count;
static atomic_uint bar_phase;
static int atfork_done;
static unsigned start_generation[FC_MAX_THREADS]; /* generation a worker was started in */

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void *worker_main(void *arg)
{
    int tid = (int)(long)arg;
    unsigned seen = start_generation[tid]; /* not generation: it may be posted already */
    for (;;) {
        /* Spin briefly for the next task, then sleep until it is posted. */
        long deadline = now_ns() + FC_IDLE_SPIN_NS;
        int spins = 0;
        while (atomic_load(&generation) == seen) {
            FC_PAUSE();
            if (++spins % 64 == 0 && now_ns() > deadline) {
                pthread_mutex_lock(&wake_lock);
                while (atomic_load(&generation) == seen)
                    pthread_cond_wait(&wake_cond, &wake_lock);
                pthread_mutex_unlock(&wake_lock);
            }
        }
        seen = atomic_load(&generation);
        /* Every worker takes part in every generation; those beyond the
         * task's thread count only check in, so none reads a later task's
         * parameters as if they were this one's. */
        if (tid < cur_n) cur_task(cur_ctx, tid, cur_n);
        atomic_fetch_sub(&remaining, 1);
    }
    return NULL;
}

static void reset_after_fork(void)
{
    /* The child has no workers; the locks were held by no other thread of
     * the child, so re-initialise them. */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    run_lock = m;
    wake_lock = m;
    wake_cond = c;
    nworkers = 0;
}

void fc_pool_barrier(int n)
{
    if (n <= 1) return;
    unsigned phase = atomic_load(&bar_phase);
    if (atomic_fetch_add(&bar_count, 1) == n - 1) {
        atomic_store(&bar_count, 0);
        atomic_fetch_add(&bar_phase, 1);
        return;
    }
    int spins = 0;
    while (atomic_load(&bar_phase) == phase) {
        if (++spins < FC_BARRIER_SPIN) FC_PAUSE();
        else sched_yield();
    }
}

/* Thread starts that may still succeed before they are made to fail (tests; -1: all). */
static int starts_allowed = -1;

void fc_pool_fail_starts_after(int k) { starts_allowed = k; }

/* Start workers until n threads (the caller included) can run; under run_lock.
 * Returns the threads that can run (<= n when a start failed). */
static int start_workers(int n)
{
    if (!atfork_done) {
        pthread_atfork(NULL, NULL, reset_after_fork);
        atfork_done = 1;
    }
    while (nworkers < n - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        if (starts_allowed == 0) break;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        start_generation[nworkers + 1] = atomic_load(&generation);
        int rc = pthread_create(&thread, &attr, worker_main, (void *)(long)(nworkers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        if (starts_allowed > 0) starts_allowed--;
        nworkers++;
    }
    return nworkers + 1 < n ? nworkers + 1 : n;
}

int fc_pool_start(int n)
{
    if (n < 1) n = 1;
    if (n > FC_MAX_THREADS) n = FC_MAX_THREADS;
    pthread_mutex_lock(&run_lock);
    int got = start_workers(n);
    pthread_mutex_unlock(&run_lock);
    return got;
}

int fc_pool_run(fc_task task, void *ctx, int n)
{
    int status = 0;
    if (n < 1) n = 1;
    if (n > FC_MAX_THREADS) n = FC_MAX_THREADS;
    pthread_mutex_lock(&run_lock);
    int got = start_workers(n);
    if (got < n) {
        status = -1;
        n = got;
    }
    last_n = n;
    if (n == 1) {  /* inline: waking sleeping workers for nothing cost ~160 us */
        task(ctx, 0, 1);
        pthread_mutex_unlock(&run_lock);
        return status;
    }
    cur_task = task;
    cur_ctx = ctx;
    cur_n = n;
    atomic_store(&bar_count, 0);
    atomic_store(&remaining, nworkers);
    pthread_mutex_lock(&wake_lock);
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
    task(ctx, 0, n);
    int spins = 0;
    while (atomic_load(&remaining) > 0) {
        if (++spins < FC_BARRIER_SPIN) FC_PAUSE();
        else sched_yield();
    }
    pthread_mutex_unlock(&run_lock);
    return status;
}

int fc_pool_last_threads(void) { return last_n; }

/* --- OpenBLAS's jobs on this pool ---------------------------------------- */

typedef struct {
    fc_blas_dojob dojob;
    char *jobdata;
    size_t elsize;
    int dojob_data;
} blas_call;

static atomic_long blas_calls;

static void blas_task(void *ctx, int tid, int n)
{
    const blas_call *call = ctx;
    (void)n;
    call->dojob(tid, call->jobdata + (size_t)tid * call->elsize, call->dojob_data);
}

void fc_openblas_threads(int sync, fc_blas_dojob dojob, int numjobs, size_t jobdata_elsize,
                         void *jobdata, int dojob_data)
{
    /* Always synchronous: OpenBLAS passes sync = 1 where it uses this hook. */
    (void)sync;
    blas_call call = {dojob, jobdata, jobdata_elsize, dojob_data};
    atomic_fetch_add(&blas_calls, 1);
    if (numjobs < 1) return;
    /* OpenBLAS's level-3 jobs wait on each other: run on fewer threads than jobs,
     * the call would spin forever. fastcap.runtime.threads starts the threads before it
     * lets OpenBLAS hand out this many jobs; this is the last line, for a count set
     * behind its back (threadpoolctl, openblas_set_num_threads): a clear end, never
     * a livelock. */
    int got = fc_pool_start(numjobs);
    if (got < numjobs) {
        fprintf(stderr, "fastcap: error: could not start %d threads for a BLAS call (only %d "
                "run: the process's limits, ulimit -v / -u); set fewer threads "
                "(FASTCAP_NUM_THREADS, --threads)\n", numjobs, got);
        abort();
    }
    fc_pool_run(blas_task, &call, numjobs);
}

long fc_blas_calls(void) { return atomic_load(&blas_calls); }
