"""Every kernel of the kernel table, per backend, at the workload shapes, with the parity tests' arguments.

The arguments come from the case table the parity tests use
(``fastcap._kernels.cases``) at the workload's dims: per-timestep cells at
(N, H) / (N, 4H); the embedding and softmax loss at M = N*16 rows, on the
words, targets and mask of the workload's captions; the argmax of one greedy
decoding step at (N, V); the four recurrences over the whole packed sequence
of those captions (weights packed beforehand by the backend measured;
``recurrent_pack`` of the LSTM's Wh on its own); the update rules on an
H x 4H array (the LSTM's Wh, the largest recurrent parameter; they do not
depend on N). One ``benchmark.group`` per kernel and size, so each table
compares backends.

Also here: the float32 GEMMs of a training step through NumPy's ``@``, at 1
thread and at the suite's thread count, for their GFLOP/s.
"""
import numpy as np
import pytest
import workload as wl
from conftest import measure
from threadpoolctl import threadpool_limits

from fastcap.runtime import backends as _backend
from fastcap._kernels import KERNEL_NAMES
from fastcap._kernels.cases import CASES, bind

M_STEPS = wl.T - 1  # scored steps per caption
UPDATES = [k for k in CASES if k.endswith("_update")]  # on one array, whatever N
PER_BATCH = [k for k in CASES if k not in UPDATES]


def kernel_args(name, n, seed=0):
    """Arguments for kernel `name` at batch n of the workload (float32, outputs
    preallocated, weights packed by the active backend)."""
    rng = np.random.default_rng(seed)
    dims = dict(N=n, T=M_STEPS, D=wl.D, H=wl.H, V=wl.V, W=wl.W, captions=wl.make_captions(n, rng))
    return bind(_backend.kernels(), CASES[name].build(rng, wl.DTYPE, **dims))


def test_table_is_covered():
    """Every kernel of the table has a case, so a benchmark here (a new kernel must get one)."""
    assert set(CASES) == set(KERNEL_NAMES)


@pytest.mark.parametrize("n", wl.BATCHES, ids=lambda n: f"N{n}")
@pytest.mark.parametrize("name", PER_BATCH)
def test_bench_kernel(benchmark, backend, name, n):
    if name == "recurrent_pack" and n != wl.BATCHES[0]:
        pytest.skip("packing does not depend on N")
    fn = getattr(_backend.load(backend), name)
    args = kernel_args(name, n)  # under the active backend: its packing of Wh
    measure(benchmark, lambda: fn(*args), kind="kernel", impl=backend,
            group=f"kernel {name} N={n}", kernel=name, n=n)


@pytest.mark.parametrize("name", UPDATES)
def test_bench_update(benchmark, backend, name):
    fn = getattr(_backend.load(backend), name)
    args = kernel_args(name, 0)
    rows, cols = args[0].shape
    measure(benchmark, lambda: fn(*args), kind="kernel", impl=backend,
            group=f"kernel {name} {rows}x{cols}", kernel=name)


# ---------------------------------------------------------------- GEMMs of a training step

M100 = 100 * M_STEPS
G = 4 * wl.H
# label -> (a shape, b shape, transpose a?, transpose b?), as the layers call them
GEMMS = {
    "LSTM input projection x@Wx": ((M100, wl.W), (wl.W, G), False, False),
    "LSTM recurrent h@Wh (per step)": ((100, wl.H), (wl.H, G), False, False),
    "LSTM recurrent backward da@Wh.T (per step)": ((100, G), (G, wl.H), False, True),
    "LSTM dWh = h.T@da": ((wl.H, M100), (M100, G), True, False),
    "RNN recurrent h@Wh (per step)": ((100, wl.H), (wl.H, wl.H), False, False),
    "vocabulary h@W_vocab": ((M100, wl.H), (wl.H, wl.V), False, False),
    "vocabulary backward dscores@W_vocab.T": ((M100, wl.V), (wl.V, wl.H), False, True),
    "vocabulary dW = h.T@dscores": ((wl.H, M100), (M100, wl.V), True, False),
}


def gemm_operands(a_shape, b_shape, ta, tb, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(a_shape[::-1] if ta else a_shape).astype(wl.DTYPE)
    b = rng.standard_normal(b_shape[::-1] if tb else b_shape).astype(wl.DTYPE)
    a, b = (a.T if ta else a), (b.T if tb else b)  # transposed views, as in x.T @ dout
    return a, b, np.empty((a_shape[0], b_shape[1]), dtype=wl.DTYPE)


@pytest.mark.parametrize("gemm_threads", ["1", "all"])
@pytest.mark.parametrize("label", list(GEMMS))
def test_bench_gemm(benchmark, label, gemm_threads, threads):
    a_shape, b_shape, ta, tb = GEMMS[label]
    a, b, c = gemm_operands(a_shape, b_shape, ta, tb)
    n = 1 if gemm_threads == "1" else threads
    if gemm_threads == "all" and threads == 1:
        pytest.skip("the suite runs with 1 thread: same as the 1-thread case")
    (m, k), nn = a_shape, b_shape[1]
    with threadpool_limits(limits=n, user_api="blas"):
        measure(benchmark, lambda: np.matmul(a, b, out=c), kind="gemm", impl=f"blas-{n}t",
                group=f"gemm {label}", gemm_threads=n, shape=f"{m}x{k} @ {k}x{nn}",
                flops=2 * m * k * nn)
