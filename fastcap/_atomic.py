"""Atomic file writes, shared by checkpoints and the data generator.

A reader (or a crash) sees either the old file or the complete new one, never
a half-written file under the final name.
"""
import os
import tempfile

__all__ = ["atomic_write", "atomic_write_text", "temporaries"]


_SUFFIX = ".tmp"


def temporaries(directory, names):
    """Paths of the temporary files that writes of ``names`` into ``directory`` left behind.

    ``atomic_write`` removes its temporary file on any exception, but a process
    killed (SIGKILL, power loss) while writing leaves it; only call this while
    no other process can be writing these names (fastcap.rundir holds a lock).
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
    is left untouched.
    """
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
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
