"""Tests for fastcap.data.generated: layout, caption grammar, determinism, files, learnability."""
import json
import os

import h5py
import numpy as np
import pytest

from fastcap.runtime import files as _atomic
from fastcap.data import generated as datagen
from fastcap.data.generated import generate_coco_data
from fastcap.data.make import write_coco_data

SMALL = dict(num_train_images=60, num_val_images=20, captions_per_image=3,
             pca_dim=16, full_dim=40, seed=7)
NULL, START, END, UNK = 0, 1, 2, 3


@pytest.fixture(scope="module")
def small():
    return generate_coco_data(**SMALL, full_features=True)


@pytest.fixture(scope="module")
def medium():
    # Large enough for statistics (lengths, <UNK>, least squares), still ~50 ms.
    return generate_coco_data(num_train_images=500, num_val_images=150, captions_per_image=5,
                              pca_dim=64, full_dim=128, seed=1)


def _split_sizes(kw):
    return {"train": kw["num_train_images"], "val": kw["num_val_images"]}


def test_keys_dtypes_shapes(small):
    base_keys = {"train_captions", "val_captions", "train_image_idxs", "val_image_idxs",
                 "train_features", "val_features", "idx_to_word", "word_to_idx",
                 "train_urls", "val_urls"}
    assert set(small) == base_keys | {"train_features_full", "val_features_full"}
    assert set(generate_coco_data(**SMALL)) == base_keys

    for split, n_images in _split_sizes(SMALL).items():
        n_caps = n_images * SMALL["captions_per_image"]
        caps, idxs = small[f"{split}_captions"], small[f"{split}_image_idxs"]
        assert caps.dtype == np.int32 and caps.shape == (n_caps, 17)
        assert idxs.dtype == np.int32 and idxs.shape == (n_caps,)
        feats = small[f"{split}_features"]
        assert feats.dtype == np.float32 and feats.shape == (n_images, SMALL["pca_dim"])
        full = small[f"{split}_features_full"]
        assert full.dtype == np.float32 and full.shape == (n_images, SMALL["full_dim"])
        assert np.isfinite(feats).all() and np.isfinite(full).all()
        urls = small[f"{split}_urls"]
        assert isinstance(urls, np.ndarray) and urls.ndim == 1 and urls.dtype.kind == "U"
        assert urls.shape == (n_images,) and len(set(urls.tolist())) == n_images
        assert urls[3] == (f"generated://{split}2014/000003.jpg?seed={SMALL['seed']}"
                           f"&images={n_images}")
        # every image has captions, and idxs point into the feature matrix
        assert idxs.min() >= 0 and idxs.max() < n_images
        assert np.array_equal(np.bincount(idxs, minlength=n_images),
                              np.full(n_images, SMALL["captions_per_image"]))
    assert isinstance(small["idx_to_word"], list) and isinstance(small["word_to_idx"], dict)


def test_vocabulary(small):
    idx_to_word, word_to_idx = small["idx_to_word"], small["word_to_idx"]
    assert idx_to_word[:4] == ["<NULL>", "<START>", "<END>", "<UNK>"]
    assert len(set(idx_to_word)) == len(idx_to_word)
    assert word_to_idx == {w: i for i, w in enumerate(idx_to_word)}
    assert all(type(i) is int for i in word_to_idx.values())
    assert 100 <= len(idx_to_word) <= 150
    assert all(w.isalpha() and w.islower() for w in idx_to_word[4:])  # real words
    for caps in (small["train_captions"], small["val_captions"]):
        assert caps.min() >= 0 and caps.max() < len(idx_to_word)


@pytest.mark.parametrize("split", ["train", "val"])
def test_caption_structure(medium, split):
    caps = medium[f"{split}_captions"]
    assert (caps[:, 0] == START).all()
    assert ((caps == END).sum(axis=1) == 1).all()
    assert not (caps[:, 1:] == START).any()
    end_pos = np.argmax(caps == END, axis=1)
    cols = np.arange(caps.shape[1])
    before = cols[None, :] < end_pos[:, None]
    after = cols[None, :] > end_pos[:, None]
    assert (caps[after] == NULL).all()
    assert not (caps[before] == NULL).any()
    words = end_pos - 1
    assert words.min() >= 1 and words.max() <= 15


def test_lengths_realistic(medium):
    caps = np.concatenate([medium["train_captions"], medium["val_captions"]])
    scored = (caps[:, 1:] != NULL).sum(axis=1)  # words + <END>
    assert scored.min() <= 5 and scored.max() >= 14 and scored.max() <= 16
    assert 9.5 <= scored.mean() <= 12.5
    assert scored.std() > 1.5


