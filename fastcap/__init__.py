"""fastcap: CS231n-style image-captioning models, trained fast on a CPU.

The API keeps the CS231n names (``fastcap.rnn_layers``,
``fastcap.classifiers.rnn``, ``fastcap.captioning_solver``, ``fastcap.optim``,
``fastcap.coco_utils``, ``fastcap.gradient_check``) and re-exports them here.
The kernels behind them come from the backend named by ``FASTCAP_BACKEND``
(numpy, numba, cython or auto; default auto), switchable with
``set_backend`` / ``use_backend``; ``FASTCAP_PRECISION`` (float32 or
bfloat16, ``set_precision`` / ``use_precision``) picks the precision of the
matrix products.
"""
from ._backend import (
    BackendUnavailableError,
    available_backends,
    get_backend,
    init_from_environment as _init_from_environment,
    set_backend,
    use_backend,
)
from ._precision import (
    PRECISIONS,
    get_precision,
    init_from_environment as _init_precision_from_environment,
    set_precision,
    use_precision,
)
from .captioning_solver import CaptioningSolver, TrainingDivergedError
from .classifiers.rnn import CaptioningRNN
from .coco_utils import decode_captions, load_coco_data, sample_coco_minibatch
from .gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from . import optim as _optim
from .optim import *  # noqa: F401,F403 (the update rules)
from .rnn_layers import *  # noqa: F401,F403
from .rnn_layers import __all__ as _layer_names

# After NumPy is loaded, so that FASTCAP_NUM_THREADS reaches its BLAS.
from ._threads import get_engine_threads, get_num_threads, set_num_threads  # noqa: E402

__version__ = "0.1.0"  # the one version: pyproject.toml reads it (tool.setuptools.dynamic)

__all__ = [
    "set_backend", "get_backend", "use_backend", "available_backends", "BackendUnavailableError",
    "set_num_threads", "get_num_threads", "get_engine_threads",
    "set_precision", "get_precision", "use_precision", "PRECISIONS",
    "CaptioningRNN", "CaptioningSolver", "TrainingDivergedError",
    "load_coco_data", "sample_coco_minibatch", "decode_captions",
    "eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error",
    *_optim.UPDATE_RULES, *_layer_names,
]  # fmt: skip

_init_from_environment()
_init_precision_from_environment()
