"""What fastcap calls things, declared once: its version and distribution, the backends,
the Cython backend's instruction-set builds, the precisions and the float dtypes.

Plain data with no imports: every other module reads its lists from here
(the registry, the environment variables, the options, the reports), and
setup.py reads this file by path before fastcap is built (``BUILDS``).
"""
VERSION = "0.1.0"  # pyproject.toml reads it (tool.setuptools.dynamic)

# "fastcap" on PyPI is an unrelated screen-capture tool; the package imported and the
# command stay fastcap, as scikit-learn installs sklearn.
DISTRIBUTION = "fastcap-rnn"

# The backends: name -> (module, what to do when it cannot be imported), the NumPy
# reference first. Adding one is one module under fastcap/_kernels/ plus one entry here.
BACKENDS = {
    "numpy": ("fastcap._kernels.numpy_backend", "it is part of fastcap and needs only NumPy"),
    "numba": ("fastcap._kernels.numba_backend", "install Numba: `pip install numba`"),
    "cython": (
        "fastcap._kernels.cython_backend",
        "the compiled extension is not built; build it with `pip install .` "
        "(or `pip install -e .`) from a source checkout, which needs a C compiler, "
        "Cython and NumPy",
    ),
}
# `auto` takes the first of these that loads: Cython first, because its float32
# recurrences run on the compiled engine (the others' run a Python time loop around BLAS),
# which made training steps and decoding fastest (docs/benchmarks.md); Numba next (no
# compiler needed at install).
AUTO_ORDER = ("cython", "numba", "numpy")
BACKEND_CHOICES = (*BACKENDS, "auto")

# The Cython backend's builds, one per instruction set: setup.py compiles each the compiler
# can target, fastcap.runtime.backends loads the best one the CPU runs. isa -> (module,
# predicate of the baseline module saying this CPU runs the build, extra compiler flags),
# best first; the baseline build (the compiler's default target) runs everywhere and is last.
# -ffp-contract=off: no fused multiply-adds, so every build's cell, loss and update kernels
# round alike. (The recurrent engine asks for FMA explicitly in its tiles: its products
# round per build, within the float32 tolerance.)
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
ISA_CHOICES = ("auto", *reversed(BUILDS))  # FASTCAP_CYTHON_ISA: auto, baseline, avx2, ...

# The precision modes of the matrix products (fastcap.runtime.precision).
PRECISIONS = ("float32", "bfloat16")

# The float dtypes of models and layers, by name.
DTYPES = ("float32", "float64")
