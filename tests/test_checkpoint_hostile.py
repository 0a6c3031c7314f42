"""Crafted checkpoints and data directories get one clear error (issue 11, items 3, 5, 10, 11, 13).

The fuzz test walks ``fastcap.train.checkpoint_schema.META``: every field is set to
each value its spec must reject, and to values hypothesis draws, and the
checkpoint must then either load (the value was valid) or fail with a
CheckpointError naming that field, never anything else.
"""
import copy
import json
import os
import shutil
import zipfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastcap
from fastcap.train import checkpoint_schema as schema
from fastcap.train.checkpoint import CheckpointError, load_checkpoint
from fastcap.train.checkpoint_schema import ADDED_LATER
from fastcap.coco_utils import load_coco_data
from fastcap.data.make import write_coco_data
from fastcap.train.trainer import Trainer

from conftest import fastcap_cmd

TINY = dict(num_train_images=20, num_val_images=4, captions_per_image=2, hidden_dim=8,
            wordvec_dim=8, batch_size=10, epochs=1, dtype="float64", eval_images=0, num_samples=1)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """(path, members, meta) of a real checkpoint of a tiny run."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    with fastcap.use_backend("numpy"):
        import io

        Trainer(TINY, out_dir=out, progress=False, stdout=io.StringIO()).run()
    with np.load(out / "checkpoint.npz", allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    return out / "checkpoint.npz", members, json.loads(str(members["meta"]))


def _write(path, members, meta=None, **replace):
    members = dict(members, **replace)
    if meta is not None:
        members["meta"] = np.array(json.dumps(meta, allow_nan=True))
    np.savez(path, **members)
    return path


def _set(meta, dotted, value):
    meta = copy.deepcopy(meta)
    *parents, last = dotted.split(".")
    node = meta
    for key in parents:
        node = node[key]
    node[last] = value
    return meta


def _delete(meta, dotted):
    meta = copy.deepcopy(meta)
    *parents, last = dotted.split(".")
    node = meta
    for key in parents:
        node = node[key]
    del node[last]
    return meta


def _leaves(meta):
    """Schema fields that are present in this checkpoint's metadata."""
    for path, spec in schema.walk():
        if not path:
            continue
        node, ok = meta, True
        for key in path.split("."):
            if isinstance(node, dict) and key in node:
                node = node[key]
            else:
                ok = False
                break
        if ok:
            yield path, spec


# ---------------------------------------------------------------- item 3 and the fuzz test
def test_rng_position_past_the_key_is_refused_by_resume(good, tmp_path):
    path, members, meta = good
    d = tmp_path / "r"
    d.mkdir()
    _write(d / "checkpoint.npz", members, _set(meta, "rng.pos", 10**6))
    proc = fastcap_cmd("train", "--resume", d / "checkpoint.npz", "--epochs", "2", "--quiet", timeout=120)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)  # was -11 (SIGSEGV)
    assert "field rng.pos must be an integer in [0, 624], got 1000000" in proc.stderr


def test_every_schema_field_rejects_its_bad_values(good, tmp_path):
    path, members, meta = good
    fields = list(_leaves(meta))
    assert len(fields) > 30  # the walk reaches the nested config
    checked = 0
    for field, spec in fields:
        for bad in spec.bad_values():
            p = _write(tmp_path / "bad.npz", members, _set(meta, field, bad))
            with pytest.raises(CheckpointError) as info:
                load_checkpoint(p)
            msg = str(info.value)
            assert str(p) in msg, msg
            assert f"field {field}" in msg or field.rsplit(".", 1)[0] in msg or "not a fastcap" in msg, (
                field, bad, msg)
            checked += 1
        if field not in ("config.train.max_train",) and field.count(".") <= 2:
            optional = field.endswith(("eval_seconds", "max_train")) or field in {
                f"config.{section}.{key}" for section, keys in ADDED_LATER.items() for key in keys}
            p = _write(tmp_path / "missing.npz", members, _delete(meta, field))
            if not optional and field not in ("format",):
                with pytest.raises(CheckpointError, match="missing|not a fastcap|must"):
                    load_checkpoint(p)
    assert checked > 150


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                     | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5),
                     lambda children: st.lists(children, max_size=3)
                     | st.dictionaries(st.text(max_size=3), children, max_size=3), max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_values_in_random_fields_load_or_name_the_field(good, tmp_path, data):
    path, members, meta = good
    fields = [f for f, _ in _leaves(meta)]
    field = data.draw(st.sampled_from(fields))
    value = data.draw(_JSON)
    p = _write(tmp_path / "fuzz.npz", members, _set(meta, field, value))
    try:
        ck = load_checkpoint(p)
    except CheckpointError as exc:
        assert str(p) in str(exc)
        return
    assert ck.iteration == meta["iteration"] or field == "iteration"


