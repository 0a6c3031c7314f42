"""Ctrl-C (and SIGTERM) during training: the guard that lets a training step finish, and the exception a stopped run raises.

SIGTERM, what ``kill``, systemd, Slurm and Kubernetes send before SIGKILL,
is treated as a Ctrl-C (SIGINT): the work since the last epoch end is saved.
The first Ctrl-C during a training step lets the step finish (a half-applied
update would not be resumable), then the run saves a checkpoint and stops
with ``TrainingInterrupted``; a Ctrl-C anywhere else (evaluation, saving)
stops at once, saving the state after the last whole step. A second Ctrl-C
during a step stops at once without saving; the last epoch's checkpoint is
left as it was.
"""
import signal
import threading

__all__ = ["TrainingInterrupted", "InterruptGuard", "SIGNALS"]

# The signals that stop a run the way Ctrl-C does.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """A run stopped early (Ctrl-C or SIGTERM); ``checkpoint`` is where its state is, or None;
    ``signum`` the signal that stopped it (the command exits with 128 + signum)."""

    def __init__(self, message, checkpoint, iteration, epoch, signum=signal.SIGINT):
        super().__init__(message)
        self.checkpoint, self.iteration, self.epoch = checkpoint, iteration, epoch
        self.signum = signum


class InterruptGuard:
    """Turns the first SIGINT or SIGTERM during a training step into a request to stop after it.

    always_defer (data-parallel runs): the first signal anywhere is a request,
    which the ranks agree on in the next step, so that they all stop after it.
    ``signum``: the first signal received (SIGINT until one is).
    """

    def __init__(self, always_defer=False):
        self.always_defer = always_defer
        self.in_step = False
        self.requested = False
        self.signum = signal.SIGINT
        self._received = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}

    def _handle(self, signum, frame):
        if not self._received:
            self._received, self.signum = True, signal.Signals(signum)
        if (self.in_step or self.always_defer) and not self.requested:
            self.requested = True
        else:
            raise KeyboardInterrupt
