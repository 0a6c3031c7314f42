"""best.npz by a validation metric, --patience, --init-from and each epoch's wall time."""
import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

from fastcap.train.options import BEST_METRICS
from fastcap.train import monitor

from conftest import fastcap_cmd
from test_cli import TINY, failed, ok, run_dir  # noqa: F401  (run_dir: the shared tiny run)


def _meta(path):
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))


@given(st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=12),
       st.sampled_from(BEST_METRICS), st.integers(0, 4))
def test_best_epoch_and_patience(values, metric, patience):
    """Stopping happens at the first evaluation `patience` after the best one so far."""
    sign = -1 if metric == "val_loss" else 1
    epochs = [{"epoch": 0, metric: 99.0}]  # epoch 0 (the initial model) never counts
    for e, v in enumerate(values, start=1):
        epochs.append({"epoch": e, metric: v})
        best, since = monitor.best_epoch(epochs, metric)
        scores = [sign * x for x in values[:e]]
        want = scores.index(max(scores)) + 1  # the first of equals
        assert best["epoch"] == want and since == e - want
        stop = monitor.out_of_patience(epochs, metric, patience)
        assert stop == (patience > 0 and e - want >= patience)


def test_best_checkpoint_and_epoch_times(run_dir):  # noqa: F811
    out, proc = run_dir
    h = json.loads((out / "history.json").read_text())
    trained = h["epochs"][1:]
    best = max(trained, key=lambda e: (e["cider"], -e["epoch"]))
    assert _meta(out / "best.npz")["epoch"] == best["epoch"]
    assert all(e["epoch_seconds"] >= e["eval_seconds"] for e in trained)
    assert "epoch_seconds" not in h["epochs"][0]
    assert f"({trained[-1]['epoch_seconds']:.1f} s)" in proc.stdout


def test_patience_stops_a_run_that_does_not_improve(tmp_path):
    out = tmp_path / "p"
    # a learning rate too small to change a greedy caption: no evaluation improves on the first
    args = [a for a in TINY if a not in ("--epochs", "2", "--lr", "5e-3")]
    proc = ok(fastcap_cmd("train", *args, "--epochs", "6", "--lr", "1e-12", "--patience", "2",
                          "--best-metric", "bleu1", "--out", out))
    h = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in h["epochs"]] == [0, 1, 2, 3]
    assert "stopping early: bleu1 has not improved in 2 evaluations" in proc.stdout
    assert _meta(out / "best.npz")["epoch"] == 1 and _meta(out / "checkpoint.npz")["epoch"] == 3
    # resuming a run that ran out of patience trains no further
    ok(fastcap_cmd("train", "--resume", out / "checkpoint.npz", "--quiet"))
    assert _meta(out / "checkpoint.npz")["iteration"] == h["iteration"]


def test_init_from_starts_a_new_run_from_trained_weights(run_dir, tmp_path):  # noqa: F811
    src, _ = run_dir
    last = json.loads((src / "history.json").read_text())["epochs"][-1]
    out = tmp_path / "ft"
    proc = ok(fastcap_cmd("train", "--init-from", src / "checkpoint.npz", "--lr", "1e-3",
                          "--epochs", "1", "--eval-images", "0", "--quiet", "--out", out))
    h = json.loads((out / "history.json").read_text())
    # epoch 0 evaluates the checkpoint's weights (its model options and data, not the defaults)
    assert h["epochs"][0]["val_loss"] == pytest.approx(last["val_loss"], rel=1e-12)
    assert "epoch 0 (initial)" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["learning_rate"] == 1e-3 and config["model"]["hidden_dim"] == 16
    assert config["train"]["init_from"] == str(src / "checkpoint.npz")
    assert _meta(out / "checkpoint.npz")["iteration"] == h["iterations_per_epoch"]
    lines = failed(fastcap_cmd("train", "--init-from", src / "checkpoint.npz", "--resume",
                               out / "checkpoint.npz"))
    assert "give one of them" in lines[0]
    lines = failed(fastcap_cmd("train", "--init-from", src / "checkpoint.npz", "--hidden-dim",
                               "32", "--out", tmp_path / "bad"))
    assert "does not fit this model" in lines[0]
