"""Data-parallel training over MPI (mpi4py), equal to one process with the combined batch.

Pattern (Horovod's): every rank holds the whole model and draws the same
global minibatch from the same RNG state; rank r computes the loss and
gradients of its contiguous slice ``[N r / K, N (r + 1) / K)`` of it, scaled
by ``n_r / N`` (``CaptioningRNN.loss`` averages over its own ``n_r``
captions, so the scaled slices add up to the loss of the global batch, not to
an average of per-rank averages); one in-place ``Allreduce`` of a single flat
buffer sums them; every rank applies the same update, so the parameters stay
identical. The buffer (model dtype) is::

    [ gradients of every parameter, flattened, in model.params order | loss | stop | failed ]

``stop`` counts ranks that saw a Ctrl-C, ``failed`` ranks whose slice raised:
both decisions then reach every rank in the same step, so all ranks stop, or
fail, after the same iteration instead of some waiting forever in the next
collective.

Faults outside a step (a rank's own error anywhere else, a killed rank):
``rank_guard`` prints the rank's error and calls ``MPI_Abort``, which ends
every rank; mpiexec ends the job when a rank is killed.

mpi4py is optional (the ``[mpi]`` extra, ``fastcap.runtime.install``); this module imports it
only when a communicator is used. ``FASTCAP_TEST_FAULT`` (tests only) makes a
rank fail on purpose: ``RANK:ITERATION`` raises in that training step,
``RANK:eval`` raises in the epoch-end evaluation, ``RANK:ITERATION:kill``
kills the process with SIGKILL.
"""
import contextlib
import hashlib
import os
import signal
import sys
import time

import numpy as np

from . import metrics as _metrics
from .evaluation import caption_loss, generate
from ..data.stream import StreamedFeatures, rows
from ..runtime import env as _env, threads as _threads
from ..runtime.install import install_hint

__all__ = ["RankError", "MPI_INSTALL_HINT", "launched_size", "world", "share", "DataParallel",
           "agree", "digest", "all_or_none", "rank_guard", "rank_threads", "evaluate", "is_root", "describe_mpi"]

MPI_INSTALL_HINT = f"{install_hint('mpi')}: mpi4py and the MPICH runtime"
FAULT_ENV = "FASTCAP_TEST_FAULT"
# The number of processes mpiexec started, as the launchers announce it:
# MPICH and Intel MPI (Hydra's PMI; Slurm's PMI too), Open MPI.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
# Trailing slots of the flat buffer after the gradients.
_LOSS, _STOP, _FAILED = -3, -2, -1


class RankError(RuntimeError):
    """Another rank failed; the message names it and carries its error."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"distributed training needs mpi4py: {MPI_INSTALL_HINT} ({exc})") from exc
    return MPI


def launched_size():
    """How many processes mpiexec started this one with (None: not started by mpiexec)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit():
            return int(value)
    return None


def world():
    """MPI.COMM_WORLD when this process is one of K > 1 started by mpiexec, else None.

    Started by ``mpiexec -n K`` with K > 1 but without mpi4py: ImportError
    saying what to install (training alone on every rank would be K
    unrelated runs writing to one directory). ``mpiexec -n 1``: None, one
    process as without mpiexec.
    """
    size = launched_size()
    if size is None or size == 1:
        return None
    try:
        MPI = _mpi()
    except ImportError:
        raise ImportError(f"`fastcap train` was started by mpiexec with {size} processes, but "
                          f"mpi4py is not installed: {MPI_INSTALL_HINT}") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() != size:
        # An mpiexec of another MPI library than mpi4py's: every process is a world of its
        # own, and would train alone as "rank 0" into the same --out.
        raise RankError(f"mpiexec started {size} processes but mpi4py's MPI "
                        f"({' '.join(MPI.Get_library_version().split()[:3]).rstrip(',')}) sees a "
                        f"world of {comm.Get_size()}: the launcher and mpi4py come from different "
                        "MPI libraries; start fastcap with the mpiexec of the MPI mpi4py uses "
                        f"(with {MPI_INSTALL_HINT}: the mpiexec next to this Python)")
    return comm


def is_root(comm):
    """True on rank 0 and without a communicator: the process that prints and writes."""
    return comm is None or comm.Get_rank() == 0


def check_comm(comm):
    """``comm`` if it is an mpi4py intracommunicator, else TypeError naming what it is."""
    MPI = _mpi()
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD), got "
                        f"{type(comm).__name__}")
    return comm


