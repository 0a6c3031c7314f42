"""fastcap's commands with the attention model (issue 26): train --attention on a directory's grid
files (streamed, or held in memory: the same run) and on generated grids with no data at all;
sample, evaluate and show (with its attention maps) of its checkpoints; and the bad input of the
issue's list, each a one-line error naming what was given and what was expected."""
import json
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

import fastcap
from fastcap.data.generated import GRID_DEFAULTS
from fastcap.data.make import write_coco_data
from fastcap.train.checkpoint import load_checkpoint

from conftest import fastcap_cmd
from test_cli import failed, ok

SMALL = ("--batch-size", "25", "--hidden-dim", "16", "--wordvec-dim", "8", "--eval-images", "0",
         "--quiet")


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("grids") / "data"
    write_coco_data(out, num_train_images=30, num_val_images=6, grid_size=3, grid_dim=8)
    return out


@pytest.fixture(scope="module")
def att_run(tmp_path_factory, grid_dir):
    run = tmp_path_factory.mktemp("att") / "run"
    proc = ok(fastcap_cmd("train", "--attention", "--data", grid_dir, "--epochs", "2",
                          "--attention-dim", "12", "--attention-reg", "0.5", *SMALL, "--out", run))
    return run, proc


def test_train_attention_records_the_model_and_its_grid(att_run):
    run, proc = att_run
    assert "training attention LSTM (wordvec 8, hidden 16, attention 12, float32)" in proc.stdout
    ckpt = load_checkpoint(run / "checkpoint.npz")
    m = ckpt.model
    assert (m.kind, m.input_dim, m.attention_dim, m.attention_reg) == ("attention", 8, 12, 0.5)
    assert ckpt.config["data"]["grid"] is True and ckpt.config["data"]["grid_shape"] == [3, 3]
    assert type(ckpt.build_model()) is fastcap.AttentionCaptioningRNN
    assert ckpt.iteration == 2 * 6  # 150 captions, batch 25


def test_a_streamed_run_is_the_run_of_the_grids_held_in_memory(att_run, grid_dir, tmp_path):
    ok(fastcap_cmd("train", "--attention", "--data", grid_dir, "--epochs", "2", "--attention-dim",
                   "12", "--attention-reg", "0.5", *SMALL, "--grid-in-memory", "--out",
                   tmp_path / "held"))
    history = [json.loads((d / "history.json").read_text())["loss_history"]
               for d in (att_run[0], tmp_path / "held")]
    assert history[0] == history[1] and len(history[0]) == 12


def test_sample_evaluate_and_show_take_attention_checkpoints(att_run, tmp_path):
    run = att_run[0]
    samples = json.loads(ok(fastcap_cmd("sample", run, "-n", "2", "--json")).stdout)
    assert len(samples) == 2 and all(s["generated"] for s in samples)
    result = json.loads(ok(fastcap_cmd("evaluate", run, "--json")).stdout)
    assert result["images"] == 6 and 0 <= result["bleu4"] <= 1
    proc = ok(fastcap_cmd("show", run, "-n", "2", "--out", tmp_path / "sheet.png",
                          "--attention-map", tmp_path / "maps"))
    maps = sorted((tmp_path / "maps").iterdir())
    assert "wrote 2 attention maps" in proc.stdout and len(maps) == 2
    with Image.open(maps[0]) as im:
        assert im.info.get("Software") == "fastcap attention map"


def test_attention_trains_out_of_the_box_on_generated_grids(tmp_path):
    ok(fastcap_cmd("train", "--attention", "--num-train-images", "12", "--num-val-images", "3",
                   "--epochs", "1", *SMALL, "--out", tmp_path / "run"))
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    side = GRID_DEFAULTS["grid_size"]
    assert ckpt.config["data"]["grid"] == GRID_DEFAULTS
    assert ckpt.config["data"]["grid_shape"] == [side, side]
    assert ckpt.model.input_dim == GRID_DEFAULTS["grid_dim"]


# ---------------------------------------------------------------- bad input
def test_attention_with_pooled_data_is_named(tmp_path):
    pooled = write_coco_data(tmp_path / "pooled", num_train_images=4, num_val_images=2)
    line, = failed(fastcap_cmd("train", "--attention", "--data", pooled, *SMALL, "--out",
                               tmp_path / "run"))
    assert f"{pooled} has no grid features (train2014_grid.h5)" in line
    assert "fastcap prepare --grid" in line


