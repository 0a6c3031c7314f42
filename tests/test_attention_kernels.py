"""The attention model's kernels beyond the parity table's rows (test_kernel_parity.py runs those,
an LSTM's, and test_bf16.py the bfloat16 rows): the vanilla RNN's rows (the case table's
RNN_CASES) against the reference, attention_pack leaving its inputs alone, and the same bits
for any thread count."""
import numpy as np
import pytest

from fastcap.runtime import backends as _backend
from fastcap._kernels.cases import BF16_CASES, CASES, RNN_CASES, SHAPES, PackA, as_dtype

from parity import assert_same, run, scaled_error

REF = _backend.load("numpy")
DIMS_IDS = lambda d: "N{N}-T{T}-H{H}-L{L}".format(**d)  # noqa: E731
ATTENTION_ROWS = {k: row for k, row in {**CASES, **RNN_CASES}.items()
                  if k.startswith("attention") and row.tol32 is not None}


@pytest.mark.parametrize("case", RNN_CASES)
@pytest.mark.parametrize("dims", SHAPES, ids=DIMS_IDS)
def test_rnn_rows_float64_match_the_reference(compiled, case, dims):
    row, kernel = RNN_CASES[case], case.split()[0]
    args = row.build(np.random.default_rng(7), np.float64, **dims)
    assert_same(run(_backend.kernels(), kernel, args, row.written), run(REF, kernel, args, row.written),
                1e-10, path=case)


@pytest.mark.parametrize("case", RNN_CASES)
@pytest.mark.parametrize("dims", SHAPES, ids=DIMS_IDS)
def test_rnn_rows_float32_within_tolerance(backend, case, dims):
    row, kernel = RNN_CASES[case], case.split()[0]
    args64 = row.build(np.random.default_rng(7), np.float64, **dims)
    want = run(REF, kernel, args64, row.written)
    got = run(_backend.kernels(), kernel, as_dtype(args64, np.float32), row.written)
    assert_same(got, want, row.tol32, scaled_error, f"{case} ({backend})", same_dtype=False)


@pytest.mark.parametrize("dims", SHAPES, ids=DIMS_IDS)
def test_attention_pack_leaves_its_inputs_alone(backend, dims):
    """attention_pack's result is backend-specific (the recurrence rows check what it does):
    its four matrices stay as they were, bit for bit, in every dtype and precision."""
    kernels = _backend.kernels()
    for gates in (1, 4):
        for dtype, bf16 in ((np.float64, False), (np.float32, False), (np.float32, True)):
            for transpose in (False, True):
                weights = PackA(*CASES["attention_pack"].build(np.random.default_rng(3), dtype, **dims)[:4],
                                transpose, bf16)
                if gates == 1:
                    weights = weights._replace(Wh=weights.Wh[:, :dims["H"]].copy(),
                                               Wz=weights.Wz[:, :dims["H"]].copy())
                kept = [w.copy() for w in weights[:4]]
                kernels.attention_pack(*weights)
                for w, k in zip(weights[:4], kept):
                    assert w.tobytes() == k.tobytes()


@pytest.mark.parametrize("case", [*ATTENTION_ROWS, *(f"bf16 {k}" for k in BF16_CASES if k.startswith("attention"))])
def test_same_bits_for_any_thread_count(cython_module, case):
    """The Cython backend's attention kernels, whose products run on BLAS and the engine's
    pool (decoding's panels), give the same bits for 1, 2 and 3 threads."""
    bf16 = case.startswith("bf16 ")
    row = BF16_CASES[case[5:]] if bf16 else ATTENTION_ROWS[case]
    kernel = case.split()[1 if bf16 else 0]
    kernels = _backend.load("cython")
    previous = cython_module.get_num_threads()
    try:
        for dims in (dict(SHAPES[-1], N=30, T=6, H=40), SHAPES[1]):
            args = row.build(np.random.default_rng(5), np.float32, **dims)
            results = []
            for threads in (1, 2, 3):
                cython_module.set_num_threads(threads)
                results.append(run(kernels, kernel, args, row.written))
            for other in results[1:]:
                assert_same(other, results[0], 0.0, path=f"{case} {dims}")
    finally:
        cython_module.set_num_threads(previous)


@pytest.mark.parametrize("kernel, which, cut, match", [
    ("attention_step_forward", 2, np.s_[:, :-1], r"hab must have shape \(4, 13\)"),  # A + D = 7 + 6
    ("attention_step_forward", 6, np.s_[:-1], r"z_out must have shape \(4, 6\)"),
    ("attention_step_backward", 4, np.s_[:, :-1], r"hd must have shape \(4, 7\)"),
    ("attention_step_backward", 11, np.s_[:, :2], r"denc must have shape \(4, 5, 7\)"),
])
def test_cython_step_kernels_refuse_inconsistent_arguments(cython_module, kernel, which, cut, match):
    """The compiled loops index with a's and enc's sizes: an argument of other sizes is refused
    before they run, whoever calls them."""
    args = CASES[kernel].build(np.random.default_rng(1), np.float32, **SHAPES[1])
    args[which] = np.ascontiguousarray(args[which][cut])
    with pytest.raises(ValueError, match=f"{kernel}: {match}"):
        getattr(cython_module, kernel)(*args)
