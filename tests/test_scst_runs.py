"""Runs of ``fastcap train --scst`` on a data folder: what its options reach, and what bad input
leaves behind.

* --scst-samples, --scst-baseline and --scst-max-length reach the step: the rewards are
  those of K samples of at most L words (and of the greedy caption with --scst-baseline
  greedy); the epochs count images; without --epochs a self-critical run has the default
  epochs (fine-tuning: no minimum of iterations).
* best.npz holds the epoch of the best CIDEr and --patience stops a self-critical run,
  resumed or not.
* A vocabulary that is not the checkpoint's, images without references, K < 1, K past
  the memory and a reward that is NaN each end in a one-line error naming it, and every
  checkpoint of the run (checkpoint.npz, best.npz) keeps its bytes.
"""
import contextlib
import io
import json

import h5py
import numpy as np
import pytest

import fastcap
from fastcap.captioning_solver import TrainingDivergedError
from fastcap.runtime import memory
from fastcap.runtime.memory import OutOfMemory
from fastcap.train.checkpoint import load_checkpoint
from fastcap.train.scst import SelfCritical
from fastcap.train.trainer import Trainer

from conftest import fastcap_cmd
from test_cli import failed, ok

QUIET = ["--backend", "numpy", "--eval-images", "0", "--quiet"]
SCST = ["--scst", "--scst-samples", "3", "--batch-size", "8", "--lr", "1e-3", *QUIET]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(data folder, cross-entropy run, self-critical run from it stopped at iteration 7 of
    3 epochs of 5: epoch 1 evaluated, checkpoint.npz and best.npz written)."""
    root = tmp_path_factory.mktemp("scst_runs")
    data, ce, run = root / "data", root / "ce", root / "scst"
    ok(fastcap_cmd("make-data", data, "--num-train", "40", "--num-val", "8", "--captions-per-image", "3"))
    ok(fastcap_cmd("train", "--data", data, "--hidden-dim", "16", "--wordvec-dim", "16", "--dtype",
                   "float64", "--batch-size", "20", "--epochs", "2", "--lr", "5e-3", *QUIET, "--out", ce))
    cut = fastcap_cmd("train", *SCST, "--init-from", ce / "checkpoint.npz", "--epochs", "3", "--out", run,
                      "--stop-after-iterations", "7")
    assert cut.returncode == 130, cut.stderr
    assert (run / "best.npz").exists() and load_checkpoint(run / "checkpoint.npz").iteration == 7
    return data, ce, run


def checkpoints(*folders):
    """Every checkpoint of the folders, by path: its bytes."""
    return {p: p.read_bytes() for folder in folders for p in sorted(folder.glob("*.npz"))}


@contextlib.contextmanager
def altered(path, change):
    """``change(path)`` for the block; the file's bytes restored after it."""
    saved = path.read_bytes()
    try:
        change(path)
        yield
    finally:
        path.write_bytes(saved)


def swap_words(path):
    vocab = json.loads(path.read_text())
    words = vocab["idx_to_word"]
    words[4], words[5] = words[5], words[4]
    vocab["word_to_idx"] = {w: i for i, w in enumerate(words)}
    path.write_text(json.dumps(vocab))


def empty_references(path):
    """Image 3's training captions become '<START> <END>': no word to reward."""
    with h5py.File(path, "r+") as f:
        captions, idxs = f["train_captions"][...], f["train_image_idxs"][...]
        captions[idxs == 3, 1], captions[idxs == 3, 2:] = 2, 0
        f["train_captions"][...] = captions


@pytest.mark.parametrize("file, change, words", [
    ("coco2014_vocab.json", swap_words, ["was trained on another vocabulary than", "word 4 is"]),
    ("coco2014_captions.h5", empty_references, ["--scst: train image 3 has no reference with a word"]),
])
def test_data_changed_under_a_run_is_refused_with_its_checkpoints_intact(runs, file, change, words):
    data, ce, run = runs
    before = checkpoints(ce, run)
    with altered(data / file, change):
        lines = failed(fastcap_cmd("train", "--resume", run, "--quiet"))
    for w in words:
        assert w in lines[0]
    assert checkpoints(ce, run) == before


@pytest.mark.parametrize("args, code, words", [
    (["--scst-samples", "0"], 2, ["--scst-samples: expected an integer in [1,"]),
    (["--scst-samples", "1"], 1, ["--scst-baseline mean needs --scst-samples >= 2"]),
    (["--scst-samples", str(1 << 20)], 1, ["--scst-samples 1048576 x --batch-size 8 images",
                                           "of memory available"]),
])
def test_bad_samples_are_refused_with_the_checkpoints_intact(runs, tmp_path, args, code, words):
    _, ce, run = runs
    before = checkpoints(ce, run)
    proc = fastcap_cmd("train", *SCST, *args, "--init-from", run / "best.npz", "--out", tmp_path / "x")
    text = failed(proc, code)[0] if code == 1 else proc.stderr
    assert proc.returncode == code and all(w in text for w in words), text
    assert checkpoints(ce, run) == before and not (tmp_path / "x" / "checkpoint.npz").exists()


def _resume(run, **kw):
    return Trainer({}, resume=run / "checkpoint.npz", progress=False, stdout=io.StringIO(), **kw)


