"""The attention model (issue 26): one training step and greedy decoding, fastcap's compiled
backend (float32 and the bfloat16 mode) against PyTorch (eager float32, autocast bf16) with
the same threads, at the sizes of workload.py's attention declarations. The ratios within one
interleaved run come from attention_ratios.py (and torch.compile there, with --compile)."""
import numpy as np
import pytest
import workload as wl
from conftest import measure, torch_peer

ATTENTION_IMPLS = ("cython", "cython-bf16", "torch", "torch-bf16")


def _attention_impl(impl):
    if impl not in ATTENTION_IMPLS:
        pytest.skip("the attention benchmarks time the compiled backend and PyTorch")
    if impl.startswith("torch"):
        torch_peer()
        from peers import torch_attention

        return torch_attention
    return None


@pytest.mark.parametrize("cells", wl.ATTENTION_CELLS, ids=lambda c: f"L{c}")
@pytest.mark.parametrize("n", wl.BATCHES, ids=lambda n: f"N{n}")
def test_bench_attention_train_step(benchmark, impl, n, cells):
    peer = _attention_impl(impl)
    if peer:
        step = peer.Trainer(wl.make_attention_model().params, wl.make_attention_batches(n, cells),
                            wl.LEARNING_RATE, autocast=impl == "torch-bf16").step
    else:
        step = wl.AttentionTrainer(n, cells).step
    measure(benchmark, step, kind="train", impl=impl, group=f"attention train N={n} L={cells}",
            warmup=1, cell="lstm", n=n, cells=cells)


@pytest.mark.parametrize("cells", wl.ATTENTION_CELLS, ids=lambda c: f"L{c}")
@pytest.mark.parametrize("n", wl.SAMPLE_BATCHES, ids=lambda n: f"N{n}")
def test_bench_attention_sample(benchmark, impl, n, cells):
    peer = _attention_impl(impl)
    model = wl.make_attention_model(suppress_end=True)
    a = wl.make_grid_features(n, cells, np.random.default_rng(n))
    if peer:
        sampler = peer.Sampler(model.params, autocast=impl == "torch-bf16")
        fn = lambda: sampler.sample(a, wl.SAMPLE_LENGTH)  # noqa: E731
    else:  # frozen, as a served model is (load_captioner): packed once, as the peer's tensors are made once
        model.freeze()
        fn = lambda: model.sample(a, max_length=wl.SAMPLE_LENGTH)  # noqa: E731
    measure(benchmark, fn, kind="sample", impl=impl, group=f"attention sample N={n} L={cells}",
            warmup=1, cell="lstm", n=n, cells=cells)


def test_attention_peers_agree():
    """Same weights, same batch: fastcap's attention model and the PyTorch peer compute the
    same loss and gradients (float32 tolerances) and pick the same greedy words, so the
    benchmarks above time one model, not two."""
    torch = pytest.importorskip("torch")
    from peers import torch_attention

    features, captions = wl.make_attention_batches(8, 49, count=1)[0]
    model = wl.make_attention_model()
    loss, grads = model.loss(features, captions)
    peer = torch_attention.AttentionCaptioner(model.params)
    ref = peer.loss(torch.from_numpy(features), torch.from_numpy(captions.astype(np.int64)))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-4)
    assert set(grads) == set(peer.p)
    for k, g in grads.items():
        want = peer.p[k].grad.numpy()
        np.testing.assert_allclose(g, want, atol=1e-3 * np.abs(want).max(), err_msg=k)
    sampler = wl.make_attention_model(suppress_end=True)
    ours = sampler.sample(features, max_length=wl.SAMPLE_LENGTH)
    theirs = torch_attention.Sampler(sampler.params).sample(features, wl.SAMPLE_LENGTH)
    assert ours.shape == theirs.shape and (ours == theirs).mean() >= 0.9
