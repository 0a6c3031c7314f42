"""The command's standard output and error when their reader may go away (``| head``).

A command whose work is files (train, prepare, make-data, show) keeps working with the
log gone: what it writes to a closed stream goes to /dev/null from then on, and its exit
status is its work's. A command whose product is what it prints (sample, caption,
evaluate without a --json file, info) cannot do its work then: ``main`` exits with 141
(128 + SIGPIPE), as ``cat`` does, not 0. Either way a broken pipe is never success by
default, and never a traceback.
"""
import os

__all__ = ["Tolerant", "SIGPIPE_STATUS"]

SIGPIPE_STATUS = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


class Tolerant:
    """A text stream that survives its reader going away: the first BrokenPipeError sends
    the stream's file descriptor to /dev/null (so Python's own flush at exit finds nothing to
    complain about) and sets ``broken``; later writes are dropped."""

    def __init__(self, stream):
        self._stream, self.broken = stream, False

    def write(self, text):
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self):
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self):
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, AttributeError, ValueError):  # a stream without a file descriptor
            pass

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)
