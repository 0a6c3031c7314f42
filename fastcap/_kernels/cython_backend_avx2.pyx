# The Cython backend compiled for x86-64 CPUs with AVX2 and FMA: the same
# source (cython_backend.pyx), with setup.py adding -mavx2 -mfma
# -ffp-contract=off to this module only. Contraction stays off so that no
# multiply-add is fused: the results are bitwise those of the baseline build
# (tests/test_cython_backend.py checks every kernel), only 8 floats wide
# instead of 4. fastcap.runtime.backends loads this module instead of cython_backend
# when the CPU has both instruction sets (FASTCAP_CYTHON_ISA overrides).
include "cython_backend.pyx"
