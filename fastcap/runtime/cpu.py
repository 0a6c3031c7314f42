"""The CPU this process runs on, as the OS reports it: feature flags, model name, usable cores.

What /proc/cpuinfo says (empty or the platform's answer elsewhere). Whether the
OS also lets a process use a feature (AVX-512 state, the AMX tiles) is asked by
the compiled backend itself (``cpu_has_*``, ``fastcap.runtime.backends.cpu_runs``).
"""
import os
import platform

__all__ = ["flags", "model", "usable_cores"]


def _cpuinfo(key):
    """The value of the first `key` line of /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def flags():
    """The CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    text = _cpuinfo("flags")
    return [] if text is None else text.split()


def model():
    """The CPU's model name (/proc/cpuinfo, else what the platform says)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def usable_cores():
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
