"""Build script: the Cython backend's extensions and how to build them (the package metadata lives in pyproject.toml).

The Cython backend is built once per instruction set of
``fastcap/runtime/names.py`` (``BUILDS``) from one source: ``cython_backend`` for
the compiler's default target (x86-64 baseline: SSE2) and, where the
compiler takes the flags, ``cython_backend_avx2`` and
``cython_backend_avx512`` (one-line .pyx files that include it).
``fastcap._backend`` loads the best build the CPU runs, so one installation
runs everywhere and uses 8- or 16-wide vectors where it can.

Build switches (environment variables read at build time):

* ``FASTCAP_CYTHON_DEBUG=1``: compile with Cython's boundscheck, wraparound
  and initializedcheck ON (they are off by default), so an out-of-bounds
  kernel raises IndexError instead of corrupting memory. The generated C goes
  to its own directory, so switching back and forth always rebuilds:
  ``FASTCAP_CYTHON_DEBUG=1 pip install -e .`` then ``pip install -e .``.
* ``FASTCAP_CYTHON_OPENMP=0``: build without OpenMP even where the compiler
  supports it (by default ``-fopenmp`` is probed and used when it works;
  without it the kernels compile and run single-threaded).
* ``FASTCAP_CYTHON_NATIVE=1``: add ``-march=native`` (when the compiler takes
  it). Faster on the build machine, but the result may not run on an older
  CPU: never use it for a wheel that leaves the machine.
* ``FASTCAP_CYTHON_REQUIRED=1``: make a failed compilation fail the install.
  By default it only warns: fastcap works without the Cython backend (the
  NumPy and Numba backends need no compiler), so a machine without a C
  compiler still gets a working install, minus ``cython``.
"""
import importlib
import os
import shutil
import sys
import tempfile
import textwrap
import types

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _runtime_module(name):
    """fastcap/runtime/<name>.py, read by path because fastcap is not importable before it is
    built: names.py and env.py import nothing of fastcap but each other, so they load as a
    package of their own."""
    package = "_fastcap_build_runtime"
    if package not in sys.modules:
        sys.modules[package] = types.ModuleType(package)
        sys.modules[package].__path__ = [os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "fastcap", "runtime")]
    return importlib.import_module(f"{package}.{name}")


# The Cython backend's builds (module and flags per instruction set), declared once in
# fastcap/runtime/names.py.
_BUILDS = _runtime_module("names").BUILDS
CYTHON_MODULES = {module: isa for isa, (module, _, _) in _BUILDS.items()}  # module -> isa
ISA_FLAGS = {isa: flags for isa, (_, _, flags) in _BUILDS.items()}
# The recurrent engine (C), compiled into every build of the Cython backend.
ENGINE_DIR = "fastcap/_kernels/engine"
ENGINE_SOURCES = [f"{ENGINE_DIR}/pool.c", f"{ENGINE_DIR}/recurrence.c", f"{ENGINE_DIR}/gemm.c",
                  f"{ENGINE_DIR}/amx.c", f"{ENGINE_DIR}/gemm_f32.c", f"{ENGINE_DIR}/gemv_bf16.c",
                  f"{ENGINE_DIR}/decode.c"]


# The build switches are declared with every FASTCAP_* variable in fastcap/runtime/env.py:
# a value it does not take stops the build, naming the variable.
_read_env = _runtime_module("env").read
DEBUG = _read_env("FASTCAP_CYTHON_DEBUG")
OPENMP = _read_env("FASTCAP_CYTHON_OPENMP")
NATIVE = _read_env("FASTCAP_CYTHON_NATIVE")
REQUIRED = _read_env("FASTCAP_CYTHON_REQUIRED")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
}

