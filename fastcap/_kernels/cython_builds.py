"""The Cython backend's builds, one per instruction set: setup.py compiles them, fastcap._backend picks one at run time.

Plain data with no imports, so setup.py reads it by path before fastcap is
built. isa -> (module, predicate of the baseline module saying this CPU runs
the build, extra compiler flags), best first; the baseline
build (the compiler's default target) runs everywhere and is last.

-ffp-contract=off: no fused multiply-adds, so every build's cell, loss and
update kernels round alike. (The recurrent engine asks for FMA explicitly in
its tiles: its products round per build, within the float32 tolerance.)
"""
BUILDS = {
    # AVX-512 plus AVX512-BF16 (Zen 4, Cooper Lake, Sapphire Rapids and later):
    # the bfloat16 mode's tiles are vdpbf16ps (fastcap/_kernels/engine/bf16.h).
    "avx512bf16": ("fastcap._kernels.cython_backend_avx512bf16", "cpu_has_avx512_bf16",
                   ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx512bf16",
                    "-mavx2", "-mfma", "-ffp-contract=off"]),
    "avx512": ("fastcap._kernels.cython_backend_avx512", "cpu_has_avx512",
               ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx2", "-mfma",
                "-ffp-contract=off"]),
    "avx2": ("fastcap._kernels.cython_backend_avx2", "cpu_has_avx2_fma",
             ["-mavx2", "-mfma", "-ffp-contract=off"]),
    "baseline": ("fastcap._kernels.cython_backend", None, []),
}
