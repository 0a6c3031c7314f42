"""Ctrl-C during training: the guard that lets a training step finish, and the exception a stopped run raises.

The first Ctrl-C during a training step lets the step finish (a half-applied
update would not be resumable), then the run saves a checkpoint and stops
with ``TrainingInterrupted``; a Ctrl-C anywhere else (evaluation, saving)
stops at once, saving the state after the last whole step. A second Ctrl-C
during a step stops at once without saving; the last epoch's checkpoint is
left as it was.
"""
import signal
import threading

__all__ = ["TrainingInterrupted", "InterruptGuard"]


class TrainingInterrupted(Exception):
    """A run stopped early (Ctrl-C); ``checkpoint`` is where its state is, or None."""

    def __init__(self, message, checkpoint, iteration, epoch):
        super().__init__(message)
        self.checkpoint, self.iteration, self.epoch = checkpoint, iteration, epoch


class InterruptGuard:
    """Turns the first SIGINT during a training step into a request to stop after it.

    always_defer (data-parallel runs): the first SIGINT anywhere is a request,
    which the ranks agree on in the next step, so that they all stop after it.
    """

    def __init__(self, always_defer=False):
        self.always_defer = always_defer
        self.in_step = False
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        if (self.in_step or self.always_defer) and not self.requested:
            self.requested = True
        else:
            raise KeyboardInterrupt
