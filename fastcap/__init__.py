"""fastcap: CS231n-style image-captioning models, trained fast on a CPU.

The API keeps the CS231n names (``fastcap.rnn_layers``,
``fastcap.classifiers.rnn``, ``fastcap.captioning_solver``, ``fastcap.optim``,
``fastcap.coco_utils``, ``fastcap.gradient_check``) and re-exports them here.
The kernels behind them come from the backend named by ``FASTCAP_BACKEND``
(numpy, numba, cython or auto; default auto), switchable with
``set_backend`` / ``use_backend``; ``FASTCAP_PRECISION`` (float32 or
bfloat16, ``set_precision`` / ``use_precision``) picks the precision of the
matrix products. ``load_captioner(path)`` returns a ``Captioner``: a trained
checkpoint that captions new pictures (``captioner.caption(images)``).
"""
from .runtime import env as _env

# Every FASTCAP_* variable is checked before anything reads one; the fastcap command
# reports a bad one itself (one line, exit status 2), so its import must not fail.
ENV_ERROR = _env.validate()
if ENV_ERROR is not None and not _env.is_command():
    raise ENV_ERROR

from .runtime.backends import (  # noqa: E402
    BackendUnavailableError,
    available_backends,
    get_backend,
    init_from_environment as _init_from_environment,
    set_backend,
    use_backend,
)
from .runtime.names import PRECISIONS, VERSION as __version__  # noqa: E402
from .runtime.precision import (  # noqa: E402
    get_precision,
    init_from_environment as _init_precision_from_environment,
    set_precision,
    use_precision,
)
from ._kernels import selfcheck as _selfcheck  # noqa: E402,F401 (checks each compiled build as it loads)
from .captioning_solver import CaptioningSolver, TrainingDivergedError  # noqa: E402
from .classifiers.attention import AttentionCaptioningRNN  # noqa: E402
from .classifiers.rnn import CaptioningRNN
from .coco_utils import decode_captions, load_coco_data, sample_coco_minibatch
from .gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from .inference.captioner import Captioner, load_captioner
from . import optim as _optim
from .optim import *  # noqa: F401,F403 (the update rules)
from .rnn_layers import *  # noqa: F401,F403
from .rnn_layers import __all__ as _layer_names

from .runtime.threads import get_engine_threads, get_num_threads, set_num_threads  # noqa: E402
from .runtime.threads import init_from_environment as _init_threads_from_environment  # noqa: E402

__all__ = [
    "set_backend", "get_backend", "use_backend", "available_backends", "BackendUnavailableError",
    "set_num_threads", "get_num_threads", "get_engine_threads",
    "set_precision", "get_precision", "use_precision", "PRECISIONS",
    "CaptioningRNN", "AttentionCaptioningRNN", "CaptioningSolver", "TrainingDivergedError",
    "load_coco_data", "sample_coco_minibatch", "decode_captions", "Captioner", "load_captioner",
    "eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error",
    *_optim.UPDATE_RULES, *_layer_names,
]  # fmt: skip

if ENV_ERROR is None:
    _init_threads_from_environment()  # after NumPy is loaded, so that it reaches its BLAS
    _init_from_environment()
    _init_precision_from_environment()