# ---------------------------------------------------------------- item 10: the cases
@pytest.mark.parametrize("change, words", [
    (lambda m: _delete(m, "iteration"), "field iteration is missing"),
    (lambda m: _delete(m, "config.data"), "field config.data is missing"),
    (lambda m: _delete(m, "config.train"), "field config.train is missing"),
    (lambda m: _delete(m, "config.eval"), "field config.eval is missing"),
    (lambda m: _set(m, "config", [1, 2]), "field config must be a JSON object, got list"),
    (lambda m: _set(m, "version", "1"), "field version must be an integer in [1, 2], got str '1'"),
    (lambda m: _set(m, "iteration", float("inf")), "field iteration must be an integer"),
    (lambda m: _set(m, "iteration", -5), "field iteration must be an integer in [0, "),
    (lambda m: _set(m, "config.model.hidden_dim", 8.0), "field config.model.hidden_dim must be an integer"),
    (lambda m: _set(m, "config.model.dtype", "float16"), "field config.model.dtype must be one of 'float32', 'float64'"),
    (lambda m: _set(m, "config.model.dtype", "O"), "field config.model.dtype must be one of"),
    (lambda m: _set(m, "optim_scalars.Wx.learning_rate", "0.01"),
     "field optim_scalars.Wx.learning_rate must be a finite number"),
    (lambda m: _set(m, "config.data.num_train_images", 3000000),
     "field config.data.num_train_images must be an integer in [1, 1048576]"),
])  # fmt: skip
def test_malformed_fields_name_the_field(good, tmp_path, change, words):
    path, members, meta = good
    p = _write(tmp_path / "c.npz", members, change(meta))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(p)
    assert str(p) in str(info.value) and words in str(info.value), str(info.value)


@pytest.mark.parametrize("key, value", [("pca_dim", None), ("pca", False)])
def test_a_generated_data_record_that_does_not_fit_the_model_is_named(good, tmp_path, key, value):
    """The records against each other (issue 27): the generated data's feature size must be the
    model's input size; each field alone is in range, together they cannot be."""
    path, members, meta = good
    data, input_dim = meta["config"]["data"], meta["config"]["model"]["input_dim"]
    assert data["pca"] and data["pca_dim"] == input_dim != data["full_dim"]  # the fixture's
    value = input_dim + 1 if value is None else value
    p = _write(tmp_path / "c.npz", members, _set(meta, f"config.data.{key}", value))
    with pytest.raises(CheckpointError, match=f"field config.model.input_dim is {input_dim}, but the "
                       "model was trained on the generated data's (PCA|full) features, which are "):
        load_checkpoint(p)


def test_deeply_nested_metadata(good, tmp_path):
    path, members, meta = good
    p = tmp_path / "deep.npz"
    np.savez(p, **dict(members, meta=np.array("[" * 100000 + "]" * 100000)))
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_checkpoint(p)


