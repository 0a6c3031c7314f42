"""First-order update rules with the CS231n signature.

Each rule is ``next_w, config = rule(w, dw, config)``. It updates ``w`` and its
optimizer state in place through the active backend's kernel (so a training
step allocates nothing here) and returns ``w`` itself. ``config`` holds the
hyperparameters and the state (``velocity``, ``cache``, ``m``, ``v``, ``t``);
missing keys get the CS231n defaults.
"""
import numpy as np

from .runtime.compute import resolve
from .model.validate import FLOAT_DTYPES

# The update rules, by name: each is a function of this module (CaptioningSolver,
# the CLI and the checkpoint schema read this list).
UPDATE_RULES = ("sgd", "sgd_momentum", "rmsprop", "adam")

__all__ = ["UPDATE_RULES", *UPDATE_RULES]


def _prepare(w, dw, config):
    # Kernels update in place, so w must be a writable C-contiguous float array.
    if not isinstance(w, np.ndarray) or w.dtype not in FLOAT_DTYPES:
        raise TypeError(f"w must be a float32 or float64 array, got {type(w).__name__} "
                        f"{getattr(w, 'dtype', '')}".rstrip())
    if not (w.flags.c_contiguous and w.flags.writeable):
        w = np.array(w, order="C")
    dw = np.asarray(dw)
    if dw.shape != w.shape:
        raise ValueError(f"dw must have the shape of w {w.shape}, got {dw.shape}")
    if dw.dtype != w.dtype:
        raise TypeError(f"dw must have the dtype of w ({w.dtype}), got {dw.dtype}")
    return w, np.ascontiguousarray(dw), ({} if config is None else config)


def _hyper(config, **defaults):
    """Set each hyperparameter in ``config`` (``defaults`` where missing) to a Python number:
    a NumPy scalar or 0-d array (a loaded .npz's, read-only or not) is taken as the number it
    holds, so every backend's kernel takes it and ``t`` can be counted on."""
    for key, default in defaults.items():
        value = config.get(key, default)
        kinds = "iu" if key == "t" else "iuf"  # t counts steps; the others are real numbers
        a = np.asarray(value) if isinstance(value, (int, float, np.generic, np.ndarray)) else None
        if a is None or a.shape != () or a.dtype.kind not in kinds:
            raise TypeError(f"config[{key!r}] must be {'an integer' if key == 't' else 'a number'}"
                            f", got {type(value).__name__} {value!r}")
        config[key] = int(a) if key == "t" else float(a)
    return config


def _state(config, key, w):
    """config[key] as a writable contiguous array like w, created as zeros.

    State handed in read-only (arrays of a loaded .npz, a frozen array) or in another
    layout is copied into the config, as w itself is."""
    s = config.get(key)
    if s is None:
        s = config[key] = np.zeros_like(w)
    elif not (isinstance(s, np.ndarray) and s.shape == w.shape and s.dtype == w.dtype
              and s.flags.c_contiguous and s.flags.writeable):
        s = np.array(s, dtype=w.dtype, order="C")
        if s.shape != w.shape:
            raise ValueError(f"config[{key!r}] must have the shape of w {w.shape}, got {s.shape}")
        config[key] = s
    return s


def sgd(w, dw, config=None):
    """Vanilla SGD. config: learning_rate (1e-2)."""
    w, dw, config = _prepare(w, dw, config)
    _hyper(config, learning_rate=1e-2)
    resolve().kernels.sgd_update(w, dw, config["learning_rate"])
    return w, config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum. config: learning_rate (1e-2), momentum (0.9), velocity."""
    w, dw, config = _prepare(w, dw, config)
    _hyper(config, learning_rate=1e-2, momentum=0.9)
    v = _state(config, "velocity", w)
    resolve().kernels.sgd_momentum_update(w, dw, v, config["learning_rate"], config["momentum"])
    return w, config


def rmsprop(w, dw, config=None):
    """RMSProp. config: learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache."""
    w, dw, config = _prepare(w, dw, config)
    _hyper(config, learning_rate=1e-2, decay_rate=0.99, epsilon=1e-8)
    cache = _state(config, "cache", w)
    resolve().kernels.rmsprop_update(
        w, dw, cache, config["learning_rate"], config["decay_rate"], config["epsilon"]
    )
    return w, config


def adam(w, dw, config=None):
    """Adam with the captioning assignment's bias correction folded into the step size.

    config: learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8), m, v, t.
    """
    w, dw, config = _prepare(w, dw, config)
    _hyper(config, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, t=0)
    m, v = _state(config, "m", w), _state(config, "v", w)
    config["t"] += 1
    b1, b2, t = config["beta1"], config["beta2"], config["t"]
    alpha = config["learning_rate"] * np.sqrt(1 - b2**t) / (1 - b1**t)
    resolve().kernels.adam_update(w, dw, m, v, float(alpha), b1, b2, config["epsilon"])
    return w, config
