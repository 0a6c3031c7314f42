"""Progress output: a tqdm bar on a terminal, a plain line now and then in a log.

``fastcap train > log 2>&1`` used to write the bar's carriage-return redraws
into the file, thousands of them (300 KB for a one-minute run). When the
stream is not a terminal, ``bar`` returns a ``LogProgress`` instead, which
writes one whole line every ``LOG_EVERY`` seconds and one at the end, as pip
and Lightning do in logs.
"""
import sys
import time

LOG_EVERY = 30.0  # seconds between the lines of a log


def bar(total, initial=0, desc="", unit="it", file=None, **tqdm_kwargs):
    """A progress bar on `file` (default stderr): tqdm on a terminal, else LogProgress."""
    file = sys.stderr if file is None else file
    if tqdm_kwargs.get("disable"):
        return LogProgress(total, initial, desc, unit, None)
    isatty = getattr(file, "isatty", None)
    if isatty is not None and isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=file, **tqdm_kwargs)
    return LogProgress(total, initial, desc, unit, file)


class LogProgress:
    """tqdm's update / set_postfix_str / close, as a line every LOG_EVERY seconds (file None:
    silent)."""

    def __init__(self, total, initial, desc, unit, file, every=None):
        self.total, self.n, self.desc, self.unit, self.file = total, initial, desc, unit, file
        self.every = LOG_EVERY if every is None else every
        self.postfix = ""
        self._last = time.monotonic()
        self._written = None

    def write(self, msg, file=None):
        """A line of other output (tqdm.write's signature): in a log, just the line."""
        out = file if file is not None else self.file or sys.stderr
        out.write(msg + "\n")
        out.flush()

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def update(self, n=1):
        self.n += n
        if time.monotonic() - self._last >= self.every:
            self._line()

    def _line(self):
        self._last = time.monotonic()
        if self._written == self.n or self.file is None:
            return
        self._written = self.n
        extra = f", {self.postfix}" if self.postfix else ""
        self.file.write(f"{self.desc}: {self.n}/{self.total} {self.unit}{extra}\n")
        self.file.flush()

    def close(self):
        self._line()