def test_attention_sizes_without_attention_are_a_usage_error(tmp_path):
    line, = failed(fastcap_cmd("train", "--attention-reg", "0.5", "--out", tmp_path / "r"))
    assert "--attention-reg sizes the attention model: it goes with --attention" in line


def test_a_grid_of_other_cells_than_the_checkpoints_is_named(att_run, tmp_path):
    other = write_coco_data(tmp_path / "other", num_train_images=4, num_val_images=2,
                            grid_size=2, grid_dim=8)
    line, = failed(fastcap_cmd("evaluate", att_run[0] / "checkpoint.npz", "--data", other))
    assert "was trained on grids of 3x3 cells" in line
    assert f"{other} (grid features) has 2x2" in line


def test_a_checkpoint_of_one_model_given_to_the_others_run_is_named(att_run, grid_dir, tmp_path):
    ok(fastcap_cmd("train", "--data", grid_dir, "--epochs", "1", *SMALL, "--out",
                   tmp_path / "pooled"))
    pooled = tmp_path / "pooled" / "checkpoint.npz"
    line, = failed(fastcap_cmd("train", "--attention", "--init-from", pooled, *SMALL, "--out",
                               tmp_path / "r"))
    assert "holds a pooled-feature model" in line and "CaptioningRNN" in line
    assert "a run with --attention takes an attention model (AttentionCaptioningRNN)" in line
    line, = failed(fastcap_cmd("show", pooled, "--attention-map", tmp_path / "maps"))
    assert "--attention-map draws an attention model's maps" in line and str(pooled) in line


def test_features_of_the_wrong_rank_or_no_cells_are_named(att_run, tmp_path):
    att = fastcap.load_captioner(att_run[0] / "checkpoint.npz")
    with pytest.raises(ValueError, match=r"features must be a float \(N, L, 8\) grid array .*"
                                         r"got float32 \(2, 8\)"):
        att.caption_features(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match=r"L >= 1 cells\), got float32 \(2, 0, 8\)"):
        att.caption_features(np.zeros((2, 0, 8), np.float32))
    assert len(att.caption_features(np.zeros((2, 9, 8), np.float32))) == 2
    model = fastcap.CaptioningRNN(att.model.word_to_idx, input_dim=8, hidden_dim=4,
                                  wordvec_dim=4)
    pooled = fastcap.Captioner(model)
    with pytest.raises(ValueError, match=r"features must be a float \(N, 8\) array .*"
                                         r"got float32 \(2, 9, 8\)"):
        pooled.caption_features(np.zeros((2, 9, 8), np.float32))


def test_a_damaged_image_stops_training_with_its_checkpoint_intact(grid_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(grid_dir, data)
    run = tmp_path / "run"
    ok(fastcap_cmd("train", "--attention", "--data", data, "--epochs", "1", *SMALL, "--out", run))
    before = load_checkpoint(run / "checkpoint.npz")
    path = data / "train2014_grid.h5"
    with h5py.File(path, "r") as f:  # every image's chunk: the first step after the resume
        ds = f["features"]
        offsets = [ds.id.get_chunk_info_by_coord((i, 0, 0)).byte_offset for i in range(30)]
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset + 2)
            f.write(b"\x00\xff\x00\xff")
    lines = failed(fastcap_cmd("train", "--resume", run / "checkpoint.npz", "--epochs", "2",
                               "--quiet"))
    assert f"{path}: image " in lines[0] and "grid features cannot be read" in lines[0]
    saved = f"training stopped: checkpoint saved to {run / 'checkpoint.npz'} at iteration 6"
    assert saved in lines[0]
    after = load_checkpoint(run / "checkpoint.npz")
    assert after.iteration == before.iteration == 6
    assert all(np.array_equal(after.params[k], v) for k, v in before.params.items())


def test_generated_grids_count_in_what_a_run_may_allocate():
    from fastcap.train.run_config import resolve_config

    resolve_config({"kind": "attention", "num_train_images": 20000})  # 20,500 x 13,056 values
    with pytest.raises(ValueError, match=r"could not be saved .*generated feature values"):
        resolve_config({"kind": "attention", "num_train_images": 200000})
