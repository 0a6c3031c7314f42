"""Grid features files (fastcap.data.grid) and their streams (fastcap.data.stream): what is
written is what is read, in any order; a damaged file is named with the image, when it is
read; a minibatch read ahead is the one the solver then draws, and changes nothing it computes."""
import os
import shutil

import h5py
import numpy as np
import pytest

from fastcap.captioning_solver import CaptioningSolver
from fastcap.classifiers.rnn import CaptioningRNN
from fastcap.data.grid import FeatureReadError, GridFile, write_grid
from fastcap.data.load import DataError, check_data, load_data
from fastcap.data.stream import StreamedFeatures, chunk_rows, rows


def _grid(tmp_path, n=12, cells=6, dim=5, seed=0, name="train2014_grid.h5", shape=(2, 3)):
    x = np.random.default_rng(seed).standard_normal((n, cells, dim)).astype(np.float32)
    path = write_grid(tmp_path / name, [x[:5], x[5:]], n, shape, dim)
    return x, path


def _chunk_offset(path, image):
    with h5py.File(path, "r") as f:
        return f["features"].id.get_chunk_info_by_coord((image, 0, 0)).byte_offset


def test_what_is_written_is_read_in_any_order(tmp_path):
    x, path = _grid(tmp_path)
    with GridFile(path) as g:
        assert g.shape == (12, 6, 5) and g.grid_shape == (2, 3)
        idx = [7, 2, 7, 0, 11]
        got = g.read(idx)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, x[idx], rtol=1e-3, atol=1e-3)  # float16 on disk
        assert g.read(idx, np.float64).dtype == np.float64
        with h5py.File(path, "r") as f:  # one image a chunk, each checksummed
            assert f["features"].chunks == (1, 6, 5) and f["features"].fletcher32
            assert f["features"].dtype == np.float16


def test_a_damaged_chunk_is_named_with_its_image_when_read(tmp_path):
    x, path = _grid(tmp_path)
    with open(path, "r+b") as f:
        at = _chunk_offset(path, 6) + 7
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x5A]))
    with GridFile(path) as g:
        np.testing.assert_allclose(g.read([5, 7]), x[[5, 7]], atol=1e-2)  # the others read
        with pytest.raises(FeatureReadError, match=f"{path}: image 6's grid features cannot be read"):
            g.read([1, 6, 9])


def test_values_that_are_not_finite_are_named(tmp_path):
    path = tmp_path / "nan_grid.h5"
    with h5py.File(path, "w") as f:  # another tool's file: no checksum, a NaN in image 3
        a = np.ones((5, 4, 2), np.float16)
        a[3, 1, 1] = np.nan
        f.create_dataset("features", data=a, chunks=(1, 4, 2))
    with GridFile(path) as g:
        assert g.grid_shape == (2, 2)  # no attribute: a square grid
        with pytest.raises(FeatureReadError, match="image 3's grid features hold NaN"):
            g.read([0, 3])


def test_a_truncated_file_is_named_before_anything_is_read(tmp_path):
    _, path = _grid(tmp_path)
    os.truncate(path, os.path.getsize(path) - 100)
    with pytest.raises(ValueError, match=f"{path} is truncated: .* bytes are there"):
        GridFile(path)


@pytest.mark.parametrize("make, message", [
    (lambda f: f.create_dataset("features", data=np.ones((4, 8), np.float32)),
     r"must be grid features, float \(num_images, L cells, D channels\), got float32 \(4, 8\)"),
    (lambda f: f.create_dataset("features", shape=(4, 0, 8), dtype=np.float16),
     r"has 0 cells of 8 channels \(L = 0\): grid features need L >= 1"),
    (lambda f: f.create_dataset("features", shape=(4, 6, 8), dtype=np.float16, chunks=(1, 6, 8)),
     "stores 0 of its 4 chunks"),
    (lambda f: f.create_dataset("features", data=np.ones((4, 6, 2), np.float16)).attrs.create(
        "grid_shape", [2, 2]), r"grid_shape must be two positive integers .* got \[2, 2\]"),
    (lambda f: f.create_dataset("other", data=np.ones((4, 6, 2))), "has no dataset 'features'"),
])
def test_files_that_are_not_grids_are_refused_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad_grid.h5"
    with h5py.File(path, "w") as f:
        make(f)
    with pytest.raises(ValueError, match=message) as caught:
        GridFile(path)
    assert str(path) in str(caught.value)


def test_write_refuses_values_beyond_float16_and_leaves_no_file(tmp_path):
    x = np.zeros((3, 2, 2), np.float32)
    x[2, 0, 1] = 1e6
    with pytest.raises(ValueError, match="image 2's grid features are not finite in float16"):
        write_grid(tmp_path / "g.h5", [x], 3, (1, 2), 2)
    assert os.listdir(tmp_path) == []


