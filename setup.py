"""Build script: the Cython backend's extensions and how to build them (the package metadata lives in pyproject.toml).

The Cython backend is built once per instruction set of ``BUILDS`` in
``fastcap/runtime/names.py`` from one source: ``cython_backend``
for the compiler's default target (x86-64 baseline: SSE2) and, where the
compiler takes the flags, ``cython_backend_avx2``, ``cython_backend_avx512``
and ``cython_backend_avx512bf16`` (one-line .pyx files that include it), each
with the recurrent engine (``fastcap/_kernels/engine/*.c``) compiled in.
``fastcap.runtime.backends`` loads the best build the CPU runs, so one installation
runs everywhere and uses 8- or 16-wide vectors where it can.

Builds reuse what is up to date (``make``'s rule, per file), so a rebuild
with nothing changed takes seconds, not minutes:

* Everything goes to ``build/fastcap/`` in the checkout (``.gitignore`` has
  ``build/``), also under ``pip install -e .``, whose own build directories
  are fresh temporary ones every time.
* The generated C of each module is kept per Cython version and mode
  (``cython<version>-plain`` or ``-debug``) and regenerated only when a
  ``.pyx``/``.pxi``/``.pxd`` of ``fastcap/_kernels`` is newer.
* Objects and the linked module are kept per extension and per build
  configuration (compiler, flags, macros, mode: a hash in the directory
  name), so switching a build switch below rebuilds, and switching back
  reuses what the earlier build left. An object is recompiled when a file
  it includes is newer (the compiler's ``-MMD`` list of them, or on
  compilers without it, the source and every engine header): a change to
  one engine file recompiles the objects that include it, in every build.
* Cython and the compiler run ``build_ext --parallel`` jobs at once (by
  default one per CPU). ``build_ext --force`` rebuilds everything.

Measured on 2 cores of a Xeon (GCC 12) with nothing changed: ``python
setup.py build_ext --inplace`` about 1 s and ``pip install -e .`` about 7 s
(each took about 140 s when every run rebuilt everything); after editing one
engine .c file, about 2 s; a full build of the four extensions about 60 s.

``python setup.py build_ext --inplace`` builds into the checkout; ``pip
install -e .`` does the same through pip.

Build switches (environment variables read at build time):

* ``FASTCAP_CYTHON_DEBUG=1``: compile with Cython's boundscheck, wraparound
  and initializedcheck ON (they are off by default), so an out-of-bounds
  kernel raises IndexError instead of corrupting memory, and with the
  engine's bounds checks (``FC_CHECK``). Its generated C and objects are
  kept apart from the normal build's, so switching back and forth always
  gives the build asked for: ``FASTCAP_CYTHON_DEBUG=1 pip install -e .``
  then ``pip install -e .``.
* ``FASTCAP_CYTHON_OPENMP=0``: build without OpenMP even where the compiler
  supports it (by default ``-fopenmp`` is probed and used when it works;
  without it the kernels compile and run single-threaded).
* ``FASTCAP_CYTHON_NATIVE=1``: add ``-march=native`` (when the compiler takes
  it). Faster on the build machine, but the result may not run on an older
  CPU: never use it for a wheel that leaves the machine. Only the baseline
  module is built then (the instruction-set builds would add nothing), and
  theirs are removed from the checkout.
* ``FASTCAP_CYTHON_REQUIRED=1``: make a failed compilation fail the install.
  By default it only warns: fastcap works without the Cython backend (the
  NumPy and Numba backends need no compiler), so a machine without a C
  compiler still gets a working install, minus ``cython``.
"""
import concurrent.futures
import filecmp
import glob
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import types

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
# Read by path, because fastcap is not importable before it is built: the names (the
# Cython backend's builds: module, CPU predicate and flags per instruction set) and every
# FASTCAP_* variable with the values it takes, the build switches included. They import
# nothing of fastcap but each other, so they load as a package of their own.
RUNTIME_DIR = "fastcap/runtime"


