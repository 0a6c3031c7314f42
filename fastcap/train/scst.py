"""Self-critical sequence training (Rennie et al. 2017): optimise the CIDEr-D of sampled captions.

Each step draws a batch of training images (``SelfCriticalSolver``: --batch-size
counts images here), samples K captions of each from the model
(``CaptioningRNN.sample_multinomial``, temperature 1, '<NULL>' and '<START>'
suppressed: they are never targets, so no caption holds them), scores them with
CIDEr-D against the image's training references (``fastcap.metrics.Cider``, its
document frequencies fixed from the training references once per run), and
takes the loss

    -sum over samples of (r(w) - b) * sum_t log p(w_t)  /  (number of samples)

over each sample's words up to and including '<END>', through the model's
weighted loss (the softmax loss kernel with a weight per caption). The
baseline b is the mean reward of the image's other K - 1 samples (``mean``) or
the reward of its greedy caption (``greedy``). The samples are drawn from a
counter-based stream keyed by (seed, iteration, image, sample, step), so a run
is the same on every backend, for any thread count, resumed or not, and split
over MPI ranks (each rank samples and scores its own images).
"""
from typing import NamedTuple

import numpy as np

from ..captioning_solver import CaptioningSolver, TrainingDivergedError, iterations_per_epoch
from ..metrics import Cider, caption_set
from ..model.sequence import CELLS
from ..runtime.memory import reserve
from .evaluation import suppressing
from .options import MIN_ITERATIONS, SCST_BASELINES, TRAIN_OPTIONS, flag

__all__ = ["SUPPRESSED", "SelfCritical", "SelfCriticalSolver", "ScstConfig", "of_run",
           "check_run", "schedule"]

SUPPRESSED = ("<NULL>", "<START>")  # never sampled


class ScstConfig(NamedTuple):
    """samples: K per image; baseline: one of options.SCST_BASELINES; max_length: words per sample;
    seed: the run's seed (the stream's key with the iteration)."""

    samples: int
    baseline: str
    max_length: int
    seed: int


def check_run(config, started, options):
    """Raise ValueError when the run ``config`` asks for --scst from random weights
    (``started``: False without --init-from or --resume) unless --scst-from-scratch, for the
    attention model (it has no sampler yet), or when ``options`` (the command's, None = not
    given) set self-critical options of a run without --scst (they would be ignored)."""
    train = config["train"]
    if train.get("scst") and config["model"].get("kind") == "attention":
        raise ValueError(f"{flag('scst')} fine-tunes the pooled model (CaptioningRNN); the "
                         "attention model (--attention) has no self-critical training yet")
    if not train.get("scst"):
        given = [flag(o.name) for o in TRAIN_OPTIONS if o.group == "self-critical training"
                 and o.name != "scst" and options.get(o.name) not in (None, False)]
        if given:
            raise ValueError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to "
                             f"self-critical training, which this run does not do: add "
                             f"{flag('scst')}, or leave {'it' if len(given) == 1 else 'them'} out")
    elif not started and not options.get("scst_from_scratch"):
        raise ValueError(f"{flag('scst')} fine-tunes a trained model: give {flag('init_from')} "
                         "CHECKPOINT (a cross-entropy run's best.npz), or --resume an --scst run; "
                         f"{flag('scst_from_scratch')} starts from random weights, which rarely "
                         "learns")


def of_run(data, train):
    """The SelfCritical objective of a run whose config is ``train`` on ``data``; None
    without --scst."""
    if not train.get("scst"):
        return None
    return SelfCritical(data, ScstConfig(train["scst_samples"], train["scst_baseline"],
                                         train["scst_max_length"], train["seed"]))


