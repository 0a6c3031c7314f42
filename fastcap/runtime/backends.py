"""Backend registry: which module's kernels the public layers call.

A backend is a module under ``fastcap/_kernels/`` that defines every kernel in
``fastcap._kernels.KERNELS``; the backends, their modules and the `auto` order
are declared in ``fastcap.runtime.names``. The active backend is chosen from
``FASTCAP_BACKEND`` when fastcap is imported (default ``auto``) and can be
changed with ``set_backend`` or, temporarily, ``use_backend``. Code that runs
kernels asks for them once per call (``fastcap.runtime.compute.resolve``) and
passes them down.

The registry knows nothing of threads: what must happen to a backend module
when it loads (its thread pool sized, BLAS routed through it) is a hook that
``fastcap.runtime.threads`` adds with ``on_load``.
"""
import contextlib
import importlib
import inspect
import types

from . import cpu, env
from .names import AUTO_ORDER, BACKEND_CHOICES, BACKENDS, BUILDS
from .._kernels import KERNEL_NAMES, KERNELS  # the contract every backend is checked against

ENV_VAR = "FASTCAP_BACKEND"
ISA_ENV_VAR = "FASTCAP_CYTHON_ISA"  # auto (default) | baseline | avx2 | avx512 | avx512bf16
# Builds of a backend for CPUs with more instructions than the baseline:
# name -> {isa: (variant module, predicate of the baseline module saying the
# CPU can run it)}, best first (setup.py builds each where the compiler can).
_VARIANTS = {"cython": {isa: (module, predicate) for isa, (module, predicate, _) in BUILDS.items()
                        if predicate is not None}}


class BackendUnavailableError(ImportError):
    """A known backend that cannot be loaded on this installation."""


_loaded = {}  # name -> SimpleNamespace of kernels
_why_not = {}  # name -> reason it failed to load
_active = None
_hooks = []  # called with each backend module when it first loads


def on_load(hook):
    """Call ``hook(module)`` for every backend module loaded from now on, and for those
    loaded already."""
    _hooks.append(hook)
    for kernels in _loaded.values():
        hook(kernels.module)


def _check_name(name):
    if not isinstance(name, str) or name not in BACKEND_CHOICES:
        raise ValueError(
            f"unknown fastcap backend {name!r}; valid names are {', '.join(BACKEND_CHOICES)}"
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
    module_name, hint = BACKENDS[name]
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
    try:
        for hook in _hooks:
            hook(module)
    except BackendUnavailableError as exc:  # a hook's refusal (a build that computes wrong)
        _why_not[name] = str(exc)
        raise
    _loaded[name] = kernels
    _why_not.pop(name, None)  # an earlier failure (a module missing then) is no longer the case
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
    choice = env.read(ISA_ENV_VAR)
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


def cpu_runs(isa):
    """Whether this CPU and OS run the instructions of build ``isa`` (a key of
    ``names.BUILDS``): asked of the compiled baseline module (CPUID and the OS's saved
    state), else read from the CPU flags where it is not built."""
    module_name, predicate, _ = BUILDS[isa]
    if predicate is None:
        return True
    try:
        baseline = importlib.import_module(BUILDS["baseline"][0])
    except ImportError:
        return all(f in cpu.flags() for f in _FLAGS[isa])
    return bool(getattr(baseline, predicate)())


# What /proc/cpuinfo must list for a build to run, where no compiled module can ask CPUID.
_FLAGS = {"avx2": ("avx2", "fma"), "avx512": ("avx512f", "avx512bw", "avx512dq", "avx512vl"),
          "avx512bf16": ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16")}


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
    global _active
    _active = _resolve(name)


def get_backend():
    """Name of the active backend (`auto` already resolved to a concrete name)."""
    return None if _active is None else _active.name


@contextlib.contextmanager
def use_backend(name):
    """Run a block with backend `name` active, restoring the previous one after."""
    global _active
    previous = _active
    set_backend(name)
    try:
        yield _active
    finally:
        _active = previous


def kernels():
    """The active backend's kernel namespace (resolved once per call: fastcap.runtime.compute)."""
    return _active


def init_from_environment():
    set_backend(env.read(ENV_VAR))
