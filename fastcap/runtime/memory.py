"""Memory: what an allocation needs, checked against what the machine has, before it is made.

An allocation that cannot be had ends in ``OutOfMemory`` (a MemoryError)
saying what was being allocated, how much, and which option or file asked
for it, never in a bare MemoryError reported as a bug in fastcap.
"""
import contextlib
import os

__all__ = ["OutOfMemory", "available_memory", "address_space_left", "reserve", "allocating", "format_bytes"]


class OutOfMemory(MemoryError):
    """An allocation larger than the memory available; the message names its source."""


def format_bytes(n):
    """``n`` bytes as a short human size ("1.5 GiB")."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} bytes" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return None  # pragma: no cover


def available_memory():
    """Bytes of memory this process could still allocate, or None where nothing says: the
    least of the machine's available memory (Linux MemAvailable, else free physical pages),
    what the address-space limit (ulimit -v) leaves, and what the cgroup's memory limit
    (a container's, systemd's) leaves."""
    left = [n for n in (_machine_available(), address_space_left(), _cgroup_left()) if n is not None]
    return max(0, min(left)) if left else None


def _machine_available():
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # pragma: no cover
        return None


def address_space_left():
    """What RLIMIT_AS leaves beyond the address space in use (/proc/self/status VmSize)."""
    try:
        import resource  # POSIX only
    except ImportError:  # pragma: no cover
        return None
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status", "rb") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith(b"VmSize:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return soft - used


def _cgroup_left():
    """What this process's cgroup v2 memory.max leaves beyond its memory.current."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
        base = os.path.join("/sys/fs/cgroup", path.lstrip("/"))
        with open(os.path.join(base, "memory.max")) as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(os.path.join(base, "memory.current")) as f:
            return int(limit) - int(f.read().strip())
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def reserve(nbytes, what, source):
    """Raise OutOfMemory unless ``nbytes`` (what: e.g. "the model's parameters"; source:
    the option or file that asked for it) fit in the available memory."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise OutOfMemory(f"{what} would need {format_bytes(nbytes)} ({source}), more than the "
                          f"{format_bytes(available)} of memory available")


@contextlib.contextmanager
def allocating(what, source, nbytes=None):
    """Check ``nbytes`` (if known) with ``reserve``, and turn a MemoryError raised inside
    into OutOfMemory naming ``what`` and ``source``."""
    if nbytes is not None:
        reserve(nbytes, what, source)
    try:
        yield
    except OutOfMemory:
        raise
    except MemoryError as exc:
        detail = str(exc) or "out of memory"
        raise OutOfMemory(f"out of memory allocating {what} ({source}): {detail}") from None
