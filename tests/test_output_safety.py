"""Every file fastcap writes goes through one mechanism (fastcap.runtime.files; issue 19, class 1).

Each writer (evaluate --json, show --out, make-data, a training run's files, the
run lock) meets each kind of target: a symbolic link to a file outside (or to
nowhere), a FIFO, a directory, a file fastcap did not write, a hard link of one,
an input of the same command, a file it wrote, nothing. The outcome is decided by
the kind alone: never written through a link, never a non-regular file, never an
input; what fastcap did not write only with --overwrite; and the file outside is
never touched. FIFO cases run in a child process under a timeout (a bug there hangs).
"""
import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

import fastcap
from fastcap.runtime import files as _atomic
from fastcap.cli import evaluate, main as cli, show
from fastcap.train import rundir
from fastcap.train.trainer import Trainer

from conftest import ENV, fastcap_cmd

TINY = dict(num_train_images=40, num_val_images=8, captions_per_image=3, hidden_dim=16,
            wordvec_dim=16, batch_size=20, epochs=1, dtype="float64", eval_images=0, lr=5e-3,
            num_samples=2)
VICTIM = b"another program's file\n"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    with fastcap.use_backend("numpy"):
        Trainer(TINY, out_dir=out, progress=False, stdout=io.StringIO()).run()
    return out / "checkpoint.npz"


# ---------------------------------------------------------------- the writers
# name -> (file name written in the target directory, callable(dir, ckpt) -> argv or, for
# API_WRITERS, callable(dir, overwrite, ckpt) doing the write).
def _train(d, overwrite, ckpt):
    Trainer(TINY, out_dir=d, overwrite=overwrite, progress=False, stdout=io.StringIO()).run()


def _lock(d, overwrite, ckpt):
    _atomic.DirectoryLock(d).acquire().release()


WRITERS = {
    "evaluate --json": ("results.json", lambda d, ckpt: ["evaluate", ckpt, "--max-images", "2",
                                                          "--json", d / "results.json"]),
    "show --out": ("sheet.jpg", lambda d, ckpt: ["show", ckpt, "-n", "1", "--out",
                                                 d / "sheet.jpg"]),
    "make-data": ("coco2014_vocab.json", lambda d, ckpt: ["make-data", d, "--num-train", "2",
                                                          "--num-val", "2", "--pca-dim", "4",
                                                          "--full-dim", "4"]),
    "train": ("config.json", _train),
    "run lock": (_atomic.LOCK_NAME, _lock),
}
# kind -> (written without --overwrite, written with it); None: refused either way.
KINDS = {
    "absent": (True, True),
    "ours": (True, True),
    "foreign": (False, True),
    "hardlink": (False, True),
    "symlink": (False, False),
    "dangling symlink": (False, False),
    "directory": (False, False),
    "input": (False, False),
    "fifo": (False, False),
}
# A dataset, or another run, is replaced only with --overwrite even though fastcap wrote it:
# runs read that data, or continue that run (fastcap.train.rundir).
WHOLE = ("make-data", "train")
API_WRITERS = ("train", "run lock")  # called in Python; the others are command lines
# The lock is fastcap's by its name (a killed run leaves it): any regular file with one name.
LOCK_KINDS = {**KINDS, "foreign": (True, True), "hardlink": (False, False)}


def _argv(writer, d, ckpt, overwrite):
    make = WRITERS[writer][1]
    argv = [str(a) for a in make(d, ckpt)]
    if overwrite:
        argv.append("--overwrite")
    return [*argv, *(["--backend", "numpy"] if argv[0] != "make-data" else [])]


def _prepare(kind, writer, d, ckpt, outside):
    """Make the target of ``kind`` in ``d``; returns (target path, files that must not change)."""
    name = WRITERS[writer][0]
    target = d / name
    d.mkdir(parents=True, exist_ok=True)
    victim = outside / "victim"
    victim.write_bytes(VICTIM)
    if kind == "ours" and writer == "run lock":  # what a killed run leaves
        target.write_text('{"pid": 1, "host": "h", "started": "s", "command": "c"}\n')
    elif kind == "ours":
        _run(writer, d, ckpt, overwrite=False)
        assert target.is_file()
    elif kind == "foreign":
        target.write_bytes(VICTIM)
    elif kind == "hardlink":
        os.link(victim, target)
    elif kind == "symlink":
        target.symlink_to(victim)
    elif kind == "dangling symlink":
        target.symlink_to(outside / "nowhere")
    elif kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "input":  # the checkpoint the command reads, under the output's name
        os.link(ckpt, target)
    return target, {victim: VICTIM, ckpt: ckpt.read_bytes()}


def _run(writer, d, ckpt, overwrite, in_child=False):
    """Run the writer; returns (ok, message)."""
    make = WRITERS[writer][1]
    if writer in API_WRITERS:
        if in_child:
            code = (f"import pathlib, sys; sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r}); "
                    f"import test_output_safety as t; import fastcap; fastcap.set_backend('numpy'); "
                    f"t.WRITERS[{writer!r}][1](pathlib.Path({str(d)!r}), {overwrite!r}, "
                    f"pathlib.Path({str(ckpt)!r}))")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env=ENV, timeout=120)
            return proc.returncode == 0, proc.stderr
        try:
            with fastcap.use_backend("numpy"):
                make(d, overwrite, ckpt)
        except (ValueError, OSError) as exc:
            return False, str(exc)
        return True, ""
    argv = _argv(writer, d, ckpt, overwrite)
    if in_child:
        proc = fastcap_cmd(*argv, timeout=120)
        return proc.returncode == 0, proc.stderr
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(argv)
    return rc == 0, err.getvalue()


