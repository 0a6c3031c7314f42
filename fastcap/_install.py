"""How to install fastcap and its extras, said once for every message, help text and doc.

The distribution is ``fastcap-rnn`` on PyPI (``fastcap`` there is an unrelated
screen-capture tool); the package imported and the command stay ``fastcap``,
as scikit-learn installs ``sklearn``.
"""
__all__ = ["DISTRIBUTION", "install_hint"]

DISTRIBUTION = "fastcap-rnn"


def install_hint(extra):
    """The two install lines of an extra: by name, and from a source checkout."""
    return f'pip install "{DISTRIBUTION}[{extra}]" (from a checkout: pip install ".[{extra}]")'
