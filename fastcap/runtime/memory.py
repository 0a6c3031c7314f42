"""Memory: what an allocation needs, checked against what the machine has, before it is made.

An allocation that cannot be had ends in ``OutOfMemory`` (a MemoryError)
saying what was being allocated, how much, and which option or file asked
for it, never in a bare MemoryError reported as a bug in fastcap.
"""
import contextlib
import os

__all__ = ["OutOfMemory", "available_memory", "reserve", "allocating", "format_bytes"]


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
    """Bytes of memory this process could still allocate (Linux MemAvailable, else free
    physical pages), or None where the platform does not say."""
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
