"""Self-critical training (fastcap train --scst, fastcap.train.scst): its loss, its runs and its refusals.

* The loss is -sum over samples of (r - b) * sum_t log p(w_t) / (number of samples),
  the rewards the samples' CIDEr-D against their image's references, the baseline the
  mean of the other samples' rewards or the greedy caption's; no sample holds <NULL>
  or <START>.
* A run from a cross-entropy checkpoint trains, writes its checkpoints (best.npz by
  CIDEr), and an interrupted one resumes to the same numbers; under MPI two ranks train
  what one does.
* Random weights, K = 1 with the mean baseline, another vocabulary, a step past the
  memory and resuming a cross-entropy run with --scst are one-line errors (a reward that
  is not finite, and the checkpoints each leaves: tests/test_scst_runs.py).
"""
import json
import subprocess

import numpy as np
import pytest

import fastcap
from fastcap.metrics import Cider
from fastcap.model.sequence import CELL_TYPES
from fastcap.train import scst as _scst
from fastcap.train.checkpoint import load_checkpoint
from fastcap.train.evaluation import suppressing
from fastcap.train.scst import ScstConfig, SelfCritical, SelfCriticalSolver

from conftest import BACKENDS, fastcap_cmd, require_backend
from test_cli import TINY, failed, ok, run_dir  # noqa: F401  (run_dir: the shared tiny run)
from test_mpi import _cmd, _env, assert_same_run, needs_mpi, TIMEOUT, train as mpi_train

SCST = ["--scst", "--scst-samples", "3", "--batch-size", "8", "--lr", "1e-3"]


def _model(data, cell="lstm", dtype=np.float64, seed=0):
    model = fastcap.CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                                  wordvec_dim=8, hidden_dim=12, cell_type=cell, dtype=dtype,
                                  rng=np.random.default_rng(seed))
    model.params["W_vocab"] *= 4  # some words likelier than others: varied rewards
    return model


@pytest.mark.parametrize("baseline", ["mean", "greedy"])
def test_the_loss_is_the_advantage_weighted_log_likelihood(small_data, baseline):
    data, K = small_data, 4
    sc = SelfCritical(data, ScstConfig(K, baseline, 10, 3))
    model = _model(data)
    positions = np.array([0, 5, 5, 11])
    loss, grads, reward = sc.loss(model, positions, iteration=7)
    # the same samples, drawn by hand, and their rewards against each image's references
    policy = suppressing(model, _scst.SUPPRESSED)
    images = sc.images[positions]
    feats = data["train_features"][images]
    samples = policy.sample_multinomial(feats, K, 10, seed=(3, 7), keys=images)
    vocab = data["word_to_idx"]
    assert not np.isin(samples, [vocab["<NULL>"], vocab["<START>"]])[samples != vocab["<NULL>"]].any()
    assert not np.isin(samples[..., 0], [vocab["<NULL>"], vocab["<START>"]]).any()
    refs = [[c for c in data["train_captions"][data["train_image_idxs"] == i]] for i in images]
    words = lambda c: [w for w in c[: list(c).index(vocab["<END>"]) if vocab["<END>"] in c else None]  # noqa: E731
                       if w not in (vocab["<NULL>"], vocab["<START>"])]
    cider = Cider([[words(c) for c in data["train_captions"][data["train_image_idxs"] == i]]
                   for i in sc.images])
    r = np.array([cider.score([words(s) for s in samples[b]], [[words(c) for c in refs[b]]] * K)
                  for b in range(len(images))])
    if baseline == "mean":
        b = (r.sum(axis=1, keepdims=True) - r) / (K - 1)
    else:
        greedy = policy.sample(feats, 10)
        b = np.array([cider.score([words(greedy[i])], [[words(c) for c in refs[i]]]) for i in range(len(images))])
    # -log p of each sample's words up to and including <END>, from the model's own loss
    nll = np.array([[policy.loss(feats[i:i + 1], np.concatenate([[vocab["<START>"]], samples[i, k]])[None],
                                 grads=False)[0] for k in range(K)] for i in range(len(images))])
    assert r.std() > 0 and reward == pytest.approx(r.mean(), rel=1e-12)
    assert loss == pytest.approx(((r - b) * nll).sum() / r.size, rel=1e-9, abs=1e-12)
    assert set(grads) == set(model.params) and grads["b_vocab"][vocab["<NULL>"]] == 0


@pytest.mark.parametrize("cell", CELL_TYPES)
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_step_trains_on_every_backend_and_precision(small_data, cell, name, precision):
    require_backend(name)
    model = _model(small_data, cell, np.float32)
    before = {k: v.copy() for k, v in model.params.items()}
    with fastcap.use_backend(name), fastcap.use_precision(precision):
        solver = SelfCriticalSolver(model, small_data, scst=SelfCritical(small_data, ScstConfig(3, "mean", 8, 0)),
                                    update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=6,
                                    verbose=False, rng=np.random.RandomState(0))
        losses = [solver.step() for _ in range(2)]
    assert np.isfinite(losses).all() and solver.iterations_per_epoch == 20 // 6
    assert all(np.isfinite(v).all() for v in model.params.values())
    assert not np.array_equal(before["Wh"], model.params["Wh"])
    assert model.params["b_vocab"][0] == before["b_vocab"][0]  # <NULL>: never a sample, never pushed


