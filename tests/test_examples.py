"""The seed notebooks as scripts (examples/): run on `fastcap make-data` output at
the notebooks' default data path, with 1 epoch of 2 minibatches per training
run, and the figures they save checked."""
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fastcap.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FLOAT = r"([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory holding generated data at load_coco_data()'s default path."""
    work = tmp_path_factory.mktemp("notebook")
    assert main(["make-data", str(work / "cs231n" / "datasets" / "coco_captioning"),
                 "--num-train", "60", "--num-val", "20", "--full-dim", "512"]) == 0
    return work


def run_example(name, workdir, max_train):
    figures = workdir / "figures" / name
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTCAP_COCO_DIR", "MPLBACKEND") and not k.lower().endswith("_proxy")}
    env.update(FASTCAP_BACKEND="numpy", FASTCAP_EXAMPLE_EPOCHS="1", FASTCAP_EXAMPLE_MAX_TRAIN=str(max_train),
               FASTCAP_EXAMPLE_FIGURES=str(figures), FASTCAP_CACHE_DIR=str(workdir / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    return proc.stdout, figures


def check_printed_values(out):
    """Every gradient check and expected value the notebook prints, at its thresholds."""
    errors = [(m.group(1), float(m.group(2)))
              for m in re.finditer(r"^(.*error):\s+" + FLOAT + r"$", out, re.M)]
    assert len(errors) >= 12
    for name, value in errors:
        assert 0 <= value < 5e-6, (name, value)  # the looser of the seeds' thresholds
    differences = [float(v) for v in re.findall(r"^difference:\s+" + FLOAT + r"$", out, re.M)]
    assert len(differences) == 1 and differences[0] < 1e-10
    return errors


def check_figure(path, kind):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (1000, 800)  # the notebooks' figsize, 100 dpi
        px = np.asarray(im.convert("RGB")).astype(int)
    not_white = (px < 250).any(axis=-1)
    if kind == "image":  # a picture fills most of the axes, in many colours
        assert not_white.mean() > 0.4, path
        colours = np.unique(px[not_white].reshape(-1, 3), axis=0)
        assert len(colours) >= 8, path
    else:  # a loss curve: axes and a line in matplotlib's first colour (#1f77b4)
        assert 0.001 < not_white.mean() < 0.3, path
        line = (np.abs(px - (0x1f, 0x77, 0xb4)).sum(axis=-1) < 40).sum()
        assert line > 50, path


def test_rnn_notebook(workdir):
    out, figures = run_example("rnn_captioning", workdir, max_train=200)
    errors = check_printed_values(out)
    assert [n for n, _ in errors].count("dx error") == 4
    losses = [float(v) for v in re.findall(r"^" + FLOAT + r"$", out, re.M)]
    assert len(losses) == 3 and abs(losses[0] - 2.3) < 0.1 and abs(losses[1] - 23) < 1 \
        and abs(losses[2] - 2.3) < 0.2  # the temporal softmax sanity checks
    assert "(Iteration 1 / 2) loss:" in out  # 200 captions, batch 100, 1 epoch
    names = sorted(p.name for p in figures.iterdir())
    assert names == ["01-look-at-the-data.png", "02-look-at-the-data.png",
                     "03-look-at-the-data.png", "04-training-loss.png", "05-sample-train.png",
                     "06-sample-train.png", "07-sample-val.png", "08-sample-val.png"]
    for name in names:
        check_figure(figures / name, "loss" if "loss" in name else "image")


def test_lstm_notebook(workdir):
    out, figures = run_example("lstm_captioning", workdir, max_train=50)
    check_printed_values(out)
    assert out.count("(Iteration 1 / 2) loss:") == 3
    names = sorted(p.name for p in figures.iterdir())
    expected = (["01-training-loss.png"] + [f"{k:02d}-sample-train.png" for k in range(2, 14)]
                + [f"{k:02d}-sample-val.png" for k in range(14, 26)]
                + ["26-training-loss-lstm-and-rnn.png"]
                + [f"{k:02d}-rnn-and-lstm-train.png" for k in range(27, 32)]
                + [f"{k:02d}-rnn-and-lstm-val.png" for k in range(32, 37)])
    assert names == expected
    for name in names:
        check_figure(figures / name, "loss" if "loss" in name else "image")