def _runtime_module(name):
    """RUNTIME_DIR/<name>.py as a module of a package of its own."""
    package = "_fastcap_build_runtime"
    if package not in sys.modules:
        sys.modules[package] = types.ModuleType(package)
        sys.modules[package].__path__ = [os.path.join(ROOT, RUNTIME_DIR)]
    return importlib.import_module(f"{package}.{name}")


_BUILDS = _runtime_module("names").BUILDS
CYTHON_MODULES = {module: isa for isa, (module, _, _) in _BUILDS.items()}  # module -> isa
ISA_FLAGS = {isa: flags for isa, (_, _, flags) in _BUILDS.items()}
KERNELS_DIR = "fastcap/_kernels"
# The recurrent engine (C), compiled into every build of the Cython backend:
# every .c of its directory, so a new engine file needs no line here.
ENGINE_DIR = f"{KERNELS_DIR}/engine"
ENGINE_SOURCES = sorted(f"{ENGINE_DIR}/{os.path.basename(p)}"
                        for p in glob.glob(os.path.join(ROOT, ENGINE_DIR, "*.c")))
# What builds are kept in (relative to the checkout, as the sources are).
CACHE_DIR = "build/fastcap"

# A value the declaration does not take stops the build, naming the variable.
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


def _mtime(path):
    """path's modification time in ns, or None if it is missing."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _stale(target, deps):
    """Whether target must be made again: it is missing, or a dependency is missing or newer."""
    made = _mtime(target)
    if made is None:
        return True
    for dep in deps:
        t = _mtime(dep)
        if t is None or t > made:
            return True
    return False


def _read_depfile(path):
    """The prerequisites of a make rule written by the compiler's -MMD, or None if unreadable."""
    try:
        with open(path) as f:
            text = f.read().replace("\\\n", " ")
    except OSError:
        return None
    _, sep, prereqs = text.partition(": ")
    if not sep:
        return None
    return [p.replace("\\ ", " ") for p in re.split(r"(?<!\\)\s+", prereqs.strip()) if p]


def _replace_if_different(src, dst):
    """Put a copy of src at dst unless dst already has its bytes; whether it did. A new file
    is renamed into place, so a process that has the old module loaded keeps its (unlinked)
    copy intact."""
    if os.path.exists(dst) and filecmp.cmp(src, dst, shallow=False):
        return False
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    tmp = f"{dst}.tmp{os.getpid()}"
    shutil.copyfile(src, tmp)
    shutil.copymode(src, tmp)
    os.replace(tmp, dst)
    return True


