"""The bfloat16 precision mode: the compiled bf16 kernels against the NumPy
emulation (the case table's BF16_CASES), the model's loss and gradients
against float64, thread-count independence, decoding, and the mode's API.

Every test runs on any x86 CPU: the Cython bf16 kernels compute with two
FMAs per pair where the CPU has no vdpbf16ps, and the same bits where it has
(test_every_build_gives_the_same_bits), so checking them anywhere checks the
native path's arithmetic too. ``_precision._emulate_anywhere`` makes the
model run its bf16 kernels on a CPU without bf16 units, which otherwise
falls back to float32 (test_no_bf16_units_runs_float32_and_says_so).
"""
import importlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastcap
from fastcap.runtime import backends as _backend, precision as _precision
from fastcap._kernels import bf16 as emulation
from fastcap._kernels.cases import BF16_CASES, SHAPES
from fastcap.runtime.names import BUILDS
from fastcap.model.sequence import CELL_TYPES

from conftest import ENV, require_backend
from parity import assert_same, run, scaled_error

REF = _backend.load("numpy")
DIMS_IDS = lambda d: "N{N}-T{T}-H{H}-V{V}".format(**d)  # noqa: E731


@pytest.mark.parametrize("case", BF16_CASES)
@pytest.mark.parametrize("dims", SHAPES, ids=DIMS_IDS)
def test_bf16_kernels_match_the_emulation(backend, case, dims):
    row = BF16_CASES[case]
    kernel = case.split()[0]
    args = row.build(np.random.default_rng(7), np.float32, **dims)
    want = run(REF, kernel, args, row.written)
    got = run(_backend.kernels(), kernel, args, row.written)
    assert_same(got, want, 0.0 if backend == "numpy" else row.tol32, scaled_error, f"{case} ({backend})")


