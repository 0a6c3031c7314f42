"""Data that loads is whole and is what the model computes with (issue 19, class 3), and
memory that cannot be had is a clear error (class 4).

make-data killed at random points leaves the old data, the new, or a directory
the loader refuses; features are checked after the cast to the model's dtype; a
checkpoint is called good only once it reads back; HDF5 links and declared sizes
are checked before anything is read.
"""
import io
import os
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastcap.runtime import memory as _resources
from fastcap.cli import main as cli
from fastcap.captioning_solver import TrainingDivergedError
from fastcap.coco_utils import DATA_FILES, MANIFEST, load_coco_data
from fastcap.data.load import DataError, load_data
from fastcap.data.generated import generate_coco_data
from fastcap.data.make import write_coco_data
from fastcap.train.trainer import Trainer

from conftest import ENV

SMALL = dict(num_train_images=6, num_val_images=4, captions_per_image=2, pca_dim=4, full_dim=6)
# Each atomic write of make-data passes two points: its bytes are on disk (before the
# rename) and the rename is done; 10 files (the manifest twice).
KILL_POINTS = 2 * (len(DATA_FILES) + 2)

_CHILD = """
import os, signal, sys
from fastcap.runtime import files as _atomic
from fastcap.data.make import write_coco_data
k = int(sys.argv[2])
calls = [0]
def point(f):
    def hooked(*a):
        if calls[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        return f(*a)
    return hooked
_atomic._fsync = point(_atomic._fsync)          # the temporary file is written
_atomic._fsync_dir = point(_atomic._fsync_dir)  # the rename is done
write_coco_data(sys.argv[1], overwrite=True, seed=1, **eval(sys.argv[3]))
"""


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """(directory holding the seed-0 data, the seed-0 data, the seed-1 data)."""
    old = tmp_path_factory.mktemp("old") / "data"
    write_coco_data(old, seed=0, **SMALL)
    return old, load_coco_data(old), load_coco_data(_written(tmp_path_factory.mktemp("new"), 1))


def _written(d, seed):
    write_coco_data(d / "data", seed=seed, **SMALL)
    return d / "data"


def _same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a if isinstance(a[k], np.ndarray))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(0, KILL_POINTS - 1), over_old=st.booleans())
def test_make_data_killed_at_any_point_never_leaves_mixed_data(k, over_old, datasets,
                                                               tmp_path_factory):
    old_dir, old, new = datasets
    d = tmp_path_factory.mktemp("killed") / "data"
    if over_old:
        shutil.copytree(old_dir, d)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(d), str(k), repr(SMALL)], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    try:
        loaded = load_coco_data(d)
    except (ValueError, FileNotFoundError) as exc:
        assert "interrupted" in str(exc) or (not over_old and "missing" in str(exc)), exc
    else:  # whole: one dataset or the other, never a mix
        assert _same(loaded, new) or (over_old and _same(loaded, old))
    # make-data again repairs it, debris (temporaries, the killed run's lock) and all
    write_coco_data(d, overwrite=True, seed=1, **SMALL)
    assert _same(load_coco_data(d), new)
    assert sorted(os.listdir(d)) == sorted([*DATA_FILES, MANIFEST])


