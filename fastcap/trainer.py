"""Training runs as ``fastcap train`` does them: data, model, solver, progress,
per-epoch evaluation, checkpoints, resume, and the files of a run directory.

A run is described by a JSON-able ``config`` dict (stored in every
checkpoint)::

    {"model": {"cell_type", "input_dim", "wordvec_dim", "hidden_dim", "dtype"},
     "train": {"update_rule", "learning_rate", "lr_decay", "batch_size",
               "num_epochs", "seed", "max_train"},
     "data":  {"source": "generated", "num_train_images", "num_val_images",
               "captions_per_image", "pca_dim", "full_dim", "seed", "pca"}
              or {"source": "dir", "path", "pca"},
     "eval":  {"eval_images", "max_length", "num_samples"}}

Determinism: the model is initialised from ``np.random.default_rng(seed)``,
minibatches come from the solver's ``np.random.RandomState(seed)``, a
``max_train`` subset from ``np.random.default_rng([seed, 1])``, and evaluation
uses a fixed set of validation images and no randomness. A checkpoint holds
all of that state, so an interrupted and resumed run makes the same updates,
and has the same loss history, as an uninterrupted one.

Interrupts: the first Ctrl-C during a training step lets the step finish (a
half-applied update would not be resumable), then the run saves a checkpoint
and stops with ``TrainingInterrupted``; a Ctrl-C anywhere else (evaluation,
saving) stops at once, saving the state after the last whole step. A second
Ctrl-C during a step stops at once without saving; the last epoch's
checkpoint is left as it was.
"""
import datetime
import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from . import distributed as _distributed
from . import metrics as _metrics
from . import rundir
from .captioning_solver import CaptioningSolver, TrainingDivergedError
from ._atomic import atomic_write, atomic_write_text
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .model_config import ModelConfig
from .options import (DEFAULTS, GENERATED_DEFAULTS, GENERATED_KEYS, OPTION_KEYS,
                      RESUME_OVERRIDABLE, check_options)

__all__ = ["DEFAULTS", "GENERATED_DEFAULTS", "DataError", "TrainingInterrupted",
           "resolve_config", "load_data", "Trainer", "evaluate_captions", "caption_loss"]

OUTPUT_FILES = rundir.OUTPUT_FILES

# A run diverges when its validation loss is above DIVERGENCE_FACTOR times the
# untrained model's at DIVERGENCE_EVALUATIONS evaluations in a row (or is not
# finite): a model that learns nothing stays near the untrained loss, so a loss
# far above it means the updates are destroying the model. A suspect
# evaluation is not checkpointed, so the last good checkpoint is kept.
DIVERGENCE_FACTOR = 3.0
DIVERGENCE_EVALUATIONS = 2


class DataError(ValueError):
    """Training data that cannot be used (shapes, vocabulary, missing data)."""


class TrainingInterrupted(Exception):
    """A run stopped early (Ctrl-C); ``checkpoint`` is where its state is, or None."""

    def __init__(self, message, checkpoint, iteration, epoch):
        super().__init__(message)
        self.checkpoint, self.iteration, self.epoch = checkpoint, iteration, epoch


# ---------------------------------------------------------------- configuration
def _data_spec(o):
    if o.get("data") is not None:
        return {"source": "dir", "path": os.path.abspath(os.fspath(o["data"])), "pca": bool(o["pca"])}
    spec = {"source": "generated", **GENERATED_DEFAULTS}
    for opt, key in GENERATED_KEYS.items():
        spec[key] = int(o[opt])
    spec["pca"] = bool(o["pca"])
    return spec


