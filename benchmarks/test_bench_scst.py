"""Self-critical training's costs, each against its reference in the same process, the two
sides' repetitions alternating (a shared machine's load falls on both alike): medians and
their ratio go into ``extra_info`` (kind ``paired``; bench_report.py's table and targets).

* The CIDEr-D scorer (fastcap.metrics.Cider) against pycocoevalcap's on 5,000 images x 5
  references (the first 5,000 Flickr8k images when the corpus is here, each scored with
  another image's caption; else the workload's captions): fastcap from word-id caption
  matrices, as its captions are (``ids``), and from the same strings pycocoevalcap takes
  (``strings``); the scores are checked equal first.
* An SCST step (K = 5 samples of 50 images, LSTM 512: sampling, CIDEr-D rewards, the
  weighted loss and Adam) against a cross-entropy step of 50 x 5 captions. The untrained
  model's <END> bias is raised so that its samples end after about as many words as the
  workload's captions (recorded: ``sample_words``), not all 16.
"""
import collections
import os
import re
import statistics

import numpy as np
import pytest
import workload as wl
from conftest import require_backend
from interleave import interleaved
from workload import find_flickr8k

import fastcap
from fastcap.metrics import Cider, caption_set
from fastcap.train.scst import ScstConfig, SelfCritical, SelfCriticalSolver

IMAGES, REFS = 5000, 5
SCST = dict(images=50, samples=5, max_length=16)
END_BIAS = 3.97  # p(<END>) about 0.05 a step: samples of about 11 words, as the workload's
COMPILED = ("numba", "cython")


def paired(benchmark, fns, rounds, reference, *, group, impl, target, **extra):
    """Run `fns` interleaved once under pytest-benchmark; record each side's median and the
    ratios reference / side (how many times faster the side is) in extra_info, with the
    target of each ratio: {side: [">=" or "<=", bound]}."""
    out = {}
    benchmark.group = group
    benchmark.pedantic(lambda: out.update(interleaved(fns, rounds)), rounds=1, iterations=1)
    medians = {name: statistics.median(t) for name, t in out.items()}
    measure_info = dict(kind="paired", impl=impl, group=group, target=target, rounds=rounds,
                        medians=medians, reference=reference,
                        ratios={n: medians[reference] / m for n, m in medians.items() if n != reference},
                        **extra)
    benchmark.extra_info.update(measure_info)
    return medians


def _scorer_corpus():
    """(references (IMAGES, REFS, T) id matrices, candidates (IMAGES, T), idx_to_word, source)."""
    corpus = find_flickr8k()
    if corpus is None:
        rng = np.random.default_rng(0)
        refs = wl.make_captions(IMAGES * REFS, rng).reshape(IMAGES, REFS, wl.T)
        words = [w for w, _ in sorted(wl.word_to_idx().items(), key=lambda kv: kv[1])]
        return refs, refs[(7 * np.arange(IMAGES) + 3) % IMAGES, 0], words, "workload captions"
    captions = collections.defaultdict(list)
    with open(os.path.join(corpus, "Flickr8k.token.txt"), encoding="utf-8") as f:
        for line in f:
            key, _, text = line.rstrip("\n").partition("\t")
            captions[key.split("#")[0]].append(re.findall(r"[a-z]+", text.lower()))
    images = sorted(im for im, c in captions.items() if len(c) >= REFS)[:IMAGES]
    words = ["<NULL>", "<START>", "<END>"] + sorted({w for im in images for c in captions[im] for w in c})
    ids = {w: i for i, w in enumerate(words)}
    longest = max(len(c) for im in images for c in captions[im][:REFS])
    refs = np.zeros((IMAGES, REFS, longest + 2), np.int32)
    for i, im in enumerate(images):
        for j, c in enumerate(captions[im][:REFS]):
            refs[i, j, :len(c) + 2] = [1, *(ids[w] for w in c), 2]
    return refs, refs[(7 * np.arange(IMAGES) + 3) % IMAGES, 0], words, "Flickr8k captions"


