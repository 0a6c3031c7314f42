"""Greedy sampling of 30 words (``model.sample(features, max_length=30)``) at
batch 1 and batch 100, per cell type, for every fastcap backend and both peers.

The weights make ``<END>`` never the argmax (workload.make_params(...,
suppress_end=True)), so every implementation decodes all 30 steps.
test_sample_peers_agree checks the implementations pick the same words.
"""
import numpy as np
import pytest
import workload as wl
from conftest import measure, torch_peer

import fastcap


def make_sampler(impl, cell):
    params = wl.make_params(cell, suppress_end=True)
    if impl == "cs231n":
        from peers import cs231n_numpy

        return cs231n_numpy.CaptioningRNN(params, cell).sample
    if impl in ("torch", "torch-bf16"):
        return torch_peer().Sampler(params, cell, autocast=impl == "torch-bf16").sample
    return wl.make_model(cell, suppress_end=True).sample


@pytest.mark.parametrize("n", wl.SAMPLE_BATCHES, ids=lambda n: f"batch{n}")
@pytest.mark.parametrize("cell", wl.CELLS)
def test_bench_sample(benchmark, impl, cell, n):
    sample = make_sampler(impl, cell)
    features = wl.make_features(n, np.random.default_rng(n))
    measure(benchmark, lambda: sample(features, max_length=wl.SAMPLE_LENGTH), kind="sample",
            impl=impl, group=f"sample {cell} batch={n}", warmup=2, cell=cell, n=n)


@pytest.mark.parametrize("cell", wl.CELLS)
def test_sample_peers_agree(cell):
    features = wl.make_features(100, np.random.default_rng(100))
    with fastcap.use_backend("numpy"):
        ours = make_sampler("numpy", cell)(features, max_length=wl.SAMPLE_LENGTH)
    assert not (ours == wl.END).any()
    others = {"cs231n": make_sampler("cs231n", cell)}
    try:
        import torch  # noqa: F401

        others["torch"] = make_sampler("torch", cell)
    except ImportError:
        pass
    for name, sample in others.items():
        theirs = sample(features, max_length=wl.SAMPLE_LENGTH)
        # float32 rounding may flip a near-tie argmax, after which a caption diverges
        same = (theirs == ours).all(axis=1).mean()
        assert same >= 0.9, f"{name}: only {same:.0%} of the captions match fastcap's"