@pytest.mark.parametrize("member, value, words", [
    ("param/Wx", lambda a: a.astype(np.float16), "must have dtype float32 or float64, got float16"),
    ("param/Wx", lambda a: a.astype(np.complex128), "must have dtype float32 or float64"),
    ("optim/Wx/m", lambda a: a.astype(str), "must have dtype float32 or float64"),
    ("optim/Wx/m", lambda a: a.astype(np.complex64), "must have dtype float32 or float64"),
    ("loss_history", lambda a: a.reshape(-1, 1), "has shape"),
    ("param/b", lambda a: np.full_like(a, np.nan), "NaN or infinite"),
    ("rng/keys", lambda a: a.astype(np.int64), "must have dtype uint32"),
])  # fmt: skip
def test_malformed_arrays_name_the_member(good, tmp_path, member, value, words):
    path, members, meta = good
    p = _write(tmp_path / "c.npz", members, **{member: value(members[member])})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(p)
    assert member in str(info.value) and words in str(info.value), str(info.value)


def test_an_object_member_is_refused_without_unpickling(good, tmp_path):
    path, members, meta = good
    p = tmp_path / "obj.npz"
    np.savez(p, **dict(members, **{"param/Wx": np.array([{"a": 1}], dtype=object)}))
    with pytest.raises(CheckpointError, match=r"param/Wx' must have dtype float32 or float64, got object"):
        load_checkpoint(p)


def test_big_endian_members_load_as_native(good, tmp_path):
    path, members, meta = good
    p = _write(tmp_path / "be.npz", members, **{"param/Wx": members["param/Wx"].astype(">f8")})
    ck = load_checkpoint(p)
    assert ck.params["Wx"].dtype == np.float64 and ck.params["Wx"].dtype.isnative
    np.testing.assert_array_equal(ck.params["Wx"], members["param/Wx"])


