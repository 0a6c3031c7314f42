"""The one option specification (fastcap.train.options) and the model config (fastcap.train.model_config):
the parser, the defaults and the validation all follow the spec; the model config describes,
validates and builds a model; the update rules, backends and version are read from one place."""
import argparse
import dataclasses
import importlib.metadata
import io
import math
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastcap
from fastcap.runtime import backends as _backend
from fastcap.train import checkpoint_schema
from fastcap import optim
from fastcap.runtime.names import BACKEND_CHOICES, DISTRIBUTION
from fastcap.train.checkpoint import CheckpointError, load_checkpoint
from fastcap.cli.main import build_parser
from fastcap.train.model_config import MODEL_KEYS, ModelConfig
from fastcap.train.options import DEFAULTS, INFERENCE_OPTIONS, MAKE_DATA_OPTIONS, OPTION_KEYS, TRAIN_OPTIONS, check_options
from fastcap.train.trainer import Trainer, TrainingInterrupted, resolve_config


def _subparser(name):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _actions(parser):
    return {a.dest: a for a in parser._actions}


@pytest.mark.parametrize("command, options", [("train", TRAIN_OPTIONS),
                                              ("make-data", MAKE_DATA_OPTIONS),
                                              *INFERENCE_OPTIONS.items()])
def test_every_spec_option_is_in_its_parser_with_the_spec_default(command, options):
    parser = _subparser(command)
    actions = _actions(parser)
    for o in options:
        a = actions[o.name]
        if not o.positional:
            assert o.option_string in a.option_strings
        # a flag of the config (--scst) defaults to None: not given, so a resumed run keeps it
        assert a.default == (False if o.action == "store_true" and not o.config else o.parser_default), o.name
        assert a.choices == o.choices
        if o.help and "{default" in o.help:
            assert a.help.startswith(o.help.format(default=o.default))
        if o.kind is not None and o.kind.hi is not None and o.help:  # the range, in --help
            assert a.help.endswith(f"; {o.kind.expected}"), o.name
    # and nothing but the spec (plus --help, --debug and the runtime options)
    assert set(actions) - {o.name for o in options} == {"help", "debug", "backend", "threads"} - (
        {"backend", "threads"} if command == "make-data" else set())


def test_defaults_and_config_keys_come_from_the_spec():
    config = resolve_config({})
    for name, (section, key) in OPTION_KEYS.items():
        assert config[section][key] == DEFAULTS[name]
    assert config["data"]["num_train_images"] == DEFAULTS["num_train_images"]
    assert config["data"]["seed"] == DEFAULTS["data_seed"]
    assert set(config["model"]) == set(MODEL_KEYS)
    parsed = build_parser().parse_args(["train"])
    assert all(getattr(parsed, name) is None for name in DEFAULTS)  # None = not given


@pytest.mark.parametrize("name, bad", [("hidden_dim", 0), ("epochs", -1), ("lr", float("nan")),
                                       ("lr_decay", 0.0), ("max_train", 0), ("data_seed", -2),
                                       ("cell", "gru"), ("dtype", "float16"),
                                       ("update_rule", "lbfgs"), ("batch_size", "ten")])
def test_validation_errors_name_the_option(name, bad):
    flag = "--" + name.replace("_", "-")
    with pytest.raises(ValueError, match=f"^{flag} must be "):
        check_options({name: bad})
    with pytest.raises(ValueError, match=f"^{flag} must be "):
        resolve_config({name: bad})  # what Trainer(options) runs first


