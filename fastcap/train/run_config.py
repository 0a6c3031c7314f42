"""A training run's config: made from the flat options (fastcap.train.options) and, when resuming, a checkpoint.

The config is a JSON-able dict, stored in config.json and in every checkpoint::

    {"model": {"cell_type", "input_dim", "wordvec_dim", "hidden_dim", "dtype", "kind",
               "attention_dim", "attention_reg"},
     "train": {"update_rule", "learning_rate", "lr_decay", "batch_size",
               "num_epochs", "seed", "max_train", "precision"},
     "data":  {"source": "generated", "num_train_images", "num_val_images",
               "captions_per_image", "pca_dim", "full_dim", "seed", "pca"}
              or {"source": "dir", "path", "pca"[, "features"]},
     "eval":  {"eval_images", "max_length", "num_samples"}}

(``model`` is ``fastcap.train.model_config.ModelConfig.as_dict()``; which option
fills which key is ``fastcap.train.options.OPTION_KEYS``.)
"""
import json
import os

from ..captioning_solver import iterations_per_epoch
from ..data.generated import GRID_DEFAULTS
from ..data.load import grid_shape_of
from ..data.prepare import load_pca, read_features_record
from . import checkpoint_schema as schema
from .checkpoint import CheckpointError
from .checkpoint_schema import ADDED_LATER
from .model_config import MODEL_DEFAULTS
from .options import (DEFAULTS, GENERATED_DEFAULTS, GENERATED_KEYS, OPTION_KEYS, LIMITS,
                      MIN_ITERATIONS, RESUME_OVERRIDABLE, check_options, flag)

__all__ = ["resolve_config", "check_inputs", "dir_spec", "grid_dir_spec", "spec_like", "check_fits",
           "fit_schedule", "data_pca"]


def dir_spec(path, pca):
    """The data spec of a CS231n COCO directory (absolute path) with or without PCA features;
    a directory `fastcap prepare` wrote adds ``features``, how its features were made (so a
    checkpoint carries it and `fastcap caption` can make them again)."""
    spec = {"source": "dir", "path": os.path.abspath(os.fspath(path)), "pca": bool(pca)}
    record = read_features_record(spec["path"]) if os.path.isdir(spec["path"]) else None
    if record is not None:
        spec["features"] = record
    return spec


def grid_dir_spec(path):
    """The data spec of a directory's grid features (an attention model's): ``pca`` says
    whether prepare --grid-pca-dim reduced their cells."""
    spec = dir_spec(path, True)
    grid = (spec.get("features") or {}).get("grid") or {}
    return {**spec, "grid": True, "pca": grid.get("pca_dim") is not None}


def spec_like(path, like):
    """The data spec of directory ``path`` with the features the spec ``like`` reads (its grid
    files, or the pooled features with or without PCA): other data for the same model."""
    return grid_dir_spec(path) if like.get("grid") else dir_spec(path, like.get("pca", True))


def _data_spec(o):
    """A new run's data spec; an attention model's names the grid features it reads (a
    directory's grid files, or the generated data's grids of GRID_DEFAULTS)."""
    attention = o["kind"] == "attention"
    if o.get("data") is not None:
        return grid_dir_spec(o["data"]) if attention else dir_spec(o["data"], o["pca"])
    spec = {"source": "generated", **GENERATED_DEFAULTS}
    for opt, key in GENERATED_KEYS.items():
        spec[key] = int(o[opt])
    spec["pca"] = bool(o["pca"])
    if attention:
        spec["grid"] = dict(GRID_DEFAULTS)
    return spec


