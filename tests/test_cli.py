"""The fastcap command, end to end through `python -m fastcap` in a subprocess,
and main(argv) in-process (beam search itself: test_beam.py)."""
import json
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

import fastcap
from fastcap import CaptioningRNN
from fastcap.train.checkpoint import load_checkpoint
from fastcap.cli import main as cli_main
from fastcap.cli.main import main
from fastcap.runtime.names import BACKENDS
from fastcap.data.make import write_coco_data
from fastcap.model.sequence import CELL_TYPES

from conftest import ENV, fastcap_cmd, require_backend

# A tiny float64 run: 40 train images x 3 captions / batch 20 = 6 iterations per epoch.
TINY = ["--backend", "numpy", "--num-train-images", "40", "--num-val-images", "8",
        "--captions-per-image", "3", "--hidden-dim", "16", "--wordvec-dim", "16",
        "--batch-size", "20", "--epochs", "2", "--dtype", "float64", "--eval-images", "0",
        "--lr", "5e-3", "--quiet"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def failed(proc, code=1):
    """A clean failure: the exit code, a `fastcap: error:` first line, no traceback."""
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[0].startswith("fastcap: error: "), proc.stderr
    assert sum(line.startswith("fastcap: error:") for line in lines) == 1
    return lines


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "a"
    proc = ok(fastcap_cmd("train", *TINY, "--out", out))
    return out, proc


def _history(out):
    return json.loads((out / "history.json").read_text())


# ---------------------------------------------------------------- train
def test_train_writes_every_promised_file(run_dir):
    out, proc = run_dir
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["checkpoint.npz", "best.npz", "config.json", "history.json", "loss.png",
         "metrics.json", "samples.txt", "samples.json"])
    h = _history(out)
    assert h["iterations_per_epoch"] == 6 and len(h["loss_history"]) == 12 == h["iteration"]
    assert all(isinstance(x, float) and np.isfinite(x) for x in h["loss_history"])
    assert [e["epoch"] for e in h["epochs"]] == [0, 1, 2]
    assert h["epochs"][0]["train_loss"] is None and h["epochs"][2]["train_loss"] > 0
    assert (out / "loss.png").read_bytes()[:8] == PNG_MAGIC
    m = json.loads((out / "metrics.json").read_text())
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "val_loss", "train_loss"):
        assert isinstance(m[key], float), key
    assert m["images"] == 8 and m["references"] == 24 and set(m["untrained"]) >= {"bleu4", "cider"}
    assert m["val_loss"] == h["epochs"][-1]["val_loss"] < h["epochs"][0]["val_loss"]
    samples = json.loads((out / "samples.json").read_text())
    assert len(samples) == 8 and all(len(s["references"]) == 3 for s in samples)
    text = (out / "samples.txt").read_text()
    assert text.count("  generated: ") == 8 and text.count("ground truth:") == 24
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == {"cell_type": "lstm", "hidden_dim": 16, "wordvec_dim": 16,
                               "dtype": "float64", "input_dim": 512, "kind": "pooled",
                               "attention_dim": None, "attention_reg": None}
    with np.load(out / "checkpoint.npz", allow_pickle=False) as z:
        assert json.loads(str(z["meta"]))["iteration"] == 12
    # what the user sees
    assert "epoch 0 (untrained)" in proc.stdout and "epoch 2/2" in proc.stdout
    assert "final train loss" in proc.stdout and "val loss" in proc.stdout
    assert "BLEU-4" in proc.stdout and "CIDEr" in proc.stdout