def resolve_config(options, checkpoint=None):
    """The run config from flat ``options`` (None = not given) and an optional checkpoint.

    A new run fills what is not given from DEFAULTS. A resumed run takes the
    checkpoint's config; options given explicitly must agree with it, except
    --epochs (continue for longer), the evaluation options and --data (other
    data with the same vocabulary and feature size).
    """
    options = dict(options)
    check_options(options)
    if checkpoint is None:
        o = {k: (options.get(k) if options.get(k) is not None else v) for k, v in DEFAULTS.items()}
        o["data"] = options.get("data")
        config = {"model": {}, "train": {}, "eval": {}}
        for opt, (section, key) in OPTION_KEYS.items():
            config[section][key] = o[opt]
        config["data"] = _data_spec(o)
        config["model"]["input_dim"] = None  # known once the data is loaded
        return config

    config = json.loads(json.dumps(checkpoint.config))  # deep copy
    conflicts = []
    for opt, (section, key) in OPTION_KEYS.items():
        given = options.get(opt)
        if given is None:
            continue
        if opt in RESUME_OVERRIDABLE:
            config[section][key] = given
        elif given != config[section].get(key):
            conflicts.append(f"--{opt.replace('_', '-')} {given} (the checkpoint has "
                             f"{config[section].get(key)})")
    data = config["data"]
    if options.get("pca") is not None and bool(options["pca"]) != data.get("pca", True):
        conflicts.append(f"--{'' if options['pca'] else 'no-'}pca (the checkpoint was trained "
                         f"{'with' if data.get('pca', True) else 'without'} PCA features)")
    if options.get("data") is not None:
        config["data"] = {"source": "dir", "path": os.path.abspath(os.fspath(options["data"])),
                          "pca": data.get("pca", True)}
    elif data["source"] == "generated":
        for opt, key in GENERATED_KEYS.items():
            if options.get(opt) is not None and options[opt] != data[key]:
                conflicts.append(f"--{opt.replace('_', '-')} {options[opt]} (the checkpoint's "
                                 f"generated data has {data[key]})")
    if conflicts:
        raise CheckpointError(f"cannot resume {checkpoint.path} with " + "; ".join(conflicts)
                              + ": a resumed run continues the checkpoint's model and schedule")
    return config


# ---------------------------------------------------------------- data
def describe_data(spec):
    if spec["source"] == "dir":
        return f"{spec['path']} ({'PCA' if spec.get('pca', True) else 'fc7'} features)"
    return (f"generated data ({spec['num_train_images']} train / {spec['num_val_images']} val "
            f"images, {spec['captions_per_image']} captions each, seed {spec['seed']})")


def load_data(spec):
    """The data dict of a data spec (see the module docstring), checked for consistency."""
    if spec["source"] == "generated":
        from .datagen import generate_coco_data

        kwargs = {k: spec[k] for k in GENERATED_DEFAULTS}
        pca = spec.get("pca", True)
        data = generate_coco_data(**kwargs, full_features=not pca)
        if not pca:
            for split in ("train", "val"):
                data[f"{split}_features"] = data.pop(f"{split}_features_full")
        source = "the generated data"
    elif spec["source"] == "dir":
        from .coco_utils import load_coco_data

        path = spec["path"]
        if not os.path.isdir(path):
            raise DataError(f"data directory {path} does not exist (pass --data DIR; "
                            "`fastcap make-data DIR` writes a generated one)")
        data = load_coco_data(path, max_train=None, pca_features=spec.get("pca", True))
        source = path
    else:
        raise DataError(f"unknown data source {spec['source']!r}")
    check_data(data, source)
    return data


def check_data(data, source):
    """Raise DataError when the data cannot train or evaluate a captioning model."""
    for token in ("<NULL>", "<START>", "<END>"):
        if token not in data["word_to_idx"]:
            raise DataError(f"{source}: the vocabulary has no {token} token")
    dims = set()
    for split in ("train", "val"):
        caps, feats = data[f"{split}_captions"], data[f"{split}_features"]
        if caps.ndim != 2 or caps.shape[1] < 2:
            raise DataError(f"{source}: {split}_captions must be (num_captions, T) with T >= 2, "
                            f"got shape {caps.shape}")
        if caps.shape[0] == 0:
            raise DataError(f"{source}: {split}_captions is empty")
        if feats.ndim != 2 or feats.shape[1] == 0:
            raise DataError(f"{source}: {split} features must be (num_images, D), got {feats.shape}")
        if not np.isfinite(feats).all():
            raise DataError(f"{source}: the {split} features hold NaN or infinite values")
        dims.add(feats.shape[1])
    if len(dims) > 1:
        raise DataError(f"{source}: train features are {data['train_features'].shape[1]}-d but val "
                        f"features are {data['val_features'].shape[1]}-d")