def test_samples_past_the_memory_are_named_before_the_model_exists(runs, monkeypatch):
    """Resumed where memory has shrunk: the self-critical step's samples are refused
    before the model is allocated (and its checkpoints stay as they were)."""
    _, ce, run = runs
    before = checkpoints(ce, run)
    trainer = _resume(run)
    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 20)  # the data fits, the samples (1.4 MiB) not
    with fastcap.use_backend("numpy"), pytest.raises(OutOfMemory) as info:
        trainer.setup()
    message = str(info.value)
    assert "\n" not in message and "self-critical step's 24 sampled captions" in message
    assert "--scst-samples 3 x --batch-size 8 images" in message and trainer.model is None
    assert checkpoints(ce, run) == before


@pytest.fixture
def nan_reward(monkeypatch):
    """Every step's rewards hold a NaN (the middle sample's)."""
    rewards = SelfCritical.rewards

    def poisoned(self, positions, captions):
        r = rewards(self, positions, captions)
        r[len(r) // 2] = np.nan
        return r

    monkeypatch.setattr(SelfCritical, "rewards", poisoned)


def _assert_nan_named(info, checkpoint):
    message = str(info.value)
    assert "\n" not in message and "--scst: the reward of training image" in message
    assert "nan" in message and "not a finite number" in message
    assert f"the last good checkpoint, {checkpoint}, was kept" in message


def test_a_nan_reward_stops_the_resumed_run_with_its_checkpoints_intact(runs, nan_reward):
    _, ce, run = runs
    before = checkpoints(ce, run)
    with fastcap.use_backend("numpy"), pytest.raises(TrainingDivergedError) as info:
        _resume(run).run()
    _assert_nan_named(info, run / "checkpoint.npz")
    assert checkpoints(ce, run) == before


def test_a_nan_reward_stops_a_new_run_with_epoch_0s_checkpoint(runs, tmp_path, nan_reward):
    _, ce, _ = runs
    out = tmp_path / "nan"
    options = {"scst": True, "scst_samples": 3, "batch_size": 8, "init_from": str(ce / "checkpoint.npz"),
               "eval_images": 0}
    with fastcap.use_backend("numpy"), pytest.raises(TrainingDivergedError) as info:
        Trainer(options, out, progress=False, stdout=io.StringIO()).run()
    _assert_nan_named(info, out / "checkpoint.npz")
    assert load_checkpoint(out / "checkpoint.npz").iteration == 0  # epoch 0's, intact


@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_the_options_reach_the_step(runs, tmp_path, monkeypatch, baseline):
    """The rewards scored in a step: K samples of L columns per image, and with the greedy
    baseline the greedy captions (L columns) of the same images."""
    _, ce, _ = runs
    scored = []
    rewards = SelfCritical.rewards

    def spy(self, positions, captions):
        scored.append(captions.shape)
        return rewards(self, positions, captions)

    monkeypatch.setattr(SelfCritical, "rewards", spy)
    options = {"scst": True, "scst_samples": 2, "scst_baseline": baseline, "scst_max_length": 4,
               "batch_size": 8, "epochs": 1, "init_from": str(ce / "checkpoint.npz"), "eval_images": 0}
    with fastcap.use_backend("numpy"):
        trainer = Trainer(options, tmp_path / "r", progress=False, stdout=io.StringIO())
        trainer.run()
    per_step = [(16, 4), (8, 4)] if baseline == "greedy" else [(16, 4)]
    assert scored == per_step * 5 and trainer.solver.iterations_per_epoch == 5  # 40 images, 8 a step
    assert load_checkpoint(tmp_path / "r" / "checkpoint.npz").config["train"]["scst_baseline"] == baseline


def test_without_epochs_a_self_critical_run_has_the_default(runs, tmp_path):
    _, ce, _ = runs
    proc = fastcap_cmd("train", *SCST[:-1], "--init-from", ce / "checkpoint.npz", "--out", tmp_path / "r",
                       "--stop-after-iterations", "1")
    assert proc.returncode == 130, proc.stderr
    assert "note: --epochs not given: 5 epochs of 5 iterations of 8 of the 40 training images" in proc.stdout
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["num_epochs"] == 5


def test_best_npz_and_patience_follow_cider(runs, tmp_path, monkeypatch):
    """Validation CIDEr 0.7 at epoch 1, then lower twice: --patience 2 stops the run after
    epoch 3 of 4, and best.npz holds epoch 1 (its 5 iterations)."""
    _, ce, _ = runs
    ciders = iter([0.5, 0.7, 0.6, 0.65, 0.9])
    evaluate = Trainer.evaluate

    def scripted(self):
        val_loss, m, secs = evaluate(self)
        return val_loss, {**m, "cider": next(ciders)}, secs

    monkeypatch.setattr(Trainer, "evaluate", scripted)
    out = tmp_path / "r"
    options = {"scst": True, "scst_samples": 3, "batch_size": 8, "epochs": 4, "patience": 2,
               "init_from": str(ce / "checkpoint.npz"), "eval_images": 0}
    with fastcap.use_backend("numpy"):
        Trainer(options, out, progress=False, stdout=io.StringIO()).run()
    h = json.loads((out / "history.json").read_text())
    assert [e["cider"] for e in h["epochs"]] == [0.5, 0.7, 0.6, 0.65] and h["iteration"] == 15
    best = load_checkpoint(out / "best.npz")
    assert best.iteration == 5 and best.epochs[-1]["cider"] == 0.7
    assert load_checkpoint(out / "checkpoint.npz").iteration == 15
