"""The model configuration of a run: one object that validates, describes and builds a model.

A run's ``config["model"]`` and a checkpoint's model entry are this object's
``as_dict()``; ``describe()`` is the one human-readable form of a model that
the CLI, the trainer and the checkpoint errors print. ``kind`` says which model
(``fastcap.classifiers.MODELS``): "pooled", the CaptioningRNN of one feature vector
per image, or "attention", the AttentionCaptioningRNN of a grid of cells; a config
without one (written before the attention model) is a pooled model's.
"""
import dataclasses
import math

import numpy as np

from ..classifiers import ATTENTION_REG, MODEL_KINDS, MODELS, kind_of
from ..model.sequence import CELL_TYPES, CELLS
from ..runtime.memory import allocating
from ..runtime.names import DTYPES
from .options import flag

__all__ = ["ModelConfig", "MODEL_KEYS", "MODEL_DEFAULTS"]


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """cell_type (one of CELL_TYPES), input_dim (image-feature size D: channels per cell of an
    attention model; None until the data is loaded), wordvec_dim (W), hidden_dim (H), dtype
    (a name in DTYPES), kind (one of MODEL_KINDS), and for an attention model attention_dim
    (A; None: hidden_dim) and attention_reg (the penalty's weight; None: ATTENTION_REG), both
    made concrete here. A pooled model has neither: they are None whatever is given."""

    cell_type: str
    input_dim: object  # int, or None before the data is known
    wordvec_dim: int
    hidden_dim: int
    dtype: str
    kind: str = "pooled"
    attention_dim: object = None
    attention_reg: object = None

    def __post_init__(self):
        if self.cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type must be one of {', '.join(CELL_TYPES)}, "
                             f"got {self.cell_type!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind must be one of {', '.join(MODEL_KINDS)}, got {self.kind!r}")
        for name in ("wordvec_dim", "hidden_dim") + (("input_dim",) if self.input_dim is not None
                                                      else ()):
            _positive_int(name, getattr(self, name))
        dim, reg = None, None
        if self.kind == "attention":
            dim = self.hidden_dim if self.attention_dim is None else self.attention_dim
            _positive_int("attention_dim", dim)
            reg = ATTENTION_REG if self.attention_reg is None else self.attention_reg
            if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not math.isfinite(reg) \
                    or reg < 0:
                raise ValueError(f"attention_reg must be a finite number >= 0, got {reg!r}")
            dim, reg = int(dim), float(reg)
        object.__setattr__(self, "attention_dim", dim)  # frozen: the concrete values, once
        object.__setattr__(self, "attention_reg", reg)

    @classmethod
    def from_dict(cls, d):
        """From a config's ``model`` entry (extra keys are ignored; one without ``kind``, from
        before the attention model, is a pooled model's)."""
        return cls(**{k: d.get(k, MODEL_DEFAULTS.get(k)) for k in MODEL_KEYS})

    @classmethod
    def from_model(cls, model):
        """The configuration a model's parameters have."""
        p, kind = model.params, kind_of(model)
        attention = kind == "attention"
        return cls(model.cell_type, int(p["W_proj"].shape[0]), int(p["W_embed"].shape[1]),
                   int(p["Wh"].shape[0]), np.dtype(model.dtype).name, kind,
                   int(p["W_enc"].shape[1]) if attention else None,
                   model.attention_reg if attention else None)

    def as_dict(self):
        return dataclasses.asdict(self)

    @property
    def model_class(self):
        return MODELS[self.kind]

    def describe(self, keys=False):
        """``LSTM (wordvec 128, hidden 256, float32)`` or ``attention LSTM (wordvec 128, hidden
        256, attention 256, float32)``, as the CLI prints a model; keys=True names the config
        keys and the input size, as errors about a mismatch do: ``lstm with wordvec_dim 128,
        hidden_dim 256, input_dim 512`` (``attention lstm with ..., attention_dim 256, ...``)."""
        attention = self.kind == "attention"
        if keys:
            return (f"{'attention ' if attention else ''}{self.cell_type} with wordvec_dim "
                    f"{self.wordvec_dim}, hidden_dim {self.hidden_dim}, "
                    f"{f'attention_dim {self.attention_dim}, ' if attention else ''}input_dim "
                    f"{self.input_dim}")
        return (f"{'attention ' if attention else ''}{self.cell_type.upper()} (wordvec "
                f"{self.wordvec_dim}, hidden {self.hidden_dim}, "
                f"{f'attention {self.attention_dim}, ' if attention else ''}{self.dtype})")

    def param_shapes(self, vocab_size):
        """{parameter name: shape} of this model over a vocabulary of vocab_size words."""
        sizes = {"V": vocab_size, "W": self.wordvec_dim, "H": self.hidden_dim, "D": self.input_dim,
                 "G": CELLS[self.cell_type].gates * self.hidden_dim, "A": self.attention_dim,
                 "E": None if self.input_dim is None else self.wordvec_dim + self.input_dim}
        return {k: tuple(sizes[d] for d in s) for k, s in self.model_class.PARAM_SHAPES.items()}

    def build(self, word_to_idx, seed=0):
        """A model of this configuration, initialised from ``default_rng(seed)``."""
        if self.input_dim is None:
            raise ValueError("the model's input_dim is not known yet (the data sets it)")

        count = sum(int(np.prod(shape, dtype=object)) for shape in self.param_shapes(len(word_to_idx)).values())
        # float64 draws, the cast, gradients and the update rule's state: about 6 copies.
        asked = (f"{flag('hidden_dim')} {self.hidden_dim}, {flag('wordvec_dim')} "
                 f"{self.wordvec_dim}, {len(word_to_idx)} words, {self.input_dim}-d features")
        extra = {} if self.kind == "pooled" else dict(attention_dim=self.attention_dim,
                                                      attention_reg=self.attention_reg)
        with allocating(f"the {self.cell_type} model's {count:,} parameters", asked, 6 * 8 * count):
            return self.model_class(word_to_idx, input_dim=self.input_dim,
                                    wordvec_dim=self.wordvec_dim, hidden_dim=self.hidden_dim,
                                    cell_type=self.cell_type, dtype=np.dtype(self.dtype),
                                    rng=np.random.default_rng(seed), **extra)


MODEL_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig))
# The keys a config may lack (checkpoints from before the attention model) and what they mean.
MODEL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)
                  if f.default is not dataclasses.MISSING}