def share(n, rank, size):
    """Rank ``rank``'s rows [lo, hi) of n rows split over ``size`` ranks.

    Contiguous, in rank order, sizes differing by at most one (the larger
    ones last); with n < size some ranks get none.
    """
    return n * rank // size, n * (rank + 1) // size


def _fault(comm, where):
    """Raise or die as FASTCAP_TEST_FAULT asks, on its rank at ``where`` (tests only)."""
    spec = _env.read(FAULT_ENV)
    if spec is None:
        return
    rank, at, *how = spec.split(":")
    if int(rank) == comm.Get_rank() and at == str(where):
        if how == ["kill"]:
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"{FAULT_ENV}: rank {rank} fails at {where} on purpose")


def _describe(exc):
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class DataParallel:
    """One model's gradients, summed over the ranks of ``comm`` once per step.

    ``loss_and_grads(model, features, captions, iteration)`` takes the global
    minibatch (N rows, the same on every rank) and returns ``(loss, grads)``
    of all N rows: what ``model.loss(features, captions)`` returns in one
    process, up to rounding (for float32 models, the loss is rounded to
    float32 too: it travels in the same buffer). ``grads`` are views into the
    flat buffer, valid until the next step.

    ``stop_requested`` (a callable, default never) is asked at every step;
    afterwards ``stop_agreed`` is True on every rank when it said yes on any.
    ``allreduce_seconds`` and ``allreduce_calls`` add up the time and the
    calls spent in the step's Allreduce; ``nbytes`` is the buffer's size.
    """

    def __init__(self, comm):
        self.comm = check_comm(comm)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.stop_requested = lambda: False
        self.stop_agreed = False
        self.allreduce_seconds, self.allreduce_calls = 0.0, 0
        self._layout = None  # ((name, shape, dtype), ...) the buffer was laid out for

    def bounds(self, n):
        """This rank's rows [lo, hi) of a global batch of n (slice sizes differ by at most 1)."""
        return share(n, self.rank, self.size)

    @property
    def nbytes(self):
        return 0 if self._layout is None else self._buffer.nbytes

    def _lay_out(self, params):
        layout = tuple((k, v.shape, v.dtype) for k, v in params.items())
        if layout == self._layout:
            return
        dtypes = {d for _, _, d in layout}
        if len(dtypes) != 1:
            raise TypeError(f"data-parallel training needs every parameter in one dtype, got "
                            f"{', '.join(sorted(map(str, dtypes)))}")
        sizes = [int(np.prod(s)) for _, s, _ in layout]
        self._buffer = np.zeros(sum(sizes) + 3, dtype=dtypes.pop())
        self._grads, a = {}, 0
        for (name, shape, _), n in zip(layout, sizes):
            self._grads[name] = self._buffer[a:a + n].reshape(shape)
            a += n
        self._layout = layout

    def broadcast_state(self, model, rng):
        """Give every rank rank 0's parameters and minibatch RNG state (before the first step).

        ``rng``: a RandomState, a Generator, or None for NumPy's global state.
        Without it, ranks seeded differently would train on different batches
        and drift apart without a word.
        """
        self._lay_out(model.params)
        flat = self._buffer[:_LOSS]
        if self.rank == 0:
            np.concatenate([v.ravel() for v in model.params.values()], out=flat)
        self.comm.Bcast(flat, root=0)
        for name, g in self._grads.items():
            model.params[name] = g.copy()
        if rng is None:
            np.random.set_state(self.comm.bcast(np.random.get_state(), root=0))
        elif isinstance(rng, np.random.RandomState):
            rng.set_state(self.comm.bcast(rng.get_state(), root=0))
        else:  # a Generator
            rng.bit_generator.state = self.comm.bcast(rng.bit_generator.state, root=0)

    def loss_and_grads(self, model, features, captions, iteration):
        return self.sum_slices(model, len(captions), iteration,
                               lambda lo, hi: model.loss(features[lo:hi], captions[lo:hi]))

    def sum_slices(self, model, n, iteration, slice_loss):
        """(loss, grads) of a global batch of n rows (captions, or images of self-critical
        training) from ``slice_loss(lo, hi)``, the (loss, grads) averaged over this rank's
        rows [lo, hi): each scaled by its share of the n, summed over the ranks."""
        self._lay_out(model.params)
        MPI = _mpi()
        buf = self._buffer
        lo, hi = self.bounds(n)
        error = None
        try:
            _fault(self.comm, iteration)
            loss, grads = slice_loss(lo, hi)
            w = (hi - lo) / n
            for name, g in self._grads.items():
                np.multiply(grads[name], w, out=g)
            buf[_LOSS] = loss * w
            buf[_FAILED] = 0
        except Exception as exc:  # reported by every rank below, after the Allreduce
            error = exc
            buf[:] = 0
            buf[_FAILED] = 1
        buf[_STOP] = 1 if self.stop_requested() else 0
        t0 = time.perf_counter()
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        self.allreduce_seconds += time.perf_counter() - t0
        self.allreduce_calls += 1
        if buf[_FAILED]:
            self._fail(error, f"iteration {iteration}")
        self.stop_agreed = bool(buf[_STOP])
        return float(buf[_LOSS]), self._grads

    def _fail(self, error, where):
        messages = self.comm.allgather(None if error is None else _describe(error))
        raise _agreed(error, messages, where, self.comm)


