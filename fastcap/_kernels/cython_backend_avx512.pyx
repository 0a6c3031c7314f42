# The Cython backend compiled for x86-64 CPUs with AVX-512 (F, VL, BW, DQ):
# the same source (cython_backend.pyx), with setup.py adding the AVX-512
# flags and -ffp-contract=off to this module only. The cell, loss and update
# kernels give the bits of the baseline build (no contraction); the recurrent
# engine runs 16-float vectors and 6-row tiles (fastcap/_kernels/engine/).
# fastcap.runtime.backends loads this module when the CPU has AVX-512
# (FASTCAP_CYTHON_ISA overrides).
include "cython_backend.pyx"