def test_unk_occurs_but_is_rare(medium):
    frac = (medium["train_captions"] == UNK).any(axis=1).mean()
    assert 0.005 < frac < 0.15
    assert (medium["val_captions"] == UNK).any()


def test_captions_are_english(medium):
    iw = medium["idx_to_word"]
    sentences = {" ".join(iw[t] for t in row[1:] if t > END) for row in medium["train_captions"]}
    assert len(sentences) > 500  # paraphrases + attributes give variety
    for s in sentences:
        w = s.split()
        for i in range(len(w) - 1):
            if w[i] == "a":
                assert w[i + 1][0] not in "aeiou", s
            if w[i] == "an":
                assert w[i + 1][0] in "aeiou", s
        assert w[0] in ("a", "an", "two", "three", "there"), s


def test_captions_of_one_image_share_attributes(medium):
    # Paraphrases differ in wording but name the same subject.
    subj = _subject_labels(medium, "train")
    caps, idxs = medium["train_captions"], medium["train_image_idxs"]
    per_caption = _subjects_per_caption(caps, medium["word_to_idx"])
    assert np.array_equal(per_caption, subj[idxs])
    # ... while most images get at least two different wordings
    distinct = [len({r.tobytes() for r in caps[idxs == i]}) for i in range(20)]
    assert np.mean(np.array(distinct) > 1) > 0.5


def test_deterministic():
    a = generate_coco_data(**SMALL, full_features=True)
    b = generate_coco_data(**SMALL, full_features=True)
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
            assert a[k].tobytes() == b[k].tobytes(), k
        else:
            assert a[k] == b[k], k


def test_different_seeds_differ():
    a = generate_coco_data(**SMALL)
    b = generate_coco_data(**{**SMALL, "seed": SMALL["seed"] + 1})
    for k in ("train_captions", "val_captions", "train_features", "val_features"):
        assert not np.array_equal(a[k], b[k]), k
    assert a["idx_to_word"] == b["idx_to_word"]  # the vocabulary is fixed


def test_streams_independent_of_other_arguments():
    base = generate_coco_data(**SMALL)
    more_val = generate_coco_data(**{**SMALL, "num_val_images": 35})
    for k in ("train_captions", "train_image_idxs", "train_features"):
        assert np.array_equal(base[k], more_val[k]), k
    with_full = generate_coco_data(**SMALL, full_features=True)
    assert np.array_equal(base["train_features"], with_full["train_features"])
    assert np.array_equal(base["val_captions"], with_full["val_captions"])


def test_feature_scale(medium):
    f = medium["train_features"]
    assert 0.5 < f.std() < 2.0
    assert f.std(axis=0).min() > 0.1  # every dimension carries something


def _subjects_per_caption(caps, word_to_idx):
    lemma = {}
    for k, forms in enumerate(datagen._SUBJECTS):
        for w in forms:
            lemma[word_to_idx[w]] = k
    table = np.full(len(word_to_idx), -1)
    table[list(lemma)] = list(lemma.values())
    lab = table[caps]
    has = lab >= 0
    assert has.any(axis=1).all()  # every caption names its subject
    return lab[np.arange(len(caps)), np.argmax(has, axis=1)]  # first subject word


def _subject_labels(data, split):
    labels = _subjects_per_caption(data[f"{split}_captions"], data["word_to_idx"])
    out = np.full(data[f"{split}_features"].shape[0], -1)
    out[data[f"{split}_image_idxs"]] = labels
    return out


@pytest.mark.parametrize("which", ["train_features", "train_features_full"])
def test_learnable_subject_from_features(which):
    # Least squares from features to the one-hot subject noun, judged on val.
    data = generate_coco_data(num_train_images=400, num_val_images=150, captions_per_image=2,
                              pca_dim=64, full_dim=128, seed=11, full_features=True)
    val_key = which.replace("train", "val")
    y_tr, y_val = _subject_labels(data, "train"), _subject_labels(data, "val")
    n_classes = len(datagen._SUBJECTS)
    x_tr = np.c_[data[which], np.ones(len(y_tr))]
    x_val = np.c_[data[val_key], np.ones(len(y_val))]
    w = np.linalg.lstsq(x_tr, np.eye(n_classes)[y_tr], rcond=None)[0]
    acc = ((x_val @ w).argmax(axis=1) == y_val).mean()
    chance = np.bincount(y_tr, minlength=n_classes).max() / len(y_tr)  # majority class
    assert chance < 0.2
    assert acc > 0.8, acc