# ---------------------------------------------------------------- item 5: bounded reading
def test_members_outside_the_schema_are_never_decompressed(good, tmp_path):
    path, members, meta = good
    p = tmp_path / "extra.npz"
    shutil.copy(path, p)
    with zipfile.ZipFile(p, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("junk.npy", b"\0" * (1 << 20))
    raw = bytearray(p.read_bytes())
    # damage the junk member's compressed bytes: reading it would fail its CRC check
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("junk.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 10: start + 200] = b"\xff" * 190
    p.write_bytes(bytes(raw))
    with zipfile.ZipFile(p) as zf, pytest.raises(Exception):
        zf.read("junk.npy")
    ck = load_checkpoint(p)
    assert ck.iteration == meta["iteration"]


def test_a_member_larger_than_its_header_is_refused_before_reading(good, tmp_path):
    path, members, meta = good
    p = tmp_path / "bloated.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "param/b.npy":
                data += b"\0" * (8 << 20)  # 8 MB beyond what the header describes
            dst.writestr(name, data)
    with pytest.raises(CheckpointError, match=r"'param/b' declares .* bytes but its header describes"):
        load_checkpoint(p)


def test_a_generated_data_spec_beyond_the_bound_is_refused(good, tmp_path):
    path, members, meta = good
    m = _set(_set(meta, "config.data.num_train_images", 1 << 20), "config.data.pca", False)
    with pytest.raises(CheckpointError, match="generated feature values"):
        load_checkpoint(_write(tmp_path / "c.npz", members, m))
    m = _set(_set(meta, "config.data.full_dim", 1 << 16), "config.data.pca_dim", 1 << 16)
    with pytest.raises(CheckpointError, match="generated feature values"):
        load_checkpoint(_write(tmp_path / "c.npz", members, m))
    m = _set(_set(meta, "config.data.num_train_images", 1 << 18), "config.data.captions_per_image", 50)
    with pytest.raises(CheckpointError, match="generated captions"):
        load_checkpoint(_write(tmp_path / "c.npz", members, m))


def test_checkpoints_of_the_previous_reader_still_load(good, tmp_path):
    # the format did not change: np.savez members, read back member by member
    path, members, meta = good
    p = tmp_path / "old.npz"
    np.savez(p, **members)
    ck = load_checkpoint(p)
    assert set(ck.params) == set(fastcap.CaptioningRNN.PARAM_SHAPES)
    for name in ck.params:
        np.testing.assert_array_equal(ck.params[name], members[f"param/{name}"])


# ---------------------------------------------------------------- data directories (items 10, 11, 13)
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data") / "coco"
    write_coco_data(d, num_train_images=6, num_val_images=3, captions_per_image=2, pca_dim=8,
                    full_dim=8, seed=1)
    return d


@pytest.fixture
def coco(data_dir, tmp_path):
    d = tmp_path / "coco"
    shutil.copytree(data_dir, d)
    return d


def _rewrite_h5(path, name, fn):
    with h5py.File(path, "r") as f:
        arrays = {k: f[k][()] for k in f}
    arrays[name] = fn(arrays[name])
    os.unlink(path)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


@pytest.mark.parametrize("dtype", [">f4", ">f8", "<f2"])
def test_big_endian_and_half_features_are_converted(coco, dtype):
    ref = load_coco_data(coco)["train_features"]
    _rewrite_h5(coco / "train2014_vgg16_fc7_pca.h5", "features", lambda a: a.astype(dtype))
    got = load_coco_data(coco)["train_features"]
    assert got.dtype.isnative and got.dtype in (np.float32, np.float64)
    np.testing.assert_allclose(got, ref, rtol=1e-3 if dtype == "<f2" else 0, atol=1e-3 if dtype == "<f2" else 0)


def test_big_endian_captions_are_converted(coco):
    ref = load_coco_data(coco)["train_captions"]
    _rewrite_h5(coco / "coco2014_captions.h5", "train_captions", lambda a: a.astype(">i4"))
    got = load_coco_data(coco)["train_captions"]
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, ref)


def test_negative_indices_are_reported_as_they_are(coco):
    _rewrite_h5(coco / "coco2014_captions.h5", "train_captions", lambda a: np.where(a == a.max(), -1, a))
    with pytest.raises(ValueError, match=r"train_captions holds word index -1, outside \[0, "):
        load_coco_data(coco)


def test_negative_image_index(coco):
    _rewrite_h5(coco / "coco2014_captions.h5", "val_image_idxs", lambda a: a - 5)
    with pytest.raises(ValueError, match=r"val_image_idxs holds image index -\d+, outside \[0, 3\)"):
        load_coco_data(coco)


def test_binary_urls_file(coco):
    (coco / "val2014_urls.txt").write_bytes(b"http://a\n\xff\xfe\x00binary\n")
    with pytest.raises(ValueError, match=r"val2014_urls.txt: line 2 is not UTF-8"):
        load_coco_data(coco)


@pytest.mark.parametrize("value, words", [
    ("3", "must be an integer index, got str"),
    (3.0, "must be an integer index, got float"),
    (None, "must be an integer index, got NoneType"),
    ([[[[3]]]], "must be an integer index, got list"),
    (-1, "is -1, outside"),
])  # fmt: skip
def test_malformed_vocabulary_values(coco, value, words):
    path = coco / "coco2014_vocab.json"
    vocab = json.loads(path.read_text())
    word = vocab["idx_to_word"][5]
    vocab["word_to_idx"][word] = value
    path.write_text(json.dumps(vocab))
    with pytest.raises(ValueError) as info:
        load_coco_data(coco)
    msg = str(info.value)
    assert "coco2014_vocab.json" in msg and "word_to_idx" in msg and repr(word) in msg and words in msg, msg


def test_deeply_nested_vocabulary(coco):
    (coco / "coco2014_vocab.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="coco2014_vocab.json is JSON nested too deeply"):
        load_coco_data(coco)


def test_data_files_that_are_not_regular(coco):
    os.unlink(coco / "train2014_urls.txt")
    os.mkfifo(coco / "train2014_urls.txt")
    with pytest.raises(ValueError, match="train2014_urls.txt is not a regular file"):
        load_coco_data(coco)
