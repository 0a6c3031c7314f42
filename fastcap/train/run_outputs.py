"""The files a training run writes beside its checkpoint: JSON records, samples.txt/json and loss.png.

Every file is written atomically (fastcap.runtime.files); callers hold the run
directory's lock (fastcap.train.rundir).
"""
import json
import os

import numpy as np

from ..runtime.files import atomic_write, atomic_write_text
from .evaluation import format_samples, sample_records
from .metrics import METRIC_LABELS, METRIC_NAMES

__all__ = ["write_json", "remove_stale", "write_samples", "plot_history", "run_summary"]


def write_json(path, obj):
    """``obj`` as indented JSON (NumPy scalars as numbers)."""
    text = json.dumps(obj, indent=2, default=lambda x: x.item() if hasattr(x, "item") else str(x))
    atomic_write_text(path, text + "\n")


def run_summary(solver, epochs, num_images, num_references):
    """metrics.json's record of a finished run: its last evaluation (``epochs[-1]``) of
    ``num_images`` validation images with ``num_references`` captions, and its first
    (the untrained or initial model's)."""
    last, first = epochs[-1], epochs[0]
    return {
        "split": "val", "images": int(num_images), "references": int(num_references),
        "decoding": "greedy", "epoch": solver.epoch, "iteration": solver.iteration,
        "train_loss": last["train_loss"], "val_loss": last["val_loss"],
        **{k: last[k] for k in METRIC_NAMES},
        "untrained": {k: first[k] for k in ("val_loss", *METRIC_NAMES)},
    }


def remove_stale(out_dir, names):
    """Remove the files ``names`` of ``out_dir`` that an earlier run left (if there)."""
    # Only called with the run directory's lock held and owned by this run (fastcap.train.rundir).
    for name in names:
        try:
            os.unlink(os.path.join(out_dir, name))
        except FileNotFoundError:
            pass


def write_samples(out_dir, model, data, ids, max_length):
    """samples.json and samples.txt: ground truth and ``model``'s greedy captions of the
    validation images ``ids``."""
    if len(ids) == 0:
        remove_stale(out_dir, ("samples.json", "samples.txt"))  # an earlier run's
        return
    samples = sample_records(model, data, "val", ids, max_length=max_length)
    write_json(os.path.join(out_dir, "samples.json"), samples)
    atomic_write_text(os.path.join(out_dir, "samples.txt"), format_samples(samples))


def plot_history(path, solver, epochs, num_images):
    """loss.png: the training and validation loss, and the validation BLEU/CIDEr by epoch.

    epochs: the run's per-epoch records (epoch 0 = untrained); num_images: how many
    validation images the metrics are over.
    """
    # The Agg canvas directly, not pyplot: no display, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = solver
    per = s.iterations_per_epoch
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2)
    it = np.arange(1, len(s.loss_history) + 1)
    ax.plot(it, s.loss_history, lw=0.6, alpha=0.5, color="C0", label="training (per batch)")
    trained = [e for e in epochs if e["train_loss"] is not None]
    if trained:
        ax.plot([(e["epoch"] - 0.5) * per for e in trained], [e["train_loss"] for e in trained],
                "o-", color="C0", label="training (epoch mean)")
    ax.plot([e["epoch"] * per for e in epochs], [e["val_loss"] for e in epochs],
            "s-", color="C1", label="validation")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss per caption")
    ax.set_title("loss")
    ax.legend()
    ep = [e["epoch"] for e in epochs]
    for key in ("bleu1", "bleu4"):
        ax2.plot(ep, [e[key] for e in epochs], "o-", label=METRIC_LABELS[key])
    ax3 = ax2.twinx()
    ax3.plot(ep, [e["cider"] for e in epochs], "s--", color="C3", label=METRIC_LABELS["cider"])
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("BLEU")
    ax3.set_ylabel("CIDEr")
    ax2.set_title(f"validation captions ({num_images} images, greedy)")
    lines = ax2.get_legend_handles_labels(), ax3.get_legend_handles_labels()
    ax2.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