def subsample_train(data, max_train, seed):
    """Keep ``max_train`` training captions, drawn without replacement (deterministic in seed)."""
    n = data["train_captions"].shape[0]
    if max_train is None or max_train >= n:
        return data
    keep = np.sort(np.random.default_rng([seed, 1]).choice(n, size=max_train, replace=False))
    data = dict(data)
    data["train_captions"] = data["train_captions"][keep]
    data["train_image_idxs"] = data["train_image_idxs"][keep]
    return data


# ---------------------------------------------------------------- evaluation
def _forward_loss(model, features, captions):
    """``model.loss(features, captions)[0]`` without the backward pass, by the public layers."""
    from . import rnn_layers as L

    P = model.params
    features = np.asarray(features, dtype=model.dtype)
    h0 = features @ P["W_proj"] + P["b_proj"]
    x, _ = L.word_embedding_forward(captions[:, :-1], P["W_embed"])
    forward = L.lstm_forward if model.cell_type == "lstm" else L.rnn_forward
    h, _ = forward(x, h0, P["Wx"], P["Wh"], P["b"])
    scores, _ = L.temporal_affine_forward(h, P["W_vocab"], P["b_vocab"])
    targets = captions[:, 1:]
    loss, _ = L.temporal_softmax_loss(scores, targets, targets != model.null_token)
    return float(loss)


def caption_loss(model, captions, features, chunk=500):
    """Mean per-caption loss (summed over time, as in training) over all ``captions``."""
    total, n = 0.0, captions.shape[0]
    for a in range(0, n, chunk):
        total += _forward_loss(model, features[a:a + chunk], captions[a:a + chunk]) * min(chunk, n - a)
    return total / n


def generate(model, features, beam_size=1, max_length=30, chunk=512):
    """Captions (N, max_length) for features, greedy (beam_size 1) or by beam search."""
    out = []
    for a in range(0, features.shape[0], chunk):
        f = features[a:a + chunk]
        if beam_size == 1:
            out.append(model.sample(f, max_length=max_length))
        else:
            from .beam import beam_search

            out.append(beam_search(model, f, beam_size=beam_size, max_length=max_length))
    return np.concatenate(out) if out else np.zeros((0, max_length), np.int32)


def evaluate_captions(model, data, split, image_ids=None, beam_size=1, max_length=30):
    """Caption metrics of ``model`` over images of a split.

    Returns (metrics dict with bleu1..4 and cider, image_ids, references, candidates).
    """
    image_ids, references = _metrics.references_by_image(data, split, image_ids)
    captions = generate(model, data[f"{split}_features"][image_ids], beam_size, max_length)
    candidates = _metrics.decode_for_metrics(captions, data["idx_to_word"])
    return _metrics.caption_metrics(references, candidates), image_ids, references, candidates


def _fmt_metrics(m):
    return (f"BLEU-1 {m['bleu1']:.3f}  BLEU-2 {m['bleu2']:.3f}  BLEU-3 {m['bleu3']:.3f}  "
            f"BLEU-4 {m['bleu4']:.3f}  CIDEr {m['cider']:.3f}")


