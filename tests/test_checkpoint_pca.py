"""A checkpoint's embedded PCA and vocabulary are untrusted input (issue 29): a tampered one
(wrong shape, NaN, object arrays, another PCA than its record names) is refused naming the
field, and a good one round-trips exactly."""
import json

import numpy as np
import pytest

from fastcap import CaptioningRNN
from fastcap.data.prepare import pca_digest
from fastcap.train.checkpoint import CheckpointError, load_checkpoint, save_model
from fastcap.train.checkpoint_schema import FORMAT_VERSION
from fastcap.train.model_config import ModelConfig
from fastcap.train.run_config import resolve_config

FULL, DIM = 2048, 5  # a record that names ResNet-50 claims its 2048-d features
VOCAB = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "red", "circle"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """(path, members) of a model checkpoint that carries a (12, 5) PCA."""
    rng = np.random.default_rng(0)
    mean = rng.standard_normal(FULL).astype(np.float32)
    comps = rng.standard_normal((FULL, DIM)).astype(np.float32)
    model = CaptioningRNN({w: i for i, w in enumerate(VOCAB)}, input_dim=DIM, wordvec_dim=4,
                          hidden_dim=6, cell_type="lstm", dtype=np.float32,
                          rng=np.random.default_rng(1))
    config = resolve_config({})
    config["model"] = ModelConfig.from_model(model).as_dict()
    config["data"] = {"source": "none", "pca": True, "features": {
        "extractor": "resnet50", "weights": "none", "dim": FULL, "pca_dim": DIM,
        "pca_sha256": pca_digest(mean, comps)}}
    path = tmp_path_factory.mktemp("pca") / "model.npz"
    save_model(path, model=model, config=config, idx_to_word=VOCAB, pca=(mean, comps))
    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    return path, members


def _write(path, members, **replace):
    members = dict(members, **replace)
    np.savez(path, **members)
    return path


def _meta(members, change):
    meta = json.loads(str(members["meta"]))
    change(meta)
    return np.array(json.dumps(meta))


def test_the_pca_round_trips(good):
    path, members = good
    ckpt = load_checkpoint(path)
    assert ckpt.meta["version"] == FORMAT_VERSION == 2 and ckpt.meta["pca_embedded"] is True
    np.testing.assert_array_equal(ckpt.pca[0], members["pca/mean"])
    np.testing.assert_array_equal(ckpt.pca[1], members["pca/components"])
    assert not ckpt.optim_configs  # a model: no optimizer state


def _nan(a):
    a = a.copy()
    a.flat[3] = np.nan
    return a


def _bump(a):
    a = a.copy()
    a.flat[0] += 1.0
    return a


@pytest.mark.parametrize("member, value, words", [
    ("pca/components", lambda a: a[:, :DIM - 1], f"member 'pca/components' has shape ({FULL}, {DIM - 1})"),
    ("pca/components", lambda a: a.T, f"member 'pca/components' has shape ({DIM}, {FULL})"),
    ("pca/mean", lambda a: a[:-1], f"member 'pca/mean' has shape ({FULL - 1},)"),
    ("pca/mean", _nan, "pca/mean holds NaN or infinite values"),
    ("pca/components", _nan, "pca/components holds NaN or infinite values"),
    ("pca/components", lambda a: a.astype(np.float64), "member 'pca/components' must have dtype float32"),
    ("pca/mean", lambda a: a.astype(object), "member 'pca/mean' must have dtype float32"),
    ("pca/components", _bump, "not the PCA its features record names"),
])
def test_a_tampered_pca_is_refused_naming_it(good, tmp_path, member, value, words):
    path, members = good
    bad = _write(tmp_path / "c.npz", members, **{member: value(members[member])})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value) and words in str(info.value), str(info.value)


@pytest.mark.parametrize("change, words", [
    (lambda m: m["config"]["data"].pop("features"), "field pca_embedded is true"),
    (lambda m: m["config"]["data"].update(pca=False), "field pca_embedded is true"),
    (lambda m: m["config"]["data"]["features"].update(dim=str(FULL)),
     "field config.data.features.dim must be an integer"),
    # the record's size against its network (issue 27: records checked against each other)
    (lambda m: m["config"]["data"]["features"].update(dim=4096),
     "field config.data.features.dim is 4096, but resnet50 features are 2048-d"),
    (lambda m: m["config"]["data"]["features"].update(extractor="vgg16"),
     "field config.data.features.dim is 2048, but vgg16 features are 4096-d"),
    (lambda m: m["config"]["model"].update(input_dim=DIM + 1),
     f"field config.model.input_dim is {DIM + 1}, but the model was trained on resnet50 PCA"),
    (lambda m: m["config"]["data"]["features"].pop("pca_sha256"),
     "field config.data.features.pca_sha256 is missing"),
    (lambda m: m.update(pca_embedded="yes"), "field pca_embedded must be one of True, False"),
])
def test_a_record_that_does_not_fit_the_pca_is_refused_naming_the_field(good, tmp_path, change,
                                                                        words):
    path, members = good
    bad = _write(tmp_path / "c.npz", members, meta=_meta(members, change))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert words in str(info.value), str(info.value)


def test_missing_pca_members_are_named(good, tmp_path):
    path, members = good
    members = {k: v for k, v in members.items() if k != "pca/mean"}
    with pytest.raises(CheckpointError, match="incomplete: missing 'pca/mean'"):
        load_checkpoint(_write(tmp_path / "c.npz", members))


@pytest.mark.parametrize("vocab, words", [
    (np.array(VOCAB, dtype=object), "member 'vocab' must have dtype a unicode string"),
    (np.array(json.dumps(VOCAB[:-1])), "member 'param/W_embed' has shape (7, 4), but its config"),
    (np.array(json.dumps(VOCAB[:3] + ["a"] * 4)), "the vocabulary lists 'a' twice"),
    (np.array(json.dumps([0] + VOCAB[1:])), "vocabulary word 0 must be a string"),
])
def test_a_tampered_vocabulary_is_refused_naming_it(good, tmp_path, vocab, words):
    path, members = good
    bad = tmp_path / "c.npz"
    np.savez(bad, **dict(members, vocab=vocab), allow_pickle=True)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert words in str(info.value), str(info.value)
