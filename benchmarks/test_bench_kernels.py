"""Every kernel of the kernel table, per backend, at the workload shapes.

Kernels are called directly with the arguments the public layers give them
(fastcap._kernels documents the contract): per-timestep cells at (N, H) /
(N, 4H), the embedding, vocabulary affine and softmax loss at M = N*16 rows,
the argmax of one greedy decoding step at (N, V), the four recurrences over
the whole packed sequence (weights packed beforehand; ``recurrent_pack`` of
the LSTM's Wh on its own), and the update rules on a
512 x 2048 array (the LSTM's Wh, the largest recurrent parameter; they do not
depend on N). One
``benchmark.group`` per kernel and size, so each table compares backends.

Also here: the float32 GEMMs of a training step through NumPy's ``@``, at 1
thread and at the suite's thread count, for their GFLOP/s.
"""
import numpy as np
import pytest
import workload as wl
from conftest import measure
from threadpoolctl import threadpool_limits

from fastcap import _backend

M_STEPS = wl.T - 1  # scored steps per caption
UPDATE_SHAPE = (wl.H, 4 * wl.H)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def kernel_args(name, n, seed=0):
    """Arguments for kernel `name` at batch n (float32, C-contiguous, outputs preallocated)."""
    rng = np.random.default_rng(seed)
    f32 = wl.DTYPE
    H, V, W = wl.H, wl.V, wl.W
    M = n * M_STEPS

    def randn(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(f32)

    def empty(*shape):
        return np.empty(shape, dtype=f32)

    captions = wl.make_captions(n, rng)
    words_tm = np.ascontiguousarray(captions.T).astype(np.intp)  # time-major as the model uses
    idx = np.ascontiguousarray(words_tm[:-1].reshape(-1))  # (M,) inputs
    y = np.ascontiguousarray(words_tm[1:].reshape(-1))  # (M,) targets
    mask = y != wl.NULL
    if name == "rnn_cell_forward":
        return randn(n, H), randn(n, H), empty(n, H)
    if name == "rnn_cell_backward":
        return randn(n, H), np.tanh(randn(n, H)), empty(n, H)
    if name == "lstm_cell_forward":
        return randn(n, 4 * H), randn(n, 4 * H), randn(n, H), empty(n, 4 * H), empty(n, H), empty(n, H)
    if name == "lstm_cell_backward":
        ifog = randn(n, 4 * H)
        ifog[:, : 3 * H] = _sigmoid(ifog[:, : 3 * H])
        ifog[:, 3 * H :] = np.tanh(ifog[:, 3 * H :])
        return randn(n, H), randn(n, H), ifog, randn(n, H), randn(n, H), empty(n, 4 * H), empty(n, H)
    if name == "embedding_forward":
        return idx, randn(V, W, scale=0.01), empty(M, W)
    if name == "embedding_backward":
        return randn(M, W), idx, empty(V, W)
    if name == "affine_forward":
        return np.tanh(randn(M, H)), randn(H, V, scale=H**-0.5), np.zeros(V, f32), empty(M, V)
    if name == "affine_backward":
        return randn(M, V, scale=0.01), np.tanh(randn(M, H)), randn(H, V, scale=H**-0.5), \
            empty(M, H), empty(H, V), empty(V)
    if name == "softmax_loss":
        return randn(M, V), y, mask, 1.0 / n, empty(M, V)
    if name == "argmax_words":  # one greedy decoding step: the scores h @ W_vocab of n captions
        return randn(n, V), np.zeros(V, f32), wl.END, np.empty(n, dtype=np.intp)
    if "_recurrence_" in name or name == "recurrent_pack":
        # The whole packed time loop of the model: captions sorted by length,
        # each run to its last scored word (the workload's lengths).
        lengths = np.sort((captions[:, 1:] != wl.NULL).sum(axis=1))[::-1]
        bs = np.array([(lengths > t).sum() for t in range(lengths[0])], dtype=np.intp)
        P = int(bs.sum())
        G = (4 if name.startswith("lstm") or name == "recurrent_pack" else 1) * H
        Wh = randn(H, G, scale=H**-0.5)
        if name == "recurrent_pack":
            return Wh, 4, True
        Whp = _backend.kernels().recurrent_pack(Wh, G // H, name.endswith("backward"))
        if name == "rnn_recurrence_forward":
            return randn(P, H), randn(n, H), Whp, bs, empty(P, H)
        if name == "rnn_recurrence_backward":
            return randn(P, H), randn(n, H), Whp, np.tanh(randn(P, H)), bs, empty(P, H), empty(n, H)
        if name == "lstm_recurrence_forward":
            return randn(P, G), randn(n, H), np.zeros((n, H), f32), Whp, bs, empty(P, G), empty(P, H), empty(P, H)
        ifog = randn(P, G)
        ifog[:, : 3 * H] = _sigmoid(ifog[:, : 3 * H])
        ifog[:, 3 * H :] = np.tanh(ifog[:, 3 * H :])
        return randn(P, H), np.zeros((n, H), f32), Whp, ifog, randn(P, H), bs, empty(P, G), empty(n, H)
    shape = UPDATE_SHAPE
    w, dw = randn(*shape, scale=0.02), randn(*shape, scale=1e-3)
    if name == "sgd_update":
        return w, dw, 1e-3
    if name == "sgd_momentum_update":
        return w, dw, np.zeros(shape, f32), 1e-3, 0.9
    if name == "rmsprop_update":
        return w, dw, np.zeros(shape, f32), 1e-3, 0.99, 1e-8
    if name == "adam_update":
        return w, dw, np.zeros(shape, f32), np.zeros(shape, f32), 1e-3, 0.9, 0.999, 1e-8
    raise KeyError(name)


PER_BATCH = ["rnn_cell_forward", "rnn_cell_backward", "lstm_cell_forward", "lstm_cell_backward",
             "rnn_recurrence_forward", "rnn_recurrence_backward", "lstm_recurrence_forward",
             "lstm_recurrence_backward", "recurrent_pack",
             "embedding_forward", "embedding_backward", "affine_forward", "affine_backward",
             "softmax_loss", "argmax_words"]
UPDATES = ["sgd_update", "sgd_momentum_update", "rmsprop_update", "adam_update"]


def test_table_is_covered():
    """Every kernel of the table has a benchmark here (a new kernel must get one)."""
    from fastcap._kernels import KERNEL_NAMES

    assert set(PER_BATCH + UPDATES) == set(KERNEL_NAMES)


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
    measure(benchmark, lambda: fn(*args), kind="kernel", impl=backend,
            group=f"kernel {name} {UPDATE_SHAPE[0]}x{UPDATE_SHAPE[1]}", kernel=name)


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