CASES = [(w, k, o) for w in WRITERS for k in (LOCK_KINDS if w == "run lock" else KINDS)
         for o in (False, True)
         # make-data and training read no file the writer could be given as its output
         if not (k == "input" and w in ("make-data", "train", "run lock"))]


@pytest.mark.parametrize("writer,kind,overwrite", CASES,
                         ids=[f"{w}-{k}-{'overwrite' if o else 'plain'}" for w, k, o in CASES])
def test_every_output_through_one_mechanism(writer, kind, overwrite, ckpt, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    d = tmp_path / "out"
    target, keep = _prepare(kind, writer, d, ckpt, outside)
    kinds = LOCK_KINDS if writer == "run lock" else KINDS
    expect = kinds[kind][overwrite] and (overwrite or kind != "ours" or writer not in WHOLE)
    ok, message = _run(writer, d, ckpt, overwrite, in_child=kind == "fifo")
    assert ok == expect, message
    for path, content in keep.items():  # nothing outside, no input, is ever touched
        assert path.read_bytes() == content, path
    assert not (outside / "nowhere").exists()
    if ok and writer != "run lock":
        assert target.is_file() and not target.is_symlink()
        assert target.stat().st_nlink == 1
    elif not ok:
        # the refusal says why, naming the file (or its directory) and, where it helps, the flag
        assert target.name in message or str(d) in message, message
        if kind in ("foreign", "hardlink") and writer != "run lock":
            assert "--overwrite" in message, message
        still = {"symlink": target.is_symlink, "dangling symlink": target.is_symlink,
                 "directory": target.is_dir,
                 "fifo": lambda: target.exists() and not target.is_file()}.get(kind)
        assert still is None or still(), "the refused target was changed"
    assert _atomic.temporaries(d, [target.name]) == []


def test_evaluate_json_replaces_its_own_results_and_says_what_it_would_replace(ckpt, tmp_path):
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", str(ckpt), "--max-images", "2", "--json", str(out),
                     "--backend", "numpy"]) == 0
    first = json.loads(out.read_text())
    assert {"checkpoint", "split", "decoding", "bleu4"} <= set(first)
    # the checkpoint itself, even with --overwrite, also when named by its directory
    before = ckpt.read_bytes()
    for given in (ckpt, ckpt.parent):
        assert cli.main(["evaluate", str(given), "--json", str(ckpt), "--overwrite"]) == 1
        assert ckpt.read_bytes() == before
    out.write_text("{}")  # JSON, but not results: not fastcap's
    with pytest.raises(FileExistsError, match=r"--json .*r\.json exists \(2 bytes\).*--overwrite"):
        evaluate._json_target(type("A", (), {"json": str(out), "overwrite": False, "checkpoint": str(ckpt),
                                        "data": None})())


def test_resuming_through_a_symlinked_alias_is_the_same_run(ckpt, tmp_path):
    """--resume ALIAS/checkpoint.npz --out REAL (or the other way) continues the run; with
    --overwrite the checkpoint being resumed is never removed."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "checkpoint.npz").write_bytes(ckpt.read_bytes())
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    for resume, out in ((alias, real), (real, alias)):
        assert rundir.owns(out, resume / "checkpoint.npz")
        assert rundir.prepare_out_dir(out, resume / "checkpoint.npz", overwrite=True) == []
        assert (real / "checkpoint.npz").read_bytes() == ckpt.read_bytes()
    # the same checkpoint under another name in --out: --overwrite refuses to remove it
    other = tmp_path / "other.npz"
    os.link(real / "checkpoint.npz", other)
    with pytest.raises(rundir.RunDirError, match="the checkpoint it resumes; a run never removes"):
        rundir.prepare_out_dir(real, other, overwrite=True)
    assert (real / "checkpoint.npz").exists()


def test_show_writes_the_format_its_suffix_names(ckpt, tmp_path):
    from PIL import Image

    from fastcap.inference.contact_sheet import SHEET_FORMATS, SOFTWARE

    for suffix, fmt in SHEET_FORMATS.items():
        out = tmp_path / f"sheet{suffix.upper() if suffix == '.jpg' else suffix}"
        for _ in range(2):  # the second time it replaces its own sheet without --overwrite
            assert cli.main(["show", str(ckpt), "-n", "1", "--out", str(out),
                             "--backend", "numpy"]) == 0
        with Image.open(out) as im:
            assert im.format == fmt and im.getexif().get(0x0131) == SOFTWARE
    bad = tmp_path / "sheet.gif"
    with pytest.raises(ValueError, match=r"\.png.*got \.gif"):
        show.run(type("A", (), dict(out=str(bad), overwrite=False, split="val", backend=None,
                                      threads=None, checkpoint=str(ckpt), data=None))())
    assert not bad.exists()


def test_bench_report_files_go_through_the_mechanism(tmp_path, capsys):
    """`fastcap bench --out DIR`: its report files are replaced freely (they are the bench's
    by name) but never through a link, and never the --from-json input."""
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    d = tmp_path / "bench"
    d.mkdir()
    (d / "speedups.md").symlink_to(victim)
    assert cli.main(["bench", "--from-json", str(tmp_path / "x.json"), "--out", str(d)]) == 2
    assert "speedups.md" in capsys.readouterr().err and victim.read_bytes() == VICTIM
    (d / "speedups.md").unlink()
    (d / "speedups.png").write_bytes(VICTIM)
    assert cli.main(["bench", "--from-json", str(d / "speedups.png"), "--out", str(d)]) == 2
    assert "an input of this command" in capsys.readouterr().err
    assert (d / "speedups.png").read_bytes() == VICTIM
