"""Checkpoints written before they carried their PCA (format 1, tests/fixtures/format1, written by
fastcap at 6da23ff) still load, caption as they did, with their PCA read from their data
directory and a note saying so; Captioner.save turns one into a self-contained checkpoint."""
import json
import shutil
import warnings

import pytest

from conftest import REQUIRE_ALL, ROOT, fastcap_cmd
from test_cli import failed, ok

if not REQUIRE_ALL:
    pytest.importorskip("torch", reason='the CNN needs the `[vision]` extra: '
                                        'pip install -e ".[vision]"')

import fastcap  # noqa: E402
from fastcap.inference.captioner import CheckpointNote  # noqa: E402
from fastcap.train.checkpoint import load_checkpoint  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "format1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
PICTURES = [str(FIXTURE / name) for name in EXPECTED]


@pytest.fixture
def old(tmp_path):
    """A copy of the fixture (checkpoint and data) that a test may change."""
    shutil.copytree(FIXTURE, tmp_path / "old")
    return tmp_path / "old"


def test_the_fixture_is_format_1_and_loads():
    ckpt = load_checkpoint(FIXTURE / "checkpoint.npz")
    assert ckpt.meta["version"] == 1 and "pca_embedded" not in ckpt.meta and ckpt.pca is None
    assert ckpt.config["data"]["features"]["extractor"] == "resnet50"


def test_old_checkpoint_captions_as_it_did_with_a_note(old):
    proc = ok(fastcap_cmd("caption", old / "checkpoint.npz", *PICTURES, "--data", old / "data",
                          "--json", timeout=300))
    got = {r["image"].rsplit("/", 1)[1]: r["caption"] for r in json.loads(proc.stdout)}
    assert got == EXPECTED
    note = [line for line in proc.stderr.splitlines() if "carried their PCA" in line]
    assert note and note[0].startswith("fastcap: warning: checkpoint ") and str(old / "data") in note[0]


def test_old_checkpoint_without_its_data_says_to_pass_data(old):
    lines = failed(fastcap_cmd("caption", old / "checkpoint.npz", PICTURES[0], timeout=300))
    assert "written before checkpoints carried their PCA" in lines[0] and "--data DIR" in lines[0]


def test_old_checkpoint_refuses_another_pca_in_its_data_directory(old):
    # another PCA than the record's: its SHA-256 differs
    (old / "data" / "fastcap_pca.h5").write_bytes((old / "data" / "val2014_vgg16_fc7_pca.h5").read_bytes())
    lines = failed(fastcap_cmd("caption", old / "checkpoint.npz", PICTURES[0], "--data",
                               old / "data", timeout=300))
    assert "fastcap_pca.h5" in lines[0]


def test_saving_an_old_checkpoint_makes_it_self_contained(old, tmp_path):
    with pytest.warns(CheckpointNote):
        captioner = fastcap.load_captioner(old / "checkpoint.npz", data_dir=old / "data")
    new = captioner.save(tmp_path / "model.npz")
    shutil.rmtree(old / "data")  # the data is gone: the new checkpoint needs none of it
    ckpt = load_checkpoint(new)
    assert ckpt.meta["version"] == 2 and ckpt.meta["pca_embedded"] and ckpt.pca is not None
    assert (ckpt.epoch, ckpt.iteration) == (2, 4)  # where the old run was
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointNote)  # no note: nothing read from elsewhere
        again = fastcap.load_captioner(new)
    assert again.caption(PICTURES) == list(EXPECTED.values())


def test_old_checkpoint_samples_with_its_data(old):
    proc = ok(fastcap_cmd("sample", old / "checkpoint.npz", "--data", old / "data", "-n", 1))
    assert "resnet50 PCA features" in proc.stdout  # the network's name, not "fc7"
