"""fastcap prepare's output can be trusted (issue 27, classes 2 and 4): whatever it writes, train
reads back (or it refuses the name first); the path checked inside --images is the one opened;
pixels of any depth are scaled, not clipped; and a directory is written whole, under a lock,
between a manifest saying incomplete and one saying complete, so a prepare killed part-way
leaves a directory that is refused, and that prepare continues when run again."""
import io
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from fastcap.coco_utils import MANIFEST, load_coco_data
from fastcap.data import prepare as P
from fastcap.data.captions import is_image_name
from fastcap.image_utils import _decode, fetch_image
from fastcap.runtime.files import DirectoryLock, LockError


class MeanColour:
    """A stand-in CNN (no torch): features = the image's mean colour, repeated to 8."""

    dim = 8

    def __init__(self, *args, **kwargs):
        self.seen = []

    def record(self):
        return {"extractor": "resnet50", "weights": "none", "dim": self.dim}

    def features(self, images, sources=None):
        self.seen += list(sources or [])
        return np.stack([np.resize(im.reshape(-1, 3).mean(0), self.dim) for im in images]).astype(np.float32)


@pytest.fixture
def fake_cnn(monkeypatch):
    made = []

    def make(*args, **kwargs):
        made.append(MeanColour())
        return made[-1]

    monkeypatch.setattr(P, "Extractor", make)
    return made


def _pictures(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6, 5), (10 * i % 256, 3 * i % 256, 7)).save(path, format="PNG")


def _coco_file(path, names):
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [{"image_id": i, "caption": f"a picture number {i % 3}"}
                        for i in range(len(names)) for _ in range(2)]}))
    return path


def _prepare(root, names, **kwargs):
    return P.prepare(_coco_file(root / "c.json", names), root / "imgs", root / "out", min_count=1,
                     val_fraction=0.5, pca_dim=2, progress=False, say=lambda *a: None, **kwargs)


# names a file system holds that are not plain: spaces, '#', accents, scripts, emoji
NAME = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
               min_size=1, max_size=12).map(lambda s: s + ".png")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAME, min_size=2, max_size=5, unique_by=lambda n: n.strip()))
def test_what_prepare_writes_train_reads_back_or_it_refuses_first(tmp_path_factory, fake_cnn, names):
    root = tmp_path_factory.mktemp("names")
    ok = all(is_image_name(n) for n in names)
    try:
        _pictures(root / "imgs", [n.strip() for n in names])
    except (OSError, ValueError):
        return  # a name this file system does not hold
    if not ok:
        with pytest.raises(ValueError, match="file name on one line|line break"):
            _prepare(root, names)
        assert not (root / "out").exists()  # refused before anything was written
        return
    _prepare(root, names)
    data = load_coco_data(root / "out", pca_features=True)
    read = sorted(data["train_urls"].tolist() + data["val_urls"].tolist())
    assert read == sorted(os.path.normpath(root / "imgs" / n.strip()) for n in names)


def test_the_path_checked_inside_images_is_the_path_opened(tmp_path, fake_cnn):
    """``link/../x.png`` normalises to ``imgs/x.png``, inside --images; opening it as written
    would follow ``link`` out of the folder to another x.png."""
    _pictures(tmp_path / "imgs", ["x.png", "y.png"])
    (tmp_path / "outside" / "deep").mkdir(parents=True)
    Image.new("RGB", (6, 5), (255, 0, 0)).save(tmp_path / "outside" / "x.png")
    os.symlink(tmp_path / "outside" / "deep", tmp_path / "imgs" / "link")
    _prepare(tmp_path, ["link/../x.png", "y.png"])
    opened = fake_cnn[0].seen
    assert str(tmp_path / "imgs" / "x.png") in opened and not any("link" in p for p in opened)
    urls = (tmp_path / "out" / "train2014_urls.txt").read_text() + \
        (tmp_path / "out" / "val2014_urls.txt").read_text()
    assert "link" not in urls and str(tmp_path / "imgs" / "x.png") in urls


def test_an_images_folder_whose_path_cannot_go_on_a_line_is_refused(tmp_path, fake_cnn):
    _pictures(tmp_path / "im\u2028gs", ["a.png", "b.png"])
    with pytest.raises(ValueError, match="line break"):
        P.prepare(_coco_file(tmp_path / "c.json", ["a.png", "b.png"]), tmp_path / "im\u2028gs",
                  tmp_path / "out", min_count=1, val_fraction=0.5, progress=False)


