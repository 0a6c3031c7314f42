"""What a run's validation record says: whether it is diverging, its best epoch, whether its
patience has run out.

``epochs`` is the record, one dict per evaluation (the first: the untrained or initial
model), each with ``epoch``, ``val_loss`` and the caption metrics
(fastcap.train.metrics.METRIC_NAMES).
"""
import math

__all__ = ["DIVERGENCE_FACTOR", "DIVERGENCE_EVALUATIONS", "diverging", "best_epoch", "out_of_patience"]

# A run diverges when its validation loss is above DIVERGENCE_FACTOR times the
# untrained model's at DIVERGENCE_EVALUATIONS evaluations in a row (or is not
# finite): a model that learns nothing stays near the untrained loss, so a loss
# far above it means the updates are destroying the model. A suspect
# evaluation is not checkpointed, so the last good checkpoint is kept.
DIVERGENCE_FACTOR = 3.0
DIVERGENCE_EVALUATIONS = 2


def diverging(epochs):
    """How many evaluations in a row, up to the last, are diverging (see DIVERGENCE_FACTOR)."""
    if not epochs:
        return 0
    if not math.isfinite(epochs[0]["val_loss"]):  # nothing to compare with, nothing to keep
        return len(epochs)
    limit = DIVERGENCE_FACTOR * epochs[0]["val_loss"]
    n = 0
    for e in reversed(epochs[1:]):
        if math.isfinite(e["val_loss"]) and e["val_loss"] <= limit:
            break
        n += 1
    return n


def best_epoch(epochs, key):
    """The trained epoch (>= 1) with the best ``key`` so far (the first of equals; the lowest
    val_loss, the highest metric), or None before any; and how many evaluations have passed
    since it."""
    sign = -1 if key == "val_loss" else 1
    trained = [e for e in epochs[1:] if math.isfinite(e[key])]
    if not trained:
        return None, 0
    best = max(trained, key=lambda e: (sign * e[key], -e["epoch"]))
    return best, epochs[-1]["epoch"] - best["epoch"]


def out_of_patience(epochs, key, patience):
    """Whether ``patience`` (0: none) evaluations have passed since the best epoch by ``key``."""
    best, since = best_epoch(epochs, key)
    return bool(patience) and best is not None and since >= patience
