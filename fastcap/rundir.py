"""The run directory of ``fastcap train``: who may write it and what it may replace.

Three rules, so that no run is overwritten, mixed with another or lost:

* **One run at a time.** A run holds an exclusive lock (``flock``) on
  ``DIR/.fastcap.lock`` from before its first write to its end; the file
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
  refused, --overwrite or not (fastcap._atomic).
* **Killed runs leave no debris.** A SIGKILL during an atomic write leaves
  its temporary file (``.checkpoint.npz.XXXX.tmp``); the next run on the
  directory, holding the lock, removes those of the files it writes.
"""
import datetime
import fcntl
import json
import os
import socket
import stat
import sys

from . import _atomic

__all__ = ["OUTPUT_FILES", "LOCK_NAME", "RunDirError", "RunLock", "check_out_dir",
           "prepare_out_dir", "default_out_dir"]

# Every file a training run writes into its directory.
OUTPUT_FILES = ("checkpoint.npz", "config.json", "history.json", "loss.png", "metrics.json",
                "samples.txt", "samples.json", "best.npz")
LOCK_NAME = ".fastcap.lock"


class RunDirError(ValueError):
    """The run directory cannot be used: in use by another run, or holding another run's files."""


class RunLock:
    """An exclusive lock on a run directory, held from ``acquire()`` to ``release()``."""

    def __init__(self, directory):
        self.directory = os.path.realpath(os.fspath(directory))
        self.path = os.path.join(self.directory, LOCK_NAME)
        self._fd = None

    def acquire(self):
        os.makedirs(self.directory, exist_ok=True)
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunDirError(f"{self.directory} is in use by another fastcap run ({holder}); "
                                  "wait for it to end or choose another directory") from None
            # A releasing holder unlinks the file after we opened it: then our
            # lock is on a file nobody else will see, so take it again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                "command": " ".join(["fastcap", *sys.argv[1:]])[:500]}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        return self

    def _open(self):
        """The lock file, opened without following a link and only if it is a regular file
        with no other name: the holder's record is written into it in place."""
        _atomic.check_special(self.path, "the run lock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:  # ELOOP: made a link since the check
            raise RunDirError(f"cannot open the run lock {self.path} ({exc.strerror}); fastcap "
                              "writes only regular files of its own") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = "a hard link to another file" if stat.S_ISREG(st.st_mode) else "not a regular file"
            raise RunDirError(f"the run lock {self.path} is {what}, which fastcap would rewrite; "
                              "remove it")
        return fd

    def release(self):
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:  # pragma: no cover - removed by hand
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd):
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return (f"pid {info['pid']} on {info['host']}, started {info['started']}: "
                f"{info['command']}")
    except (ValueError, KeyError, TypeError, OSError):
        return "its holder did not say who it is"


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


def check_out_dir(out_dir, resume_path=None, overwrite=False):
    """Raise RunDirError if a run on ``out_dir`` would replace files it does not own."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise RunDirError(f"--out {out_dir} is not a directory")
    for name in existing_outputs(out_dir):
        _atomic.check_special(os.path.join(out_dir, name), f"--out {out_dir}: {name}")
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


def prepare_out_dir(out_dir, resume_path=None, overwrite=False):
    """With the lock held: check again, remove what --overwrite replaces and stale temporaries.

    The checkpoint being resumed is never removed, whatever its name (a kill before
    the first save would lose the run). Returns the names of the files removed.
    """
    check_out_dir(out_dir, resume_path, overwrite)
    removed = []
    if overwrite and not owns(out_dir, resume_path):
        for name in existing_outputs(out_dir):
            path = os.path.join(out_dir, name)
            if resume_path is not None and _atomic.same_file(path, resume_path):
                raise RunDirError(f"--overwrite would remove {path}, the checkpoint this run "
                                  "resumes; copy it elsewhere first, or resume without --overwrite")
            os.unlink(path)
            removed.append(name)
    for path in _atomic.temporaries(out_dir, OUTPUT_FILES):
        try:
            os.unlink(path)
            removed.append(os.path.basename(path))
        except FileNotFoundError:  # pragma: no cover
            pass
    return removed


def default_out_dir():
    """``runs/fastcap-<local time>``: where a new run goes without --out."""
    return os.path.join("runs", datetime.datetime.now().strftime("fastcap-%Y%m%d-%H%M%S"))
