"""Backend registry: which module's kernels the public layers call.

A backend is a module under ``fastcap/_kernels/`` that defines every kernel in
``fastcap._kernels.KERNELS``. Adding one is one module plus one entry in
``_BACKENDS`` below. The active backend is chosen from ``FASTCAP_BACKEND`` when
fastcap is imported (default ``auto``) and can be changed with
``set_backend`` or, temporarily, ``use_backend``.
"""
import contextlib
import importlib
import inspect
import types

from . import _env
from ._kernels import KERNEL_NAMES, KERNELS
from ._kernels.cython_builds import BUILDS

# name -> (module, what to do when it cannot be imported)
_BACKENDS = {
    "numpy": ("fastcap._kernels.numpy_backend", "it is part of fastcap and needs only NumPy"),
    "numba": ("fastcap._kernels.numba_backend", "install Numba: `pip install numba`"),
    "cython": (
        "fastcap._kernels.cython_backend",
        "the compiled extension is not built; build it with `pip install .` "
        "(or `pip install -e .`) from a source checkout, which needs a C compiler, "
        "Cython and NumPy",
    ),
}
# `auto` takes the first of these that loads: Cython first, because its
# float32 recurrences run on the compiled engine (the others' run a Python
# time loop around BLAS), which made training steps and decoding fastest
# (docs/benchmarks.md); Numba next (no compiler needed at install).
AUTO_ORDER = ("cython", "numba", "numpy")
NAMES = tuple(_BACKENDS)  # the concrete backends, the NumPy reference first
VALID_NAMES = NAMES + ("auto",)
ENV_VAR = "FASTCAP_BACKEND"

# Builds of a backend for CPUs with more instructions than the baseline:
# name -> {isa: (variant module, predicate of the baseline module saying the
# CPU can run it)}, best first (setup.py builds each where the compiler can).
_VARIANTS = {"cython": {isa: (module, predicate) for isa, (module, predicate, _) in BUILDS.items()
                        if predicate is not None}}
ISA_ENV_VAR = "FASTCAP_CYTHON_ISA"  # auto (default) | baseline | avx2 | avx512
ISA_CHOICES = ("auto", *reversed(BUILDS))  # auto, baseline, avx2, avx512


class BackendUnavailableError(ImportError):
    """A known backend that cannot be loaded on this installation."""


_loaded = {}  # name -> SimpleNamespace of kernels
_why_not = {}  # name -> reason it failed to load
_active = None
_active_name = None


def _check_name(name):
    if not isinstance(name, str) or name not in VALID_NAMES:
        raise ValueError(
            f"unknown fastcap backend {name!r}; valid names are {', '.join(VALID_NAMES)}"
        )


def load(name):
    """Import backend `name` and return its kernels as a namespace.

    Raises BackendUnavailableError saying what to install or build when the
    backend's module cannot be imported, and RuntimeError when it imports but
    lacks a kernel of the table.
    """
    _check_name(name)
    if name == "auto":
        raise ValueError("load() takes a concrete backend name, not 'auto'")
    if name in _loaded:
        return _loaded[name]
    module_name, hint = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        _why_not[name] = f"{exc}; {hint}"
        raise BackendUnavailableError(
            f"fastcap backend {name!r} is not available ({exc}): {hint}"
        ) from exc
    if name in _VARIANTS:
        module = _variant(name, module)
    check_kernels(name, module)
    kernels = types.SimpleNamespace(name=name, module=module,
                                    **{k: getattr(module, k) for k in KERNEL_NAMES})
    from . import _threads  # here, not at import: it must load after NumPy (see fastcap/__init__.py)

    _threads.apply_to(module)
    _loaded[name] = kernels
    return kernels


def check_kernels(name, module):
    """Raise RuntimeError unless `module` defines every kernel of the table, each taking
    exactly the table's arguments (fastcap._kernels.KERNELS)."""
    missing = [k for k in KERNEL_NAMES if not callable(getattr(module, k, None))]
    if missing:
        raise RuntimeError(f"backend {name!r} ({module.__name__}) lacks kernels: {', '.join(missing)}")
    wrong = [f"{k}{_params(getattr(module, k))} (the table: {KERNELS[k].args})" for k in KERNEL_NAMES
             if _params(getattr(module, k)) != KERNELS[k].args]
    if wrong:
        raise RuntimeError(f"backend {name!r} ({module.__name__}) has kernels whose arguments are not "
                           f"the kernel table's: {'; '.join(wrong)}")


def _params(fn):
    """The parameter names of a kernel function, or None if it does not say."""
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def _variant(name, baseline):
    """The build of backend `name` to use on this CPU: the best variant that
    is built and that the CPU runs, else the baseline module
    (FASTCAP_CYTHON_ISA forces one; asking for one that cannot run raises)."""
    choice = _env.read(ISA_ENV_VAR)
    if choice == "baseline" or (choice == "auto" and getattr(baseline, "BUILD_INFO", {}).get("native")):
        return baseline
    wanted = _VARIANTS[name] if choice == "auto" else {choice: _VARIANTS[name][choice]}
    for isa, (module_name, predicate) in wanted.items():
        if not getattr(baseline, predicate)():
            if choice == "auto":
                continue
            raise BackendUnavailableError(f"{ISA_ENV_VAR}={choice} but this CPU cannot run {isa}")
        try:
            return importlib.import_module(module_name)
        except ImportError as exc:
            if choice == "auto":
                continue
            raise BackendUnavailableError(f"{ISA_ENV_VAR}={choice} but {module_name} is not built ({exc})") from exc
    return baseline


def loaded():
    """The kernel namespaces of the backends loaded so far."""
    return list(_loaded.values())


def available_backends():
    """Names of the backends that load here, in `auto` preference order."""
    names = []
    for name in AUTO_ORDER:
        try:
            load(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def unavailable_reasons():
    """{name: why it does not load} for the backends that do not."""
    available_backends()
    return dict(_why_not)


def _resolve(name):
    _check_name(name)
    if name != "auto":
        return load(name)
    for candidate in AUTO_ORDER:
        try:
            return load(candidate)
        except BackendUnavailableError:
            continue
    raise RuntimeError("no fastcap backend loads, not even numpy")  # pragma: no cover


def set_backend(name):
    """Make `name` ('numpy', 'numba', 'cython' or 'auto') the active backend."""
    global _active, _active_name
    kernels = _resolve(name)
    _active, _active_name = kernels, kernels.name


def get_backend():
    """Name of the active backend (`auto` already resolved to a concrete name)."""
    return _active_name


@contextlib.contextmanager
def use_backend(name):
    """Run a block with backend `name` active, restoring the previous one after."""
    global _active, _active_name
    previous = (_active, _active_name)
    set_backend(name)
    try:
        yield _active
    finally:
        _active, _active_name = previous


def kernels():
    """The active backend's kernel namespace (what the public layers call)."""
    return _active


def init_from_environment():
    set_backend(_env.read(ENV_VAR))
