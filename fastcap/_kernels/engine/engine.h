/* engine.h -- the compiled engine's interface, the one header the Cython layer
 * includes (recurrence_engine.pxi, decode_engine.pxi, pool.pxi, vocab.pxi, cider.pxi).
 *
 * The engine's parts, one header each:
 *   pool.h        the thread pool every part runs on (and OpenBLAS's callback)
 *   pack.h        operands packed into panels for the tiles
 *   gemm.h        the products over packed panels (bf16, float32)
 *   recurrence.h  the RNN and LSTM time loops, forward and backward
 *   attention.h   the attention model's time loop, forward and backward
 *   decode.h      greedy decoding's and sampling's whole word loop
 *   sample.h      a row's next word: the argmax or a draw from its softmax (inline)
 *   cider.h       CIDEr-D: a corpus's document frequencies, candidates' scores
 *   amx.h         whether the bf16 product runs on AMX tiles: the OS permission,
 *                 the mode, the decision at the first product
 * The rest (simd.h, bf16.h, tiles.h, cells.h, vecmath.h, check.h, amx_tiles.h,
 * gemm_amx.h, attention_parts.h) is the engine's own, compiled into its sources.
 */
#ifndef FASTCAP_ENGINE_ENGINE_H
#define FASTCAP_ENGINE_ENGINE_H

#include "amx.h"
#include "cider.h"
#include "attention.h"
#include "decode.h"
#include "gemm.h"
#include "pack.h"
#include "pool.h"
#include "recurrence.h"
#include "sample.h"

/* The build's instruction set ("baseline", "avx2", "avx512", "avx512bf16": simd.h's
 * FC_ISA) and vector width (floats); whether its bf16 tiles are the CPU's own
 * instruction (vdpbf16ps) or two FMAs (engine.c). */
const char *fc_engine_isa(void);
int fc_engine_vector_width(void);
int fc_engine_bf16_native(void);

#endif