@pytest.fixture
def rounds(request):
    """Interleaved rounds of each side: pytest-benchmark's --benchmark-min-rounds (`fastcap bench`:
    5; --quick: 3; `fastcap bench --filter scst -- --benchmark-min-rounds=1`: a smoke run)."""
    return max(int(request.config.getoption("benchmark_min_rounds")), 1)


@pytest.mark.parametrize("backend_name", COMPILED)
def test_bench_cider_vs_pycocoevalcap(benchmark, backend_name, rounds):
    from pycocoevalcap.cider.cider import Cider as Reference

    require_backend(backend_name)
    refs, cands, words, source = _scorer_corpus()
    text = lambda row: " ".join(words[w] for w in row[1:][: list(row[1:]).index(2)])  # noqa: E731
    gts = {i: [text(r) for r in refs[i]] for i in range(IMAGES)}
    res = {i: [text(cands[i])] for i in range(IMAGES)}
    flat = refs.reshape(IMAGES * REFS, -1)
    ranges = np.stack([np.arange(IMAGES) * REFS, np.arange(1, IMAGES + 1) * REFS], axis=1)
    with fastcap.use_backend(backend_name):
        def ids():
            ref_set = caption_set(flat, 2, (0, 1))
            cider = Cider.of_sets(ref_set, np.arange(IMAGES + 1) * REFS)  # the scored set's df
            return cider.score_sets(caption_set(cands, 2, (0, 1)), ref_set, ranges)

        def strings():
            return Cider().compute_score(gts, res)[1]

        want = Reference().compute_score(gts, res)[1]
        assert np.max(np.abs(ids() - want)) <= 1e-9 and np.max(np.abs(strings() - want)) <= 1e-9
        paired(benchmark, {"pycocoevalcap": lambda: Reference().compute_score(gts, res),
                           "ids": ids, "strings": strings}, rounds=rounds, reference="pycocoevalcap",
               group=f"CIDEr-D {IMAGES} images x {REFS} references", impl=backend_name,
               target={"ids": [">=", 50.0]}, source=source)


def _scst_solver(cell="lstm"):
    rng = np.random.default_rng(0)
    n_images = 1000
    data = {"train_captions": wl.make_captions(n_images * REFS, rng),
            "train_image_idxs": np.repeat(np.arange(n_images), REFS).astype(np.int32),
            "train_features": wl.make_features(n_images, rng), "word_to_idx": wl.word_to_idx()}
    model = wl.make_model(cell)
    model.params["b_vocab"][wl.END] = END_BIAS
    scst = SelfCritical(data, ScstConfig(SCST["samples"], "mean", SCST["max_length"], 0))
    return SelfCriticalSolver(model, data, scst=scst, update_rule="adam",
                              optim_config={"learning_rate": wl.LEARNING_RATE}, batch_size=SCST["images"],
                              verbose=False, rng=np.random.RandomState(0)), model, data


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_bench_scst_step_vs_cross_entropy(benchmark, backend, precision, rounds):
    if precision == "bfloat16" and backend != "cython":
        pytest.skip("the bfloat16 mode runs compiled on the Cython backend (the others emulate it)")
    n = SCST["images"] * SCST["samples"]
    with fastcap.use_precision(precision):
        solver, model, data = _scst_solver()
        ce = wl.FastcapTrainer("lstm", n)
        samples = model.sample_multinomial(data["train_features"][:100], SCST["samples"], SCST["max_length"])
        sample_words = float((samples != wl.NULL).sum(axis=2).mean())  # words + <END>
        paired(benchmark, {"scst": solver.step, "cross-entropy": ce.step}, rounds=rounds,
               reference="scst", group=f"SCST step (K={SCST['samples']}, {SCST['images']} images) vs "
                                       f"cross-entropy step ({n} captions), lstm",
               impl=backend + ("-bf16" if precision == "bfloat16" else ""), target={"cross-entropy": ["<=", 3.0]},
               sample_words=sample_words, caption_words=wl.mean_scored_tokens())