def resolve_config(options, checkpoint=None):
    """The run config from flat ``options`` (None = not given) and an optional checkpoint.

    A new run fills what is not given from DEFAULTS. A resumed run takes the
    checkpoint's config; options given explicitly must agree with it, except
    --epochs (continue for longer), the evaluation options and --data (other
    data with the same vocabulary and feature size).
    """
    options = check_options(options)
    if checkpoint is None:
        o = {k: (options.get(k) if options.get(k) is not None else v) for k, v in DEFAULTS.items()}
        o["data"] = options.get("data")
        if o["kind"] != "attention":
            for opt in ("attention_dim", "attention_reg"):
                if options.get(opt) is not None:
                    raise ValueError(f"{flag(opt)} sizes the attention model: it goes with "
                                     f"{flag('kind')}")
        config = {"model": {}, "train": {}, "eval": {}}
        for opt, (section, key) in OPTION_KEYS.items():
            config[section][key] = o[opt]
        config["data"] = _data_spec(o)
        config["model"]["input_dim"] = None  # known once the data is loaded
        for key, value in MODEL_DEFAULTS.items():  # the model kind's keys no option sets
            config["model"].setdefault(key, value)
        _check_loadable(config)
        return config

    config = json.loads(json.dumps(checkpoint.config))  # deep copy
    for key, value in MODEL_DEFAULTS.items():  # a checkpoint from before the attention model
        config["model"].setdefault(key, value)
    for opt, (section, key) in OPTION_KEYS.items():  # what checkpoints from before an option lack
        if key in ADDED_LATER.get(section, ()):
            config[section].setdefault(key, DEFAULTS[opt])
    conflicts = []
    for opt, (section, key) in OPTION_KEYS.items():
        given = options.get(opt)
        if given is None:
            continue
        if opt in RESUME_OVERRIDABLE:
            config[section][key] = given
        elif given != config[section].get(key):
            conflicts.append(f"{flag(opt)} {given} (the checkpoint has "
                             f"{config[section].get(key)})")
    done, epochs = checkpoint.epoch, options.get("epochs")
    if epochs is not None and epochs < done:
        conflicts.append(f"{flag('epochs')} {epochs} (the checkpoint has done {done} epochs; "
                         f"{flag('epochs')} is the new total)")
    data = config["data"]
    if options.get("pca") is not None and bool(options["pca"]) != data.get("pca", True):
        conflicts.append(f"--{'' if options['pca'] else 'no-'}pca (the checkpoint was trained "
                         f"{'with' if data.get('pca', True) else 'without'} PCA features)")
    if options.get("data") is not None:
        config["data"] = spec_like(options["data"], data)
    elif data["source"] == "generated":
        for opt, key in GENERATED_KEYS.items():
            if options.get(opt) is not None and options[opt] != data[key]:
                conflicts.append(f"{flag(opt)} {options[opt]} (the checkpoint's "
                                 f"generated data has {data[key]})")
    if conflicts:
        raise CheckpointError(f"cannot resume {checkpoint.path} with " + "; ".join(conflicts)
                              + ": a resumed run continues the checkpoint's model and schedule")
    _check_loadable(config, checkpoint)
    return config


def data_pca(spec):
    """(mean, components) of the PCA a model of data ``spec`` reads, where fastcap prepare made
    the data (its record names the PCA, and the checkpoints carry it); else None."""
    if spec["source"] != "dir" or not spec.get("pca", True) or "features" not in spec:
        return None
    return load_pca(spec["path"], spec["features"], grid=bool(spec.get("grid")))


