"""The bf16 GEMM on AMX tiles (fastcap/_kernels/engine/gemm_amx.h).

The tile program is checked through the engine's emulation of the tile
instructions (amx_emulation.c): the same source, compiled against emulated
tileloadd / tdpbf16ps / tilestored, so every address, stride, pad and the
pair layout is exercised on any CPU whose build has 32-column panels (AVX2
and up). Where the CPU has AMX (amx_bf16) and the OS grants the tile state,
the last tests run the same checks on the CPU's own tiles, and the first
bf16 product switches to them after the engine's check against the vector
tiles (amx_policy.c); the tests here check that decision and its fallbacks.
"""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastcap
from fastcap.runtime import backends as _backend
from fastcap._kernels import bf16 as emulation
from fastcap._kernels.cases import BF16_CASES, SHAPES
from fastcap.runtime.cpu import flags as cpu_flags

from conftest import ENV, require_backend
from parity import assert_same, run, scaled_error

REF = _backend.load("numpy")
MATMUL_CASES = [case for case in BF16_CASES if case.startswith("matmul_bf16")]


# The hardware sums each pair of k in its own order, so its bits differ from the emulation's
# and the vector tiles'; they agree within float32 rounding (worst scaled error measured on
# EDGES on a Sapphire Rapids class Xeon: 3.2e-7). The emulation sums as the vector tiles do,
# in another order than the NumPy reference.
TOL = {"emulated": 1.5e-6, "tiles": 1e-6}


def _tiles(mode):
    """The Cython build in use, its bf16 GEMM switched to `mode` ('emulated', or 'tiles': the
    CPU's own, where it has them and the OS grants them), or a skip saying why not."""
    require_backend("cython")
    module = _backend.load("cython").module
    if mode == "tiles" and "amx_bf16" not in cpu_flags():
        pytest.skip("the CPU has no amx_bf16: no AMX tiles to run")
    try:
        return module, module.amx_use(mode)
    except RuntimeError as exc:  # the baseline build's panels; the OS refused the tile state
        pytest.skip(f"{module.__name__}: {exc}")


@pytest.fixture(params=["emulated", "tiles"])
def tiles(request):
    """The tile program on the emulated tiles (any CPU whose build has 32-column panels) and on
    the CPU's AMX tiles (where it has them); the test reads the mode from amx_status()."""
    module, previous = _tiles(request.param)
    try:
        yield module
    finally:
        module.amx_use(previous)


@pytest.fixture
def cy():
    """The tile program on the emulated tiles only (the decisions the tests drive by hand)."""
    module, previous = _tiles("emulated")
    try:
        yield module
    finally:
        module.amx_use(previous)


@pytest.mark.parametrize("case", MATMUL_CASES)
@pytest.mark.parametrize("dims", SHAPES, ids=lambda d: "N{N}-T{T}-H{H}-V{V}".format(**d))
def test_tile_program_matches_the_emulation_on_the_case_table(tiles, case, dims):
    row = BF16_CASES[case]
    args = row.build(np.random.default_rng(11), np.float32, **dims)
    want = run(REF, "matmul_bf16", args, row.written)
    got = run(tiles, "matmul_bf16", args, row.written)
    assert_same(got, want, row.tol32, scaled_error, f"{case} on {tiles.amx_status()[0]} AMX tiles")


# (M, K, N): rows below, at and past whole tiles (16, 32), k with and without a
# partial block of 16 pairs (the panel tail), odd K, columns ending inside a tile,
# a tile pair and a panel, more than one panel.
EDGES = [(16, 32, 16), (17, 33, 17), (31, 64, 33), (32, 2, 64), (33, 1, 65), (48, 31, 100),
         (64, 257, 64), (100, 96, 129), (95, 512, 1004)]


