"""The run directory of ``fastcap train``: who may write it and what it may replace.

Three rules, so that no run is overwritten, mixed with another or lost:

* **One run at a time.** A run holds an exclusive lock (``flock``:
  ``fastcap.runtime.files.DirectoryLock``) on ``DIR/.fastcap.lock`` from before its
  first write to its end; the file
  names the holder (pid, host, start time, command). A second run on the same
  directory stops with an error saying who holds it. The kernel releases the
  lock when a process dies, so a killed run never leaves a stale lock. The
  lock file is opened without following a link, and only as a regular file
  with one name (it is rewritten in place).
* **Nothing foreign is replaced without --overwrite.** A run owns the files
  of ``OUTPUT_FILES`` in its directory only when it continues the run that
  wrote them (``--resume DIR/checkpoint.npz`` writing to DIR, compared as real
  paths). Otherwise, if any of them exist, the run refuses to start and lists
  them; with ``--overwrite`` they are removed when the run starts, so nothing
  of the old run is left beside the new one, except the checkpoint being
  resumed, which is never removed. Outputs that are not regular files are
  refused, --overwrite or not (fastcap.runtime.files).
* **Killed runs leave no debris.** A SIGKILL during an atomic write leaves
  its temporary file (``.checkpoint.npz.XXXX.tmp``); the next run on the
  directory, holding the lock, removes those of the files it writes.
"""
import datetime
import os

from ..runtime import files
from ..runtime.files import LOCK_NAME

__all__ = ["OUTPUT_FILES", "LAST_NAME", "BEST_NAME", "RunDirError", "check_out_dir",
           "prepare_out_dir", "default_out_dir", "inference_checkpoint"]

LAST_NAME = "checkpoint.npz"  # the checkpoint of the last epoch (what --resume continues)
BEST_NAME = "best.npz"  # the checkpoint of the best epoch by --best-metric
# Every file a training run writes into its directory.
OUTPUT_FILES = (LAST_NAME, "config.json", "history.json", "loss.png", "metrics.json",
                "samples.txt", "samples.json", BEST_NAME)


class RunDirError(ValueError):
    """The run directory cannot be used: in use by another run, or holding another run's files."""


def owns(out_dir, resume_path):
    """Whether a run writing to ``out_dir`` continues the run whose files are there
    (compared as real paths: a symlinked alias of the directory is the directory)."""
    if resume_path is None:
        return False
    return (os.path.basename(resume_path) == "checkpoint.npz"
            and os.path.realpath(os.path.dirname(os.path.abspath(resume_path)))
            == os.path.realpath(out_dir))


def existing_outputs(out_dir):
    return [f for f in OUTPUT_FILES if os.path.lexists(os.path.join(out_dir, f))]


def check_out_dir(out_dir, resume_path=None, overwrite=False, inputs=()):
    """Raise RunDirError if a run on ``out_dir`` would replace files it does not own, or any
    file it reads (``inputs``: {what: path}, e.g. the --init-from checkpoint), --overwrite or
    not. The one file a run may replace and read is the checkpoint.npz it resumes in its own
    directory: it continues that run."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise RunDirError(f"--out {out_dir} is not a directory")
    for name in existing_outputs(out_dir):
        path = os.path.join(out_dir, name)
        files.check_special(path, f"--out {out_dir}: {name}")
        if name == "checkpoint.npz" and owns(out_dir, resume_path):
            continue
        for what, given in dict(inputs).items():
            if given is not None and files.same_file(path, given):
                raise RunDirError(f"--out {out_dir}: this run writes {name}, which is {given}, "
                                  f"the {what}; a run never removes or replaces a file it "
                                  "reads: choose another --out, or copy it elsewhere first")
    if overwrite or owns(out_dir, resume_path):
        return
    found = existing_outputs(out_dir)
    if not found:
        return
    ckpt = os.path.join(out_dir, "checkpoint.npz")
    if resume_path is None and "checkpoint.npz" in found:
        how = f"continue it with `fastcap train --resume {ckpt}`, pass --overwrite to replace it, "
    else:
        how = "pass --overwrite to replace them, "
    raise RunDirError(f"{out_dir} already holds a run ({', '.join(found)}), which this run would "
                      f"replace; {how}or choose another --out")


def prepare_out_dir(out_dir, resume_path=None, overwrite=False, inputs=()):
    """With the lock held: check again, remove what --overwrite replaces and stale temporaries.

    No file the run reads (the checkpoint it resumes or starts from) is ever removed,
    whatever its name (a kill before the first save would lose it). Returns the names of
    the files removed.
    """
    inputs = {"checkpoint it resumes": resume_path, **dict(inputs)}
    check_out_dir(out_dir, resume_path, overwrite, inputs)
    removed = []
    if overwrite and not owns(out_dir, resume_path):
        for name in existing_outputs(out_dir):
            path = os.path.join(out_dir, name)
            os.unlink(path)
            removed.append(name)
    for path in files.temporaries(out_dir, OUTPUT_FILES):
        try:
            os.unlink(path)
            removed.append(os.path.basename(path))
        except FileNotFoundError:  # pragma: no cover
            pass
    return removed


def inference_checkpoint(path):
    """(checkpoint file, note) of what a command that uses a model (caption, sample, evaluate,
    show, fastcap.load_captioner) reads for ``path``: a file as it is (note None); a run
    folder's BEST_NAME where there is one, else its LAST_NAME, with a note saying which.
    A folder holding neither is returned as it is (the loader says what is missing)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return path, None
    best, last = os.path.join(path, BEST_NAME), os.path.join(path, LAST_NAME)
    if os.path.lexists(best):
        return best, (f"run folder {path}: reading {BEST_NAME} (its best epoch by the run's "
                      f"--best-metric; {LAST_NAME} is its last)")
    if os.path.lexists(last):
        return last, f"run folder {path}: reading {LAST_NAME} (it has no {BEST_NAME})"
    return path, None


def default_out_dir():
    """``runs/fastcap-<local time>``: where a new run goes without --out."""
    return os.path.join("runs", datetime.datetime.now().strftime("fastcap-%Y%m%d-%H%M%S"))