def test_parser_rejects_what_check_options_rejects(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--lr", "inf"])
    assert "--lr: expected a number > 0, got 'inf'" in capsys.readouterr().err


def test_lists_are_read_from_their_one_declaration():
    actions = _actions(_subparser("train"))
    assert actions["update_rule"].choices == optim.UPDATE_RULES
    assert all(callable(getattr(optim, r)) for r in optim.UPDATE_RULES)
    assert set(actions["backend"].choices) == set(BACKEND_CHOICES)
    assert fastcap.__version__ == importlib.metadata.version(DISTRIBUTION)  # the installed distribution


def test_model_config_describes_validates_and_builds():
    m = ModelConfig("lstm", 12, 8, 10, "float64")
    assert m.describe() == "LSTM (wordvec 8, hidden 10, float64)"
    assert m.describe(keys=True) == "lstm with wordvec_dim 8, hidden_dim 10, input_dim 12"
    model = m.build({"<NULL>": 0, "<START>": 1, "<END>": 2, "a": 3}, seed=3)
    assert ModelConfig.from_model(model) == m
    assert model.params["W_proj"].dtype == np.float64
    assert ModelConfig.from_dict(m.as_dict()) == m
    for bad, match in [(dict(cell_type="gru"), "cell_type"), (dict(dtype="int8"), "dtype"),
                       (dict(hidden_dim=0), "hidden_dim"), (dict(input_dim=2.5), "input_dim")]:
        with pytest.raises(ValueError, match=match):
            ModelConfig(**{**m.as_dict(), **bad})
    with pytest.raises(ValueError, match="input_dim"):
        ModelConfig("rnn", None, 8, 10, "float32").build({"<NULL>": 0})


# ---------------------------------------------------------------- every accepted value resumes
# A run that uses an option's accepted values writes checkpoints that load and resume
# (issue 19, class 2): the parser's ranges are the checkpoint schema's, and what one
# option cannot say alone (the generated data's size, the run's length) is checked
# when the run starts, naming the options, before anything is allocated or trained.
RANGED = [o for o in TRAIN_OPTIONS if o.kind is not None and (o.config or o.generated)]


def _schema_field(option):
    fields = dict(checkpoint_schema.walk(checkpoint_schema.CONFIG, "config"))
    path = (f"config.{'.'.join(option.config)}" if option.config
            else f"config.data.{option.generated}")
    spec = fields[path]
    return spec.spec if isinstance(spec, checkpoint_schema.Optional) else spec


def _bounds(kind):
    """The least and greatest value ``kind`` accepts."""
    lo = math.nextafter(kind.lo, math.inf) if kind.open_lo else kind.lo
    return kind.convert(lo), kind.convert(sys.float_info.max if kind.hi is None else kind.hi)


@pytest.mark.parametrize("option", RANGED, ids=lambda o: o.name)
def test_each_option_range_is_the_checkpoint_schemas(option):
    spec, kind = _schema_field(option), option.kind
    assert (spec.lo, spec.hi) == (kind.lo, math.inf if kind.hi is None else kind.hi), option.name
    assert getattr(spec, "positive", False) == kind.open_lo
    for inside in _bounds(kind):
        option.check(inside)
        spec.check(inside, "x")
    for outside in (math.nextafter(kind.lo, -math.inf) if kind.convert is float else kind.lo - 1,
                    (math.inf if kind.hi is None else math.nextafter(kind.hi, math.inf))
                    if kind.convert is float else kind.hi + 1,
                    *([kind.lo] if kind.open_lo else [])):
        with pytest.raises(ValueError, match=f"^{option.option_string} must be "):
            check_options({option.name: kind.convert(outside)})
        with pytest.raises(checkpoint_schema.SchemaError):
            spec.check(kind.convert(outside), "x")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A real checkpoint (1 iteration of a tiny run) whose metadata the property tests vary."""
    out = tmp_path_factory.mktemp("tiny")
    opts = dict(num_train_images=4, num_val_images=2, captions_per_image=2, hidden_dim=4,
                wordvec_dim=4, batch_size=8, epochs=2, eval_images=2, num_samples=0)
    with fastcap.use_backend("numpy"), pytest.raises(TrainingInterrupted):
        Trainer(opts, out, stop_after_iterations=1, progress=False, stdout=io.StringIO()).run()
    return load_checkpoint(out / "checkpoint.npz")


def _extreme(option):
    return st.sampled_from(_bounds(option.kind))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_extreme_option_values_round_trip_through_a_checkpoint(tiny_checkpoint, data):
    """Any options at their extremes either start a run whose checkpoint loads and resumes
    (with the resumable options at their extremes too), or are refused when the run is set up,
    naming the options: only what no single range can say (the generated data's size)."""
    chosen = data.draw(st.lists(st.sampled_from(RANGED), min_size=1, max_size=4, unique=True))
    options = {o.name: data.draw(_extreme(o)) for o in chosen}
    if {"attention_dim", "attention_reg"} & set(options):  # they size the attention model
        options["kind"] = "attention"
    try:
        config = resolve_config(options)
    except ValueError as exc:
        generated = {o.name for o in RANGED if o.generated}
        assert set(options) & generated, exc
        assert "generated" in str(exc) and "could not be saved" in str(exc)
        return
    grid = config["data"].get("grid")  # an attention model reads its generated grids' cells
    config["model"]["input_dim"] = (grid["grid_dim"] if grid
                                    else tiny_checkpoint.config["model"]["input_dim"])
    # What load_checkpoint checks of a checkpoint of this run, at its start and at its end.
    epochs = config["train"]["num_epochs"]
    for epoch in {0, epochs}:
        checkpoint_schema.check_meta({**tiny_checkpoint.meta, "config": config, "epoch": epoch,
                                      "iteration": epoch, "epochs": []})
    saved = dataclasses.replace(tiny_checkpoint, config=config, meta={
        **tiny_checkpoint.meta, "config": config, "epoch": epochs, "iteration": epochs,
        "epochs": []}, epoch=epochs)
    resumed = {o.name: data.draw(_extreme(o)) for o in RANGED if o.resumable}
    if resumed.get("epochs", epochs) < epochs:
        with pytest.raises(CheckpointError, match="--epochs .* has done"):
            resolve_config(resumed, saved)
        resumed["epochs"] = epochs
    checkpoint_schema.check_meta({**saved.meta, "config": resolve_config(resumed, saved)})


def test_resume_with_fewer_epochs_than_done_is_refused(tiny_checkpoint):
    saved = dataclasses.replace(tiny_checkpoint, epoch=2, meta={
        **tiny_checkpoint.meta, "epoch": 2, "iteration": 2})
    with pytest.raises(CheckpointError, match=r"--epochs 1 \(the checkpoint has done 2 epochs"):
        resolve_config({"epochs": 1}, saved)
    assert resolve_config({"epochs": 2}, saved)["train"]["num_epochs"] == 2


def test_what_no_range_says_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=r"^--num-train-images / .*could not be saved and "
                                         r"resumed \(field config.data asks for"):
        resolve_config({"num_train_images": 1 << 20, "captions_per_image": 100})
    with pytest.raises(ValueError, match=r"--epochs 1048576 at --batch-size 1 is .* iterations"):
        Trainer({"num_train_images": 400, "num_val_images": 2, "captions_per_image": 2,
                 "epochs": 1 << 20, "batch_size": 1}, tmp_path / "r").setup()
    assert not (tmp_path / "r").exists()


def test_a_run_at_the_extremes_trains_saves_and_resumes(backend, tmp_path):
    """Every option a tiny run can afford at its extreme, trained for real on each backend,
    interrupted, loaded and resumed (the decayed learning rate underflows to 0 on the way)."""
    opts = {"epochs": 1 << 20, "seed": 2**32 - 1, "data_seed": 2**32 - 1,
            "lr": 5e-324, "lr_decay": 5e-324, "max_length": 1000, "eval_images": 1 << 20,
            "num_samples": 1 << 20, "max_train": 1 << 32, "captions_per_image": 100,
            "num_train_images": 2, "num_val_images": 1, "hidden_dim": 1, "wordvec_dim": 1,
            "batch_size": 200, "update_rule": "adam", "cell": "lstm"}
    out, log = tmp_path / "run", io.StringIO()
    with pytest.raises(TrainingInterrupted):
        Trainer(opts, out, stop_after_iterations=2, progress=False, stdout=log).run()
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.iteration == 2 and ckpt.config["train"]["num_epochs"] == 1 << 20
    assert all(c["learning_rate"] == 0.0 for c in ckpt.optim_configs.values())
    with pytest.raises(TrainingInterrupted):
        Trainer({"epochs": 1 << 20, "max_length": 1000}, resume=out, stop_after_iterations=3,
                progress=False, stdout=log).run()
    assert load_checkpoint(out).iteration == 3


def test_numpy_numbers_are_accepted_as_the_options_type():
    config = resolve_config({"hidden_dim": np.int64(8), "lr": np.float32(0.5), "epochs": np.uint8(3)})
    assert config["model"]["hidden_dim"] == 8 and type(config["model"]["hidden_dim"]) is int
    assert type(config["train"]["learning_rate"]) is float
    assert type(config["train"]["num_epochs"]) is int
