"""Models (the CS231n ``classifiers`` package name, kept so seed code ports by renaming)."""
from .attention import ATTENTION_REG, AttentionCaptioningRNN
from .rnn import CaptioningRNN

__all__ = ["CaptioningRNN", "AttentionCaptioningRNN", "MODELS", "MODEL_KINDS", "ATTENTION_REG", "kind_of"]

# The kinds of model a run trains and a checkpoint holds, by name: "pooled" reads one
# feature vector per image (N, D), "attention" a grid of cells (N, L, D).
MODELS = {"pooled": CaptioningRNN, "attention": AttentionCaptioningRNN}
MODEL_KINDS = tuple(MODELS)


def kind_of(model):
    """The kind (a key of MODELS) of a model."""
    for kind, cls in MODELS.items():
        if type(model) is cls:
            return kind
    raise TypeError(f"expected a {' or '.join(c.__name__ for c in MODELS.values())}, got {type(model).__name__}")
