"""Checkpoints: no pickle, atomic writes, exact restore of training state, clear errors."""
import glob
import json
import os
import zipfile

import numpy as np
import pytest

import fastcap
from fastcap import CaptioningRNN, CaptioningSolver
from fastcap.train import checkpoint as ckpt_mod
from fastcap.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fastcap.data.generated import generate_coco_data


@pytest.fixture(autouse=True)
def numpy_backend():
    with fastcap.use_backend("numpy"):
        yield


@pytest.fixture(scope="module")
def data():
    return generate_coco_data(num_train_images=30, num_val_images=5, captions_per_image=2,
                              pca_dim=12, full_dim=12, seed=5)


def _config(model, cell, H):
    return {"model": {"cell_type": cell, "input_dim": 12, "wordvec_dim": 8, "hidden_dim": H,
                      "dtype": str(model.dtype)},
            "train": {"update_rule": "adam", "learning_rate": 1e-2, "lr_decay": 0.9,
                      "batch_size": 10, "num_epochs": 2, "seed": 3, "max_train": None},
            "data": {"source": "generated", "num_train_images": 30, "num_val_images": 5,
                     "captions_per_image": 2, "pca_dim": 12, "full_dim": 12, "seed": 5, "pca": True},
            "eval": {"eval_images": 0, "max_length": 30, "num_samples": 2}}


EPOCH0 = {"epoch": 0, "iteration": 0, "train_loss": None, "val_loss": 1.5, "bleu1": 0.1,
          "bleu2": 0.0, "bleu3": 0.0, "bleu4": 0.0, "cider": 0.0}


def _make(data, cell="lstm", H=10, dtype=np.float64, rule="adam", seed=3):
    model = CaptioningRNN(data["word_to_idx"], input_dim=12, wordvec_dim=8, hidden_dim=H,
                          cell_type=cell, dtype=dtype, rng=np.random.default_rng(seed))
    solver = CaptioningSolver(model, data, update_rule=rule, optim_config={"learning_rate": 1e-2},
                              lr_decay=0.9, batch_size=10, num_epochs=2, verbose=False,
                              rng=np.random.RandomState(seed))
    return model, solver


def _train(solver, n):
    for _ in range(n):
        solver.step()
        if solver.iteration % solver.iterations_per_epoch == 0:
            solver.end_epoch()


def _save(path, model, solver, data, cell="lstm", H=10, epochs=None):
    return save_checkpoint(path, model=model, solver=solver, config=_config(model, cell, H),
                           epochs=epochs or [EPOCH0],
                           idx_to_word=data["idx_to_word"])


def test_file_loads_without_pickle_and_holds_plain_arrays(tmp_path, data):
    model, solver = _make(data)
    _train(solver, 4)
    path = _save(tmp_path / "c.npz", model, solver, data)
    with np.load(path, allow_pickle=False) as z:
        assert {"meta", "vocab", "rng/keys", "loss_history"} <= set(z.files)
        for name in z.files:
            assert z[name].dtype != object, name
        meta = json.loads(str(z["meta"]))
        assert meta["format"] == "fastcap-checkpoint" and meta["iteration"] == 4
        assert json.loads(str(z["vocab"])) == data["idx_to_word"]
        assert z["param/Wx"].shape == (8, 40) and z["param/Wx"].dtype == np.float64
        assert z["optim/Wx/m"].shape == (8, 40) and z["optim/Wx/v"].shape == (8, 40)
        assert z["rng/keys"].dtype == np.uint32 and z["rng/keys"].shape == (624,)
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("cell,rule,dtype", [("lstm", "adam", np.float64), ("rnn", "sgd_momentum", np.float64),
                                              ("rnn", "rmsprop", np.float32)])
def test_restore_continues_exactly(tmp_path, data, cell, rule, dtype):
    model, solver = _make(data, cell=cell, dtype=dtype, rule=rule)
    assert solver.iterations_per_epoch == 6
    _train(solver, 8)  # one decay already applied, mid-epoch now
    path = _save(tmp_path / "c.npz", model, solver, data, cell=cell)
    _train(solver, 6)
    reference = list(solver.loss_history)

    ck = load_checkpoint(path)
    assert ck.iteration == 8 and ck.epoch == 1 and ck.epochs == [EPOCH0]
    model2, solver2 = _make(data, cell=cell, dtype=dtype, rule=rule, seed=99)  # other init and rng
    ck.load_params_into(model2)
    ck.restore_solver(solver2)
    for name, cfg in solver2.optim_configs.items():
        assert cfg["learning_rate"] == 1e-2 * 0.9  # decayed once, exactly
        for value in cfg.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == model2.params[name].dtype
    if rule == "adam":
        assert all(cfg["t"] == 8 and isinstance(cfg["t"], int) for cfg in solver2.optim_configs.values())
    _train(solver2, 6)
    assert solver2.loss_history == reference  # bit-for-bit
    assert solver2.iteration == 14 and solver2.epoch == 2

    built = ck.build_model()
    assert built.cell_type == cell and built.dtype == np.dtype(dtype)
    for k in built.params:
        assert np.array_equal(built.params[k], ck.params[k])


