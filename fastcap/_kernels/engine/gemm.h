/* gemm.h -- the engine's matrix products C = A @ B over a B packed once into
 * panels (pack.h): bf16 (fastcap's bfloat16 mode: both operands rounded to
 * bf16, float32 sums) and float32.
 *
 * Every element of C is one thread's sum in k order, so results do not
 * depend on the thread count. Shapes are the caller's to check.
 */
#ifndef FASTCAP_ENGINE_GEMM_H
#define FASTCAP_ENGINE_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "pack.h"

/* C (M, N) = bf16(A) @ B, float32 sums: A (M, K) element (m, k) at A[m * ars + k * acs], B
 * from fc_pack_matrix_bf16, C rows ldc apart. On AMX tiles (amx.h) from 16 rows up when
 * the AMX mode says so. 0 on success, -1 if out of memory (gemm.c). */
int fc_gemm_bf16(const float *A, ptrdiff_t ars, ptrdiff_t acs, int M, const fc_packed *Bp,
                 float *C, ptrdiff_t ldc, int nthreads);

/* C (M, N) = bf16(A) @ B for a few rows M (decoding at small batches): A rows lda apart, B
 * from fc_pack_matrix_bf16, C rows ldc apart, Ab an (M, B->krows) scratch for A's bf16
 * pairs. The bits of fc_gemm_bf16's vector tiles; always 0 (gemv_bf16.c). */
int fc_gemv_bf16(const float *A, ptrdiff_t lda, int M, const fc_packed *Bp, float *C,
                 ptrdiff_t ldc, uint32_t *Ab, int nthreads);

/* C (M, N) = A (M, K) @ B, float32: A rows lda apart, B from fc_pack_matrix_f32, C rows
 * ldc apart. Always 0: nothing to allocate (gemm_f32.c). */
int fc_gemm_f32(const float *A, ptrdiff_t lda, int M, const fc_packed *Bp, float *C,
                ptrdiff_t ldc, int nthreads);

#endif