class BuildExt(build_ext):
    """build_ext that cythonizes with fastcap's directives, probes compiler
    flags, rebuilds only what is out of date (see the module docstring), and
    (unless FASTCAP_CYTHON_REQUIRED=1) turns a failed compilation into a loud
    warning and an install without that extension."""

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
                # its name for BUILD_INFO["isa"], from the declaration, not from the C
                ext.define_macros = list(ext.define_macros or []) + [("FASTCAP_BUILD_ISA", f'"{isa}"')]
                keep.append(ext)
            else:
                print(f"fastcap: not building {ext.name} ({isa} build: "
                      f"{'-march=native already' if NATIVE else 'the compiler does not target it'})")
                self._discard_output(ext)
        return keep

    def _jobs(self):
        """Jobs at once: build_ext --parallel N, else one per CPU this process may use."""
        if self.parallel and self.parallel is not True:
            return max(1, int(self.parallel))
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return max(1, os.cpu_count() or 1)

    # --- what a build of an extension reads and writes ----------------------

    def _c_file(self, ext):
        """The generated C of ext: per Cython version and mode, since both change it."""
        import Cython

        mode = "debug" if DEBUG else "plain"
        return os.path.join(CACHE_DIR, f"cython{Cython.__version__}-{mode}",
                            ext.name.rsplit(".", 1)[-1] + ".c")

    def _config_dir(self, ext):
        """Where ext's objects and linked module go: one directory per everything that
        changes them besides the sources (compiler, flags, macros, Python, mode)."""
        cc = list(getattr(self.compiler, "compiler_so", None) or [self.compiler.compiler_type])
        exe = shutil.which(cc[0]) if cc else None
        config = repr((
            cc, exe and _mtime(exe), getattr(self.compiler, "linker_so", None),
            self.compiler.include_dirs, self.compiler.macros, self.compiler.library_dirs,
            self.compiler.libraries, ext.define_macros, ext.undef_macros, ext.include_dirs,
            ext.extra_compile_args, ext.extra_link_args, ext.libraries, ext.library_dirs,
            self.debug, sysconfig.get_config_var("EXT_SUFFIX"), sys.version,
        ))
        digest = hashlib.sha256(config.encode()).hexdigest()[:12]
        return os.path.join(CACHE_DIR, "objects", f"{ext.name.rsplit('.', 1)[-1]}-{digest}")

    def _object(self, src, out_dir):
        name = os.path.splitext(os.path.basename(src))[0]
        return os.path.join(out_dir, name + self.compiler.obj_extension)

    def _depfile_flags(self, obj):
        """Flags that make the compiler list what the object includes (None: it cannot)."""
        if self.compiler.compiler_type in ("unix", "mingw32", "cygwin"):
            return ["-MMD", "-MF", os.path.splitext(obj)[0] + ".d"]
        return None

    def _object_stale(self, src, obj):
        if self.force:
            return True
        if self._depfile_flags(obj) is not None:
            deps = _read_depfile(os.path.splitext(obj)[0] + ".d")
            if deps is None:
                return True
        else:  # no dependency list: the source and every engine header
            deps = [src] + glob.glob(os.path.join(ENGINE_DIR, "*.h"))
        return _stale(obj, deps)

    # --- the three steps, each a job for the pool ------------------------------

    def _cythonize(self, ext, pyx, c_file):
        """Generate c_file from pyx with fastcap's directives (in a process of its own, so
        several run at once), unless it is newer than every Cython source of the backend."""
        deps = [p for pattern in ("*.pyx", "*.pxi", "*.pxd")
                for p in glob.glob(os.path.join(KERNELS_DIR, pattern))]
        if not self.force and not _stale(c_file, deps):
            return
        print(f"fastcap: cythonizing {ext.name} (debug={DEBUG})")
        os.makedirs(os.path.dirname(c_file), exist_ok=True)
        tmp = c_file + ".tmp.c"  # renamed into place once whole
        directives = ",".join(f"{k}={v}" for k, v in DIRECTIVES.items() if k != "language_level")
        subprocess.run([sys.executable, "-m", "cython", "-3", "--fast-fail", "-X", directives,
                        "--module-name", ext.name, "-o", tmp, pyx], check=True)
        os.replace(tmp, c_file)

    def _compile(self, ext, src, obj):
        dep_flags = self._depfile_flags(obj) or []
        macros = list(ext.define_macros or []) + [(name,) for name in ext.undef_macros or []]
        built = self.compiler.compile([src], output_dir=os.path.dirname(obj) + "/.tmp",
                                      macros=macros, include_dirs=ext.include_dirs,
                                      debug=self.debug,
                                      extra_postargs=list(ext.extra_compile_args or []) + dep_flags)
        os.replace(built[0], obj)  # complete objects only: a killed compiler leaves none

    def _link(self, ext, objects, so):
        if not self.force and not _stale(so, objects):
            return
        tmp = so + ".tmp"  # renamed into place once whole, as objects are
        self.compiler.link_shared_object(
            objects, tmp, libraries=self.get_libraries(ext), library_dirs=ext.library_dirs,
            runtime_library_dirs=ext.runtime_library_dirs, extra_postargs=ext.extra_link_args,
            export_symbols=self.get_export_symbols(ext), debug=self.debug,
            build_temp=os.path.dirname(so), target_lang=ext.language or "c")
        os.replace(tmp, so)

    def build_extensions(self):
        compile_args, link_args = self._probe_flags()
        print(f"fastcap: building the Cython backend (debug={DEBUG}) with extra flags "
              f"{compile_args or 'none'}, {self._jobs()} jobs at once")
        self.extensions[:] = self._isa_builds()
        for ext in self.extensions:
            if "-march=native" in compile_args:
                ext.define_macros = list(ext.define_macros or []) + [("FASTCAP_NATIVE_BUILD", "1")]
            ext.extra_compile_args = list(ext.extra_compile_args or []) + compile_args
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args
        with concurrent.futures.ThreadPoolExecutor(self._jobs()) as pool:
            failed = self._build_all(pool)  # ext.name -> exception
        built = []
        for ext in self.extensions:
            exc = failed.get(ext.name)
            if exc is None:
                built.append(ext)
                continue
            if REQUIRED:
                raise exc
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

    def _build_all(self, pool):
        """Every extension's C, objects and module on the pool, the longest jobs (Cython,
        then its C) first; returns {ext.name: the exception} of the extensions that failed."""
        failed = {}
        try:
            import Cython  # noqa: F401  (a missing Cython fails every extension alike)
        except ImportError as exc:
            return {ext.name: exc for ext in self.extensions}
        plans = []
        for ext in self.extensions:
            pyx = next(s for s in ext.sources if s.endswith(".pyx"))
            out = self._config_dir(ext)
            c_file = self._c_file(ext)
            sources = [c_file] + [s for s in ext.sources if s != pyx]
            objects = [self._object(s, out) for s in sources]
            if len(set(objects)) != len(objects):
                raise RuntimeError(f"two sources of {ext.name} would share an object file: {sources}")
            plans.append((ext, pyx, c_file, list(zip(sources, objects)), out))
        generated = {ext.name: pool.submit(self._cythonize, ext, pyx, c_file)
                     for ext, pyx, c_file, _, _ in plans}
        compiled = {}  # ext.name -> futures of its objects
        for ext, _, c_file, pairs, _ in plans:
            compiled[ext.name] = [pool.submit(self._compile, ext, s, o)
                                  for s, o in pairs[1:] if self._object_stale(s, o)]
        for ext, _, c_file, pairs, _ in plans:  # the module's C once it is generated
            try:
                generated[ext.name].result()
            except Exception as exc:
                failed[ext.name] = exc
                continue
            src, obj = pairs[0]
            if self._object_stale(src, obj):
                compiled[ext.name].append(pool.submit(self._compile, ext, src, obj))
        for ext, _, _, pairs, out in plans:
            if ext.name in failed:
                continue
            try:
                for job in compiled[ext.name]:
                    job.result()
                so = os.path.join(out, os.path.basename(self.get_ext_filename(ext.name)))
                self._link(ext, [o for _, o in pairs], so)
                _replace_if_different(so, self.get_ext_fullpath(ext.name))
            except Exception as exc:  # no compiler, a compile error, ...
                failed[ext.name] = exc
        return failed

    def copy_file(self, infile, outfile, *args, **kwargs):
        # setuptools copies a built module into the checkout (--inplace, pip install -e)
        # only when it is newer than the one there, which may be another mode's newer
        # build (debug or not): compare the bytes instead.
        return outfile, _replace_if_different(infile, outfile)

    def _discard_output(self, ext):
        # A module left by an earlier build (build/lib is reused by in-tree
        # builds, and --inplace and editable installs copy into the checkout)
        # would otherwise be packaged or imported as if it matched the current
        # sources (a -march=native build after a full one, say).
        paths = [self.get_ext_fullpath(ext.name)]
        if self._in_place:
            paths.append(os.path.join(*ext.name.split(".")[:-1],
                                      os.path.basename(self.get_ext_filename(ext.name))))
        for path in paths:
            try:
                os.remove(path)
            except OSError:
                pass

    def run(self):
        # setuptools turns inplace off while it builds, then copies into the checkout
        self._in_place = self.inplace
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


def extensions():
    return [
        Extension(
            name,
            [name.replace(".", "/") + ".pyx", *ENGINE_SOURCES],
            include_dirs=[KERNELS_DIR],
            define_macros=[("FASTCAP_DEBUG_BUILD", "1" if DEBUG else "0")],
            libraries=["pthread"] if os.name == "posix" else [],
        )
        for name in CYTHON_MODULES
    ]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
