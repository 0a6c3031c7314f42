"""CaptioningSolver: minibatch training of a captioning model, as in CS231n."""
import copy
import math

import numpy as np

from . import optim
from .coco_utils import sample_coco_minibatch
from .data.grid import FeatureReadError
from .data.stream import StreamedFeatures
from .optim import UPDATE_RULES
from .train.distributed import DataParallel

__all__ = ["CaptioningSolver", "TrainingDivergedError"]


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


def iterations_per_epoch(num_captions, batch_size):
    """Minibatches per epoch over ``num_captions`` training captions (at least one)."""
    return max(num_captions // batch_size, 1)


class CaptioningSolver:
    """Trains ``model`` on ``data`` (a dict as returned by ``load_coco_data``).

    Keyword arguments, with the CS231n defaults: update_rule ('sgd'; one of
    sgd, sgd_momentum, rmsprop, adam), optim_config ({}; e.g. learning_rate),
    lr_decay (1.0, applied to every learning rate after each epoch),
    batch_size (100), num_epochs (10), print_every (10), verbose (True), and
    rng (None: minibatches come from NumPy's global random state, as in
    CS231n; or a ``np.random.RandomState``/``Generator``), and comm (None; or
    an mpi4py communicator, e.g. ``MPI.COMM_WORLD``, for data-parallel
    training, see below).

    ``train()`` runs num_epochs * max(num_train // batch_size, 1) iterations
    and records every minibatch loss in ``loss_history``. A NaN or infinite
    loss stops training with ``TrainingDivergedError`` naming the iteration.

    With ``comm`` (run the same script on every rank, e.g. ``mpiexec -n K
    python train.py``): batch_size stays the global batch; every rank draws
    the same minibatch (rank 0's parameters and RNG state are broadcast
    before the first step), computes its slice, and one Allreduce per step
    sums the gradients (``fastcap.train.distributed.DataParallel``), so every rank
    makes the update one process would make with the whole batch. Only rank 0
    prints. An error in one rank's slice raises on every rank in that step
    (rank 0 re-raises it, the others raise ``fastcap.train.distributed.RankError``).
    """

    def __init__(self, model, data, **kwargs):
        self.model = model
        self.data = data
        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = kwargs.pop("optim_config", {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = kwargs.pop("batch_size", 100)
        self.num_epochs = kwargs.pop("num_epochs", 10)
        self.print_every = kwargs.pop("print_every", 10)
        self.verbose = kwargs.pop("verbose", True)
        self.rng = kwargs.pop("rng", None)
        self.comm = kwargs.pop("comm", None)
        if kwargs:
            raise ValueError(f"Unrecognized arguments {', '.join(repr(k) for k in kwargs)}")
        if self.update_rule not in UPDATE_RULES:
            raise ValueError(f"Invalid update_rule {self.update_rule!r}; "
                             f"expected one of {', '.join(UPDATE_RULES)}")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if "train_captions" not in data or len(data["train_captions"]) == 0:
            raise ValueError("data['train_captions'] must hold at least one caption")
        self._update = getattr(optim, self.update_rule)
        self.data_parallel = None
        if self.comm is not None:

            self.data_parallel = DataParallel(self.comm)
            self.verbose = self.verbose and self.comm.Get_rank() == 0
        self._synced = False
        self._reset()

    def _reset(self):
        self.epoch = 0
        self.iteration = 0
        self.loss_history = []
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}

    @property
    def iterations_per_epoch(self):
        return iterations_per_epoch(self.data["train_captions"].shape[0], self.batch_size)

    def step(self):
        """One minibatch: loss, gradients, one update of every parameter. Returns the loss."""
        dp = self.data_parallel
        if dp is not None and not self._synced:
            dp.broadcast_state(self.model, self.rng)
            self._synced = True
        loss, grads = self._loss_and_grads()
        self.iteration += 1
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"training loss is {loss} at iteration {self.iteration}; lower the learning "
                f"rate (currently {self.optim_config.get('learning_rate', 'the default')})"
            )
        self.loss_history.append(loss)
        for p, w in self.model.params.items():
            next_w, self.optim_configs[p] = self._update(w, grads[p], self.optim_configs[p])
            self.model.params[p] = next_w
        return loss

    def _loss_and_grads(self):
        """The loss and gradients of the next minibatch (drawn from self.rng); under MPI,
        summed over the ranks' slices of it."""
        before = self._random_state()
        try:
            captions, features, _ = sample_coco_minibatch(
                self.data, batch_size=self.batch_size, split="train", rng=self.rng
            )
        except FeatureReadError:  # the draw is undone: a resumed run draws this minibatch again
            self._random_state(before)
            raise
        self._prefetch_next()
        if self.data_parallel is None:
            return self.model.loss(features, captions)
        return self.data_parallel.loss_and_grads(self.model, features, captions, self.iteration + 1)

    def _random_state(self, state=None):
        """The minibatches' random state (a copy), or with ``state`` set it back to that."""
        rng = self.rng if self.rng is not None else np.random
        if isinstance(rng, np.random.Generator):
            if state is not None:
                rng.bit_generator.state = state
            return copy.deepcopy(rng.bit_generator.state)
        if state is not None:
            rng.set_state(state)
        return rng.get_state()

    def _prefetch_next(self):
        """Features read from disk (fastcap.data.stream): start reading the next minibatch's
        images while this one trains. They are drawn from a copy of the random state, so the
        state itself (and so a checkpoint's) is what it would be without reading ahead."""
        features = self.data["train_features"]
        if not isinstance(features, StreamedFeatures):
            return
        if isinstance(self.rng, np.random.Generator):
            peek = np.random.Generator(copy.deepcopy(self.rng.bit_generator))
        else:  # a RandomState, or NumPy's global one (as CS231n draws from it)
            peek = np.random.RandomState()
            peek.set_state(self._random_state())
        choice = peek.choice(self.data["train_captions"].shape[0], self.batch_size)
        features.prefetch(self.data["train_image_idxs"][choice])

    def end_epoch(self):
        """Count an epoch and decay every learning rate by lr_decay."""
        self.epoch += 1
        for config in self.optim_configs.values():
            if "learning_rate" in config:
                config["learning_rate"] *= self.lr_decay

    def train(self):
        """Run the whole schedule."""
        per_epoch = self.iterations_per_epoch
        num_iterations = self.num_epochs * per_epoch
        for t in range(num_iterations):
            self.step()
            if self.verbose and t % self.print_every == 0:
                print(f"(Iteration {t + 1} / {num_iterations}) loss: {self.loss_history[-1]:f}")
            if (t + 1) % per_epoch == 0:
                self.end_epoch()
