"""How the Numba backend compiles: lazily, cached on disk unless told not to (its modules share this).

``FASTCAP_NUMBA_CACHE=0`` turns the cache off; so does ``NUMBA_BOUNDSCHECK=1``,
so that a bounds-checked run really compiles with bounds checks instead of
reusing an unchecked cached build. ``error_model="numpy"``: a division by zero
gives inf/nan as in NumPy instead of a Python exception check in every loop.
"""
import numba

from ..runtime import env

CACHE_ENV_VAR = "FASTCAP_NUMBA_CACHE"


def _cache_enabled():
    # A cached build does not record whether it was bounds-checked, so a
    # bounds-checked run must compile afresh.
    if numba.config.BOUNDSCHECK:
        return False
    return env.read(CACHE_ENV_VAR)


CACHE = _cache_enabled()
OPTIONS = dict(cache=CACHE, error_model="numpy")


def jit(fn):
    """Lazy (no signature) njit: compiles on first call, never at import."""
    return numba.njit(**OPTIONS)(fn)
