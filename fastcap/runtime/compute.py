"""How one call computes: the backend's kernels and the precision of its products, resolved once.

Each public entry point (the layers, ``CaptioningRNN.loss``/``sample``/``initial_hidden``,
the update rules, beam search) calls ``resolve()`` once and hands the answer down;
the orchestration under it (``fastcap.model.sequence``, decoding) reads no global.
"""
from typing import NamedTuple

from . import backends, precision

__all__ = ["Compute", "resolve"]


class Compute(NamedTuple):
    """The kernels of one backend and whether its float32 products run in bfloat16."""

    kernels: object  # a backend's kernel namespace (fastcap.runtime.backends.load)
    bf16: bool  # float32 products read bf16-rounded operands (fastcap.runtime.precision)


def resolve():
    """The active backend and precision mode, as one call will compute with them."""
    kernels = backends.kernels()
    return Compute(kernels, precision.bf16_products(kernels.name))