def test_an_incomplete_manifest_is_refused(datasets, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(datasets[0], d)
    (d / MANIFEST).write_text('{"format": "fastcap make-data", "complete": false}')
    with pytest.raises(ValueError, match="interrupted `fastcap make-data`"):
        load_coco_data(d)
    (d / MANIFEST).write_text("[1, 2")
    with pytest.raises(ValueError, match="not a manifest"):
        load_coco_data(d)
    (d / MANIFEST).unlink()  # data without a manifest (CS231n's) is read as it is
    assert _same(load_coco_data(d), datasets[1])


# ---------------------------------------------------------------- values after the cast
def _with_features(src, dst, split, values):
    shutil.copytree(src, dst)
    with h5py.File(dst / f"{split}2014_vgg16_fc7_pca.h5", "w") as f:
        f.create_dataset("features", data=values)
    return dst


@pytest.mark.parametrize("big", [1e300, 1e39, -2.0 * float(np.finfo(np.float32).max)])
def test_features_are_checked_in_the_models_dtype(big, datasets, tmp_path):
    old_dir, old, _ = datasets
    feats = old["val_features"].astype(np.float64)
    feats[1, 2] = big
    d = _with_features(old_dir, tmp_path / "d", "val", feats)
    spec = {"source": "dir", "path": str(d), "pca": True}
    with pytest.raises(DataError, match=r"val features hold NaN or infinite values \(as float32"):
        load_data(spec, "float32")
    data = load_data(spec, "float64")  # float64 holds them
    assert data["val_features"].dtype == np.float64 and data["val_features"][1, 2] == big
    assert load_data(spec)["val_features"].dtype == np.float64  # no dtype: as stored


def test_training_on_features_that_overflow_keeps_no_checkpoint(backend, datasets, tmp_path):
    """Features finite in float32 but so large that the untrained loss is not finite: the
    run stops at epoch 0 and calls nothing good (no checkpoint with a NaN loss is kept)."""
    old_dir, old, _ = datasets
    d = tmp_path / "d"
    shutil.copytree(old_dir, d)
    for split in ("train", "val"):
        with h5py.File(d / f"{split}2014_vgg16_fc7_pca.h5", "w") as f:
            f.create_dataset("features", data=np.full_like(old[f"{split}_features"], 3e38))
    out = tmp_path / "run"
    options = dict(data=str(d), hidden_dim=8, wordvec_dim=8, batch_size=4, epochs=1,
                   eval_images=0, num_samples=0)
    with pytest.raises(TrainingDivergedError, match="untrained model's validation loss.*"
                                                    "no checkpoint was written"):
        Trainer(options, out_dir=out, progress=False, stdout=io.StringIO()).run()
    assert not (out / "checkpoint.npz").exists()


def test_a_checkpoint_that_does_not_read_back_is_not_called_good(tmp_path):
    t = Trainer.__new__(Trainer)
    t.checkpoint_path = str(tmp_path / "checkpoint.npz")
    assert t._good_checkpoint() == "no checkpoint was written"
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 not a whole zip")
    assert t._good_checkpoint().startswith("no usable checkpoint was kept")


# ---------------------------------------------------------------- HDF5 links and sizes
def _captions_file(d, name, make):
    """A captions file whose dataset ``name`` is made by make(f, name); the others are fine."""
    path = d / "coco2014_captions.h5"
    with h5py.File(path, "w") as f:
        for other in ("train_captions", "val_captions", "train_image_idxs", "val_image_idxs"):
            if other != name:
                f.create_dataset(other, data=np.zeros((2, 17) if "captions" in other else 2,
                                                      np.int32))
        make(f, name)
    return path


HOSTILE = {
    "dangling soft link": lambda f, n: f.__setitem__(n, h5py.SoftLink("/nowhere")),
    "external link": lambda f, n: f.__setitem__(n, h5py.ExternalLink("/dev/zero", "/x")),
    "sparse chunks": lambda f, n: f.create_dataset(n, shape=(10**10, 17), dtype="i4",
                                                   chunks=(1024, 17)),
    "never written": lambda f, n: f.create_dataset(n, shape=(10**9, 17), dtype="i4"),
    "a group": lambda f, n: f.create_group(n),
}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(HOSTILE)),
       name=st.sampled_from(["train_captions", "val_captions", "train_image_idxs"]))
def test_hostile_hdf5_layouts_are_refused_before_reading(kind, name, datasets, tmp_path_factory):
    d = tmp_path_factory.mktemp("h5") / "data"
    shutil.copytree(datasets[0], d)
    (d / MANIFEST).unlink()
    _captions_file(d, name, HOSTILE[kind])
    with pytest.raises(ValueError) as exc:
        load_coco_data(d)
    assert "coco2014_captions.h5" in str(exc.value) and name in str(exc.value), exc.value


def test_declared_sizes_beyond_memory_say_what_and_where(datasets, monkeypatch, capsys):
    monkeypatch.setattr(_resources, "available_memory", lambda: 100)
    with pytest.raises(_resources.OutOfMemory, match=r"reading 'train_captions'.*"
                                                     r"coco2014_captions\.h5.*100 bytes"):
        load_coco_data(datasets[0])
    with pytest.raises(_resources.OutOfMemory, match="num_train_images=6"):
        generate_coco_data(**SMALL)
    assert cli.main(["train", "--hidden-dim", "64", "--num-train-images", "2",
                     "--num-val-images", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "would need" in err and "num_train_images=2" in err and "bug" not in err


def test_out_of_memory_anywhere_is_not_called_a_bug(monkeypatch, capsys):
    def fail(*a, **k):
        raise MemoryError("Unable to allocate 12.0 TiB for an array with shape (10, 10)")

    monkeypatch.setattr("fastcap.cli.info.collect", fail)
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err
    assert "out of memory" in err and "12.0 TiB" in err and "bug" not in err


def test_model_size_beyond_memory_names_the_options(monkeypatch):
    from fastcap.train.model_config import ModelConfig

    monkeypatch.setattr(_resources, "available_memory", lambda: 10**6)
    vocab = generate_coco_data(2, 1, pca_dim=2, full_dim=2)["word_to_idx"]
    with pytest.raises(_resources.OutOfMemory, match=r"--hidden-dim 4096, --wordvec-dim 64"):
        ModelConfig("lstm", 8, 64, 4096, "float32").build(vocab)
