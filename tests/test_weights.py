"""The CNN's weights offline: `--weights PATH` (a local file, recorded by its SHA-256 and checked
when features are made again), files that are not the network's refused naming them, and a
failed download that says what to do instead."""
import dataclasses
import hashlib
import json
import socket
import urllib.error
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import REQUIRE_ALL, fastcap_cmd
from test_cli import failed

if not REQUIRE_ALL:
    pytest.importorskip("torch", reason='the CNN needs the `[vision]` extra: '
                                        'pip install -e ".[vision]"')

import torch  # noqa: E402

from fastcap.cli.main import main  # noqa: E402
from fastcap.data import features as F  # noqa: E402

IMAGE = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def random_net():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", F.RandomWeightsWarning)
        return F.Extractor("resnet50", "none")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, random_net):
    """resnet50's weights of the random initialisation, saved as torch.save saves a state dict."""
    path = tmp_path_factory.mktemp("weights") / "mine.pth"
    torch.save(random_net.net.state_dict(), path)
    return path


def test_a_weights_file_is_recorded_by_its_sha256_and_makes_the_same_features(weights_file,
                                                                               random_net):
    ext = F.Extractor("resnet50", str(weights_file))
    record = ext.record()
    assert record["weights"] == "file" and record["weights_file"] == str(weights_file)
    assert record["weights_sha256"] == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    np.testing.assert_array_equal(ext.features([IMAGE]), random_net.features([IMAGE]))
    again = F.extractor_from_record(record, "checkpoint c.npz")  # from the file it names
    np.testing.assert_array_equal(again.features([IMAGE]), random_net.features([IMAGE]))


def test_a_recorded_weights_file_must_be_there_or_given_and_the_same(weights_file, tmp_path,
                                                                      random_net):
    record = F.Extractor("resnet50", str(weights_file)).record()
    moved = tmp_path / "moved.pth"
    moved.write_bytes(weights_file.read_bytes())
    record["weights_file"] = str(tmp_path / "gone.pth")
    with pytest.raises(F.WeightsUnavailable, match=r"gone.pth .* which is not there; pass "
                                                   r"--weights PATH"):
        F.extractor_from_record(record, "checkpoint c.npz")
    assert F.extractor_from_record(record, "c", weights=str(moved)).weights_sha256 == \
        record["weights_sha256"]
    other = tmp_path / "other.pth"
    state = random_net.net.state_dict()
    torch.save({k: v + 1 if k == "fc.bias" else v for k, v in state.items()}, other)
    with pytest.raises(ValueError, match=r"weights_sha256 .*--weights .*other.pth"):
        F.extractor_from_record(record, "checkpoint c.npz", weights=str(other))
    with pytest.raises(ValueError, match="not imagenet"):  # a name: it must be the record's
        F.extractor_from_record(record, "checkpoint c.npz", weights="imagenet")


def test_the_published_file_copied_by_hand_is_recorded_as_imagenet(weights_file, monkeypatch):
    """torch.hub names the published file by its SHA-256 prefix; a local file with that prefix
    makes the published features (here a spec whose URL names this file's prefix)."""
    sha = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    spec = F.EXTRACTORS["resnet50"]
    monkeypatch.setitem(F.EXTRACTORS, "resnet50",
                        dataclasses.replace(spec, url=f"https://example.invalid/resnet50-{sha[:8]}.pth"))
    record = F.Extractor("resnet50", str(weights_file)).record()
    assert record["weights"] == "imagenet" and record["weights_sha256"] == sha
    assert "weights_file" not in record  # the download makes the same features


@pytest.mark.parametrize("content", ["corrupt", "another network", "a pickled model", "a list"])
def test_a_file_that_is_not_the_networks_weights_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "w.pth"
    if content == "corrupt":
        path.write_bytes(b"\x00not a torch file" * 50)
    elif content == "another network":
        torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    elif content == "a pickled model":  # torch.load(weights_only=True) runs no pickled code
        torch.save(torch.nn.Linear(4, 2), path)
    else:
        torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError) as info:
        F.Extractor("resnet50", str(path))
    assert f"--weights {path}" in str(info.value) and "\n" not in str(info.value)
    if content == "another network":
        assert "not resnet50 weights" in str(info.value) and "'conv1.weight'" in str(info.value)


def _captions(tmp_path, n=4):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (32, 32), (60 * i, 100, 200)).save(folder / f"p{i}.png")
    doc = {"images": [{"id": i, "file_name": f"p{i}.png"} for i in range(n)],
           "annotations": [{"id": i, "image_id": i, "caption": "a blue square"} for i in range(n)]}
    (tmp_path / "captions.json").write_text(json.dumps(doc))
    return tmp_path / "captions.json", folder


def test_an_offline_download_names_both_ways_out(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    captions, images = _captions(tmp_path)
    assert main(["prepare", str(captions), "--images", str(images), "--out",
                 str(tmp_path / "data"), "--min-count", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastcap: error: cannot download the resnet50")
    assert "Name or service not known" in err[0]
    assert "--weights PATH" in err[0] and "--weights none" in err[0]


def test_prepare_refuses_a_corrupt_weights_file_in_one_line(tmp_path):
    captions, images = _captions(tmp_path)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    lines = failed(fastcap_cmd("prepare", captions, "--images", images, "--out", tmp_path / "d",
                               "--weights", bad, "--min-count", "1", "--quiet", timeout=300))
    assert f"--weights {bad}: not a weights file torch can read" in lines[0]
    lines = failed(fastcap_cmd("prepare", captions, "--images", images, "--out", tmp_path / "d",
                               "--weights", tmp_path / "nothing.pth", "--quiet"))
    assert "nothing.pth: no such file" in lines[0]