def fit_schedule(config, count, given, unit="training captions", min_iterations=MIN_ITERATIONS):
    """Fit a new run's schedule to its ``count`` training examples (``unit``: what a batch
    counts), in ``config``; ``given``: the names of the options given. A batch larger than the
    data is lowered to it. Without --epochs, the epochs are the default or enough for
    ``min_iterations`` iterations, whichever is more, and then, without --lr-decay, the
    per-epoch decay is spread so that the whole run decays the learning rate as much as the
    default run's epochs do (0.9 an epoch over 125 epochs would leave 2e-6 of it). Returns the
    notes that say so (the run's first lines)."""
    t, notes = config["train"], []
    if t["batch_size"] > count:
        notes.append(f"{flag('batch_size')} {t['batch_size']} is more than the {count} "
                     f"{unit}: using {count}, one iteration an epoch")
        t["batch_size"] = count
    if "epochs" in given:
        return notes
    per, default = iterations_per_epoch(count, t["batch_size"]), DEFAULTS["epochs"]
    t["num_epochs"] = min(max(default, -(-min_iterations // per)), LIMITS["epochs"])
    if not min_iterations:  # fine-tuning (--scst): the default epochs, no minimum to reach
        notes.append(f"{flag('epochs')} not given: {t['num_epochs']} epochs of {per} iteration"
                     f"{'' if per == 1 else 's'} of {t['batch_size']} of the {count} {unit}; "
                     f"{flag('epochs')} N chooses")
        return notes
    notes.append(f"{flag('epochs')} not given: {t['num_epochs']} epochs, at least {default} and "
                 f"enough for {min_iterations} iterations of {t['batch_size']} of the "
                 f"{count} {unit} ({per} an epoch); {flag('epochs')} N "
                 f"chooses, {flag('patience')} N stops a run that has stopped improving")
    if t["num_epochs"] > default and "lr_decay" not in given:
        total = t["lr_decay"] ** default
        t["lr_decay"] = total ** (1 / t["num_epochs"])
        notes.append(f"{flag('lr_decay')} not given: {t['lr_decay']:.4g} an epoch, so that the "
                     f"learning rate decays to {total:.2g} of itself over the run, as over "
                     f"{default} epochs of the default {DEFAULTS['lr_decay']:g}")
    return notes


def check_fits(config, vocab_size, iterations):
    """Raise ValueError unless a checkpoint can hold a run of ``config`` (input_dim known) on data
    of ``vocab_size`` words that trains for ``iterations`` iterations in all."""
    dim = config["model"]["input_dim"]
    if dim > LIMITS["dim"]:
        raise ValueError(f"the data's image features are {dim}-dimensional; a checkpoint holds at "
                         f"most {LIMITS['dim']}")
    if vocab_size > LIMITS["vocab"]:
        raise ValueError(f"the data's vocabulary has {vocab_size:,} words; a checkpoint holds at "
                         f"most {LIMITS['vocab']:,}")
    most = min(LIMITS["iterations"], LIMITS["array_bytes"] // 8)  # the float64 loss history
    if iterations > most:
        raise ValueError(f"{flag('epochs')} {config['train']['num_epochs']} at "
                         f"{flag('batch_size')} {config['train']['batch_size']} is {iterations:,} "
                         f"iterations; a checkpoint holds at most {most:,}")


def _flags_of(path):
    """The options that set the config field at ``path`` (a SchemaError's)."""
    fields = {f"config.{section}.{key}": [opt] for opt, (section, key) in OPTION_KEYS.items()}
    fields["config.data"] = list(GENERATED_KEYS)
    fields["epoch"] = ["epochs"]  # more epochs done than --epochs asks for
    return [flag(opt) for opt in fields.get(path, ())]


def _check_loadable(config, checkpoint=None):
    """Raise ValueError naming the options unless the checkpoints of a run with ``config``
    (resuming ``checkpoint``) pass fastcap.train.checkpoint_schema: whatever a run is started with,
    its checkpoint can be loaded and resumed."""
    try:
        if checkpoint is None:
            schema.check_config(config)
        else:
            schema.check_meta({**checkpoint.meta, "config": config})
    except schema.SchemaError as exc:
        flags = _flags_of(exc.path)
        raise ValueError(f"{' / '.join(flags) or 'the options'}: a run with these options could "
                         f"not be saved and resumed ({exc})") from None


def init_options(options, ckpt):
    """Options of a run started from ``ckpt``'s weights: the model options it does not give
    are the checkpoint's (a given one that differs fails when the weights are loaded)."""
    options = dict(options)
    if options.get("kind") not in (None, ckpt.model.kind):  # before its features are loaded
        ckpt.check_kind(options["kind"], f"a run with{'' if options['kind'] == 'attention' else 'out'} "
                                         f"{flag('kind')}")
    for opt, (section, key) in OPTION_KEYS.items():
        if section == "model" and options.get(opt) is None:
            options[opt] = ckpt.config["model"].get(key, MODEL_DEFAULTS.get(key))
    if options.get("data") is None and options.get("pca") is None:
        options["pca"] = ckpt.config["data"].get("pca", True)
    return options


def check_inputs(cfg, data, checkpoints, source):
    """The loaded ``data`` (described as ``source``) against the ``checkpoints`` a run starts
    from (None entries skipped): the vocabulary, the feature size and (attention runs) the
    grid's shape, recorded in ``cfg["data"]["grid_shape"]``. Returns the feature size D of the
    (N, D) or (N, L, D) features."""
    input_dim = int(data["train_features"].shape[-1])
    grid = grid_shape_of(data) if cfg["data"].get("grid") else None
    for ckpt in checkpoints:
        if ckpt is not None:
            ckpt.check_vocab(data["idx_to_word"], source)
            ckpt.check_input_dim(input_dim, source)
            if grid is not None:
                ckpt.check_grid_shape(grid, source)
    if grid is not None:
        cfg["data"]["grid_shape"] = list(grid)
    return input_dim
