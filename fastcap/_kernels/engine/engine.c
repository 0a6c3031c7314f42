/* engine.c -- what this build of the engine is (engine.h): the instruction set
 * the compiler targeted, its vector width and its bf16 tiles. */
#include "engine.h"

#include "bf16.h"
#include "simd.h"

const char *fc_engine_isa(void) { return FC_ISA; }
int fc_engine_vector_width(void) { return FC_VW; }
int fc_engine_bf16_native(void) { return FC_BF16_NATIVE; }