@pytest.mark.parametrize("M, K, N", EDGES)
@pytest.mark.parametrize("view", ["plain", "a.T", "packed b"])
def test_tile_program_edges(tiles, M, K, N, view):
    mode = tiles.amx_status()[0]
    rng = np.random.default_rng(M * K + N)
    a = rng.standard_normal((K, M) if view == "a.T" else (M, K), dtype=np.float32)
    a = a.T if view == "a.T" else a
    b = rng.standard_normal((K, N), dtype=np.float32)
    want = np.empty((M, N), np.float32)
    emulation.matmul_bf16(a, b, want)
    got = np.full((M, N), np.nan, np.float32)  # every element must be written
    tiles.matmul_bf16(a, tiles.pack_bf16(b) if view == "packed b" else b, got)
    assert tiles.amx_status()[0] == mode  # still the tiles asked for
    assert scaled_error(got, want) <= TOL[mode], (M, K, N, view)
    # the vector tiles sum the same exact products in another order: rounding apart
    vector = np.empty((M, N), np.float32)
    tiles.amx_use("off")
    tiles.matmul_bf16(a, b, vector)
    assert scaled_error(got, vector) <= TOL[mode]


@pytest.mark.parametrize("M, K, N", [e for e in EDGES if e[0] >= 16])
def test_tile_program_writes_nothing_outside_c(tiles, M, K, N):
    """C between NaN guard rows: whole tiles store straight into C, partial ones through a
    spill tile, and neither may touch a byte before or after C."""
    rng = np.random.default_rng(M + K + N)
    a, b = rng.standard_normal((M, K), dtype=np.float32), rng.standard_normal((K, N), dtype=np.float32)
    whole = np.full((M + 8, N), np.nan, np.float32)
    tiles.matmul_bf16(a, b, whole[4:4 + M])
    assert np.isnan(whole[:4]).all() and np.isnan(whole[4 + M:]).all()
    assert not np.isnan(whole[4:4 + M]).any()
    want = np.empty((M, N), np.float32)
    emulation.matmul_bf16(a, b, want)
    assert scaled_error(whole[4:4 + M], want) <= TOL[tiles.amx_status()[0]]


def test_tile_program_same_bits_for_any_thread_count(tiles):
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((130, 300), dtype=np.float32), rng.standard_normal((300, 200), dtype=np.float32)
    previous = fastcap.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            fastcap.set_num_threads(n)
            out = np.empty((130, 200), np.float32)
            tiles.matmul_bf16(a, b, out)
            results.append(out)
    finally:
        fastcap.set_num_threads(previous)
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])


def test_products_below_a_tile_of_rows_keep_the_vector_tiles(tiles):
    """Decoding a few captions (M < 16 rows) would waste most of every tile: the vector tiles run."""
    mode = tiles.amx_status()[0]
    rng = np.random.default_rng(2)
    b = tiles.pack_bf16(rng.standard_normal((64, 50), dtype=np.float32))
    for M in (1, 2, 15):
        a = rng.standard_normal((M, 64), dtype=np.float32)
        on, off = np.empty((M, 50), np.float32), np.empty((M, 50), np.float32)
        tiles.matmul_bf16(a, b, on)
        tiles.amx_use("off")
        tiles.matmul_bf16(a, b, off)
        tiles.amx_use(mode)
        np.testing.assert_array_equal(on, off)