class SelfCritical:
    """The rewards and the loss of self-critical training on one data set.

    data: a run's data dict (``train_captions``, ``train_image_idxs``,
    ``train_features``, ``word_to_idx``). The images trained on are those with
    training captions; their references are those captions' words (before '<END>').
    """

    def __init__(self, data, config):
        self.config = config
        if config.baseline not in SCST_BASELINES:
            raise ValueError(f"{flag('scst_baseline')} must be one of {', '.join(SCST_BASELINES)}, "
                             f"got {config.baseline!r}")
        if config.baseline == "mean" and config.samples < 2:
            raise ValueError(f"{flag('scst_baseline')} mean needs {flag('scst_samples')} >= 2 "
                             f"(the mean reward of the other samples), got {config.samples}")
        vocab = data["word_to_idx"]
        self.null, self.start, self.end = vocab["<NULL>"], vocab["<START>"], vocab["<END>"]
        idxs = np.asarray(data["train_image_idxs"])
        order = np.argsort(idxs, kind="stable")
        # self.images: the images trained on; image i's references are captions
        # self.offsets[i] .. self.offsets[i + 1] - 1 of self.references.
        self.images, counts = np.unique(idxs, return_counts=True)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
        self.references = caption_set(data["train_captions"][order], self.end, (self.null, self.start))
        words = np.add.reduceat(np.diff(self.references[1]), self.offsets[:-1]) if len(counts) else counts
        if len(counts) and not words.all():
            i = int(np.flatnonzero(words == 0)[0])
            raise ValueError(f"{flag('scst')}: train image {int(self.images[i])} has no reference "
                             f"with a word (its {int(counts[i])} captions are empty): CIDEr-D has "
                             "nothing to reward")
        self.cider = Cider.of_sets(self.references, self.offsets)
        self.data = data

    def describe(self):
        c = self.config
        return (f"self-critical: {c.samples} samples per image (max {c.max_length} words), "
                f"baseline {c.baseline}, CIDEr-D rewards against the references of "
                f"{len(self.images):,} training images")

    def check_memory(self, model, vocab_size, batch_size):
        """Raise OutOfMemory naming the options unless a step's samples fit, before the model
        is allocated. model: the run's fastcap.train.model_config.ModelConfig."""
        c = self.config
        H = model.hidden_dim
        G = CELLS[model.cell_type].gates * H
        rows = batch_size * c.samples
        # per sampled word: its scores and their gradient (V), the gates and states
        # (G + 3H) of the forward and backward passes, in the model's dtype; the uniforms
        per_word = (2 * vocab_size + 2 * G + 6 * H) * np.dtype(model.dtype).itemsize + 8
        reserve(rows * (c.max_length + 1) * per_word,
                f"a self-critical step's {rows:,} sampled captions of up to {c.max_length} words",
                f"{flag('scst_samples')} {c.samples} x {flag('batch_size')} {batch_size} images")

    def rewards(self, positions, captions):
        """CIDEr-D of captions (n, L) of the images self.images[positions] (n,) -> (n,)."""
        ranges = np.stack([self.offsets[positions], self.offsets[positions + 1]], axis=1)
        return self.cider.score_sets(caption_set(captions, self.end, (self.null,)), self.references, ranges)

    def loss(self, model, positions, iteration):
        """(loss, grads, mean sample reward) of the images self.images[positions] (B,)."""
        c = self.config
        B, K = len(positions), c.samples
        images = self.images[positions]
        features = self.data["train_features"][images]
        policy = suppressing(model, SUPPRESSED)
        samples = policy.sample_multinomial(features, K, c.max_length, seed=(c.seed, iteration),
                                            keys=images).reshape(B * K, c.max_length)
        rewards = self.rewards(np.repeat(positions, K), samples).reshape(B, K)
        if c.baseline == "mean":
            baseline = (rewards.sum(axis=1, keepdims=True) - rewards) / (K - 1)
        else:
            baseline = self.rewards(positions, policy.sample(features, c.max_length))[:, None]
        self._check_finite(rewards, baseline, images, samples.reshape(B, K, -1))
        captions = np.concatenate([np.full((B * K, 1), self.start, samples.dtype), samples], axis=1)
        loss, grads = policy.loss(np.repeat(features, K, axis=0), captions,
                                  weights=(rewards - baseline).ravel())
        return loss, grads, float(rewards.mean()) if rewards.size else 0.0

    def _check_finite(self, rewards, baseline, images, samples):
        bad = ~np.isfinite(rewards - baseline)
        if bad.any():
            i, k = map(int, np.argwhere(bad)[0])
            raise TrainingDivergedError(
                f"{flag('scst')}: the reward of training image {int(images[i])}'s sample {k} is "
                f"{rewards[i, k]} against a baseline of {baseline[i, min(k, baseline.shape[1] - 1)]} "
                f"(sampled words {samples[i, k][:8].tolist()}...), not a finite number")


class SelfCriticalSolver(CaptioningSolver):
    """CaptioningSolver whose steps are self-critical: batch_size images per step, drawn
    with replacement from the training images, K samples each (``SelfCritical``). An
    epoch is as many steps as the images fill. ``reward_history``: each step's mean sample
    reward (this process's steps)."""

    def __init__(self, model, data, scst, **kwargs):
        self.scst = scst
        self.reward_history = []
        super().__init__(model, data, **kwargs)

    @property
    def iterations_per_epoch(self):
        return iterations_per_epoch(len(self.scst.images), self.batch_size)

    def _loss_and_grads(self):
        positions = (np.random if self.rng is None else self.rng).choice(len(self.scst.images),
                                                                         self.batch_size)
        iteration, dp = self.iteration + 1, self.data_parallel
        rewards = []

        def slice_loss(lo, hi):
            loss, grads, reward = self.scst.loss(self.model, positions[lo:hi], iteration)
            rewards.append(reward)
            return loss, grads

        if dp is None:
            loss, grads = slice_loss(0, len(positions))
        else:
            loss, grads = dp.sum_slices(self.model, len(positions), iteration, slice_loss)
        self.reward_history.extend(rewards)
        return loss, grads


def schedule(scst, data):
    """(solver class, its extra arguments, the examples an epoch goes over, what they are called,
    the least iterations of a new run without --epochs) of a run on ``data`` whose
    self-critical objective is ``scst`` (None: cross-entropy, over captions). A self-critical
    run's batches are images, and it fine-tunes: no minimum of iterations."""
    if scst is None:
        return (CaptioningSolver, {}, data["train_captions"].shape[0], "training captions",
                MIN_ITERATIONS)
    return SelfCriticalSolver, {"scst": scst}, len(scst.images), "training images", 0
