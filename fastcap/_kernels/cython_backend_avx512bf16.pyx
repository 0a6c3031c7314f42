# The Cython backend compiled for x86-64 CPUs with AVX-512 and AVX512-BF16
# (AMD Zen 4, Intel Cooper Lake and Sapphire Rapids and later): the AVX-512
# build plus -mavx512bf16, so the bfloat16 mode's tiles run the CPU's own
# bf16 pair dot product (vdpbf16ps) instead of two FMAs; every float32
# kernel gives the bits of the AVX-512 build. fastcap.runtime.backends loads this
# module when the CPU has AVX512-BF16 (FASTCAP_CYTHON_ISA overrides).
include "cython_backend.pyx"
