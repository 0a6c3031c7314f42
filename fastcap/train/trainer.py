"""The training loop of ``fastcap train``: set up data, model and solver, step, evaluate each epoch, checkpoint, resume.

Its parts live beside it: the run config (fastcap.train.run_config, fastcap.train.options), the
data (fastcap.data.load), metrics (fastcap.train.evaluation), Ctrl-C (fastcap.train.interrupts),
the run directory (fastcap.train.rundir) and its files (fastcap.train.run_outputs); the names
re-exported here (``__all__``) are those modules' own.

Determinism: the model is initialised from ``np.random.default_rng(seed)``,
minibatches come from the solver's ``np.random.RandomState(seed)``, a
``max_train`` subset from ``np.random.default_rng([seed, 1])``, and evaluation
uses a fixed set of validation images and no randomness. A checkpoint holds
all of that state, so an interrupted and resumed run makes the same updates,
and has the same loss history, as an uninterrupted one (interrupts: see
fastcap.train.interrupts).
"""
import math
import os
import signal
import sys
import time

import numpy as np

from ..runtime import backends, files, precision as _precision
from ..runtime import progress as _progress
from . import distributed as _distributed
from . import monitor
from . import rundir
from ..captioning_solver import TrainingDivergedError, iterations_per_epoch
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .run_config import (check_fits, check_inputs, data_pca, fit_schedule, init_options,
                         resolve_config)
from ..data.load import DataError, describe_data, load_data, subsample_train
from ..data.grid import FeatureReadError
from ..data.stream import rows as feature_rows
from .evaluation import caption_loss, evaluate_captions, format_metrics
from .interrupts import InterruptGuard, TrainingInterrupted
from .model_config import ModelConfig
from ..runtime.precision import use_precision
from .options import DEFAULTS, GENERATED_DEFAULTS
from .run_outputs import plot_history, run_summary, write_json, write_samples
from . import scst as _scst

__all__ = ["DEFAULTS", "GENERATED_DEFAULTS", "DataError", "TrainingInterrupted",
           "resolve_config", "load_data", "Trainer", "evaluate_captions", "caption_loss"]

BEST_NAME = rundir.BEST_NAME


