"""Defaults that learn on small data (issue 29, item 3): without --epochs a run is at least
MIN_ITERATIONS iterations long, with the default learning-rate decay spread over them; a
--batch-size above the data is lowered; the first lines say what was chosen and why."""
import io
import json

import pytest

from fastcap.train.options import DEFAULTS, MIN_ITERATIONS
from fastcap.train.run_config import fit_schedule, resolve_config
from fastcap.train.trainer import Trainer

from conftest import fastcap_cmd
from test_cli import ok


def _config():
    return resolve_config({})


@pytest.mark.parametrize("captions, epochs", [(460, 125), (10000, 5), (50, 500), (99, 500)])
def test_epochs_are_enough_for_min_iterations_and_at_least_the_default(captions, epochs):
    config = _config()
    notes = fit_schedule(config, captions, set())
    t = config["train"]
    assert t["num_epochs"] == epochs
    per = max(captions // t["batch_size"], 1)
    assert t["num_epochs"] * per >= MIN_ITERATIONS and t["num_epochs"] >= DEFAULTS["epochs"]
    assert any(n.startswith(f"--epochs not given: {epochs} epochs") for n in notes)
    if epochs > DEFAULTS["epochs"]:  # the whole run decays as much as the default 5 epochs
        assert t["lr_decay"] ** epochs == pytest.approx(DEFAULTS["lr_decay"] ** DEFAULTS["epochs"])
        assert any(n.startswith("--lr-decay not given") for n in notes)
    else:
        assert t["lr_decay"] == DEFAULTS["lr_decay"]


def test_given_options_are_kept():
    config = _config()
    config["train"]["num_epochs"], config["train"]["lr_decay"] = 3, 0.5
    assert fit_schedule(config, 460, {"epochs", "lr_decay"}) == []
    assert (config["train"]["num_epochs"], config["train"]["lr_decay"]) == (3, 0.5)
    config = _config()
    fit_schedule(config, 460, {"lr_decay"})  # epochs chosen, the given decay kept
    assert config["train"]["num_epochs"] == 125 and config["train"]["lr_decay"] == DEFAULTS["lr_decay"]


def test_a_batch_larger_than_the_data_is_lowered_with_a_note():
    config = _config()
    config["train"]["batch_size"] = 5000
    notes = fit_schedule(config, 458, {"epochs", "batch_size"})
    assert config["train"]["batch_size"] == 458
    assert notes == ["--batch-size 5000 is more than the 458 training captions: using 458, one "
                     "iteration an epoch"]


def test_the_first_lines_say_what_was_chosen(tmp_path):
    proc = ok(fastcap_cmd("train", "--num-train-images", "20", "--num-val-images", "4",
                          "--captions-per-image", "2", "--hidden-dim", "8", "--wordvec-dim", "8",
                          "--batch-size", "5000", "--epochs", "2", "--eval-images", "0",
                          "--quiet", "--out", tmp_path / "r"))
    head = proc.stdout.splitlines()[:3]
    assert head[1].startswith("2 epochs x 1 iteration of batch 40")
    assert head[2] == ("note: --batch-size 5000 is more than the 40 training captions: using 40, "
                       "one iteration an epoch")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["batch_size"] == 40  # what ran, so --resume continues it


def test_a_new_run_without_epochs_gets_them_and_a_resumed_one_keeps_its_own(tmp_path):
    options = {"num_train_images": 30, "num_val_images": 4, "captions_per_image": 2,
               "hidden_dim": 8, "wordvec_dim": 8, "batch_size": 20, "eval_images": 0}
    trainer = Trainer(options, out_dir=tmp_path / "r", progress=False,
                      stdout=io.StringIO()).setup()
    assert trainer.config["train"]["num_epochs"] == 167  # 60 captions, 3 batches of 20 an epoch
    assert trainer.notes and trainer.notes[0].startswith("--epochs not given")
    trainer.solver.num_epochs = 1  # cut short: what matters is what a resumed run keeps
    trainer.config["train"]["num_epochs"] = 1
    trainer.run()
    resumed = Trainer({}, resume=tmp_path / "r" / "checkpoint.npz", progress=False,
                      stdout=io.StringIO()).setup()
    assert resumed.notes == [] and resumed.config["train"]["num_epochs"] == 1


def test_default_schedule_learns_where_five_epochs_do_not(tmp_path):
    """The issue's case in small: 60 generated pictures (180 captions), 9 iterations an epoch.
    Five epochs (the old default: 45 iterations) learn nothing; the chosen schedule (56 epochs,
    the decay spread over them) does. (A smaller model than the default, for time.)"""
    small = ["--num-train-images", "60", "--num-val-images", "20", "--captions-per-image", "3",
             "--hidden-dim", "64", "--wordvec-dim", "32", "--batch-size", "20",
             "--eval-images", "20", "--num-samples", "0", "--quiet"]
    ok(fastcap_cmd("train", *small, "--epochs", "5", "--out", tmp_path / "five", timeout=600))
    proc = ok(fastcap_cmd("train", *small, "--out", tmp_path / "auto", timeout=600))
    assert "note: --epochs not given: 56 epochs" in proc.stdout
    five = json.loads((tmp_path / "five" / "metrics.json").read_text())
    auto = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    # (seen: BLEU-4 0.000 and 0.134, CIDEr 0.20 and 0.93)
    assert five["bleu4"] < 0.05 and auto["bleu4"] > 0.1, (five["bleu4"], auto["bleu4"])
    assert auto["cider"] > 3 * five["cider"], (five["cider"], auto["cider"])
