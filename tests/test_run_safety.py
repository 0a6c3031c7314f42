"""No run is ever overwritten, mixed with another or lost (issue 11, items 4, 6-9, 12, 13).

Runs are tiny (40 generated images, hidden size 16, NumPy backend) and mostly
in-process; the lock, SIGKILL and exit-handler cases use real processes.
"""
import io
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import fastcap
from fastcap.cli import main as cli
from fastcap.train import rundir
from fastcap.captioning_solver import TrainingDivergedError
from fastcap.train.checkpoint import CheckpointError, load_checkpoint
from fastcap.runtime.files import LOCK_NAME, DirectoryLock
from fastcap.train.rundir import RunDirError
from fastcap.train.trainer import Trainer

from conftest import ENV, fastcap_cmd

TINY = dict(num_train_images=40, num_val_images=8, captions_per_image=3, hidden_dim=16,
            wordvec_dim=16, batch_size=20, epochs=2, dtype="float64", eval_images=0, lr=5e-3,
            num_samples=2)
TINY_ARGS = ["--backend", "numpy", "--num-train-images", "40", "--num-val-images", "8",
             "--captions-per-image", "3", "--hidden-dim", "16", "--wordvec-dim", "16",
             "--batch-size", "20", "--dtype", "float64", "--eval-images", "0", "--quiet"]


@pytest.fixture(autouse=True)
def numpy_backend():
    with fastcap.use_backend("numpy"):
        yield


def train(out, resume=None, overwrite=False, **options):
    log = io.StringIO()
    Trainer({**TINY, **options} if resume is None else options, out_dir=out, resume=resume,
            overwrite=overwrite, progress=False, stdout=log).run()
    return log.getvalue()


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a"
    with fastcap.use_backend("numpy"):
        train(out)
    return out


def snapshot(d):
    return {p.name: p.read_bytes() for p in pathlib.Path(d).iterdir() if p.is_file()}


