"""No command reports success for work it did not do, and none removes or replaces a file it
reads (issue 27, class 5). A reader that goes away (``| head``) leaves a command whose work is
files working to the end with the log gone; a command whose product is what it prints exits
141, not 0; and a training run refuses an --out that would replace a checkpoint it reads."""
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import ENV, REQUIRE_ALL, fastcap_cmd
from test_cli import TINY, failed, ok, run_dir  # noqa: F401  (run_dir: the shared tiny run)


def _reader_gone(args, stream="stdout", lines=1):
    """Run ``fastcap ARGS`` with ``stream`` on a pipe whose reader takes ``lines`` lines (0:
    none) and goes away, as ``| head -N`` does -> (exit status, what the other stream got)."""
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen([sys.executable, "-m", "fastcap", *map(str, args)], env=ENV, text=True,
                            **kw)
    pipe, other = (proc.stdout, proc.stderr) if stream == "stdout" else (proc.stderr, proc.stdout)
    for _ in range(lines):
        pipe.readline()
    pipe.close()
    rest = other.read()
    return proc.wait(timeout=300), rest


def test_train_keeps_training_when_its_log_reader_goes(tmp_path):
    """`fastcap train | head -1`: the run goes on to the end and writes its checkpoint."""
    out = tmp_path / "run"
    status, _ = _reader_gone(["train", *TINY, "--epochs", "1", "--out", out])
    assert status == 0
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == 1 and (out / "checkpoint.npz").exists() and (out / "metrics.json").exists()


def test_train_keeps_training_when_its_progress_reader_goes(tmp_path):
    """The progress bar's stream (stderr) closed from the start: the run is done all the same."""
    out = tmp_path / "run"
    status, log = _reader_gone(["train", *TINY, "--epochs", "1", "--out", out, "--print-every", "1"],
                               stream="stderr", lines=0)
    assert status == 0 and "wrote" in log and (out / "checkpoint.npz").exists()


@pytest.mark.parametrize("command", [["sample", "-n", "8"], ["evaluate", "--json"]])
def test_a_command_whose_product_is_its_output_says_it_was_cut(run_dir, command):  # noqa: F811
    """`fastcap sample | head -0`: the captions it could not print are not success."""
    out, _ = run_dir
    status, err = _reader_gone([command[0], out / "checkpoint.npz", *command[1:]], lines=0)
    assert status == 128 + signal.SIGPIPE and "Traceback" not in err
    # read to the end, the same command succeeds
    assert ok(fastcap_cmd(command[0], out / "checkpoint.npz", *command[1:])).returncode == 0


def test_evaluate_into_a_file_is_done_with_its_log_gone(run_dir, tmp_path):  # noqa: F811
    out, _ = run_dir
    status, _ = _reader_gone(["evaluate", out / "checkpoint.npz", "--json", tmp_path / "m.json"],
                             lines=0)
    assert status == 0 and "cider" in json.loads((tmp_path / "m.json").read_text())


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("name", ["best.npz", "checkpoint.npz"])
def test_init_from_a_checkpoint_of_the_out_directory_is_refused(run_dir, tmp_path, overwrite, name):  # noqa: F811
    """--init-from RUN/best.npz --out RUN would remove (--overwrite) or later replace the
    weights it starts from: refused before anything is touched."""
    src, _ = run_dir
    run = tmp_path / "run"
    run.mkdir()
    for f in os.listdir(src):
        if f.endswith((".npz", ".json")):
            (run / f).write_bytes((src / f).read_bytes())
    before = {f: (run / f).read_bytes() for f in os.listdir(run)}
    proc = fastcap_cmd("train", *TINY, "--init-from", run / name, "--out", run, *overwrite)
    failed(proc)
    assert f"which is {run / name}" in proc.stderr and "never removes or replaces a file it reads" in proc.stderr
    assert {f: (run / f).read_bytes() for f in os.listdir(run)} == before


def test_prepare_does_its_work_when_its_stderr_reader_goes(tmp_path):
    """prepare's progress goes to stderr: with that reader gone from the start it still writes
    a complete data directory, and only then exits 0."""
    if not REQUIRE_ALL:  # CI installs the [vision] extra: there a missing torch is a failure
        pytest.importorskip("torch", reason='the CNN needs the `[vision]` extra')
    from PIL import Image

    from fastcap.coco_utils import load_coco_data

    (tmp_path / "imgs").mkdir()
    names = [f"{i}.png" for i in range(6)]
    for i, name in enumerate(names):
        Image.new("RGB", (40, 30), (40 * i, 20, 200 - 30 * i)).save(tmp_path / "imgs" / name)
    (tmp_path / "c.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [{"image_id": i, "caption": f"a colour number {i % 2}"} for i in range(6)]}))
    status, _ = _reader_gone(["prepare", tmp_path / "c.json", "--images", tmp_path / "imgs", "--out",
                              tmp_path / "data", "--weights", "none", "--min-count", "1",
                              "--val-fraction", "0.5", "--pca-dim", "2"], stream="stderr", lines=0)
    assert status == 0
    assert load_coco_data(tmp_path / "data")["train_captions"].shape[0] == 3