def test_model_trains_on_the_tiles(tiles, monkeypatch):
    """A bf16 training loss and its gradients through the tile program agree with the vector
    tiles."""
    from fastcap.runtime import precision as _precision
    from fastcap.classifiers.rnn import CaptioningRNN

    monkeypatch.setattr(_precision, "_emulate_anywhere", True)
    rng = np.random.default_rng(0)
    word_to_idx = {"<NULL>": 0, "<START>": 1, "<END>": 2, **{f"w{i}": i + 3 for i in range(37)}}
    model = CaptioningRNN(word_to_idx, input_dim=24, wordvec_dim=16, hidden_dim=32, cell_type="lstm",
                          dtype=np.float32, rng=np.random.default_rng(1))
    features = rng.standard_normal((20, 24)).astype(np.float32)
    captions = rng.integers(0, 40, (20, 9))
    with fastcap.use_backend("cython"), fastcap.use_precision("bfloat16"):
        through_tiles = model.loss(features, captions)
        tiles.amx_use("off")
        vector = model.loss(features, captions)
    assert abs(through_tiles[0] - vector[0]) <= 1e-5 * abs(vector[0])
    # Each product agrees within float32 rounding; but a sum that lands near a bf16 rounding
    # boundary rounds the other way for the next product (one bf16 ulp, 0.4%), so gradients
    # of two correct paths can differ by ~1e-3 scaled (measured over 200 random models: up
    # to 7e-4 between the emulated and the vector tiles, 3e-3 between the vector tiles and
    # the NumPy emulation). A wrong product is off by ~1.
    for k in vector[1]:
        assert scaled_error(through_tiles[1][k], vector[1][k]) <= 2e-3, k


def test_amx_use_refuses_what_it_cannot_do():
    require_backend("cython")
    module = _backend.load("cython").module
    with pytest.raises(ValueError, match="off, tiles, emulated"):
        module.amx_use("fast")
    if "amx_bf16" in cpu_flags():
        return  # the hardware tiles may be granted here: nothing to refuse
    before = module.amx_status()
    with pytest.raises(RuntimeError, match="amx_bf16|no AMX code"):
        module.amx_use("tiles")
    assert module.amx_status()[0] == before[0]


def test_decide_falls_back_and_says_why(cy):
    """The paths a CPU with AMX can take, driven by fc_amx_enable's answer."""
    with pytest.warns(RuntimeWarning, match="refused the tile state"):
        cy._amx_decide(3, "emulated")  # the OS said no: warn, keep the vector tiles
    assert cy.amx_status() == ("off", "the OS refused the tile state (arch_prctl ARCH_REQ_XCOMP_PERM)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cy._amx_decide(1, "emulated")  # no AMX in the CPU: nothing to warn about
    assert cy.amx_status() == ("off", "the CPU has no amx_bf16")
    cy._amx_decide(0, "emulated")  # granted: the tiles pass the check and are used
    assert cy.amx_status() == ("emulated", None)


_STATUS = ("import fastcap, numpy as np; from fastcap.runtime import backends as _backend; "
           "m = _backend.load('cython').module; print(m.amx_status()[1]); "
           "fastcap.set_precision('bfloat16'); fastcap.set_backend('cython'); "
           "from fastcap.model import sequence; from fastcap.runtime.compute import resolve; "
           "sequence.matmul(resolve(), np.ones((20, 8), np.float32), np.ones((8, 4), np.float32)); "
           "print(m.amx_status()[0]); print(m.amx_status()[1])")


@pytest.mark.parametrize("switch", ["on", "off"])
def test_asked_once_at_the_first_bf16_product_not_at_import(switch):
    require_backend("cython")
    env = dict(ENV, FASTCAP_AMX=switch)
    out = subprocess.run([sys.executable, "-c", _STATUS], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    before, mode, why = out.stdout.strip().splitlines()
    assert before.startswith("not asked yet")
    if switch == "off":
        assert (mode, why) == ("off", "FASTCAP_AMX=off")
    elif "amx_bf16" not in cpu_flags() or "avx512_bf16" not in cpu_flags():
        assert mode == "off" and ("amx_bf16" in why or "no AMX code" in why), why
    else:  # an AMX CPU: granted and checked, or refused with a reason
        assert (mode, why) == ("tiles", "None") or mode == "off" and why != "None"


# --- the CPU's own tiles, in a fresh process ------------------------------------


def test_first_bf16_product_picks_the_hardware_tiles():
    """Where the tiles run, the engine's check at the first bf16 product passes on them."""
    module, previous = _tiles("tiles")  # or a skip: no AMX here
    module.amx_use(previous)
    out = subprocess.run([sys.executable, "-c", _STATUS], env=dict(ENV, FASTCAP_AMX="on"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[1:] == ["tiles", "None"]
