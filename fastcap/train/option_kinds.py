"""``Kind``: a number option's type and range, one declaration for the command line's parser,
``check_options`` and the checkpoint schema (fastcap.train.options declares the options)."""
import argparse
import dataclasses
import math
import numbers

__all__ = ["Kind"]


@dataclasses.dataclass(frozen=True)
class Kind:
    """A number type and its range: ``convert`` (int or float) parses the command line's text,
    ``ok`` accepts a value in [lo, hi] (``open_lo``, ``open_hi``: that end excluded; hi None: unbounded;
    floats must be finite), ``expected`` names what is accepted (in both the parser's and
    check_options' errors). The checkpoint schema checks the same ranges."""

    convert: type
    lo: object
    hi: object = None
    open_lo: bool = False
    open_hi: bool = False

    @property
    def expected(self):
        what, show = ("an integer", str) if self.convert is int else ("a number", "{:g}".format)
        if self.hi is None:
            return f"{what} {'>' if self.open_lo else '>='} {show(self.lo)}"
        return (f"{what} in {'(' if self.open_lo else '['}{show(self.lo)}, {show(self.hi)}"
                f"{')' if self.open_hi else ']'}")

    def ok(self, value):
        if isinstance(value, bool):
            return False
        if self.convert is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if value < self.lo or (self.open_lo and value == self.lo):
            return False
        return self.hi is None or value < self.hi or (value == self.hi and not self.open_hi)

    def argtype(self):
        def parse(text):
            try:
                value = self.convert(text)
            except ValueError:
                value = None
            if value is None or not self.ok(value):
                raise argparse.ArgumentTypeError(f"expected {self.expected}, got {text!r}")
            return value

        return parse