# ---------------------------------------------------------------- item 6: nothing foreign replaced
def test_new_run_refuses_a_directory_with_another_runs_files(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    for name in ("config.json", "history.json", "metrics.json", "samples.txt", "loss.png"):
        (d / name).write_text(f"the user's own {name}")
    (d / "notes.md").write_text("keep me")
    before = snapshot(d)
    with pytest.raises(RunDirError) as info:
        train(d)
    msg = str(info.value)
    for name in ("config.json", "history.json", "metrics.json", "samples.txt", "loss.png"):
        assert name in msg
    assert "--overwrite" in msg
    assert snapshot(d) == before


def test_overwrite_removes_the_old_runs_files(run_a, tmp_path):
    d = tmp_path / "again"
    shutil.copytree(run_a, d)
    assert (d / "samples.txt").exists()
    (d / "notes.md").write_text("not fastcap's")
    log = train(d, overwrite=True, num_samples=0, epochs=1)
    assert "removed" in log
    # the new run wrote no samples, so none of the old run's are left beside it
    assert not (d / "samples.txt").exists() and not (d / "samples.json").exists()
    assert (d / "notes.md").read_text() == "not fastcap's"
    assert json.loads((d / "history.json").read_text())["num_epochs"] == 1


def test_resume_into_another_directory_keeps_its_checkpoint(run_a, tmp_path):
    b = tmp_path / "b"
    b.mkdir()
    (b / "checkpoint.npz").write_bytes(b"an unrelated checkpoint")
    with pytest.raises(RunDirError, match=r"checkpoint\.npz.*--overwrite"):
        train(b, resume=run_a / "checkpoint.npz", epochs=3)
    assert (b / "checkpoint.npz").read_bytes() == b"an unrelated checkpoint"


def test_resume_from_a_renamed_checkpoint(run_a, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(run_a / "checkpoint.npz", d / "c k.npz")
    (d / "checkpoint.npz").write_bytes(b"whatever is there")
    with pytest.raises(RunDirError, match=r"checkpoint\.npz"):
        train(None, resume=d / "c k.npz", epochs=3)
    assert (d / "checkpoint.npz").read_bytes() == b"whatever is there"
    # with nothing in the way it continues, writing checkpoint.npz beside the copy
    os.unlink(d / "checkpoint.npz")
    train(None, resume=d / "c k.npz", epochs=3)
    assert load_checkpoint(d / "checkpoint.npz").epoch == 3
    assert load_checkpoint(d / "c k.npz").epoch == 2


def test_resume_in_place_and_default_new_run_message(run_a, tmp_path):
    d = tmp_path / "own"
    shutil.copytree(run_a, d)
    train(d, resume=d / "checkpoint.npz", epochs=3)
    assert load_checkpoint(d).epoch == 3
    with pytest.raises(RunDirError, match=r"already holds a run .*--resume .*checkpoint\.npz"):
        train(d)


def test_make_data_refuses_to_replace_a_vocabulary(tmp_path, capsys):
    d = tmp_path / "data"
    d.mkdir()
    (d / "coco2014_vocab.json").write_text('{"mine": true}')
    assert cli.main(["make-data", str(d), "--num-train", "2", "--num-val", "1"]) == 1
    err = capsys.readouterr().err
    assert "coco2014_vocab.json" in err and "--overwrite" in err
    assert (d / "coco2014_vocab.json").read_text() == '{"mine": true}'
    assert sorted(os.listdir(d)) == ["coco2014_vocab.json"]


# ---------------------------------------------------------------- item 7: one run at a time
def test_a_locked_directory_names_its_holder(tmp_path):
    d = tmp_path / "locked"
    with DirectoryLock(d):
        with pytest.raises(RunDirError) as info:
            train(d)
    assert f"pid {os.getpid()}" in str(info.value) and "in use by another fastcap run" in str(info.value)
    assert not (d / "config.json").exists()
    train(d, epochs=1)  # released: the directory is usable again
    assert not (d / LOCK_NAME).exists()


def test_two_concurrent_runs_on_one_directory(tmp_path):
    d = tmp_path / "both"
    first = subprocess.Popen([sys.executable, "-m", "fastcap", "train", *TINY_ARGS, "--epochs", "400",
                              "--cell", "lstm", "--out", str(d)], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (d / "config.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = fastcap_cmd("train", *TINY_ARGS, "--epochs", "1", "--cell", "rnn", "--out", d,
                             "--overwrite")
        assert second.returncode == 1, second.stderr
        assert f"in use by another fastcap run (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.communicate()
    assert json.loads((d / "config.json").read_text())["model"]["cell_type"] == "lstm"
    assert load_checkpoint(d).model_config["cell_type"] == "lstm"


# ---------------------------------------------------------------- item 8: debris of killed runs
def test_resume_removes_temporaries_of_killed_writes(run_a, tmp_path):
    d = tmp_path / "debris"
    shutil.copytree(run_a, d)
    for junk in (".checkpoint.npz.k1ll3d.tmp", ".history.json.abc123.tmp"):
        (d / junk).write_bytes(b"\0" * 1000)
    (d / ".notes.md.tmp").write_text("not fastcap's")
    train(d, resume=d / "checkpoint.npz", epochs=3)
    assert sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp")) == [".notes.md.tmp"]


def test_sigkill_during_training_never_loses_the_checkpoint(tmp_path):
    """Kill a run at random moments (often while it writes a checkpoint, which it does
    every 6 iterations), then check the checkpoint and resume, several times."""
    d = tmp_path / "killed"
    rng = random.Random(11)
    args = [*TINY_ARGS, "--epochs", "1000", "--out", str(d)]
    kills = 0
    for attempt in range(5):
        extra = ["--resume", str(d / "checkpoint.npz")] if (d / "checkpoint.npz").exists() else []
        proc = subprocess.Popen([sys.executable, "-m", "fastcap", "train", *(extra or args),
                                 *(["--out", str(d)] if extra else [])],
                                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        start = (d / "history.json").stat().st_mtime if (d / "history.json").exists() else 0
        while not ((d / "history.json").exists() and (d / "history.json").stat().st_mtime > start):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += proc.returncode == -signal.SIGKILL
        ck = load_checkpoint(d)  # always a whole checkpoint
        assert ck.iteration == len(ck.loss_history) and ck.iteration % 6 == 0
    assert kills == 5
    # a successful resume finishes the run and leaves no temporary file behind
    proc = fastcap_cmd("train", "--resume", d / "checkpoint.npz", "--epochs",
                       load_checkpoint(d).epoch + 1, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------- item 9: not a regular file
def test_sample_on_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "checkpoint.npz"
    os.mkfifo(fifo)
    proc = fastcap_cmd("sample", fifo, timeout=60)
    assert proc.returncode == 1 and "not a regular file" in proc.stderr, proc.stderr
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path)  # the directory's checkpoint.npz is the FIFO


# ---------------------------------------------------------------- item 4: resume loops
def _crafted(run_a, tmp_path, **changes):
    with np.load(run_a / "checkpoint.npz", allow_pickle=False) as z:
        files = {k: z[k] for k in z.files}
    meta = json.loads(str(files["meta"]))
    for key, value in changes.items():
        if key == "loss_history":
            files["loss_history"] = np.asarray(value, np.float64)
        else:
            meta[key] = value
    files["meta"] = np.array(json.dumps(meta))
    d = tmp_path / "crafted"
    d.mkdir(exist_ok=True)
    np.savez(d / "checkpoint.npz", **files)
    return d / "checkpoint.npz"


def test_an_epoch_counter_far_ahead_is_refused(run_a, tmp_path):
    with pytest.raises(CheckpointError, match=r"field epoch"):
        load_checkpoint(_crafted(run_a, tmp_path, epoch=10**6))
    # within the schema, but ahead of the iterations on this data: refused before the loop
    path = _crafted(run_a, tmp_path, epoch=2, iteration=6, loss_history=[1.0] * 6)
    with pytest.raises(CheckpointError, match="inconsistent: epoch 2 after 6 iterations"):
        train(None, resume=path)
    assert os.listdir(path.parent) == ["checkpoint.npz"]


# ---------------------------------------------------------------- item 12: divergence
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    d = tmp_path / "diverged"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDivergedError) as info:
            train(d, lr=1e6, epochs=4)
    msg = str(info.value)
    assert "training diverged" in msg and "untrained" in msg and "--lr" in msg
    assert f"last good checkpoint, {d / 'checkpoint.npz'}, was kept" in msg
    ck = load_checkpoint(d)
    assert ck.epoch == 0 and ck.iteration == 0  # the untrained state, not a diverged one
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_nan_divergence_prints_only_fastcaps_error(tmp_path):
    proc = fastcap_cmd("train", *TINY_ARGS, "--update-rule", "sgd", "--lr", "1e30", "--epochs", "3",
                       "--out", tmp_path / "nan")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastcap: error: "), proc.stderr
    assert "diverged" in lines[0] or "training loss is" in lines[0]
    assert "RuntimeWarning" not in proc.stderr


def test_a_normal_run_is_not_called_divergent(run_a):
    h = json.loads((run_a / "history.json").read_text())
    assert h["epochs"][-1]["val_loss"] < h["epochs"][0]["val_loss"]


# ---------------------------------------------------------------- item 13: a third Ctrl-C
def test_ctrl_c_during_exit_handlers_prints_no_traceback(tmp_path):
    # The run is interrupted (exit status 130); a further SIGINT arrives while the
    # interpreter runs its exit handlers, as a third Ctrl-C does.
    code = ("import atexit, os, signal, sys, time\n"
            "from fastcap.cli import main as cli\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(2)))\n"
            f"sys.argv = ['fastcap', 'train', *{TINY_ARGS!r}, '--out', {str(tmp_path / 'x')!r},"
            " '--stop-after-iterations', '1']\n"
            "sys.exit(cli.main())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert "interrupted after iteration 1" in proc.stderr
    assert "Traceback" not in proc.stderr and "atexit" not in proc.stderr, proc.stderr
    assert proc.returncode in (130, -signal.SIGINT)
