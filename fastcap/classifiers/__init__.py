"""Models (the CS231n ``classifiers`` package name, kept so seed code ports by renaming)."""
from .attention import AttentionCaptioningRNN
from .rnn import CaptioningRNN

__all__ = ["CaptioningRNN", "AttentionCaptioningRNN"]
