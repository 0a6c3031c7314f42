"""Every file fastcap writes goes through here: vetted, then written atomically.

The rules (one mechanism for checkpoints, JSON, images, samples, the directory
lock and data files):

* paths are resolved to real paths (a symlinked directory is the directory);
* a file fastcap creates is never written through a symbolic link, and a
  target that is not a regular file (a link, directory, FIFO, device,
  socket) is refused: ``check_special``, run by ``atomic_write`` itself;
* an input of the same command is never replaced (``check_target``'s ``inputs``);
* what fastcap did not write is replaced only with ``overwrite`` (the caller's
  --overwrite), and the refusal says what would be replaced;
* a reader (or a crash) sees either the old file or the complete new one, never
  a half-written file under the final name (``atomic_write``).
"""
import datetime
import fcntl
import json
import os
import socket
import stat
import sys
import tempfile

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_h5", "temporaries", "check_special",
           "check_target", "real_path", "same_file", "UnsafeOutputError", "DirectoryLock",
           "LockError", "LOCK_NAME"]

LOCK_NAME = ".fastcap.lock"  # DirectoryLock's file


class UnsafeOutputError(ValueError):
    """A path fastcap was asked to write that it must not write (see the module docstring)."""


def real_path(path):
    """Absolute path with its directories' symbolic links resolved; the last name is kept as is
    (a link there is the file fastcap would replace, not one to follow)."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(os.path.realpath(directory), name)


def _kind(mode):
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def check_special(path, what="the output"):
    """Raise UnsafeOutputError if ``path`` exists and is not a regular file; returns its
    os.lstat result (None when absent). Never follows a final symbolic link, never opens it
    (opening a FIFO would block)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeOutputError(f"{what} {path} is {_kind(st.st_mode)}; fastcap writes only "
                                "regular files of its own: remove it or choose another name")
    return st


def same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file (following links; False if either is absent)."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_target(path, *, what, inputs=(), overwrite=False, ours=None, flag="--overwrite"):
    """Vet ``path`` as a file fastcap is about to write; returns its real path (``real_path``).

    what: how the user named it ("--json FILE"); inputs: paths this command
    reads, never replaced; ours(path) -> bool: whether an existing regular
    file is one fastcap wrote (replaced freely); otherwise replacing it needs
    ``overwrite``. Raises UnsafeOutputError or FileExistsError saying why.
    """
    real = real_path(path)
    st = check_special(real, what)
    if st is None:
        return real
    for source in inputs:
        if source is not None and same_file(real, source):
            raise UnsafeOutputError(f"{what} {path} is {source}, an input of this command; "
                                    "fastcap never replaces its inputs: choose another name")
    if not overwrite and not (ours is not None and ours(real)):
        raise FileExistsError(f"{what} {path} exists ({st.st_size:,} bytes) and is not a file "
                              f"fastcap wrote; pass {flag} to replace it, or choose another name")
    return real


_SUFFIX = ".tmp"


def temporaries(directory, names):
    """Paths of the temporary files that writes of ``names`` into ``directory`` left behind.

    ``atomic_write`` removes its temporary file on any exception, but a process
    killed (SIGKILL, power loss) while writing leaves it; only call this while
    no other process can be writing these names (fastcap.train.rundir holds a lock).
    """
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    prefixes = tuple(f".{name}." for name in names)
    return [os.path.join(directory, e) for e in sorted(entries)
            if e.startswith(prefixes) and e.endswith(_SUFFIX)]


def _fsync(fd):
    os.fsync(fd)


def _fsync_dir(directory):
    # Makes the rename itself durable; not every platform has directory fds.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Write ``path`` atomically and return its absolute path.

    ``write(tmp_path)`` fills a temporary file in the same directory, which is
    then fsync'ed and renamed over ``path``. On any exception (including
    KeyboardInterrupt) the temporary file is removed and an existing ``path``
    is left untouched. A ``path`` that exists and is not a regular file (a
    symbolic link included) raises UnsafeOutputError (``check_special``).
    """
    path = real_path(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    check_special(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # the bytes are durable before the rename
            _fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)
    return path


def atomic_write_text(path, text):
    """Write the string ``text`` (UTF-8) to ``path`` atomically; returns the absolute path."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_h5(path, datasets):
    """Write the arrays of ``datasets`` (name -> array) as an HDF5 file at ``path``
    atomically; returns the absolute path."""
    import h5py  # imported here: writing text needs only the standard library

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            for name, array in datasets.items():
                f.create_dataset(name, data=array)

    return atomic_write(path, write)


class LockError(ValueError):
    """A directory another fastcap process is writing (or whose lock file fastcap cannot use)."""


class DirectoryLock:
    """An exclusive lock on a directory fastcap writes (a training run's, make-data's), held from
    ``acquire()`` to ``release()``: ``flock`` on ``DIR/.fastcap.lock``, which names the holder
    (pid, host, start time, command). The kernel releases it when the process dies, so a
    killed holder never leaves a stale lock."""

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
                raise LockError(f"{self.directory} is in use by another fastcap run ({holder}); "
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
        check_special(self.path, "the run lock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:  # ELOOP: made a link since the check
            raise LockError(f"cannot open the run lock {self.path} ({exc.strerror}); fastcap "
                            "writes only regular files of its own") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = "a hard link to another file" if stat.S_ISREG(st.st_mode) else "not a regular file"
            raise LockError(f"the run lock {self.path} is {what}, which fastcap would rewrite; "
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