_PROBE_OPENMP = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n == omp_get_max_threads() ? 0 : 1;
    }
    """
)
_PROBE_PLAIN = "int main(void) { return 0; }\n"


def _warn(message):
    bar = "*" * 78
    sys.stderr.write(f"\n{bar}\n{textwrap.fill(message, 78)}\n{bar}\n\n")


class BuildExt(build_ext):
    """build_ext that cythonizes with fastcap's directives, probes compiler
    flags, and (unless FASTCAP_CYTHON_REQUIRED=1) turns a failed compilation
    into a loud warning and an install without that extension."""

    def _compiles(self, code, flags):
        """Whether the compiler compiles and links `code` with `flags`."""
        tmp = tempfile.mkdtemp(prefix="fastcap-probe-")
        try:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(code)
            objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            self.compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=flags)
            return True
        except Exception:
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _probe_flags(self):
        if self.compiler.compiler_type == "msvc":
            return (["/openmp"] if OPENMP else []), []
        compile_args, link_args = [], []
        # Value-preserving flags that let the compiler vectorize the kernels:
        # no kernel reads errno (so sqrt can vectorize) or the floating-point
        # exception flags (so branch-free selects can replace the branches of
        # the stable sigmoid and tanh). Unlike -ffast-math they change no result.
        for flag in ("-fno-math-errno", "-fno-trapping-math"):
            if self._compiles(_PROBE_PLAIN, [flag]):
                compile_args.append(flag)
        if NATIVE and self._compiles(_PROBE_PLAIN, ["-march=native"]):
            compile_args.append("-march=native")
        if OPENMP:
            if self._compiles(_PROBE_OPENMP, ["-fopenmp"]):
                compile_args.append("-fopenmp")
                link_args.append("-fopenmp")
            else:
                _warn("fastcap: the C compiler does not support OpenMP (-fopenmp); the Cython "
                      "backend is built single-threaded.")
        return compile_args, link_args

    def _isa_builds(self):
        """The extensions whose instruction set this compiler can target (all
        but baseline are optional; a -march=native build makes them moot)."""
        keep = []
        for ext in self.extensions:
            isa = CYTHON_MODULES.get(ext.name, "baseline")
            if isa == "baseline" or (not NATIVE and self.compiler.compiler_type != "msvc"
                                     and self._compiles(_PROBE_PLAIN, ISA_FLAGS[isa])):
                ext.extra_compile_args = list(ext.extra_compile_args or []) + ISA_FLAGS[isa]
                keep.append(ext)
            else:
                print(f"fastcap: not building {ext.name} ({isa} build: "
                      f"{'-march=native already' if NATIVE else 'the compiler does not target it'})")
                self._discard_output(ext)
        return keep

    def build_extensions(self):
        compile_args, link_args = self._probe_flags()
        print(f"fastcap: building the Cython backend (debug={DEBUG}) with extra flags "
              f"{compile_args or 'none'}")
        self.extensions[:] = self._isa_builds()
        for ext in self.extensions:
            if "-march=native" in compile_args:
                ext.define_macros = list(ext.define_macros or []) + [("FASTCAP_NATIVE_BUILD", "1")]
            ext.extra_compile_args = list(ext.extra_compile_args or []) + compile_args
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args
        built = []
        for ext in list(self.extensions):
            try:
                self.build_extension(ext)
                built.append(ext)
            except Exception as exc:  # no compiler, no Cython, a compile error, ...
                if REQUIRED:
                    raise
                self._discard_output(ext)
                _warn(
                    f"fastcap: could not build the compiled extension {ext.name} "
                    f"({type(exc).__name__}: {exc}). fastcap is installed WITHOUT the 'cython' "
                    "backend; the 'numpy' (and 'numba') backends work as usual. To get it, "
                    "install a C compiler and reinstall (`pip install .`); set "
                    "FASTCAP_CYTHON_REQUIRED=1 to make this an error."
                )
        # Outputs (wheel contents, editable copies) list only what was built.
        self.extensions[:] = built

    def _discard_output(self, ext):
        # A module left by an earlier build (build/lib is reused by in-tree
        # builds, and editable installs build in place) would otherwise be
        # packaged or imported as if it matched the current sources.
        try:
            os.remove(self.get_ext_fullpath(ext.name))
        except OSError:
            pass

    def run(self):
        try:
            super().run()
        except Exception as exc:  # e.g. no usable compiler at all: fails before build_extensions
            if REQUIRED:
                raise
            for ext in self.extensions:
                self._discard_output(ext)
            _warn(f"fastcap: skipping the compiled extensions ({type(exc).__name__}: {exc}). "
                  "fastcap is installed WITHOUT the 'cython' backend.")
            self.extensions[:] = []

    def build_extension(self, ext):
        from Cython.Build import cythonize

        # The generated C lives under build/, one directory per mode, and is
        # always regenerated so a debug build never survives a normal one.
        c_dir = os.path.join(self.build_temp, "cython-debug" if DEBUG else "cython")
        (cythonized,) = cythonize([ext], compiler_directives=DIRECTIVES, build_dir=c_dir,
                                  force=True, quiet=True)
        ext.sources = cythonized.sources
        self.force = True  # the .so of the other mode may be newer than this C (so no `depends`)
        super().build_extension(ext)


def extensions():
    return [
        Extension(
            name,
            [name.replace(".", "/") + ".pyx", *ENGINE_SOURCES],
            include_dirs=["fastcap/_kernels"],
            define_macros=[("FASTCAP_DEBUG_BUILD", "1" if DEBUG else "0")],
            libraries=["pthread"] if os.name == "posix" else [],
        )
        for name in CYTHON_MODULES
    ]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
