"""``fastcap info``: what fastcap runs with on this machine, gathered once for both
the command (``info_lines``) and the benchmark report (``collect``, stored in the
benchmark JSON and rendered by benchmarks/bench_report.py).

``collect()`` returns a JSON-able dict: the machine (CPU model, vector
extensions, cores), versions, the backends and why any is missing, the
compiled Cython build and its recurrent engine, the thread settings and the
BLAS/OpenMP libraries loaded (threadpoolctl), and the environment variables
that change any of these.
"""
import datetime
import importlib.metadata
import os
import platform
import sys

from threadpoolctl import threadpool_info

from ..data.features import describe_vision
from ..runtime import backends, cpu, precision, threads
from ..runtime.names import AUTO_ORDER, VERSION
from ..train.distributed import describe_mpi

__all__ = ["collect", "info_lines"]

# Environment variables that change threads, kernels or the backend, in the
# order `fastcap info` prints the ones that are set.
ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
            "FASTCAP_NUM_THREADS", "OPENBLAS_CORETYPE", "FASTCAP_NUMBA_CACHE", "FASTCAP_BACKEND",
            "FASTCAP_PRECISION")
# Distributions whose versions a measurement depends on (the key is how the report names it).
VERSIONS = {"numpy": "numpy", "numba": "numba", "cython": "Cython", "torch": "torch",
            "threadpoolctl": "threadpoolctl", "pytest-benchmark": "pytest-benchmark"}
_POOL_KEYS = ("user_api", "internal_api", "version", "architecture", "num_threads",
              "threading_layer", "prefix", "filepath")



def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None



def _caption_metrics():
    try:
        import pycocoevalcap.bleu.bleu  # noqa: F401
    except ImportError as exc:
        return f"unavailable ({exc}); `pip install pycocoevalcap`"
    return "pycocoevalcap (BLEU, CIDEr-D)"


# The CPU flags the reports name: vector extensions and bf16 units.
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")




def collect():
    """The environment as a JSON-able dict (loads every backend; see the module docstring)."""
    flags = cpu.flags()
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu.model(),
        "cpu_flags": [x for x in REPORTED_FLAGS if x in flags] if flags else None,
        "bf16_native": precision.native_bf16(),
        "precision": precision.get_precision(),
        "precision_path": precision.describe(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": cpu.usable_cores(),
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {"fastcap": VERSION, **{k: _version(d) for k, d in VERSIONS.items()}},
        # Which fastcap was imported: the installed package, not a source tree on the path.
        "fastcap_file": sys.modules["fastcap"].__file__,
        "backends_available": backends.available_backends(),
        "backends_unavailable": backends.unavailable_reasons(),
        "backend_auto_order": list(AUTO_ORDER),
        "backend_active": backends.get_backend(),
        "fastcap_threads": threads.get_num_threads(),
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "caption_metrics": _caption_metrics(),
        "mpi": describe_mpi(),
        "vision": describe_vision(),
    }
    cy = next((k.module for k in backends.loaded() if k.name == "cython"), None)  # the build in use
    info["cython_module"] = getattr(cy, "__file__", None)
    info["cython_build"] = dict(getattr(cy, "BUILD_INFO", None) or {}) or None
    if hasattr(cy, "ENGINE_INFO"):
        info["engine"] = dict(cy.ENGINE_INFO, threads=cy.get_num_threads(), on=cy.engine_on())
    if "numba" in sys.modules:
        # Reported without starting it (numba.get_num_threads() would).
        from numba.np.ufunc import parallel

        info["numba_pool_started"] = bool(getattr(parallel, "_is_initialized", False))
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
    info["threadpools"] = [{k: p.get(k) for k in _POOL_KEYS} for p in threadpool_info()]
    return info


def info_lines(env):
    """The lines ``fastcap info`` prints for a collect() dict."""
    v = env["versions"]
    lines = [f"fastcap {v['fastcap']} (Python {env['python']}, NumPy {v['numpy']}, {env['machine']}, "
             f"{env['logical_cores']} CPUs)",
             f"backends available: {', '.join(env['backends_available']) or 'none'} (auto order: "
             f"{', '.join(env['backend_auto_order'])})"]
    lines += [f"  {name}: unavailable: {' '.join(str(why).split())}" for name, why in env["backends_unavailable"].items()]
    chosen = env["env"].get(backends.ENV_VAR)
    lines.append(f"active backend: {env['backend_active']} ({backends.ENV_VAR}="
                 f"{chosen if chosen is not None else '(unset, auto)'})")
    lines.append(f"threads: fastcap.get_num_threads() = {env['fastcap_threads']}")
    flags = env.get("cpu_flags") or []
    lines.append(f"bf16 units: avx512_bf16 {'yes' if 'avx512_bf16' in flags else 'no'}, amx_bf16 "
                 f"{'yes' if 'amx_bf16' in flags else 'no'}; precision: {env['precision_path']}")
    engine = env.get("engine")
    if engine:
        lines.append(f"recurrent engine (cython, float32): {env['cython_build']['isa']} build, {engine['isa']} "
                     f"tiles of {engine['vector_width']}-float vectors, {engine['threads']} threads; bf16 "
                     f"tiles: {'vdpbf16ps' if engine.get('bf16_native') else 'two FMAs per pair'}")
    # The backend variable is on the active-backend line already.
    lines += [f"  {k}={val}" for k, val in env["env"].items() if val is not None and k != backends.ENV_VAR]
    if env["env"].get("OPENBLAS_CORETYPE") is None:
        lines.append("  OPENBLAS_CORETYPE is not set (OpenBLAS picks kernels for the detected CPU)")
    if not env["threadpools"]:
        lines.append("BLAS/OpenMP libraries: none loaded")
    for p in env["threadpools"]:
        line = f"{p.get('user_api') or '?'}: {p.get('internal_api') or '?'}"
        if p.get("version"):
            line += f" {p['version']}"
        if p.get("user_api") == "blas":
            line += (f", core type {p.get('architecture') or 'unknown'}, threading layer "
                     f"{p.get('threading_layer') or 'unknown'}")
        lines += [f"{line}, {p.get('num_threads')} threads", f"  {p.get('filepath')}"]
    lines += [f"caption metrics: {env['caption_metrics']}", env["mpi"]]
    if "vision" in env:
        lines.append(env["vision"])
    return lines


def add_parser(sub, parents):
    return sub.add_parser("info", parents=parents,
                          help="version, backends, threads and the BLAS library in use")


def run(args):
    print("\n".join(info_lines(collect())))
    return 0


def prints_its_product(args):
    return True  # what it prints is its work (fastcap.cli.streams)