# ---------------------------------------------------------------- interrupts
class _InterruptGuard:
    """Turns the first SIGINT during a training step into a request to stop after it.

    always_defer (data-parallel runs): the first SIGINT anywhere is a request,
    which the ranks agree on in the next step, so that they all stop after it.
    """

    def __init__(self, always_defer=False):
        self.always_defer = always_defer
        self.in_step = False
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        if (self.in_step or self.always_defer) and not self.requested:
            self.requested = True
        else:
            raise KeyboardInterrupt


# ---------------------------------------------------------------- the run
def _default_out_dir():
    return os.path.join("runs", datetime.datetime.now().strftime("fastcap-%Y%m%d-%H%M%S"))


def _write_json(path, obj):
    text = json.dumps(obj, indent=2, default=lambda x: x.item() if hasattr(x, "item") else str(x))
    atomic_write_text(path, text + "\n")


def _remove_stale(out_dir, names):
    # Only called with the run directory's lock held and owned by this run (fastcap.rundir).
    for name in names:
        try:
            os.unlink(os.path.join(out_dir, name))
        except FileNotFoundError:
            pass


class Trainer:
    """One training run. ``Trainer(options, out_dir, resume=None).run()``.

    options: flat dict of the CLI's train options (None = not given);
    out_dir: the run directory (None: the checkpoint's directory when
    resuming, else ``runs/fastcap-<time>``); resume: a checkpoint path.
    stop_after_iterations stops the run like a Ctrl-C once that many
    iterations are done (for tests). stdout receives the progress lines.
    comm: an mpi4py communicator for data-parallel training
    (fastcap.distributed); rank 0 alone prints and writes the run directory.
    """

    def __init__(self, options, out_dir=None, resume=None, *, overwrite=False,
                 stop_after_iterations=None, progress=True, print_every=0, stdout=None,
                 comm=None):
        self.stdout = stdout if stdout is not None else sys.stdout
        self.comm, self.root = comm, _distributed.is_root(comm)
        self.progress, self.print_every = progress and self.root, int(print_every or 0)
        self.stop_after = stop_after_iterations
        self.ckpt = load_checkpoint(resume) if resume is not None else None
        self.config = resolve_config(options, self.ckpt)
        if out_dir is None:
            out_dir = os.path.dirname(self.ckpt.path) if self.ckpt else _default_out_dir()
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        self.checkpoint_path = os.path.join(self.out_dir, "checkpoint.npz")
        self.overwrite = bool(overwrite)
        if self.root:  # rank 0 alone writes the run directory
            rundir.check_out_dir(self.out_dir, self._resume_path(), self.overwrite)
        self._bar = None

    def _resume_path(self):
        return self.ckpt.path if self.ckpt is not None else None

    # -------------------------------------------------------------- output
    def say(self, msg):
        if not self.root:
            return
        if self._bar is not None:
            self._bar.write(msg, file=self.stdout)
        else:
            print(msg, file=self.stdout, flush=True)

    # -------------------------------------------------------------- setup
    def setup(self):
        cfg = self.config
        source = describe_data(cfg["data"])
        self.data = load_data(cfg["data"])
        t = cfg["train"]
        self.data = subsample_train(self.data, t["max_train"], t["seed"])
        input_dim = int(self.data["train_features"].shape[1])
        m = cfg["model"]
        if self.ckpt is not None:
            self.ckpt.check_vocab(self.data["idx_to_word"], source)
            self.ckpt.check_input_dim(input_dim, source)
        m["input_dim"] = input_dim
        self.model = ModelConfig.from_dict(m).build(self.data["word_to_idx"], seed=t["seed"])
        self.solver = CaptioningSolver(
            self.model, self.data, update_rule=t["update_rule"],
            optim_config={"learning_rate": t["learning_rate"]}, lr_decay=t["lr_decay"],
            batch_size=t["batch_size"], num_epochs=t["num_epochs"], verbose=False,
            rng=np.random.RandomState(t["seed"]), comm=self.comm)
        self.epochs = []
        if self.ckpt is not None:
            self.ckpt.load_params_into(self.model)
            self.ckpt.restore_solver(self.solver)
            self.epochs = [dict(e) for e in self.ckpt.epochs][: self.solver.epoch + 1]
            s, per = self.solver, self.solver.iterations_per_epoch
            if s.epoch > s.iteration // per or len(self.epochs) < s.epoch:
                raise CheckpointError(
                    f"checkpoint {self.ckpt.path} is inconsistent: epoch {s.epoch} after "
                    f"{s.iteration} iterations ({per} per epoch on this data), with "
                    f"{len(self.epochs)} evaluations recorded")
        # The fixed validation subset: the first eval_images images (0 = all).
        ev = cfg["eval"]
        val_ids = np.unique(self.data["val_image_idxs"])
        if ev["eval_images"]:
            val_ids = val_ids[: ev["eval_images"]]
        self.eval_ids = val_ids
        rows = np.flatnonzero(np.isin(self.data["val_image_idxs"], val_ids))
        self.eval_captions = self.data["val_captions"][rows]
        self.eval_features = self.data["val_features"][self.data["val_image_idxs"][rows]]
        self.source = source
        return self

    # -------------------------------------------------------------- evaluation
    def evaluate(self):
        t0 = time.perf_counter()
        if self.comm is not None:
            val_loss, m = _distributed.evaluate(
                self.comm, self.model, self.data, self.eval_ids, self.eval_captions,
                self.eval_features, self.config["eval"]["max_length"])
            return val_loss, m, time.perf_counter() - t0
        val_loss = caption_loss(self.model, self.eval_captions, self.eval_features)
        m, _, _, _ = evaluate_captions(self.model, self.data, "val", self.eval_ids,
                                       max_length=self.config["eval"]["max_length"])
        return val_loss, m, time.perf_counter() - t0

    def _record_epoch(self):
        """Evaluate and record the epoch that just ended (epoch 0: the untrained model)."""
        s = self.solver
        e = len(self.epochs)
        per = s.iterations_per_epoch
        val_loss, m, secs = self.evaluate()
        if e == 0:
            train_loss = None
        else:
            window = s.loss_history[(e - 1) * per: e * per]
            train_loss = float(np.mean(window)) if window else None
        entry = {"epoch": e, "iteration": int(s.iteration), "train_loss": train_loss,
                 "val_loss": val_loss, **m, "eval_seconds": round(secs, 3)}
        self.epochs.append(entry)
        label = "epoch 0 (untrained)" if e == 0 else f"epoch {e}/{s.num_epochs}"
        tl = "" if train_loss is None else f"train loss {train_loss:.3f}  "
        self.say(f"{label}: {tl}val loss {val_loss:.3f}  {_fmt_metrics(m)}")

    def _diverging(self):
        """How many evaluations in a row, up to the last, are diverging (see DIVERGENCE_FACTOR)."""
        if not self.epochs:
            return 0
        limit = DIVERGENCE_FACTOR * self.epochs[0]["val_loss"]
        n = 0
        for e in reversed(self.epochs[1:]):
            if math.isfinite(e["val_loss"]) and e["val_loss"] <= limit:
                break
            n += 1
        return n

    def _good_checkpoint(self):
        if getattr(self, "_saved_at", None) is None and not os.path.exists(self.checkpoint_path):
            return "no checkpoint was written"
        return f"the last good checkpoint, {self.checkpoint_path}, was kept"

    def _check_divergence(self, final=False):
        n = self._diverging()
        last = self.epochs[-1]["val_loss"] if self.epochs else None
        if n and (n >= DIVERGENCE_EVALUATIONS or final or not math.isfinite(last)):
            recent = ", ".join(f"{e['val_loss']:.4g} at epoch {e['epoch']}" for e in self.epochs[-n:])
            raise TrainingDivergedError(
                f"training diverged: validation loss {recent}, against {self.epochs[0]['val_loss']:.4g} "
                f"for the untrained model (the limit is {DIVERGENCE_FACTOR:g}x that); "
                f"{self._good_checkpoint()}; lower the learning rate (--lr, now "
                f"{self.config['train']['learning_rate']:g})")

    def save(self):
        """Checkpoint and history, unless the run is diverging (then the last good one stays)."""
        if self._diverging():
            return False
        self._saved_at = (self.solver.iteration, len(self.epochs))
        if not self.root:
            return True
        save_checkpoint(self.checkpoint_path, model=self.model, solver=self.solver,
                        config=self.config, epochs=self.epochs,
                        idx_to_word=self.data["idx_to_word"])
        self._write_history()
        return True

    def _write_history(self):
        s = self.solver
        _write_json(os.path.join(self.out_dir, "history.json"), {
            "iterations_per_epoch": s.iterations_per_epoch, "batch_size": s.batch_size,
            "num_epochs": s.num_epochs, "iteration": s.iteration, "epoch": s.epoch,
            "loss_history": [float(x) for x in s.loss_history], "epochs": self.epochs,
        })

    # -------------------------------------------------------------- the loop
    def run(self):
        """Train to the end; returns a summary dict. Raises TrainingInterrupted on Ctrl-C,
        TrainingDivergedError when the loss explodes, rundir.RunDirError when another run holds
        the directory."""
        if not hasattr(self, "solver"):
            self.setup()
        if self.comm is not None:  # rank 0's paths (a default --out is named by the clock)
            self.out_dir, self.checkpoint_path = self.comm.bcast(
                (self.out_dir, self.checkpoint_path), root=0)
        # Rank 0 alone writes, so it alone locks and prepares the directory; every rank
        # learns whether it could.
        lock, error, removed = None, None, []
        if self.root:
            try:
                lock = rundir.RunLock(self.out_dir).acquire()
                removed = rundir.prepare_out_dir(self.out_dir, self._resume_path(), self.overwrite)
            except rundir.RunDirError as exc:
                if lock is not None:
                    lock.release()
                lock, error = None, str(exc)
        if self.comm is not None:
            error = self.comm.bcast(error, root=0)
        if error is not None:
            raise rundir.RunDirError(error)
        try:
            if removed:
                self.say(f"removed {', '.join(removed)} from {self.out_dir}")
            # Overflow on the way to a diverged loss is reported by fastcap's own checks.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return self._run()
        finally:
            if lock is not None:
                lock.release()

    def _run(self):
        if self.root:
            os.makedirs(self.out_dir, exist_ok=True)
        s, cfg = self.solver, self.config
        per = s.iterations_per_epoch
        total = s.num_epochs * per
        m, t = cfg["model"], cfg["train"]
        from . import get_backend

        verb = "resuming" if self.ckpt else "training"
        self.say(f"fastcap: {verb} {ModelConfig.from_dict(m).describe()} on {self.source}: "
                 f"{self.data['train_captions'].shape[0]} train captions, "
                 f"{len(self.eval_ids)} val images for evaluation; backend {get_backend()}")
        self.say(f"{s.num_epochs} epoch{'' if s.num_epochs == 1 else 's'} x {per} iteration"
                 f"{'' if per == 1 else 's'} of batch {s.batch_size}, "
                 f"{t['update_rule']} lr {t['learning_rate']:g} decay {t['lr_decay']:g}; "
                 f"writing to {self.out_dir}")
        if self.ckpt is not None:
            self.say(f"resumed at iteration {s.iteration} (epoch {s.epoch}) from {self.ckpt.path}")
        if self.comm is not None:
            self.say(f"data-parallel over {self.comm.Get_size()} MPI ranks: "
                     f"{_distributed.describe_slices(self.comm, s.batch_size)}")
        if self.root:
            _write_json(os.path.join(self.out_dir, "config.json"), cfg)

        dp = s.data_parallel
        guard = _InterruptGuard(always_defer=dp is not None)
        if dp is not None:
            dp.stop_requested = lambda: guard.requested
        step_time, steps, start = 0.0, 0, time.perf_counter()
        bar = None
        if self.progress and s.iteration < total:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=s.iteration, unit="it", desc="train",
                       dynamic_ncols=True, file=sys.stderr, leave=False)
        self._bar = bar
        try:
            with guard:
                while len(self.epochs) < s.epoch + 1:  # epoch 0, or an eval an interrupt cut short
                    self._record_epoch()
                    self._check_divergence()
                    self.save()
                while s.iteration < total:
                    if self.stop_after is not None and s.iteration >= self.stop_after:
                        raise KeyboardInterrupt
                    t0 = time.perf_counter()
                    guard.in_step = True
                    try:
                        loss = s.step()
                    except TrainingDivergedError as exc:
                        raise TrainingDivergedError(f"{exc}; {self._good_checkpoint()}") from None
                    epoch_done = s.iteration % per == 0
                    if epoch_done:
                        s.end_epoch()
                    guard.in_step = False
                    step_time += time.perf_counter() - t0
                    steps += 1
                    if bar is not None:
                        bar.set_postfix_str(f"loss {loss:.3f}, {steps * s.batch_size / step_time:.0f} "
                                            "captions/s", refresh=False)
                        bar.update(1)
                    if self.print_every and s.iteration % self.print_every == 0:
                        self.say(f"(Iteration {s.iteration} / {total}) loss: {loss:f}")
                    if guard.requested if dp is None else dp.stop_agreed:
                        raise KeyboardInterrupt
                    if epoch_done:
                        self._record_epoch()
                        self._check_divergence()
                        self.save()
        except KeyboardInterrupt:
            self._bar = None
            if bar is not None:
                bar.close()
            if guard.in_step:
                # A second Ctrl-C inside a step: the parameters may be half updated.
                raise TrainingInterrupted(
                    "interrupted inside a training step; the state was not saved"
                    + (f" (the last checkpoint, {self.checkpoint_path}, is from epoch "
                       f"{len(self.epochs) - 1})" if os.path.exists(self.checkpoint_path) else ""),
                    None, s.iteration, s.epoch) from None
            if not self.save():
                raise TrainingInterrupted(
                    f"interrupted after iteration {s.iteration} of {total} while the validation "
                    f"loss was diverging; {self._good_checkpoint()}", None, s.iteration,
                    s.epoch) from None
            raise TrainingInterrupted(
                f"interrupted after iteration {s.iteration} of {total} ({s.epoch} of "
                f"{s.num_epochs} epochs done); checkpoint saved to "
                f"{self.checkpoint_path}; continue with `fastcap train --resume "
                f"{self.checkpoint_path}`", self.checkpoint_path, s.iteration, s.epoch) from None
        finally:
            if self._bar is not None:
                self._bar.close()
            self._bar = None
        wall = time.perf_counter() - start
        return self.finish(wall, steps, step_time)

    # -------------------------------------------------------------- the end
    def finish(self, wall, steps, step_time):
        s = self.solver
        self._check_divergence(final=True)
        if getattr(self, "_saved_at", None) != (s.iteration, len(self.epochs)):
            self.save()
        if not self.root:
            return {"out_dir": self.out_dir, "metrics": None, "seconds": wall}
        last, first = self.epochs[-1], self.epochs[0]
        untrained = {k: first[k] for k in ("val_loss", *_metrics.METRIC_NAMES)}
        summary = {
            "split": "val", "images": int(len(self.eval_ids)),
            "references": int(self.eval_captions.shape[0]), "decoding": "greedy",
            "epoch": s.epoch, "iteration": s.iteration,
            "train_loss": last["train_loss"], "val_loss": last["val_loss"],
            **{k: last[k] for k in _metrics.METRIC_NAMES}, "untrained": untrained,
        }
        _write_json(os.path.join(self.out_dir, "metrics.json"), summary)
        self._write_samples()
        self._plot()
        if steps:
            self.say(f"trained {steps} iterations in {wall:.1f} s "
                     f"({steps * s.batch_size / step_time:.0f} captions/s in training steps)")
        tl = "n/a" if last["train_loss"] is None else f"{last['train_loss']:.3f}"
        self.say(f"final train loss {tl} (mean over epoch {last['epoch']}), "
                 f"val loss {last['val_loss']:.3f} (untrained {first['val_loss']:.3f})")
        self.say(f"val, {len(self.eval_ids)} images, greedy: {_fmt_metrics(last)}")
        self.say(f"     untrained model:    {_fmt_metrics(untrained)}")
        files = [f for f in OUTPUT_FILES if os.path.exists(os.path.join(self.out_dir, f))]
        self.say(f"wrote {', '.join(files)} to {self.out_dir}")
        return {"out_dir": self.out_dir, "metrics": summary, "seconds": wall}

    def _write_samples(self):
        n = self.config["eval"]["num_samples"]
        ids = self.eval_ids[:n]
        if len(ids) == 0:
            _remove_stale(self.out_dir, ("samples.json", "samples.txt"))  # an earlier run's
            return
        _, image_ids, refs, cands = evaluate_captions(
            self.model, self.data, "val", ids, max_length=self.config["eval"]["max_length"])
        urls = self.data["val_urls"]
        samples = [{"image": int(i), "url": str(urls[i]), "generated": c, "references": r}
                   for i, r, c in zip(image_ids.tolist(), refs, cands)]
        _write_json(os.path.join(self.out_dir, "samples.json"), samples)
        atomic_write_text(os.path.join(self.out_dir, "samples.txt"), format_samples(samples))

    def _plot(self):
        path = os.path.join(self.out_dir, "loss.png")
        try:
            # The Agg canvas directly, not pyplot: no display, no global backend switch.
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            self.say("note: matplotlib is not installed, so no loss.png "
                     "(`pip install matplotlib` to get the plot)")
            _remove_stale(self.out_dir, ("loss.png",))
            return False
        s = self.solver
        per = s.iterations_per_epoch
        fig = Figure(figsize=(10, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax, ax2 = fig.subplots(1, 2)
        it = np.arange(1, len(s.loss_history) + 1)
        ax.plot(it, s.loss_history, lw=0.6, alpha=0.5, color="C0", label="training (per batch)")
        trained = [e for e in self.epochs if e["train_loss"] is not None]
        if trained:
            ax.plot([(e["epoch"] - 0.5) * per for e in trained], [e["train_loss"] for e in trained],
                    "o-", color="C0", label="training (epoch mean)")
        ax.plot([e["epoch"] * per for e in self.epochs], [e["val_loss"] for e in self.epochs],
                "s-", color="C1", label="validation")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss per caption")
        ax.set_title("loss")
        ax.legend()
        ep = [e["epoch"] for e in self.epochs]
        for key, label in (("bleu1", "BLEU-1"), ("bleu4", "BLEU-4")):
            ax2.plot(ep, [e[key] for e in self.epochs], "o-", label=label)
        ax3 = ax2.twinx()
        ax3.plot(ep, [e["cider"] for e in self.epochs], "s--", color="C3", label="CIDEr")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("BLEU")
        ax3.set_ylabel("CIDEr")
        ax2.set_title(f"validation captions ({len(self.eval_ids)} images, greedy)")
        lines = ax2.get_legend_handles_labels(), ax3.get_legend_handles_labels()
        ax2.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="lower right")
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
        return True


def format_samples(samples):
    """Human-readable ground truth against generated captions."""
    lines = []
    for s in samples:
        lines.append(f"image {s['image']}  {s['url']}")
        lines.append(f"  generated:    {s['generated']}")
        for r in s["references"]:
            lines.append(f"  ground truth: {r}")
        lines.append("")
    return "\n".join(lines)

