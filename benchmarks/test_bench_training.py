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

import fastcap


def make_trainer(impl, cell, n):
    if impl == "cs231n":
        from peers import cs231n_numpy

        return cs231n_numpy.Trainer(wl.make_params(cell), cell, wl.make_batches(n), wl.LEARNING_RATE)
    if impl == "torch":
        return torch_peer().Trainer(wl.make_params(cell), cell, wl.make_batches(n), wl.LEARNING_RATE)
    return wl.FastcapTrainer(cell, n)


@pytest.mark.parametrize("n", wl.BATCHES, ids=lambda n: f"N{n}")
@pytest.mark.parametrize("cell", wl.CELLS)
def test_bench_train_step(benchmark, impl, cell, n):
    trainer = make_trainer(impl, cell, n)
    measure(benchmark, trainer.step, kind="train", impl=impl, group=f"train {cell} N={n}",
            warmup=2, cell=cell, n=n, gemm_flops=wl.step_gemm_flops(cell, n))


@pytest.mark.parametrize("n", wl.BATCHES, ids=lambda n: f"N{n}")
@pytest.mark.parametrize("cell", wl.CELLS)
def test_bench_train_step_one_thread(benchmark, backend, cell, n):
    """The same step with every pool at 1 thread: how much the other cores add."""
    if backend == "numpy":
        pytest.skip("the thread scaling target is the compiled backends'")
    trainer = make_trainer(backend, cell, n)
    previous = fastcap.get_num_threads()
    fastcap.set_num_threads(1)
    try:
        measure(benchmark, trainer.step, kind="train1", impl=backend, group=f"train {cell} N={n}",
                warmup=2, cell=cell, n=n, run_threads=1)
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