def _raise(*args, **kwargs):
    raise RuntimeError("disk on fire")


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, data, monkeypatch):
    model, solver = _make(data)
    _train(solver, 2)
    path = _save(tmp_path / "c.npz", model, solver, data)
    before = open(path, "rb").read()
    _train(solver, 2)

    written = []

    def fail_after_writing(fd):
        # the temporary file is complete at this point; die before the rename
        tmp = [p for p in glob.glob(str(tmp_path / ".c.npz.*.tmp"))]
        written.append((tmp, os.fstat(fd).st_size))
        raise RuntimeError("killed while saving")

    monkeypatch.setattr(fastcap.runtime.files, "_fsync", fail_after_writing)
    with pytest.raises(RuntimeError, match="killed while saving"):
        _save(path, model, solver, data)
    assert written and len(written[0][0]) == 1 and written[0][1] > 1000  # a real temp file existed
    assert open(path, "rb").read() == before
    assert load_checkpoint(path).iteration == 2
    assert os.listdir(tmp_path) == ["c.npz"]  # the temporary file was removed

    def interrupt(*a):
        raise KeyboardInterrupt

    monkeypatch.undo()
    monkeypatch.setattr(ckpt_mod.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _save(path, model, solver, data)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["c.npz"]


def test_not_a_checkpoint(tmp_path, data):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz")
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="is not a fastcap checkpoint"):
        load_checkpoint(text)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(CheckpointError, match="is not a fastcap checkpoint"):
        load_checkpoint(other)
    # an object array would need pickle: refused, and no code runs
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": "fastcap-checkpoint"}], dtype=object),
             vocab=np.array("[]"))
    with pytest.raises(CheckpointError, match="is not a fastcap checkpoint"):
        load_checkpoint(pickled)
    with pytest.raises(CheckpointError, match="without a checkpoint.npz"):
        load_checkpoint(tmp_path)


def test_tampered_or_incomplete_checkpoint(tmp_path, data):
    model, solver = _make(data)
    _train(solver, 1)
    path = _save(tmp_path / "c.npz", model, solver, data)
    with np.load(path, allow_pickle=False) as z:
        files = {k: z[k] for k in z.files}
    # parameters that disagree with the stored config
    bad = dict(files)
    bad["param/Wh"] = np.zeros((3, 3))
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(CheckpointError, match=r"param/Wh.* has shape \(3, 3\), but its config \(lstm .*\) needs \(10, 40\)"):
        load_checkpoint(tmp_path / "bad.npz")
    # a missing parameter
    bad = {k: v for k, v in files.items() if k != "param/b"}
    np.savez(tmp_path / "bad2.npz", **bad)
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(tmp_path / "bad2.npz")
    # a future format
    meta = json.loads(str(files["meta"]))
    meta["version"] = 99
    np.savez(tmp_path / "future.npz", **dict(files, meta=np.array(json.dumps(meta))))
    with pytest.raises(CheckpointError, match="newer fastcap"):
        load_checkpoint(tmp_path / "future.npz")
    # a truncated file
    raw = open(path, "rb").read()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "trunc.npz")
    assert zipfile.is_zipfile(path)


def test_mismatched_vocabulary_and_model(tmp_path, data):
    model, solver = _make(data)
    path = _save(tmp_path / "c.npz", model, solver, data)
    ck = load_checkpoint(path)
    ck.check_vocab(data["idx_to_word"], "the data")
    other = list(data["idx_to_word"])
    other[7] = "zebu"
    with pytest.raises(CheckpointError, match="another vocabulary.*word 7"):
        ck.check_vocab(other, "the data")
    with pytest.raises(CheckpointError, match=r"another vocabulary.*\d+ words in the checkpoint"):
        ck.check_vocab(other[:-3], "the data")
    with pytest.raises(CheckpointError, match="12-dimensional.*4096-dimensional"):
        ck.check_input_dim(4096, "the data")
    bigger, _ = _make(data, H=16)
    with pytest.raises(CheckpointError, match="parameter .* has shape"):
        ck.load_params_into(bigger)
    rnn, _ = _make(data, cell="rnn")
    with pytest.raises(CheckpointError, match="does not fit this model"):
        ck.load_params_into(rnn)


def test_solver_rng_must_be_randomstate(tmp_path, data):
    model, solver = _make(data)
    solver.rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="RandomState"):
        _save(tmp_path / "c.npz", model, solver, data)
    assert not os.listdir(tmp_path)