def test_round_bf16_is_round_to_nearest_even():
    # 1 + 2**-8 is halfway between bf16 1 and 1 + 2**-7: even (1) wins; 1 + 3*2**-8 rounds up
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), np.inf], np.float32)
    np.testing.assert_array_equal(emulation.round_bf16(x), np.array([1.0, 1 + 2**-6, -1.0, np.inf], np.float32))
    # any float32 bit pattern: the integer rule (add 0x7fff plus the kept lowest bit, truncate)
    bits = np.random.default_rng(0).integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    finite = np.isfinite(x) & (np.abs(x) < 3.38e38)  # below the top binade, rounding cannot overflow
    wide = bits.astype(np.uint64)
    want = ((wide + 0x7FFF + ((wide >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(emulation.round_bf16(x)[finite], want[finite])
    assert np.isnan(emulation.round_bf16(np.array([np.nan], np.float32))[0])


def _builds_this_cpu_runs():
    require_backend("cython")
    baseline = importlib.import_module(BUILDS["baseline"][0])
    return {isa: importlib.import_module(module) for isa, (module, predicate, _) in BUILDS.items()
            if predicate is None or getattr(baseline, predicate)()}


@pytest.fixture
def vector_tiles():
    """Every build this CPU runs, its bf16 GEMM on the vector tiles for the test: where the
    CPU has AMX, the first bf16 product of the avx512bf16 build picks the AMX tiles, which
    sum each pair in their own order (tests/test_amx.py checks them within rounding)."""
    builds = _builds_this_cpu_runs()
    previous = {isa: m.amx_use("off") for isa, m in builds.items()}
    try:
        yield builds
    finally:
        for isa, m in builds.items():
            m.amx_use(previous[isa])


@pytest.mark.parametrize("case", BF16_CASES)
def test_every_build_gives_the_same_bits(vector_tiles, case):
    """vdpbf16ps (the avx512bf16 build) and two FMAs per pair (every other build)
    round alike: a product of two bf16 is exact in float32."""
    builds = vector_tiles
    row, kernel = BF16_CASES[case], case.split()[0]
    args = row.build(np.random.default_rng(3), np.float32, **SHAPES[-1])
    results = {isa: run(m, kernel, args, row.written) for isa, m in builds.items()}
    first = next(iter(results.values()))
    for isa, got in results.items():
        assert_same(got, first, 0.0, path=f"{case}: {isa} build")


def _batch(rng, N=6, T=9, V=23, D=10):
    captions = rng.integers(4, V, (N, T))
    captions[:, 0] = 1
    for i, length in enumerate(rng.integers(2, T, N)):
        captions[i, length] = 2
        captions[i, length + 1:] = 0
    return rng.standard_normal((N, D)), captions


def _model(cell, dtype, V=23, D=10, W=8, H=16):
    words = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, **{f"w{i}": i for i in range(4, V)}}
    return fastcap.CaptioningRNN(words, D, W, H, cell, dtype, rng=np.random.default_rng(0))


# The loss and gradients of a small model in bf16 mode against float64: bf16
# keeps 8 significant bits, so about 2**-8 relative error per product; the
# worst scaled error seen over the gradients was 6e-3 (8 seeds).
BF16_MODEL_TOL = 3e-2


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_model_loss_and_gradients_in_bf16_against_float64(backend, bf16_anywhere, cell):
    features, captions = _batch(np.random.default_rng(1))
    model64 = _model(cell, np.float64)
    with fastcap.use_backend("numpy"):
        loss64, grads64 = model64.loss(features, captions)
    model = _model(cell, np.float32)
    loss, grads = model.loss(features.astype(np.float32), captions)
    assert loss == pytest.approx(loss64, rel=1e-2)
    for k, g in grads.items():
        assert g.dtype == np.float32, k  # master weights and gradients stay float32
        err = scaled_error(g, grads64[k])
        assert err <= BF16_MODEL_TOL, f"{k}: {err:.3g}"
    with fastcap.use_precision("float32"):
        loss32, grads32 = model.loss(features.astype(np.float32), captions)
    assert not np.array_equal(grads["Wh"], grads32["Wh"]), "bf16 mode computed the float32 products"


def _lstm_batch(N=40):
    rng = np.random.default_rng(5)
    words = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, **{f"w{i}": i for i in range(4, 60)}}
    model = fastcap.CaptioningRNN(words, 24, 16, 48, "lstm", np.float32, rng=rng)
    features, captions = _batch(rng, N=N, T=12, V=60, D=24)
    return model, features, captions


def test_same_bits_for_any_thread_count(bf16_anywhere):
    require_backend("cython")
    model, features, captions = _lstm_batch()
    results = []
    with fastcap.use_backend("cython"):
        previous = fastcap.get_num_threads()
        try:
            for n in (1, 2, 3):
                fastcap.set_num_threads(n)
                results.append(model.loss(features, captions))
                results.append(model.sample(features[:5], max_length=8))
        finally:
            fastcap.set_num_threads(previous)
    for i in range(2, len(results), 2):
        assert_same(results[i], results[0], 0.0, path="loss, grads at another thread count")
        np.testing.assert_array_equal(results[i + 1], results[1])


@pytest.mark.parametrize("gates", [1, 4])
def test_one_row_step_has_the_bits_of_a_row_of_many(gates):
    """A bf16 recurrent step of one row (decoding at batch 1) runs two panels per tile
    (tiles.h tile_bf16_row2); each element is still the sum of the many-row tiles, in the
    same order: the same bits as that row in a batch of 7."""
    require_backend("cython")
    k = _backend.load("cython")
    rng = np.random.default_rng(4)
    N, H = 7, 150  # an odd number of panels (3 or 10 split over 2 threads): some run single
    Wh = k.recurrent_pack((rng.standard_normal((H, gates * H)) / 7).astype(np.float32), gates, False, True)
    xw = rng.standard_normal((N, gates * H)).astype(np.float32)
    h0, c0 = rng.standard_normal((2, N, H)).astype(np.float32)

    def step(rows):
        n = len(rows)
        h = np.empty((n, H), np.float32)
        if gates == 1:
            k.rnn_recurrence_forward(xw[rows], h0[rows], Wh, np.array([n]), h)
        else:
            k.lstm_recurrence_forward(xw[rows], h0[rows], c0[rows], Wh, np.array([n]),
                                      np.empty((n, 4 * H), np.float32), np.empty((n, H), np.float32), h)
        return h

    many = step(np.arange(N))
    for r in range(N):
        np.testing.assert_array_equal(step([r])[0], many[r])


def test_decoding_runs_bf16_products(backend, bf16_anywhere, monkeypatch):
    """Greedy decoding's products are bf16 in the mode: its scores match the
    emulation's, and differ from float32's."""
    model, features, _ = _lstm_batch(8)
    state = model.initial_hidden(features)
    scores, _ = model.step(state, np.full(8, 1))
    with fastcap.use_backend("numpy"):
        ref, _ = model.step(model.initial_hidden(features), np.full(8, 1))
    assert scaled_error(scores, ref) <= 1e-5
    with fastcap.use_precision("float32"):
        s32, _ = model.step(model.initial_hidden(features), np.full(8, 1))
    assert not np.array_equal(scores, s32)
    captions = model.sample(features, max_length=6)
    assert captions.shape == (8, 6)


def test_no_bf16_units_runs_float32_and_says_so(compiled, monkeypatch):
    """On a CPU without bf16 units the compiled backends warn once and compute float32."""
    monkeypatch.setattr(_precision, "_native", False)
    monkeypatch.setattr(_precision, "_warned", False)
    model, features, captions = _lstm_batch(10)
    want = model.loss(features, captions)
    with fastcap.use_precision("bfloat16"):
        with pytest.warns(RuntimeWarning, match="no bf16 units"):
            got = model.loss(features, captions)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once only
            model.loss(features, captions)
        assert "float32 runs" in _precision.describe()
    assert_same(got, want, 0.0, path="bf16 mode without bf16 units")


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="float32, bfloat16"):
        fastcap.set_precision("fp16")
    with pytest.raises(ValueError):
        with fastcap.use_precision(16):
            pass
    assert fastcap.get_precision() == "float32"
    env = dict(ENV, FASTCAP_PRECISION="half")
    proc = subprocess.run([sys.executable, "-c", "import fastcap"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "FASTCAP_PRECISION='half'" in proc.stderr


def test_precision_from_the_environment_and_use_precision():
    env = dict(ENV, FASTCAP_PRECISION="bfloat16")
    code = ("import fastcap; print(fastcap.get_precision())\n"
            "with fastcap.use_precision('float32'): print(fastcap.get_precision())\n"
            "print(fastcap.get_precision())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["bfloat16", "float32", "bfloat16"]


def test_float64_models_ignore_the_mode(backend, bf16_anywhere):
    features, captions = _batch(np.random.default_rng(2))
    model = _model("lstm", np.float64)
    got = model.loss(features, captions)
    with fastcap.use_precision("float32"):
        want = model.loss(features, captions)
    assert_same(got, want, 0.0, path="float64 in bf16 mode")
