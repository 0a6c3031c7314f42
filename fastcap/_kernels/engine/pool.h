/* pool.h -- the engine's thread pool: run one task on n threads, with a barrier.
 *
 * Why not OpenMP: libgomp's idle threads spin after every parallel region
 * while OpenBLAS needs the same cores for the GEMMs between engine calls
 * (measured: a training step 2-7x slower on 2 cores), and PyTorch in the same
 * process brings its own libgomp. This pool spins only inside a task (one
 * barrier per timestep, where a sleep would cost more than the step's work
 * per thread) and briefly after it, then its workers sleep on a condition
 * variable, so the cores are free for BLAS.
 */
#ifndef FASTCAP_ENGINE_POOL_H
#define FASTCAP_ENGINE_POOL_H

#include <stddef.h>

#define FC_MAX_THREADS 256

typedef void (*fc_task)(void *ctx, int tid, int nthreads);

/* Run task(ctx, tid, n) for tid = 0..n-1 on n threads (the caller is tid 0)
 * and return when all have returned. Calls are serialized. n is clamped to
 * [1, FC_MAX_THREADS]. Returns 0, or -1 if a worker thread could not be
 * started (the task then ran on fewer threads: results are the same).
 * At n = 1 the task runs in the caller, without waking the workers. */
int fc_pool_run(fc_task task, void *ctx, int n);

/* Start workers so that n threads (the caller included) can run tasks; returns how
 * many can (less than n when a thread could not be started: limits, memory). */
int fc_pool_start(int n);

/* Tests: let only the next k thread starts succeed, then fail them all (-1: no limit). */
void fc_pool_fail_starts_after(int k);

/* Wait until all n threads of the running task have reached this barrier. */
void fc_pool_barrier(int n);

/* Threads actually used by the last fc_pool_run (for tests). */
int fc_pool_last_threads(void);

/* OpenBLAS's threading callback (openblas_set_threads_callback_function,
 * OpenBLAS >= 0.3.27): runs the numjobs jobs of one threaded BLAS call on
 * this pool, all at once (level-3 jobs wait on each other), job i on thread
 * i. Installed, OpenBLAS's own worker threads are never used again, so they
 * cannot spin on the cores (for ~0.1 s after every call, measured) while
 * the engine computes: BLAS and the engine share one pool and one budget. */
typedef void (*fc_blas_dojob)(int thread_num, void *jobdata, int dojob_data);
void fc_openblas_threads(int sync, fc_blas_dojob dojob, int numjobs, size_t jobdata_elsize,
                         void *jobdata, int dojob_data);

/* BLAS calls that ran through fc_openblas_threads (for tests). */
long fc_blas_calls(void);

#endif