# The errors every rank raises alike, recorded for the rank_guard blocks that are running
# (innermost last): an error raised by all ranks ends the others quietly instead of aborting.
_agreed_errors = []


def agreed_by_all_ranks(exc):
    """Whether ``exc`` is an error every rank raised alike (recorded inside a rank_guard)."""
    return any(e is exc for scope in _agreed_errors for e in scope)


def _all_ranks(error):
    if _agreed_errors:
        _agreed_errors[-1].append(error)
    return error


def _agreed(error, messages, where, comm):
    """The exception every rank raises once they know which ranks failed."""
    if error is None or comm.Get_rank() != 0:
        # Rank 0 re-raises its own error, to be reported as in one process.
        error = _rank_error(messages, where, comm.Get_size())
    return _all_ranks(error)


def _rank_error(messages, where, size):
    failed = [r for r, m in enumerate(messages) if m is not None]
    r = failed[0]
    others = f" (and rank{'s' if len(failed) > 2 else ''} {', '.join(map(str, failed[1:]))})" \
        if len(failed) > 1 else ""
    return RankError(f"rank {r} of {size}{others} failed at {where}: {messages[r]}")


def agree(comm, facts):
    """Raise RankError on every rank unless every rank of ``comm`` has the same ``facts``.

    facts: name -> a small picklable value (a setting, a size, a digest of data) that must be
    equal on every rank for data-parallel training; ranks given different data or options
    would otherwise exchange buffers of different sizes and hang in the collectives, or
    train different models in lockstep. The error names the first rank that differs from
    rank 0, the other ranks that do, and what differs. ``facts`` may be a function giving
    them, called only when there are ranks (its digests read data: a grid file's images).
    """
    if comm is None:
        return
    everyone = comm.allgather(facts() if callable(facts) else facts)
    root = everyone[0]
    differ = {r: [k for k in sorted(set(f) | set(root), key=str) if f.get(k) != root.get(k)]
              for r, f in enumerate(everyone)}
    differ = {r: keys for r, keys in differ.items() if keys}
    if not differ:
        return
    r, keys = next(iter(differ.items()))
    others = sorted(differ)[1:]
    detail = "; ".join(f"{k} is {_short(everyone[r].get(k))} there and {_short(root.get(k))} "
                       "on rank 0" for k in keys[:3]) + ("; ..." if len(keys) > 3 else "")
    error = RankError(
        f"rank {r} of {comm.Get_size()}"
        + (f" (and rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))})"
           if others else "")
        + f" differs from rank 0 in what data-parallel training needs equal on every rank: "
        f"{detail}")
    raise _all_ranks(error)


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def digest(*arrays):
    """A short hex digest of arrays' dtypes, shapes and bytes (for ``agree``)."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def all_or_none(comm, fn, where="setup"):
    """``fn()`` on every rank; if it raises on any, it raises on every rank.

    Rank 0 re-raises its own error, if it had one, and the other ranks a
    RankError; so a setup error (bad data on one host, say) ends all ranks
    alike instead of leaving the others waiting in the first collective.
    """
    if comm is None:
        return fn()
    result = error = None
    try:
        result = fn()
    except Exception as exc:
        error = exc
    messages = comm.allgather(None if error is None else _describe(error))
    if any(m is not None for m in messages):
        raise _agreed(error, messages, where, comm)
    return result


@contextlib.contextmanager
def rank_guard(comm, collective=lambda exc: False):
    """Run a rank's part of a job so that no failure leaves other ranks waiting.

    Errors every rank raised alike (those agreed on in a step or by
    ``all_or_none``, and those for which ``collective(exc)`` is true)
    propagate on rank 0, which reports them, and end the other ranks quietly
    with exit status 1 (128 + the signal for an interrupt: 130 for SIGINT).
    Anything else is this rank's alone: it prints ``fastcap: error: rank r of
    K: ...`` to stderr and aborts the job (MPI_Abort ends every rank).
    """
    if comm is None or comm.Get_size() == 1:
        yield
        return
    rank, size = comm.Get_rank(), comm.Get_size()
    _agreed_errors.append([])
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        if agreed_by_all_ranks(exc) or collective(exc):
            if rank == 0:
                raise
            interrupted = isinstance(exc, KeyboardInterrupt) or "Interrupt" in type(exc).__name__
            raise SystemExit(128 + int(getattr(exc, "signum", 2)) if interrupted else 1) from None
        print(f"fastcap: error: rank {rank} of {size}: {' '.join(_describe(exc).split())}; "
              "aborting every rank", file=sys.stderr, flush=True)
        comm.Abort(130 if isinstance(exc, KeyboardInterrupt) else 1)
    finally:
        _agreed_errors.pop()


def rank_threads(comm, threads=None):
    """Threads for each rank: ``threads`` if given, else this host's cores over its ranks.

    Applied with fastcap.set_num_threads (BLAS and fastcap's engine), unless
    FASTCAP_NUM_THREADS is set (then that). Returns the count in force.
    """
    if threads is None and os.environ.get(_threads.ENV_VAR, "").strip():
        return _threads.get_num_threads()
    if threads is None:
        local = comm.Split_type(_mpi().COMM_TYPE_SHARED).Get_size() if comm is not None else 1
        threads = (os.cpu_count() or 1) // local
        if hasattr(os, "sched_getaffinity"):  # a rank bound to fewer cores gets no more threads
            threads = min(threads, len(os.sched_getaffinity(0)))
        threads = max(1, threads)
    _threads.set_num_threads(threads)
    return threads


def data_facts(data):
    """Digests of a run's data dict for ``agree``; streamed grid features by their
    fingerprint (reading every image would read the whole file)."""
    facts = {}
    for split in ("train", "val"):
        for part in ("captions", "image_idxs", "features"):
            x = data[f"{split}_{part}"]
            facts[f"data {split}_{part}"] = (x.fingerprint() if isinstance(x, StreamedFeatures)
                                             else digest(x))
    facts["data vocabulary"] = digest(np.array(data["idx_to_word"]))
    return facts


def evaluate(comm, model, data, image_ids, captions, features, max_length):
    """Validation loss and caption metrics, each rank decoding its share of the images.

    captions/features: the reference captions (rows) and their image
    features whose mean loss is the validation loss; image_ids: the images
    to caption. Every rank returns the same (val_loss, metrics dict); rank 0
    scores the gathered captions (COCO's scorers run in one process).
    """

    K, r = comm.Get_size(), comm.Get_rank()
    n = captions.shape[0]
    a, b = share(n, r, K)
    local = caption_loss(model, captions[a:b], rows(features, np.arange(a, b))) * (b - a) \
        if b > a else 0.0
    val_loss = comm.allreduce(local) / n
    _fault(comm, "eval")
    ids, references = _metrics.references_by_image(data, "val", image_ids)
    a, b = share(len(ids), r, K)
    mine = generate(model, rows(data["val_features"], ids[a:b]), 1, max_length)
    parts = comm.gather(mine, root=0)
    m = None
    if r == 0:
        candidates = _metrics.decode_for_metrics(np.concatenate(parts), data["idx_to_word"])
        m = _metrics.caption_metrics(references, candidates)
    return val_loss, comm.bcast(m, root=0)


def describe_mpi():
    """One line for ``fastcap info``: the MPI library mpi4py loads, or what to install."""
    try:
        import mpi4py

        MPI = _mpi()
        library = " ".join(MPI.Get_library_version().split()[:3]).rstrip(",")
    except ImportError:
        return f"MPI: unavailable (mpiexec -n K fastcap train needs {MPI_INSTALL_HINT})"
    except Exception as exc:  # mpi4py present but no MPI library it can load
        return f"MPI: mpi4py cannot load an MPI library ({' '.join(str(exc).split())}); {MPI_INSTALL_HINT}"
    return f"MPI: mpi4py {mpi4py.__version__}, {library} (mpiexec -n K fastcap train)"


def describe_slices(comm, batch_size):
    """One line for the run's header: each rank's share of the global batch and its threads."""
    K = comm.Get_size()
    sizes = sorted({b - a for a, b in (share(batch_size, r, K) for r in range(K))}, reverse=True)
    return (f"global batch {batch_size} = {' or '.join(map(str, sizes))} captions per rank, "
            f"{_threads.get_num_threads()} thread{'s' if _threads.get_num_threads() != 1 else ''} per rank")
