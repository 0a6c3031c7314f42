"""How to install fastcap and its extras, said once for every message, help text and doc.

The distribution's name (``fastcap-rnn`` on PyPI) is declared in
``fastcap.runtime.names``.
"""
from .names import DISTRIBUTION

__all__ = ["install_hint"]


def install_hint(extra):
    """The two install lines of an extra: by name, and from a source checkout."""
    return f'pip install "{DISTRIBUTION}[{extra}]" (from a checkout: pip install ".[{extra}]")'