# ---------------------------------------------------------------- pixels
def _png(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 65535), min_size=1, max_size=40))
def test_16_bit_pictures_are_scaled_not_clipped(values):
    grey = np.array(values, dtype=np.uint16).reshape(1, -1)
    got = _decode(_png(grey), "x.png")
    want = np.rint(grey / 65535.0 * 255.0).astype(np.uint8)
    assert got.shape == (1, grey.shape[1], 3)
    np.testing.assert_array_equal(got[..., 0], want)
    np.testing.assert_array_equal(got[..., 0], got[..., 2])


@pytest.mark.parametrize("values, want", [
    (np.linspace(0, 1, 5, dtype=np.float32), [0, 64, 128, 191, 255]),  # float in [0, 1]
    (np.array([0, 51, 255], dtype=np.float32), [0, 51, 255]),  # float in [0, 255]
    (np.array([0, 32768, 65535], dtype=np.int32), [0, 128, 255]),  # 16-bit data in mode I
    (np.array([-5, 0, 5], dtype=np.int32), [0, 128, 255]),  # other integers: their own range
])
def test_deep_pictures_of_other_modes(tmp_path, values, want):
    path = tmp_path / "x.tif"
    Image.fromarray(values.reshape(1, -1)).save(path)
    got = fetch_image(str(path))
    np.testing.assert_array_equal(got[0, :, 0], want)


def test_an_8_bit_picture_decodes_as_pillow_makes_it():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_decode(_png(rgb), "x.png"), rgb)


# ---------------------------------------------------------------- written whole
def _killed_after(monkeypatch, name, error):
    """Make prepare's writer raise ``error`` right after it writes ``name``."""
    write = P._write_h5

    def writer(path, arrays):
        write(path, arrays)
        if os.path.basename(path) == name:
            raise error

    monkeypatch.setattr(P, "_write_h5", writer)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError(28, "No space left on device")],
                         ids=["killed", "disk full"])
def test_a_prepare_stopped_part_way_is_refused_then_continued(tmp_path, fake_cnn, monkeypatch, error):
    names = ["a.png", "b.png", "c.png", "d.png"]
    _pictures(tmp_path / "imgs", names)
    _prepare(tmp_path, names)  # a complete directory
    before = load_coco_data(tmp_path / "out")["train_captions"]
    _coco_file(tmp_path / "c.json", names[::-1])  # new captions order: new data
    with monkeypatch.context() as m:
        _killed_after(m, "coco2014_captions.h5", error)
        with pytest.raises(type(error)):
            P.prepare(tmp_path / "c.json", tmp_path / "imgs", tmp_path / "out", min_count=1,
                      val_fraction=0.5, pca_dim=2, progress=False, overwrite=True)
    # new captions beside the old features, vocabulary and urls: refused, not loaded as whole
    with pytest.raises(ValueError, match="interrupted `fastcap prepare`.*run `fastcap prepare` again"):
        load_coco_data(tmp_path / "out")
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["complete"] is False
    # the same prepare again continues it, without --overwrite (its own unfinished files)
    P.prepare(tmp_path / "c.json", tmp_path / "imgs", tmp_path / "out", min_count=1,
              val_fraction=0.5, pca_dim=2, progress=False)
    data = load_coco_data(tmp_path / "out")
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["complete"] is True
    assert data["train_captions"].shape == before.shape


def test_a_complete_directory_is_replaced_only_with_overwrite(tmp_path, fake_cnn):
    _pictures(tmp_path / "imgs", ["a.png", "b.png"])
    _prepare(tmp_path, ["a.png", "b.png"])
    with pytest.raises(FileExistsError, match="--overwrite"):
        _prepare(tmp_path, ["a.png", "b.png"])
    _prepare(tmp_path, ["a.png", "b.png"], overwrite=True)


def test_one_writer_at_a_time(tmp_path, fake_cnn):
    _pictures(tmp_path / "imgs", ["a.png", "b.png"])
    (tmp_path / "out").mkdir()
    with DirectoryLock(tmp_path / "out"):
        with pytest.raises(LockError, match="in use by another fastcap run"):
            _prepare(tmp_path, ["a.png", "b.png"])
    assert not (tmp_path / "out" / MANIFEST).exists()