def test_a_stream_reads_what_the_file_holds_and_views_compose(tmp_path):
    x, path = _grid(tmp_path)
    s = StreamedFeatures(path, np.float64)
    try:
        assert s.shape == (12, 6, 5) and s.ndim == 3 and len(s) == 12 and s.dtype == np.float64
        expect = np.asarray(GridFile(path).read(np.arange(12)), np.float64)
        np.testing.assert_array_equal(s[[3, 1, 3]], expect[[3, 1, 3]])
        np.testing.assert_array_equal(s[4], expect[4])
        np.testing.assert_array_equal(s[-2:], expect[-2:])
        view = rows(s, np.array([9, 4, 4, 0]))
        assert view.shape == (4, 6, 5)
        np.testing.assert_array_equal(view[1:3], expect[[4, 4]])
        np.testing.assert_array_equal(rows(view, np.array([3, 0]))[:], expect[[0, 9]])
        assert chunk_rows(s, 500) == 500 and chunk_rows(np.zeros((2, 1 << 20)), 500) == 8
    finally:
        s.close()


def test_a_read_ahead_is_taken_only_by_its_own_images_and_brings_its_error(tmp_path):
    x, path = _grid(tmp_path)
    s = StreamedFeatures(path)
    try:
        s.prefetch([5, 1])
        assert s._shared["pending"] is not None
        np.testing.assert_allclose(s[[5, 1]], x[[5, 1]], atol=1e-2)
        assert s._shared["pending"] is None  # taken
        s.prefetch([2, 3])
        np.testing.assert_allclose(s[[3, 2]], x[[3, 2]], atol=1e-2)  # another index: read now
        assert s._shared["pending"] is None  # and the stale read dropped
    finally:
        s.close()
    with open(path, "r+b") as f:
        f.seek(_chunk_offset(path, 8) + 3)
        f.write(b"\xff\xff\xff")
    s = StreamedFeatures(path)
    try:
        s.prefetch([8, 0])  # the reader meets the damage; the error comes with its result
        with pytest.raises(FeatureReadError, match="image 8's"):
            s[[8, 0]]
    finally:
        s.close()


class _MeanModel(CaptioningRNN):
    """A CaptioningRNN of the grid's mean cell: a model that takes grid features."""

    def loss(self, features, captions, grads=True):
        assert features.ndim == 3
        return super().loss(features.mean(axis=1), captions, grads)


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    from fastcap.data.make import write_coco_data

    out = tmp_path_factory.mktemp("gen") / "data"
    write_coco_data(out, num_train_images=40, num_val_images=8, grid_size=3, grid_dim=6)
    return out


def _train(data, iterations, seed=3):
    model = _MeanModel(data["word_to_idx"], input_dim=6, wordvec_dim=8, hidden_dim=8,
                       rng=np.random.default_rng(0))
    solver = CaptioningSolver(model, data, update_rule="adam", batch_size=7, verbose=False,
                              optim_config={"learning_rate": 1e-2},
                              rng=np.random.RandomState(seed))
    for _ in range(iterations):
        solver.step()
    return solver


def test_streaming_trains_exactly_as_the_same_data_in_memory(gen_dir):
    spec = {"source": "dir", "path": str(gen_dir), "pca": True, "grid": True}
    streamed, held = load_data(spec, "float32"), load_data(spec, "float32", stream=False)
    assert isinstance(streamed["train_features"], StreamedFeatures)
    assert isinstance(held["train_features"], np.ndarray)
    a, b = _train(streamed, 12), _train(held, 12)
    assert a.loss_history == b.loss_history
    assert a.rng.get_state()[2] == b.rng.get_state()[2]  # reading ahead drew nothing


def test_a_damaged_image_stops_a_step_before_it_changes_anything(gen_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(gen_dir, data_dir)
    path = data_dir / "train2014_grid.h5"
    spec = {"source": "dir", "path": str(data_dir), "pca": True, "grid": True}
    data = load_data(spec, "float32")
    draws = np.random.RandomState(3)  # the solver's draws: damage an image of the third only
    batches = [set(data["train_image_idxs"][draws.choice(data["train_captions"].shape[0], 7)])
               for _ in range(3)]
    victim = int(min(batches[2] - batches[0] - batches[1]))
    with open(path, "r+b") as f:
        f.seek(_chunk_offset(path, victim) + 2)
        f.write(b"\x00\xff\x00\xff")
    solver = _train(data, 2)
    state = solver.rng.get_state()
    params = {k: v.copy() for k, v in solver.model.params.items()}
    with pytest.raises(FeatureReadError, match=f"image {victim}'s"):  # read ahead, raised here
        solver.step()
    assert solver.iteration == 2 and solver.rng.get_state()[2] == state[2]
    np.testing.assert_array_equal(solver.rng.get_state()[1], state[1])
    assert all(np.array_equal(params[k], v) for k, v in solver.model.params.items())


def test_pooled_data_is_refused_for_grids_naming_the_directory(gen_dir, tmp_path):
    from fastcap.data.make import write_coco_data

    out = write_coco_data(tmp_path / "pooled", num_train_images=4, num_val_images=2)
    with pytest.raises(DataError, match=f"{out} has no grid features \\(train2014_grid.h5\\)"):
        load_data({"source": "dir", "path": str(out), "pca": True, "grid": True})
    grids = load_data({"source": "dir", "path": str(gen_dir), "pca": True, "grid": True})
    with pytest.raises(DataError, match=r"x: the train features must be \(num_images, D\) pooled "
                                        r"features \(L >= 1, D >= 1\), got shape \(40, 9, 6\)"):
        check_data(grids, "x")
