"""One whole training step per cell type and batch size, for every fastcap
backend and both peers: loss, gradients and an Adam update of every parameter.

fastcap's step is CaptioningSolver.step's (``model.loss`` then ``optim.adam``
per parameter; workload.FastcapTrainer). The peers train the same model from
the same initial weights on the same minibatches: the CS231n-style NumPy
solution (peers/cs231n_numpy.py) and PyTorch (peers/torch_peer.py).
test_peers_agree checks that all three compute the same loss and gradients.
"""
import numpy as np
import pytest
import workload as wl
from conftest import measure, torch_peer
from host_probes import bench_threads
from peers import PEERS

import fastcap


def make_trainer(impl, cell, n):
    if impl == "cs231n":
        from peers import cs231n_numpy

        return cs231n_numpy.Trainer(wl.make_params(cell), cell, wl.make_batches(n), wl.LEARNING_RATE)
    if impl in ("torch", "torch-bf16"):
        return torch_peer().Trainer(wl.make_params(cell), cell, wl.make_batches(n), wl.LEARNING_RATE,
                                    autocast=impl == "torch-bf16")
    return wl.FastcapTrainer(cell, n)  # a fastcap backend, in the precision the impl fixture set


@pytest.mark.parametrize("n", wl.BATCHES, ids=lambda n: f"N{n}")
@pytest.mark.parametrize("cell", wl.CELLS)
def test_bench_train_step(benchmark, impl, cell, n):
    trainer = make_trainer(impl, cell, n)
    measure(benchmark, trainer.step, kind="train", impl=impl, group=f"train {cell} N={n}",
            warmup=2, cell=cell, n=n, gemm_flops=wl.step_gemm_flops(cell, n))


# Thread scaling: the compiled backends' step at 1, 2, 4, ... threads below the
# run's count (which test_bench_train_step measures): kind "train1" at 1 thread,
# "train<t>" at t (bench_report.py's thread-scaling table).
THREAD_COUNTS = tuple(t for t in (1, 2, 4, 8, 16, 32, 64, 128) if t < bench_threads())


@pytest.mark.parametrize("threads", THREAD_COUNTS, ids=lambda t: f"{t}threads")
@pytest.mark.parametrize("n", wl.BATCHES, ids=lambda n: f"N{n}")
@pytest.mark.parametrize("cell", wl.CELLS)
def test_bench_train_step_threads(benchmark, impl, cell, n, threads):
    """The same step with every pool at fewer threads: how much the other cores add."""
    if impl in ("numpy", *PEERS):
        pytest.skip("the thread scaling table is the compiled backends'")
    trainer = make_trainer(impl, cell, n)
    previous = fastcap.get_num_threads()
    fastcap.set_num_threads(threads)
    try:
        measure(benchmark, trainer.step, kind=f"train{threads}", impl=impl, group=f"train {cell} N={n}",
                warmup=2, cell=cell, n=n, run_threads=threads)
    finally:
        fastcap.set_num_threads(previous)


@pytest.mark.parametrize("cell", wl.CELLS)
def test_peers_agree(cell):
    """Same weights, same batch: fastcap, the CS231n-style peer and PyTorch agree on
    the loss and the gradients (float32 tolerances), so they time the same model."""
    from peers import cs231n_numpy

    features, captions = wl.make_batches(25)[0]
    params = wl.make_params(cell)
    with fastcap.use_backend("numpy"):
        model = wl.make_model(cell)
        loss, grads = model.loss(features, captions)
    ref_loss, ref_grads = cs231n_numpy.CaptioningRNN(params, cell).loss(features, captions)
    assert loss == pytest.approx(float(ref_loss), rel=1e-5)
    for k, g in grads.items():
        assert ref_grads[k].dtype == np.float32, k
        scale = np.abs(ref_grads[k]).max()
        np.testing.assert_allclose(g, ref_grads[k], atol=1e-4 * scale, err_msg=k)
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    t = torch_peer().Trainer(params, cell, [(features, captions)], wl.LEARNING_RATE)
    assert t.loss() == pytest.approx(loss, rel=1e-5)