def test_interrupted_and_resumed_run_equals_uninterrupted(run_dir, tmp_path):
    out, _ = run_dir
    b = tmp_path / "b"
    # stop in the middle of epoch 2 (iteration 8 of 12), as a Ctrl-C would
    proc = fastcap_cmd("train", *TINY, "--out", b, "--stop-after-iterations", 8)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"checkpoint saved to {b / 'checkpoint.npz'}" in proc.stderr
    assert "--resume" in proc.stderr
    assert len(_history(b)["loss_history"]) == 8
    ok(fastcap_cmd("train", "--resume", b / "checkpoint.npz", "--quiet"))
    ha, hb = _history(out), _history(b)
    assert hb["loss_history"] == ha["loss_history"]  # exactly, in float64
    strip = lambda es: [{k: v for k, v in e.items() if not k.endswith("_seconds")}  # noqa: E731
                        for e in es]
    assert strip(hb["epochs"]) == strip(ha["epochs"])
    for name in ("metrics.json", "samples.json"):
        assert (b / name).read_text() == (out / name).read_text()


def test_ctrl_c_saves_a_checkpoint_that_resumes(run_dir, tmp_path):
    """A real SIGINT to a running `fastcap train`: exit 130, checkpoint, resumable."""
    out, _ = run_dir
    c = tmp_path / "c"
    args = [a if a != "2" else "400" for a in TINY]  # --epochs 400: still running when signalled
    assert "400" in args
    proc = subprocess.Popen([sys.executable, "-m", "fastcap", "train", *args, "--out", str(c)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 120
        # wait until training has run a few epochs (the history file appears at each epoch end)
        while time.monotonic() < deadline:
            if (c / "history.json").exists() and _history(c)["epoch"] >= 2:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "checkpoint saved to" in stderr
    h = _history(c)
    assert 12 <= h["iteration"] < 2400 and len(h["loss_history"]) == h["iteration"]
    # Resume with the uninterrupted run's length (or the epochs done, if more: --epochs
    # below them is refused): same losses as run_dir's, bit for bit.
    done, epochs = h["iteration"], max(2, h["epoch"])
    if h["epoch"] > 2:
        assert "has done" in failed(fastcap_cmd("train", "--resume", c, "--epochs", 2))[0]
    ok(fastcap_cmd("train", "--resume", c, "--epochs", epochs, "--quiet"))
    hc = _history(c)
    assert hc["loss_history"][:12] == _history(out)["loss_history"]
    assert len(hc["loss_history"]) == max(done, 6 * epochs)


@pytest.mark.parametrize("backend", tuple(BACKENDS))
def test_sigterm_saves_the_last_completed_iteration(backend, tmp_path):
    """SIGTERM (kill, systemd, Slurm, Kubernetes) mid-epoch stops a run like Ctrl-C: exit
    143, and the checkpoint holds the last iteration the run printed as completed."""
    require_backend(backend)
    out = tmp_path / "t"
    args = [a if a != "2" else "400" for a in TINY]
    args[args.index("numpy")] = backend
    proc = subprocess.Popen([sys.executable, "-m", "fastcap", "train", *args, "--out", str(out),
                             "--print-every", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    watchdog = threading.Timer(180, proc.kill)  # a hang fails the test instead of blocking
    watchdog.start()
    try:
        printed = []
        for line in proc.stdout:
            if line.startswith("(Iteration "):
                printed.append(int(line.split()[1]))
            if len(printed) == 9:  # mid-epoch 2 (6 iterations per epoch)
                proc.send_signal(signal.SIGTERM)
                break
        # read(), not communicate(): communicate reads the pipe itself and loses the lines
        # the iteration above had already buffered (the run may be ahead of the reader)
        rest, stderr = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    printed += [int(line.split()[1]) for line in rest.splitlines()
                if line.startswith("(Iteration ")]
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "interrupted by SIGTERM" in stderr
    assert "checkpoint saved to" in stderr
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.iteration == printed[-1] >= 9 and len(ckpt.loss_history) == ckpt.iteration


# ---------------------------------------------------------------- sample / evaluate
def test_sample_greedy_and_beam(run_dir):
    out, _ = run_dir
    ckpt = out / "checkpoint.npz"
    proc = ok(fastcap_cmd("sample", ckpt, "-n", 3, "--backend", "numpy"))
    assert proc.stdout.count("  generated: ") == 3 and proc.stdout.count("ground truth:") == 9
    assert "greedy" in proc.stdout
    greedy = json.loads(ok(fastcap_cmd("sample", ckpt, "-n", 5, "--json")).stdout)
    beam1 = json.loads(ok(fastcap_cmd("sample", ckpt, "-n", 5, "--json", "--beam-size", 1)).stdout)
    assert greedy == beam1
    saved = json.loads((out / "samples.json").read_text())[:5]
    assert greedy == saved  # the samples file holds the same greedy captions
    proc = ok(fastcap_cmd("sample", ckpt, "-n", 2, "--beam-size", 3, "--split", "train", "--seed", 1))
    assert "beam search, beam 3" in proc.stdout and proc.stdout.count("  generated: ") == 2


def test_evaluate(run_dir, tmp_path):
    out, _ = run_dir
    ckpt = out / "checkpoint.npz"
    proc = ok(fastcap_cmd("evaluate", ckpt))
    for label in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr"):
        assert label in proc.stdout
    result = json.loads(ok(fastcap_cmd("evaluate", ckpt, "--json")).stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    assert result["images"] == 8 and result["references"] == 24
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "cider"):
        assert result[key] == metrics[key]  # same model, same images, same scorer
    target = tmp_path / "eval.json"
    proc = ok(fastcap_cmd("evaluate", ckpt, "--json", target, "--beam-size", 2, "--max-images", 4))
    saved = json.loads(target.read_text())
    assert saved["images"] == 4 and saved["decoding"] == "beam2" and "BLEU-4" in proc.stdout


# ---------------------------------------------------------------- make-data and --data
def test_make_data_then_train_on_it(tmp_path):
    d = tmp_path / "coco"
    proc = ok(fastcap_cmd("make-data", d, "--num-train", 20, "--num-val", 5, "--captions-per-image",
                          2, "--pca-dim", 16, "--full-dim", 24, "--seed", 3))
    names = {"coco2014_captions.h5", "coco2014_vocab.json", "train2014_vgg16_fc7.h5",
             "train2014_vgg16_fc7_pca.h5", "val2014_vgg16_fc7.h5", "val2014_vgg16_fc7_pca.h5",
             "train2014_urls.txt", "val2014_urls.txt"}
    assert names <= {p.name for p in d.iterdir()} and "coco2014_captions.h5" in proc.stdout
    out = tmp_path / "run"
    ok(fastcap_cmd("train", "--data", d, "--no-pca", "--cell", "rnn", "--hidden-dim", 8,
                   "--wordvec-dim", 8, "--epochs", 1, "--batch-size", 10, "--max-train", 30,
                   "--update-rule", "sgd_momentum", "--lr", "0.01", "--lr-decay", "0.5",
                   "--threads", 1, "--backend", "numpy", "--out", out, "--quiet"))
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["input_dim"] == 24 and config["model"]["cell_type"] == "rnn"
    assert config["data"] == {"source": "dir", "path": str(d), "pca": False}
    assert len(_history(out)["loss_history"]) == 3  # 30 captions / batch 10
    # sample without --data finds the directory through the checkpoint
    ok(fastcap_cmd("sample", out / "checkpoint.npz", "-n", 2))


# ---------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("coco")
    write_coco_data(d, num_train_images=20, num_val_images=5, captions_per_image=2, pca_dim=16,
                    full_dim=24, seed=1)
    return d


def _copy(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _bad_missing(d):
    (d / "coco2014_vocab.json").unlink()
    return "coco2014_vocab.json is missing"


def _bad_corrupt_h5(d):
    (d / "train2014_vgg16_fc7_pca.h5").write_bytes(b"this is not HDF5" * 100)
    return "not a readable HDF5 file"


def _bad_shape(d):
    with h5py.File(d / "coco2014_captions.h5", "a") as f:
        caps = f["train_captions"][...]
        del f["train_captions"]
        f["train_captions"] = caps.reshape(-1)  # 1-D instead of (n, 17)
    return "train_captions"


def _bad_caption_width(d):
    with h5py.File(d / "coco2014_captions.h5", "a") as f:
        caps = f["val_captions"][:, :1]
        del f["val_captions"]
        f["val_captions"] = caps  # (n, 1): no word after <START>
    return "val_captions must be (num_captions, T) with T >= 2"


def _bad_features(d):
    with h5py.File(d / "val2014_vgg16_fc7_pca.h5", "a") as f:
        del f["features"]
        f["features"] = np.zeros((5, 9), np.float32)  # val features 9-d, train 16-d
    return "9-d"


def _bad_vocab(d):
    vocab = json.loads((d / "coco2014_vocab.json").read_text())
    words = vocab["idx_to_word"][:20]  # the captions use words past index 20
    (d / "coco2014_vocab.json").write_text(json.dumps(
        {"idx_to_word": words, "word_to_idx": {w: i for i, w in enumerate(words)}}))
    return "outside [0, 20)"


def _bad_vocab_json(d):
    (d / "coco2014_vocab.json").write_text("{not json")
    return "coco2014_vocab.json must be JSON"


@pytest.mark.parametrize("damage", [_bad_missing, _bad_corrupt_h5, _bad_shape, _bad_caption_width,
                                    _bad_features, _bad_vocab, _bad_vocab_json])
def test_bad_data_is_one_clean_error(data_dir, tmp_path, damage):
    d = _copy(data_dir, tmp_path / "coco")
    expected = damage(d)
    proc = fastcap_cmd("train", "--data", d, "--hidden-dim", 8, "--wordvec-dim", 8, "--epochs", 1,
                       "--out", tmp_path / "run", "--quiet")
    lines = failed(proc)
    assert expected in lines[0]
    if damage is _bad_missing:
        assert str(d / "coco2014_vocab.json") in lines[0]
        assert "coco_captioning directory holds" in proc.stderr  # the expected layout follows
    else:
        assert len(lines) == 1, proc.stderr
    # --debug shows the traceback
    if damage is _bad_corrupt_h5:
        proc = fastcap_cmd("train", "--data", d, "--epochs", 1, "--out", tmp_path / "r2", "--debug")
        assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_checkpoint_from_another_model_or_data(run_dir, data_dir, tmp_path):
    out, _ = run_dir
    ckpt = out / "checkpoint.npz"
    # features of another size (the checkpoint wants 512-d, this data has 16-d)
    lines = failed(fastcap_cmd("sample", ckpt, "--data", data_dir))
    assert len(lines) == 1 and "512-dimensional" in lines[0] and "16-dimensional" in lines[0]
    # another vocabulary, same size
    d = _copy(data_dir, tmp_path / "renamed")
    vocab = json.loads((d / "coco2014_vocab.json").read_text())
    vocab["idx_to_word"][10] = "aardvark"
    vocab["word_to_idx"] = {w: i for i, w in enumerate(vocab["idx_to_word"])}
    (d / "coco2014_vocab.json").write_text(json.dumps(vocab))
    lines = failed(fastcap_cmd("evaluate", ckpt, "--data", d))
    assert len(lines) == 1 and "another vocabulary" in lines[0] and "aardvark" in lines[0]
    # resuming with another model's sizes
    lines = failed(fastcap_cmd("train", "--resume", ckpt, "--hidden-dim", 32, "--cell", "rnn",
                               "--out", tmp_path / "r"))
    assert len(lines) == 1 and "--hidden-dim 32 (the checkpoint has 16)" in lines[0]
    assert "--cell rnn" in lines[0]
    # not a checkpoint at all
    lines = failed(fastcap_cmd("sample", data_dir / "coco2014_captions.h5"))
    assert len(lines) == 1 and "is not a fastcap checkpoint" in lines[0]
    lines = failed(fastcap_cmd("evaluate", tmp_path / "nothing.npz"))
    assert len(lines) == 1 and "no checkpoint at" in lines[0]
    # a new run must not clobber an existing one
    lines = failed(fastcap_cmd("train", *TINY, "--out", out))
    assert len(lines) == 1 and "already holds a run" in lines[0]


def test_usage_errors_exit_2(capsys):
    proc = fastcap_cmd("train", "--hidden-dim", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "usage:" in proc.stderr and "--hidden-dim: expected an integer in [1, 65536]" in proc.stderr
    for args in (["train", "--cell", "gru"], ["frobnicate"], ["sample"], ["train", "--lr", "-1"],
                 ["evaluate", "x", "--beam-size", "0"], []):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2, args
        assert "usage:" in capsys.readouterr().err


def test_usage_errors_show_the_commands_usage_and_a_did_you_mean():
    proc = fastcap_cmd("train", "--epocs", "3")
    assert proc.returncode == 2 and proc.stderr.startswith("usage: fastcap train ")
    assert proc.stderr.rstrip().endswith("fastcap train: error: unrecognized arguments: --epocs 3; "
                                         "did you mean --epochs?")
    proc = fastcap_cmd("trian", "--epochs", "3")
    assert proc.returncode == 2 and "unknown command 'trian'; did you mean train?" in proc.stderr
    proc = fastcap_cmd("sample", "x.npz", "--bem-size", "2")
    assert proc.returncode == 2 and proc.stderr.startswith("usage: fastcap sample ")
    assert "did you mean --beam-size?" in proc.stderr


@pytest.mark.parametrize("args, words", [
    (["new0000.jpg"], "CHECKPOINT new0000.jpg is a picture, not a checkpoint"),
    (["a.png", "b.png"], "CHECKPOINT a.png is a picture, not a checkpoint"),
    (["run/best.npz"], "no IMAGE given"),
])
def test_caption_without_a_checkpoint_says_so(args, words):
    proc = fastcap_cmd("caption", *args)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: fastcap caption ")
    assert f"fastcap caption: error: {words}" in proc.stderr
    assert "fastcap caption CHECKPOINT IMAGE..." in proc.stderr


def test_inference_commands_read_a_run_folders_best_checkpoint_and_say_so(run_dir, tmp_path):
    out, _ = run_dir
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "best.npz").write_bytes((out / "checkpoint.npz").read_bytes())
    (folder / "checkpoint.npz").write_bytes(b"junk: reading it would fail")
    for command in (["sample", "-n", "1"], ["evaluate", "--max-images", "2"]):
        proc = ok(fastcap_cmd(command[0], folder, *command[1:]))
        assert proc.stderr.startswith(f"fastcap: run folder {folder}: reading best.npz")
        assert f"checkpoint {folder / 'best.npz'}:" in proc.stdout


def test_info():
    proc = ok(fastcap_cmd("info"))
    assert f"fastcap {fastcap.__version__}" in proc.stdout
    assert "backends available:" in proc.stdout and "numpy" in proc.stdout
    assert "active backend:" in proc.stdout and "threads" in proc.stdout
    assert "core type" in proc.stdout  # the BLAS library from threadpoolctl


# ---------------------------------------------------------------- learnability
def test_default_model_learns(tmp_path):
    """The default run, cut to 1 epoch: validation metrics far above the untrained model's."""
    out = tmp_path / "default"
    proc = ok(fastcap_cmd("train", "--epochs", 1, "--eval-images", 100, "--num-samples", 0,
                          "--backend", "numpy", "--quiet", "--out", out, timeout=600))
    m = json.loads((out / "metrics.json").read_text())
    u = m["untrained"]
    assert m["bleu4"] > u["bleu4"] + 0.2, (m, proc.stdout)
    assert m["bleu1"] > u["bleu1"] + 0.3 and m["cider"] > u["cider"] + 1.0
    assert m["val_loss"] < 0.5 * u["val_loss"]
    config = json.loads((out / "config.json").read_text())
    from fastcap.train.trainer import DEFAULTS

    assert config["model"]["hidden_dim"] == DEFAULTS["hidden_dim"]  # the default model
    assert config["model"]["cell_type"] == "lstm" and config["data"]["source"] == "generated"


# ---------------------------------------------------------------- in-process main()
def test_main_in_process_and_bench_dispatch(tmp_path, capsys, monkeypatch):
    calls = []
    fake = type(sys)("fastcap.cli.bench")
    fake.main = lambda argv: calls.append(argv) or 3
    monkeypatch.setattr(cli_main, "bench", fake)
    assert main(["bench", "--quick", "x"]) == 3 and calls == [["--quick", "x"]]

    with fastcap.use_backend("numpy"):
        assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "r"),
                     "--num-samples", "2"]) == 0
        out = capsys.readouterr().out
        assert "epoch 1/1" in out
        assert main(["evaluate", str(tmp_path / "r")]) == 0
        assert "BLEU-4" in capsys.readouterr().out
        assert main(["train", "--resume", str(tmp_path / "r"), "--lr", "0.5"]) == 1
        assert "--lr 0.5" in capsys.readouterr().err


# ---------------------------------------------------------------- evaluation helpers
@pytest.mark.parametrize("cell", CELL_TYPES)
def test_validation_loss_is_the_training_loss_without_backward(small_data, cell):
    from fastcap.train.trainer import caption_loss

    model = CaptioningRNN(small_data["word_to_idx"], input_dim=20, wordvec_dim=8, hidden_dim=12,
                          cell_type=cell, dtype=np.float64, rng=np.random.default_rng(2))
    caps = small_data["val_captions"]
    feats = small_data["val_features"][small_data["val_image_idxs"]]
    with fastcap.use_backend("numpy"):
        expected, _ = model.loss(feats, caps)
        assert caption_loss(model, caps, feats) == pytest.approx(expected, rel=1e-12)
        # chunked: the mean over captions, whatever the chunk size
        assert caption_loss(model, caps, feats, chunk=7) == pytest.approx(expected, rel=1e-12)


def test_bf16_run_records_its_precision_and_resumes_in_it(tmp_path):
    """--precision bfloat16 is in the checkpoint's config; --resume keeps it (an interrupted
    and resumed bf16 run equals an uninterrupted one) and refuses another precision."""
    bf16 = [a if a != "float64" else "float32" for a in TINY] + ["--precision", "bfloat16"]
    a, b = tmp_path / "a", tmp_path / "b"
    proc = ok(fastcap_cmd("train", *bf16, "--out", a))
    assert "precision bfloat16" in proc.stdout
    assert json.loads((a / "config.json").read_text())["train"]["precision"] == "bfloat16"
    assert fastcap_cmd("train", *bf16, "--out", b, "--stop-after-iterations", 8).returncode == 130
    ok(fastcap_cmd("train", "--resume", b / "checkpoint.npz", "--quiet"))
    assert _history(b)["loss_history"] == _history(a)["loss_history"]
    f32 = ok(fastcap_cmd("train", *[x for x in bf16 if x not in ("--precision", "bfloat16")],
                         "--out", tmp_path / "c"))
    assert _history(tmp_path / "c")["loss_history"] != _history(a)["loss_history"]
    assert "precision float32" in f32.stdout
    lines = failed(fastcap_cmd("train", "--resume", a, "--epochs", 3, "--precision", "float32"))
    assert "--precision float32 (the checkpoint has bfloat16)" in lines[0]
    assert fastcap_cmd("train", "--precision", "fp8").returncode == 2