# ---------------------------------------------------------------- the run
class Trainer:
    """One training run. ``Trainer(options, out_dir, resume=None).run()``.

    options: flat dict of the CLI's train options (None = not given);
    out_dir: the run directory (None: the checkpoint's directory when
    resuming, else ``runs/fastcap-<time>``); resume: a checkpoint path.
    stop_after_iterations stops the run like a Ctrl-C once that many
    iterations are done (for tests). stdout receives the progress lines.
    comm: an mpi4py communicator for data-parallel training
    (fastcap.train.distributed); rank 0 alone prints and writes the run directory.
    """

    def __init__(self, options, out_dir=None, resume=None, *, overwrite=False,
                 stop_after_iterations=None, progress=True, print_every=0, stdout=None,
                 comm=None):
        self.stdout = stdout if stdout is not None else sys.stdout
        self.comm, self.root = comm, _distributed.is_root(comm)
        self.progress, self.print_every = progress and self.root, int(print_every or 0)
        self.stop_after = stop_after_iterations
        self.ckpt = load_checkpoint(resume) if resume is not None else None
        self.init = None
        if options.get("init_from") is not None and self.ckpt is not None:
            raise ValueError("--init-from starts a new run from a checkpoint's weights and "
                             "--resume continues a run exactly: give one of them")
        if options.get("init_from") is not None:
            self.init = load_checkpoint(options["init_from"])
            options = init_options(options, self.init)
        self.config = resolve_config(options, self.ckpt)
        _scst.check_run(self.config, self.init is not None or self.ckpt is not None,
                             options)
        self._stream = not options.get("grid_in_memory")  # grid files: a minibatch at a time
        # A new run without --epochs gets as many as its data needs (fit_schedule, in setup).
        self._given = {k for k, v in options.items() if v is not None}
        self.notes = []  # what setup chose for the run, said in its first lines
        if self.init is not None:
            self.config["train"]["init_from"] = os.path.abspath(self.init.path)
            if options.get("data") is None:  # fine-tuning on the data it was trained on
                self.config["data"] = self.init.config["data"]
        if out_dir is None:
            out_dir = os.path.dirname(self.ckpt.path) if self.ckpt else rundir.default_out_dir()
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        self.checkpoint_path = os.path.join(self.out_dir, rundir.LAST_NAME)
        self.overwrite = bool(overwrite)
        if self.root:  # rank 0 alone writes the run directory
            rundir.check_out_dir(self.out_dir, self._resume_path(), self.overwrite, self._inputs())
        # What setup() makes (the data, model and solver; the validation subset), then the
        # loop's bookkeeping: declared here, so nothing is looked up by hasattr/getattr.
        self.data = self.model = self.solver = self.source = self.pca = None
        self.scst = None  # the self-critical objective (fastcap.train.scst) of an --scst run
        self.epochs = []
        self.eval_ids = self.eval_captions = self.eval_features = None
        self._bar = None  # the progress bar while the loop runs
        self._steps, self._step_time = 0, 0.0  # training steps run in this process, their seconds
        self._epoch_t0 = None  # when the running epoch started (None: it started in another process)
        self._saved_at = None  # (iteration, evaluations) of the last checkpoint written
        self._best_at = None  # the epoch best.npz holds

    @property
    def _initial(self):
        """What epoch 0 evaluated: the untrained model, or the --init-from weights."""
        return "untrained" if self.config["train"].get("init_from") is None else "initial"

    def _resume_path(self):
        return self.ckpt.path if self.ckpt is not None else None

    def _inputs(self):
        """The checkpoints this run reads, which it must never remove or replace."""
        return {"checkpoint it resumes": self._resume_path(),
                "--init-from checkpoint": self.init.path if self.init is not None else None}

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
        self.data = load_data(cfg["data"], cfg["model"]["dtype"], stream=self._stream)
        t = cfg["train"]
        self.data = subsample_train(self.data, t["max_train"], t["seed"])
        input_dim = check_inputs(cfg, self.data, (self.ckpt, self.init), source)
        # --scst: its rewards' references and document frequencies, once per run (else None)
        self.scst = _scst.of_run(self.data, t)
        solver, extra, per, unit, least = _scst.schedule(self.scst, self.data)
        if self.ckpt is None:
            self.notes = fit_schedule(cfg, per, self._given, unit, least)
        self.pca = data_pca(cfg["data"])  # carried by every checkpoint (captioning needs it)
        m = cfg["model"]
        m["input_dim"] = input_dim
        # Before the model is allocated: what its checkpoints must hold has to fit them, and
        # a self-critical step's samples the memory.
        check_fits(cfg, len(self.data["idx_to_word"]), t["num_epochs"] * iterations_per_epoch(
            per, t["batch_size"]))
        if self.scst is not None:
            self.scst.check_memory(ModelConfig.from_dict(m), len(self.data["idx_to_word"]),
                                   t["batch_size"])
        self.model = ModelConfig.from_dict(m).build(self.data["word_to_idx"], seed=t["seed"])
        self.solver = solver(
            self.model, self.data, update_rule=t["update_rule"],
            optim_config={"learning_rate": t["learning_rate"]}, lr_decay=t["lr_decay"],
            batch_size=t["batch_size"], num_epochs=t["num_epochs"], verbose=False,
            rng=np.random.RandomState(t["seed"]), comm=self.comm, **extra)
        self.epochs = []
        if self.init is not None:
            self.init.load_params_into(self.model)
        if self.ckpt is not None:
            self.ckpt.load_params_into(self.model)
            self.ckpt.restore_solver(self.solver)
            self.epochs = [dict(e) for e in self.ckpt.epochs]  # the schema bounds them by epoch + 1
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
        self.eval_features = feature_rows(self.data["val_features"],
                                          self.data["val_image_idxs"][rows])
        self.source = source
        _distributed.agree(self.comm, self._rank_facts)
        return self

    def _rank_facts(self):
        """What every rank of a data-parallel run must have alike (fastcap.train.distributed.agree):
        the config (but the data's path, which may differ between hosts), the data itself, the
        state resumed from, and the backend (each rank applies the summed gradients itself:
        backends may round differently, and the ranks' parameters would drift apart)."""
        facts = {f"config.{section}.{key}": value for section, entries in self.config.items()
                 for key, value in entries.items() if (section, key) != ("data", "path")}
        facts["backend"] = backends.get_backend()
        facts.update(_distributed.data_facts(self.data))
        if self.ckpt is not None:
            s = self.solver
            facts["resumed iteration"], facts["resumed epoch"] = s.iteration, s.epoch
            facts["resumed state"] = _distributed.digest(
                np.asarray(s.loss_history), *self.model.params.values(),
                *(v for c in s.optim_configs.values() for v in c.values()
                  if isinstance(v, np.ndarray)))
        return facts

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
        # Wall time since the previous evaluation ended (its steps and this evaluation);
        # none for epoch 0, or for the first epoch after a resume (it began in another process).
        now = time.perf_counter()
        since = self._epoch_t0
        self._epoch_t0 = now
        entry = {"epoch": e, "iteration": int(s.iteration), "train_loss": train_loss,
                 "val_loss": val_loss, **m, "eval_seconds": round(secs, 3)}
        if e and since is not None:
            entry["epoch_seconds"] = round(now - since, 3)
        self.epochs.append(entry)
        label = f"epoch 0 ({self._initial})" if e == 0 else f"epoch {e}/{s.num_epochs}"
        tl = "" if train_loss is None else f"train loss {train_loss:.3f}  "
        wall = f"  ({entry['epoch_seconds']:.1f} s)" if "epoch_seconds" in entry else ""
        self.say(f"{label}: {tl}val loss {val_loss:.3f}  {format_metrics(m)}{wall}")

    def _good_checkpoint(self):
        """What is left to resume from. A checkpoint is called good only once it has been
        read back (the loader's checks are the judge), never for merely existing."""
        if not os.path.lexists(self.checkpoint_path):
            return "no checkpoint was written"
        try:
            load_checkpoint(self.checkpoint_path)
        except (CheckpointError, OSError, ValueError) as exc:
            return f"no usable checkpoint was kept ({self.checkpoint_path} cannot be read back: {exc})"
        return f"the last good checkpoint, {self.checkpoint_path}, was kept"

    def _check_divergence(self, final=False):
        n = monitor.diverging(self.epochs)
        last = self.epochs[-1]["val_loss"] if self.epochs else None
        if n and not math.isfinite(self.epochs[0]["val_loss"]):
            raise TrainingDivergedError(
                f"the untrained model's validation loss is {self.epochs[0]['val_loss']:.4g}, not "
                f"a finite number: the data ({self.source}) or the model's size overflow "
                f"{self.config['model']['dtype']}; {self._good_checkpoint()}")
        if n and (n >= monitor.DIVERGENCE_EVALUATIONS or final or not math.isfinite(last)):
            recent = ", ".join(f"{e['val_loss']:.4g} at epoch {e['epoch']}" for e in self.epochs[-n:])
            raise TrainingDivergedError(
                f"training diverged: validation loss {recent}, against {self.epochs[0]['val_loss']:.4g} "
                f"for the untrained model (the limit is {monitor.DIVERGENCE_FACTOR:g}x that); "
                f"{self._good_checkpoint()}; lower the learning rate (--lr, now "
                f"{self.config['train']['learning_rate']:g})")

    def _best_epoch(self):
        return monitor.best_epoch(self.epochs, self.config["eval"].get("best_metric", "cider"))

    def _out_of_patience(self):
        return monitor.out_of_patience(self.epochs, self.config["eval"].get("best_metric", "cider"),
                                       self.config["train"].get("patience", 0))

    def save(self):
        """Checkpoint and history, unless the run is diverging (then the last good one stays);
        best.npz too when the epoch just evaluated is the best so far."""
        if monitor.diverging(self.epochs):
            return False
        self._saved_at = (self.solver.iteration, len(self.epochs))
        if not self.root:
            return True
        kw = dict(model=self.model, solver=self.solver, config=self.config, epochs=self.epochs,
                  idx_to_word=self.data["idx_to_word"], pca=self.pca)
        best, since = self._best_epoch()
        if best is not None and since == 0 and self._best_at != best["epoch"]:
            save_checkpoint(os.path.join(self.out_dir, BEST_NAME), **kw)
            self._best_at = best["epoch"]
        save_checkpoint(self.checkpoint_path, **kw)
        self._write_history()
        return True

    def _write_history(self):
        s = self.solver
        write_json(os.path.join(self.out_dir, "history.json"), {
            "iterations_per_epoch": s.iterations_per_epoch, "batch_size": s.batch_size,
            "num_epochs": s.num_epochs, "iteration": s.iteration, "epoch": s.epoch,
            "loss_history": [float(x) for x in s.loss_history], "epochs": self.epochs,
        })

    # -------------------------------------------------------------- the loop
    def run(self):
        """Train to the end; returns a summary dict. Raises TrainingInterrupted on Ctrl-C,
        TrainingDivergedError when the loss explodes, fastcap.runtime.files.LockError when another run holds
        the directory."""
        if self.solver is None:
            self.setup()
        if self.comm is not None:  # rank 0's paths (a default --out is named by the clock)
            self.out_dir, self.checkpoint_path = self.comm.bcast(
                (self.out_dir, self.checkpoint_path), root=0)
        # Rank 0 alone writes, so it alone locks and prepares the directory; every rank
        # learns whether it could.
        lock, error, removed = None, None, []
        if self.root:
            try:
                lock = files.DirectoryLock(self.out_dir).acquire()
                removed = rundir.prepare_out_dir(self.out_dir, self._resume_path(), self.overwrite,
                                                 self._inputs())
            except (files.LockError, rundir.RunDirError) as exc:
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
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                    use_precision(self.config["train"].get("precision", "float32")):
                return self._run()
        finally:
            if lock is not None:
                lock.release()

    def _run(self):
        """The loop, in named steps: announce, evaluate what is pending, train step by step
        (evaluating and checkpointing at each epoch's end) until the last epoch or patience
        ends it; a Ctrl-C or SIGTERM saves and raises TrainingInterrupted."""
        s = self.solver
        total = s.num_epochs * s.iterations_per_epoch
        self._announce()
        guard = InterruptGuard(always_defer=s.data_parallel is not None)
        if s.data_parallel is not None:
            s.data_parallel.stop_requested = lambda: guard.requested
        # An epoch's wall time is measured only from its start (not across a resume).
        self._epoch_t0 = time.perf_counter() if s.iteration % s.iterations_per_epoch == 0 else None
        self._steps, self._step_time, start = 0, 0.0, time.perf_counter()
        if self.progress and s.iteration < total:
            self._bar = _progress.bar(total, initial=s.iteration, unit="it", desc="train",
                                      dynamic_ncols=True, file=sys.stderr, leave=False)
        try:
            with guard:
                while len(self.epochs) < s.epoch + 1:  # epoch 0, or an eval an interrupt cut short
                    self._end_epoch()
                while s.iteration < total and not self._out_of_patience():
                    self._train_step(guard, total)
        except KeyboardInterrupt:
            self._close_bar()
            raise self._interrupted(guard, total) from None
        except FeatureReadError as exc:  # read before a step changes anything: the state is whole
            self._close_bar()
            saved = (f"checkpoint saved to {self.checkpoint_path} at iteration {s.iteration}; once "
                     "the file is mended, continue with --resume" if self.save()
                     else self._good_checkpoint())
            raise FeatureReadError(f"{exc}; training stopped: {saved}") from None
        finally:
            self._close_bar()
        if s.iteration < total:
            self._say_stopped_early()
        return self.finish(time.perf_counter() - start, self._steps, self._step_time)

    def _announce(self):
        """The run's first lines (model, data, backend, precision, schedule) and config.json."""
        s, cfg = self.solver, self.config
        t = cfg["train"]
        verb = "resuming" if self.ckpt else "training"
        self.say(f"fastcap: {verb} {ModelConfig.from_dict(cfg['model']).describe()} on {self.source}: "
                 f"{self.data['train_captions'].shape[0]} train captions, "
                 f"{len(self.eval_ids)} val images for evaluation; backend {backends.get_backend()}, "
                 f"precision {_precision.describe()}")
        per = s.iterations_per_epoch
        self.say(f"{s.num_epochs} epoch{'' if s.num_epochs == 1 else 's'} x {per} iteration"
                 f"{'' if per == 1 else 's'} of batch {s.batch_size}, "
                 f"{t['update_rule']} lr {t['learning_rate']:g} decay {t['lr_decay']:g}; "
                 f"writing to {self.out_dir}")
        for note in self.notes:
            self.say(f"note: {note}")
        if self.scst is not None:
            self.say(f"{self.scst.describe()}; batches of {s.batch_size} images")
        if self.ckpt is not None:
            self.say(f"resumed at iteration {s.iteration} (epoch {s.epoch}) from {self.ckpt.path}")
        if self.comm is not None:
            self.say(f"data-parallel over {self.comm.Get_size()} MPI ranks: "
                     f"{_distributed.describe_slices(self.comm, s.batch_size)}")
        if self.root:
            write_json(os.path.join(self.out_dir, "config.json"), cfg)

    def _train_step(self, guard, total):
        """One iteration: the step (a Ctrl-C inside it waits for its end), the progress, and
        at an epoch's end its evaluation and checkpoint."""
        s = self.solver
        if self.stop_after is not None and s.iteration >= self.stop_after:
            raise KeyboardInterrupt
        t0 = time.perf_counter()
        guard.in_step = True
        try:
            loss = s.step()
        except TrainingDivergedError as exc:
            raise TrainingDivergedError(f"{exc}; {self._good_checkpoint()}") from None
        epoch_done = s.iteration % s.iterations_per_epoch == 0
        if epoch_done:
            s.end_epoch()
        guard.in_step = False
        self._step_time += time.perf_counter() - t0
        self._steps += 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {loss:.3f}, {self._steps * s.batch_size / self._step_time:.0f} "
                                      "captions/s", refresh=False)
            self._bar.update(1)
        if self.print_every and s.iteration % self.print_every == 0:
            self.say(f"(Iteration {s.iteration} / {total}) loss: {loss:f}")
        if guard.requested if s.data_parallel is None else s.data_parallel.stop_agreed:
            raise KeyboardInterrupt
        if epoch_done:
            self._end_epoch()

    def _end_epoch(self):
        self._record_epoch()
        self._check_divergence()
        self.save()

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
        self._bar = None

    def _interrupted(self, guard, total):
        """The TrainingInterrupted of a Ctrl-C (or SIGTERM), saving the state first where it is
        whole: not inside a step (a second signal there), not while diverging."""
        s = self.solver
        how = "interrupted" + ("" if guard.signum == signal.SIGINT else f" by {guard.signum.name}")
        if guard.in_step:
            # A second Ctrl-C inside a step: the parameters may be half updated.
            return TrainingInterrupted(
                f"{how} inside a training step; the state was not saved"
                + (f" (the last checkpoint, {self.checkpoint_path}, is from epoch "
                   f"{len(self.epochs) - 1})" if os.path.exists(self.checkpoint_path) else ""),
                None, s.iteration, s.epoch, guard.signum)
        if not self.save():
            return TrainingInterrupted(
                f"{how} after iteration {s.iteration} of {total} while the validation "
                f"loss was diverging; {self._good_checkpoint()}", None, s.iteration,
                s.epoch, guard.signum)
        return TrainingInterrupted(
            f"{how} after iteration {s.iteration} of {total} ({s.epoch} of "
            f"{s.num_epochs} epochs done); checkpoint saved to "
            f"{self.checkpoint_path}; continue with `fastcap train --resume "
            f"{self.checkpoint_path}`", self.checkpoint_path, s.iteration, s.epoch,
            guard.signum)

    def _say_stopped_early(self):
        best, since = self._best_epoch()
        key = self.config["eval"].get("best_metric", "cider")
        self.say(f"stopping early: {key} has not improved in {since} evaluations (best "
                 f"{best[key]:.4f} at epoch {best['epoch']}, in {BEST_NAME})")

    # -------------------------------------------------------------- the end
    def finish(self, wall, steps, step_time):
        s = self.solver
        self._check_divergence(final=True)
        if self._saved_at != (s.iteration, len(self.epochs)):
            self.save()
        if not self.root:
            return {"out_dir": self.out_dir, "metrics": None, "seconds": wall}
        last, first = self.epochs[-1], self.epochs[0]
        summary = run_summary(s, self.epochs, len(self.eval_ids), self.eval_captions.shape[0])
        untrained = summary["untrained"]
        write_json(os.path.join(self.out_dir, "metrics.json"), summary)
        ev = self.config["eval"]
        write_samples(self.out_dir, self.model, self.data, self.eval_ids[:ev["num_samples"]],
                      ev["max_length"])
        plot_history(os.path.join(self.out_dir, "loss.png"), self.solver, self.epochs,
                     len(self.eval_ids))
        if steps:
            self.say(f"trained {steps} iterations in {wall:.1f} s "
                     f"({steps * s.batch_size / step_time:.0f} captions/s in training steps)")
        tl = "n/a" if last["train_loss"] is None else f"{last['train_loss']:.3f}"
        self.say(f"final train loss {tl} (mean over epoch {last['epoch']}), "
                 f"val loss {last['val_loss']:.3f} (untrained {first['val_loss']:.3f})")
        self.say(f"val, {len(self.eval_ids)} images, greedy: {format_metrics(last)}")
        self.say(f"     {self._initial + ' model:':20s}{format_metrics(untrained)}")
        files = [f for f in rundir.OUTPUT_FILES if os.path.exists(os.path.join(self.out_dir, f))]
        self.say(f"wrote {', '.join(files)} to {self.out_dir}")
        return {"out_dir": self.out_dir, "metrics": summary, "seconds": wall}
