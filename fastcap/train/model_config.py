"""The model configuration of a run: one object that validates, describes and builds a CaptioningRNN.

A run's ``config["model"]`` and a checkpoint's model entry are this object's
``as_dict()``; ``describe()`` is the one human-readable form of a model that
the CLI, the trainer and the checkpoint errors print.
"""
import dataclasses

import numpy as np

from ..classifiers.rnn import PARAM_SHAPES, CaptioningRNN
from ..model.sequence import CELL_TYPES, CELLS
from ..runtime.memory import allocating
from ..runtime.names import DTYPES
from .options import flag

__all__ = ["ModelConfig", "MODEL_KEYS"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """cell_type (one of CELL_TYPES), input_dim (image-feature size D, None until the
    data is loaded), wordvec_dim (W), hidden_dim (H), dtype (a name in DTYPES)."""

    cell_type: str
    input_dim: object  # int, or None before the data is known
    wordvec_dim: int
    hidden_dim: int
    dtype: str

    def __post_init__(self):
        if self.cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type must be one of {', '.join(CELL_TYPES)}, "
                             f"got {self.cell_type!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("wordvec_dim", "hidden_dim") + (("input_dim",) if self.input_dim is not None
                                                      else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @classmethod
    def from_dict(cls, d):
        """From a config's ``model`` entry (extra keys are ignored)."""
        return cls(**{k: d.get(k) for k in MODEL_KEYS})

    @classmethod
    def from_model(cls, model):
        """The configuration a CaptioningRNN's parameters have."""
        p = model.params
        return cls(model.cell_type, int(p["W_proj"].shape[0]), int(p["W_embed"].shape[1]),
                   int(p["Wh"].shape[0]), np.dtype(model.dtype).name)

    def as_dict(self):
        return dataclasses.asdict(self)

    def describe(self, keys=False):
        """``LSTM (wordvec 128, hidden 256, float32)``, as the CLI prints a model; keys=True
        names the config keys and the input size, as errors about a mismatch do:
        ``lstm with wordvec_dim 128, hidden_dim 256, input_dim 512``."""
        if keys:
            return (f"{self.cell_type} with wordvec_dim {self.wordvec_dim}, hidden_dim "
                    f"{self.hidden_dim}, input_dim {self.input_dim}")
        return (f"{self.cell_type.upper()} (wordvec {self.wordvec_dim}, hidden {self.hidden_dim}, "
                f"{self.dtype})")

    def build(self, word_to_idx, seed=0):
        """A CaptioningRNN of this configuration, initialised from ``default_rng(seed)``."""
        if self.input_dim is None:
            raise ValueError("the model's input_dim is not known yet (the data sets it)")

        sizes = {"V": len(word_to_idx), "W": self.wordvec_dim, "H": self.hidden_dim,
                 "D": self.input_dim, "G": CELLS[self.cell_type].gates * self.hidden_dim}
        count = sum(int(np.prod([sizes[d] for d in shape], dtype=object))
                    for shape in PARAM_SHAPES.values())
        # float64 draws, the cast, gradients and the update rule's state: about 6 copies.
        asked = (f"{flag('hidden_dim')} {self.hidden_dim}, {flag('wordvec_dim')} "
                 f"{self.wordvec_dim}, {sizes['V']} words, {self.input_dim}-d features")
        with allocating(f"the {self.cell_type} model's {count:,} parameters", asked, 6 * 8 * count):
            return CaptioningRNN(word_to_idx, input_dim=self.input_dim,
                                 wordvec_dim=self.wordvec_dim,
                                 hidden_dim=self.hidden_dim, cell_type=self.cell_type,
                                 dtype=np.dtype(self.dtype), rng=np.random.default_rng(seed))


MODEL_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig))
