"""The generated world's grid features (fastcap.data.generated_grid): the things of each image
at their places in the grid, the pictures drawn with the same layout, and make-data --grid."""
import json

import numpy as np
import pytest

from fastcap.data import generated as G
from fastcap.data.generated import generate_coco_data, generated_grid_blocks, image_scene
from fastcap.data.generated_grid import OBJECT_X, coverage, layout_boxes
from fastcap.data.grid import GridFile

from conftest import fastcap_cmd
from test_cli import failed, ok


def test_the_grid_leaves_every_other_array_as_it_was():
    plain = generate_coco_data(50, 10, full_features=True)
    with_grid = generate_coco_data(50, 10, full_features=True, grid_size=4, grid_dim=8)
    assert set(with_grid) - set(plain) == {"train_grid", "val_grid", "grid_shape"}
    for key, value in plain.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, with_grid[key])
    assert with_grid["train_grid"].shape == (50, 16, 8) and with_grid["grid_shape"] == (4, 4)


def test_blocks_give_the_same_bits_whatever_their_size():
    whole = generate_coco_data(37, 5, grid_size=3, grid_dim=4)["train_grid"]
    for block in (1, 10, 64):
        np.testing.assert_array_equal(
            np.concatenate(list(generated_grid_blocks("train", 37, 0, 3, 4, block=block))), whole)


def test_coverage_is_the_share_of_each_cell():
    cov = coverage(np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.5, 1.0, 1.0]]), (2, 2))
    np.testing.assert_allclose(cov, [[1, 0, 0, 0], [0, 0, 0.5, 1.0]])
    subject, obj = layout_boxes(np.ones(2), np.ones(2), np.array([True, False]))
    assert subject[0, 2] < obj[0, 0] < OBJECT_X < obj[0, 2]  # side by side, object right
    assert not coverage(obj, (7, 7))[1].any()  # no object: no cells


def test_an_objects_cells_carry_the_object_and_the_subjects_the_subject():
    """Project each cell onto the table rows of the image's object and subject: the object's
    row stands out in the object's cells and nowhere else (what attention must find)."""
    n, size, dim = 300, 7, 64
    grid = generate_coco_data(n, 1, grid_size=size, grid_dim=dim)["train_grid"]
    streams = np.random.SeedSequence(0).spawn(G._STREAMS)
    table = np.random.default_rng(streams[G._S_GRID_TABLE]).standard_normal(
        (sum(s + o for _, s, o in G._GROUPS), dim), dtype=np.float32) / np.sqrt(len(G._GROUPS))
    rows = G._feature_rows(G._split_attributes("train", n, 0))
    attrs = G._split_attributes("train", n, 0)
    has = attrs["object"] >= 0
    obj_row = table[rows[:, G._GROUP_COLUMNS["object"]]]  # (n, dim)
    subj_row = table[rows[:, G._GROUP_COLUMNS["subject"]]]
    on_obj = np.einsum("nld,nd->nl", grid, obj_row)[has].reshape(-1, size, size)
    on_subj = np.einsum("nld,nd->nl", grid, subj_row).reshape(-1, size, size)
    ground = int(0.78 * size)  # the row just above the ground line
    obj_col, left_col = int(OBJECT_X * size), 1
    assert on_obj[:, ground, obj_col].mean() > 0.5 > abs(on_obj[:, ground, left_col].mean())
    assert on_obj[:, 0, obj_col].mean() < 0.2  # the sky above it does not carry it
    assert on_subj[:, ground, left_col].mean() > 0.5 > abs(on_subj[:, 0, left_col].mean())


def test_make_data_grid_writes_the_in_memory_grid(tmp_path):
    out = tmp_path / "d"
    proc = ok(fastcap_cmd("make-data", out, "--num-train", "30", "--num-val", "6", "--grid",
                          "--grid-size", "3", "--grid-dim", "5"))
    assert "grids 3x3x5" in proc.stdout
    mem = generate_coco_data(30, 6, grid_size=3, grid_dim=5)
    for split in ("train", "val"):
        with GridFile(out / f"{split}2014_grid.h5") as g:
            assert g.grid_shape == (3, 3)
            np.testing.assert_allclose(g.read_all(), mem[f"{split}_grid"], rtol=1e-3, atol=1e-3)
    manifest = json.loads((out / "fastcap_data.json").read_text())
    assert manifest["generated"]["grid_size"] == 3 and manifest["complete"]
    # data made again without --grid: the old grids (another data set's) are not left behind
    ok(fastcap_cmd("make-data", out, "--num-train", "20", "--num-val", "4", "--overwrite"))
    assert not (out / "train2014_grid.h5").exists()
    lines = failed(fastcap_cmd("make-data", tmp_path / "e", "--grid-size", "3"))
    assert "--grid-size and --grid-dim shape the grid features: they go with --grid" in lines[0]


def test_generated_grid_arguments_are_checked():
    with pytest.raises(ValueError, match="grid_size must be an integer >= 1, got 0"):
        generate_coco_data(2, 2, grid_size=0)
    with pytest.raises(ValueError, match="grid_dim must be an integer >= 1"):
        generate_coco_data(2, 2, grid_size=2, grid_dim=2.5)
