"""The one option specification (fastcap.options) and the model config (fastcap.model_config):
the parser, the defaults and the validation all follow the spec; the model config describes,
validates and builds a model; the update rules, backends and version are read from one place."""
import argparse
import importlib.metadata

import numpy as np
import pytest

import fastcap
from fastcap import _backend, optim
from fastcap.cli import build_parser
from fastcap.model_config import MODEL_KEYS, ModelConfig
from fastcap.options import (DEFAULTS, INFERENCE_OPTIONS, MAKE_DATA_OPTIONS, OPTION_KEYS,
                             TRAIN_OPTIONS, check_options)
from fastcap.trainer import resolve_config


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
        assert a.default == (False if o.action == "store_true" else o.parser_default), o.name
        assert a.choices == o.choices
        if o.help and "{default" in o.help:
            assert a.help == o.help.format(default=o.default)
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
    assert "--lr: expected a positive number, got 'inf'" in capsys.readouterr().err


def test_lists_are_read_from_their_one_declaration():
    actions = _actions(_subparser("train"))
    assert actions["update_rule"].choices == optim.UPDATE_RULES
    assert all(callable(getattr(optim, r)) for r in optim.UPDATE_RULES)
    assert set(actions["backend"].choices) == set(_backend.VALID_NAMES)
    assert fastcap.__version__ == importlib.metadata.version("fastcap")


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