def test_shuffled_features_are_not_learnable():
    # Control for the test above: the link is features -> captions, not label frequencies.
    data = generate_coco_data(num_train_images=400, num_val_images=150, captions_per_image=1,
                              pca_dim=64, full_dim=64, seed=11)
    y_tr, y_val = _subject_labels(data, "train"), _subject_labels(data, "val")
    x_tr = np.c_[data["train_features"], np.ones(len(y_tr))]
    x_tr = x_tr[np.random.default_rng(0).permutation(len(y_tr))]
    x_val = np.c_[data["val_features"], np.ones(len(y_val))]
    w = np.linalg.lstsq(x_tr, np.eye(len(datagen._SUBJECTS))[y_tr], rcond=None)[0]
    assert ((x_val @ w).argmax(axis=1) == y_val).mean() < 0.3


def test_write_coco_data_roundtrip(tmp_path):
    out_dir = tmp_path / "nested" / "coco"
    ret = write_coco_data(out_dir, **SMALL)
    assert ret == out_dir and out_dir.is_dir()
    expected = generate_coco_data(**SMALL, full_features=True)
    assert sorted(os.listdir(out_dir)) == sorted([
        "coco2014_captions.h5", "coco2014_vocab.json",
        "train2014_vgg16_fc7.h5", "val2014_vgg16_fc7.h5",
        "train2014_vgg16_fc7_pca.h5", "val2014_vgg16_fc7_pca.h5",
        "train2014_urls.txt", "val2014_urls.txt", "fastcap_data.json",
    ])  # and no leftover temporary files or lock

    with h5py.File(out_dir / "coco2014_captions.h5", "r") as f:
        assert set(f) == {"train_captions", "val_captions", "train_image_idxs", "val_image_idxs"}
        for k in f:
            assert f[k].dtype == np.int32
            assert np.array_equal(f[k][()], expected[k]), k
    for split in ("train", "val"):
        for suffix, key, dim in (("", "_features_full", SMALL["full_dim"]),
                                 ("_pca", "_features", SMALL["pca_dim"])):
            with h5py.File(out_dir / f"{split}2014_vgg16_fc7{suffix}.h5", "r") as f:
                assert list(f) == ["features"]
                feats = f["features"][()]
            assert feats.dtype == np.float32
            assert feats.shape == (_split_sizes(SMALL)[split], dim)
            assert np.array_equal(feats, expected[split + key])
        with open(out_dir / f"{split}2014_urls.txt") as f:
            urls = np.asarray([line.strip() for line in f])
        assert np.array_equal(urls, expected[f"{split}_urls"])
    with open(out_dir / "coco2014_vocab.json") as f:
        vocab = json.load(f)
    assert set(vocab) == {"idx_to_word", "word_to_idx"}
    assert vocab["idx_to_word"] == expected["idx_to_word"]
    assert vocab["word_to_idx"] == expected["word_to_idx"]

    # rewriting into an existing directory is refused (naming the files), then replaces them
    # when asked to
    before = (out_dir / "coco2014_vocab.json").read_bytes()
    with pytest.raises(FileExistsError, match="coco2014_vocab.json.*--overwrite"):
        write_coco_data(out_dir, **{**SMALL, "seed": 99})
    assert (out_dir / "coco2014_vocab.json").read_bytes() == before
    write_coco_data(out_dir, overwrite=True, **{**SMALL, "seed": 99})
    with h5py.File(out_dir / "coco2014_captions.h5", "r") as f:
        assert not np.array_equal(f["train_captions"][()], expected["train_captions"])


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")

    def failing_write(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        _atomic.atomic_write(target, failing_write)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["file.txt"]


@pytest.mark.parametrize("kwargs, name", [
    ({"num_train_images": 0}, "num_train_images"),
    ({"num_train_images": -3}, "num_train_images"),
    ({"num_train_images": 2.5}, "num_train_images"),
    ({"num_train_images": "10"}, "num_train_images"),
    ({"num_train_images": True}, "num_train_images"),
    ({"num_val_images": 0}, "num_val_images"),
    ({"captions_per_image": 0}, "captions_per_image"),
    ({"pca_dim": 0}, "pca_dim"),
    ({"full_dim": 0}, "full_dim"),
    ({"pca_dim": 32, "full_dim": 16}, "full_dim"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_coco_data(**{**SMALL, **kwargs})


def test_bad_arguments_in_writer_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="captions_per_image"):
        write_coco_data(tmp_path / "out", **{**SMALL, "captions_per_image": -1})
    assert not (tmp_path / "out").exists()


def test_numpy_integer_arguments_accepted():
    a = generate_coco_data(**{**SMALL, "num_train_images": np.int64(60), "seed": np.int32(7)})
    b = generate_coco_data(**SMALL)
    assert np.array_equal(a["train_captions"], b["train_captions"])
