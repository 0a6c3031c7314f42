"""``fastcap train``: train a captioning model (fastcap.train.trainer), alone or under mpiexec."""
import argparse

from ..captioning_solver import TrainingDivergedError
from ..coco_utils import LAYOUT
from ..runtime.install import install_hint
from ..train import distributed
from ..train.interrupts import TrainingInterrupted
from ..train.options import DEFAULTS, TRAIN_OPTIONS, add_options
from ..train.trainer import Trainer
from .common import add_runtime_options, setup_runtime

DESCRIPTION = (
    "Train a captioning model. With no options: an LSTM on generated data\n"
    "(made in memory, deterministic), a minute or two on 2 cores.\n"
    "Progress goes to stderr; per-epoch validation loss and caption metrics\n"
    "to stdout. --out gets checkpoint.npz, best.npz (the best epoch by\n"
    "--best-metric), config.json, history.json, loss.png, metrics.json,\n"
    "samples.txt and samples.json. Ctrl-C (or SIGTERM) saves a checkpoint;\n"
    "--resume continues it exactly; --init-from starts a new run from its weights.\n"
    "Under `mpiexec -n K` (the [mpi] extra: " + install_hint("mpi") + "):\n"
    "data-parallel over K ranks, --batch-size the global batch, cores/K\n"
    "threads per rank (docs/distributed.md).")


def add_parser(sub, parents):
    p = sub.add_parser("train", parents=parents, formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="train a captioning model (default: an LSTM on generated data)",
                       description=DESCRIPTION,
                       epilog=f"--data DIR expects the CS231n layout:\n{LAYOUT}")
    add_options(p, TRAIN_OPTIONS, groups=True)
    add_runtime_options(p.add_argument_group("runtime"))
    return p


def _options(args):
    return {k: getattr(args, k, None) for k in [*DEFAULTS, "data", "scst_from_scratch", "grid_in_memory"]}


def _agreed_by_all_ranks(exc):
    """Errors every rank of a data-parallel run raises alike (see fastcap.train.distributed)."""
    # The loss is the global batch's on every rank; an interrupt with a
    # checkpoint is the agreed stop (without one: a second Ctrl-C, this rank's).
    return isinstance(exc, TrainingDivergedError) or (
        isinstance(exc, TrainingInterrupted) and exc.checkpoint is not None)


def run(args):
    comm = distributed.world()  # None unless started by mpiexec
    with distributed.rank_guard(comm, collective=_agreed_by_all_ranks):
        setup_runtime(args)
        if comm is not None:
            distributed.rank_threads(comm, args.threads)
        trainer = distributed.all_or_none(comm, lambda: Trainer(
            _options(args), out_dir=args.out, resume=args.resume,
            overwrite=args.overwrite, stop_after_iterations=args.stop_after_iterations,
            progress=not args.quiet, print_every=args.print_every, comm=comm).setup())
        trainer.run()
    return 0
