"""Checkpoints of the attention model: its kind, attention_dim and attention_reg in the model config,
saved and loaded with the schema's checks; a checkpoint of one kind of model given to the other's
code is one error naming both; checkpoints from before the attention model still load (pooled)."""
import json
import types

import numpy as np
import pytest

import fastcap
from fastcap import AttentionCaptioningRNN, CaptioningRNN
from fastcap.classifiers import MODEL_KINDS, kind_of
from fastcap.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fastcap.train.model_config import MODEL_DEFAULTS, ModelConfig
from fastcap.train.run_config import resolve_config

WORDS = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, **{f"w{i}": i for i in range(4, 15)}}
IDX_TO_WORD = sorted(WORDS, key=WORDS.get)


def _attention(**kwargs):
    return AttentionCaptioningRNN(WORDS, input_dim=6, wordvec_dim=4, hidden_dim=5, attention_dim=7,
                                  cell_type="rnn", attention_reg=0.25, dtype=np.float64,
                                  rng=np.random.default_rng(0), **kwargs)


def _pooled():
    return CaptioningRNN(WORDS, 6, 4, 5, "lstm", np.float64, rng=np.random.default_rng(0))


def _save(path, model):
    """A checkpoint of `model` after one Adam step's worth of optimizer state."""
    rng = np.random.default_rng(1)
    solver = types.SimpleNamespace(
        optim_configs={k: {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 1,
                           "m": rng.standard_normal(v.shape), "v": rng.random(v.shape)}
                       for k, v in model.params.items()},
        rng=np.random.RandomState(3), iteration=1, epoch=0, loss_history=[2.5])
    config = resolve_config({"kind": kind_of(model)})
    config["model"] = ModelConfig.from_model(model).as_dict()
    data = config["data"]  # the generated data of the model's 6-d features (grids or vectors)
    if "grid" in data:
        data["grid"]["grid_dim"] = 6
    else:
        data["pca_dim"] = 6
    return save_checkpoint(path, model=model, solver=solver, config=config, epochs=[],
                           idx_to_word=IDX_TO_WORD)


def test_an_attention_checkpoint_round_trips(tmp_path):
    model = _attention()
    ckpt = load_checkpoint(_save(tmp_path / "a.npz", model))
    config = ckpt.model
    assert (config.kind, config.attention_dim, config.attention_reg) == ("attention", 7, 0.25)
    assert config.describe() == "attention RNN (wordvec 4, hidden 5, attention 7, float64)"
    built = ckpt.build_model()
    assert type(built) is AttentionCaptioningRNN and built.attention_reg == 0.25
    assert set(built.params) == set(model.params)
    for k, v in model.params.items():
        np.testing.assert_array_equal(built.params[k], v)
    solver = types.SimpleNamespace(model=built, rng=np.random.RandomState(0))
    ckpt.restore_solver(solver)
    assert set(solver.optim_configs) == set(model.params) and solver.iteration == 1


@pytest.mark.parametrize("saved, given", [("attention", "pooled"), ("pooled", "attention")])
def test_a_checkpoint_of_one_model_given_to_the_others_code_names_both(tmp_path, saved, given):
    model, other = (_attention(), _pooled()) if saved == "attention" else (_pooled(), _attention())
    ckpt = load_checkpoint(_save(tmp_path / "c.npz", model))
    with pytest.raises(CheckpointError) as info:
        ckpt.load_params_into(other)
    message = str(info.value)
    assert "\n" not in message
    assert type(model).__name__ in message and type(other).__name__ in message
    assert ("an attention model" in message) and ("a pooled-feature model" in message)
    with pytest.raises(CheckpointError, match=f"fastcap caption takes {'an attention' if given == 'attention' else 'a pooled'}"):
        ckpt.check_kind(given, "fastcap caption")
    ckpt.check_kind(saved, "fastcap caption")  # the right kind passes


def test_checkpoints_from_before_the_attention_model_load_as_pooled(tmp_path):
    path = _save(tmp_path / "old.npz", _pooled())
    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(str(members["meta"]))
    for key in MODEL_DEFAULTS:
        del meta["config"]["model"][key]
    members["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "older.npz", **members)
    ckpt = load_checkpoint(tmp_path / "older.npz")
    assert ckpt.model.kind == "pooled" and type(ckpt.build_model()) is CaptioningRNN
    resumed = resolve_config({}, ckpt)
    assert {k: resumed["model"][k] for k in MODEL_DEFAULTS} == MODEL_DEFAULTS


def _tampered(tmp_path, model, edit):
    path = _save(tmp_path / "t.npz", model)
    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(str(members["meta"]))
    edit(meta["config"]["model"])
    members["meta"] = np.array(json.dumps(meta, allow_nan=True))
    np.savez(tmp_path / "bad.npz", **members)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(kind="pooled"), "optim_scalars"),  # its parameters are not a pooled model's
    (lambda m: m.update(kind="hybrid"), "config.model.kind"),
    (lambda m: m.update(attention_dim=8), r"param/W_enc"),  # the members' shapes are 7's
    (lambda m: m.update(attention_dim=0), "config.model.attention_dim"),
    (lambda m: m.update(attention_reg=float("nan")), "config.model.attention_reg"),
    (lambda m: m.update(attention_reg=-1), "config.model.attention_reg"),
])
def test_tampered_model_kinds_are_named(tmp_path, edit, match):
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(_tampered(tmp_path, _attention(), edit))


def test_model_config_of_both_kinds():
    assert MODEL_KINDS == ("pooled", "attention")
    m = ModelConfig("lstm", 6, 4, 5, "float32", "attention")  # attention_dim: hidden_dim
    assert (m.attention_dim, m.attention_reg) == (5, 1.0)
    assert m.describe(keys=True) == "attention lstm with wordvec_dim 4, hidden_dim 5, attention_dim 5, input_dim 6"
    model = m.build(WORDS, seed=2)
    assert kind_of(model) == "attention" and ModelConfig.from_model(model) == m
    assert ModelConfig.from_dict(m.as_dict()) == m
    assert model.params["W_enc"].shape == (6, 5) and model.params["Wx"].shape == (10, 20)
    pooled = ModelConfig("lstm", 6, 4, 5, "float32", "pooled", attention_dim=9, attention_reg=2.0)
    assert (pooled.attention_dim, pooled.attention_reg) == (None, None)  # a pooled model has neither
    assert pooled == ModelConfig.from_dict({k: v for k, v in pooled.as_dict().items() if k not in MODEL_DEFAULTS})
    for bad, match in [(dict(kind="grid"), "kind must be one of pooled, attention"),
                       (dict(attention_dim=-1), "attention_dim"), (dict(attention_reg=True), "attention_reg")]:
        with pytest.raises(ValueError, match=match):
            ModelConfig(**{**m.as_dict(), **bad})
    with pytest.raises(TypeError, match="CaptioningRNN or AttentionCaptioningRNN"):
        kind_of(object())
    assert fastcap.classifiers.MODELS["attention"] is AttentionCaptioningRNN