def test_scst_run_trains_saves_and_resumes_exactly(run_dir, tmp_path):  # noqa: F811
    ce, _ = run_dir
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    proc = ok(fastcap_cmd("train", *SCST, "--init-from", ce / "checkpoint.npz", "--epochs", "2",
                          "--eval-images", "0", "--quiet", "--out", whole))
    assert "self-critical: 3 samples per image (max 16 words), baseline mean" in proc.stdout
    h = json.loads((whole / "history.json").read_text())
    assert [e["epoch"] for e in h["epochs"]] == [0, 1, 2]
    assert h["iterations_per_epoch"] == 40 // 8  # images, not captions
    config = json.loads((whole / "config.json").read_text())["train"]
    assert config["scst"] is True and config["scst_samples"] == 3 and config["scst_baseline"] == "mean"
    assert (whole / "best.npz").exists() and load_checkpoint(whole / "checkpoint.npz").config["train"]["scst"]
    stopped = fastcap_cmd("train", *SCST, "--init-from", ce / "checkpoint.npz", "--epochs", "2",
                          "--eval-images", "0", "--quiet", "--out", cut, "--stop-after-iterations", "7")
    assert stopped.returncode == 130, stopped.stderr
    ok(fastcap_cmd("train", "--resume", cut / "checkpoint.npz", "--quiet"))
    hc = json.loads((cut / "history.json").read_text())
    assert hc["loss_history"] == h["loss_history"]  # float64: exactly
    assert [e["cider"] for e in hc["epochs"]] == [e["cider"] for e in h["epochs"]]


def test_scst_refusals_are_one_line(run_dir, tmp_path):  # noqa: F811
    ce, _ = run_dir
    init = ["--init-from", ce / "checkpoint.npz", "--out", tmp_path / "x"]
    lines = failed(fastcap_cmd("train", *TINY, "--scst", "--out", tmp_path / "scratch"))
    assert "--init-from CHECKPOINT" in lines[0] and "--scst-from-scratch" in lines[0]
    lines = failed(fastcap_cmd("train", *TINY, "--scst-baseline", "greedy", "--out", tmp_path / "z"))
    assert "--scst-baseline only applies to self-critical training" in lines[0]  # not ignored
    lines = failed(fastcap_cmd("train", "--scst-samples", "3", "--scst-max-length", "9", *init))
    assert "--scst-samples, --scst-max-length only apply to" in lines[0]
    lines = failed(fastcap_cmd("train", "--scst", "--scst-samples", "1", *init))
    assert "--scst-baseline mean needs --scst-samples >= 2" in lines[0]
    proc = fastcap_cmd("train", "--scst", "--scst-samples", "0", *init)
    assert proc.returncode == 2 and "--scst-samples: expected an integer in [1," in proc.stderr
    lines = failed(fastcap_cmd("train", "--scst", "--scst-samples", str(1 << 20), "--batch-size",
                               "8", *init))
    assert "--scst-samples 1048576 x --batch-size 8 images" in lines[0]
    assert "more than the" in lines[0] and "of memory available" in lines[0]
    # data in the CS231n layout whose vocabulary swaps two of the checkpoint's words
    data = tmp_path / "data"
    ok(fastcap_cmd("make-data", data, "--num-train", "40", "--num-val", "8", "--captions-per-image", "3"))
    vocab = json.loads((data / "coco2014_vocab.json").read_text())
    words = vocab["idx_to_word"]
    words[4], words[5] = words[5], words[4]
    vocab["word_to_idx"] = {w: i for i, w in enumerate(words)}
    (data / "coco2014_vocab.json").write_text(json.dumps(vocab))
    lines = failed(fastcap_cmd("train", "--scst", "--data", data, *init[:2], "--out", tmp_path / "y"))
    assert "was trained on another vocabulary than" in lines[0] and f"word 4 is {words[5]!r}" in lines[0]
    lines = failed(fastcap_cmd("train", "--scst", "--resume", ce / "checkpoint.npz"))
    assert "--scst True (the checkpoint has False)" in lines[0]
    # random weights when asked for: it runs
    ok(fastcap_cmd("train", *TINY, "--scst", "--scst-from-scratch", "--epochs", "1", "--out",
                   tmp_path / "scratch"))


def test_images_whose_references_have_no_word_are_refused(small_data):
    data = dict(small_data)
    captions = data["train_captions"].copy()
    image = int(data["train_image_idxs"][0])
    captions[data["train_image_idxs"] == image, 1:] = data["word_to_idx"]["<NULL>"]
    captions[data["train_image_idxs"] == image, 1] = data["word_to_idx"]["<END>"]
    data["train_captions"] = captions
    with pytest.raises(ValueError, match=f"--scst: train image {image} has no reference with a word"):
        SelfCritical(data, ScstConfig(3, "mean", 8, 0))


@needs_mpi
def test_two_ranks_train_what_one_rank_trains(tmp_path):
    ok(mpi_train(None, tmp_path / "ce"))
    scst = ["--scst", "--scst-samples", "3", "--init-from", str(tmp_path / "ce" / "checkpoint.npz")]
    ok(mpi_train(None, tmp_path / "one", *scst))
    ok(mpi_train(2, tmp_path / "two", *scst))
    assert_same_run(tmp_path / "one", tmp_path / "two")
    # and an interrupted two-rank run resumes on three to the same numbers
    cut = mpi_train(2, tmp_path / "cut", *scst, "--stop-after-iterations", "4")
    assert cut.returncode == 130, cut.stdout + cut.stderr
    ok(subprocess.run(_cmd(3, "train", "--resume", str(tmp_path / "cut"), "--quiet"), capture_output=True,
                      text=True, timeout=TIMEOUT, env=_env()))
    assert_same_run(tmp_path / "one", tmp_path / "cut")
