"""`fastcap show` and fastcap.inference.contact_sheet: images with ground-truth and generated captions."""
import io
import os
import socket
import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import fastcap
from fastcap.model.beam import beam_search
from fastcap.train.checkpoint import load_checkpoint
from fastcap.cli.main import main
from fastcap.coco_utils import load_coco_data
from fastcap.image_utils import ImageUnavailableWarning
from fastcap.inference.contact_sheet import SOFTWARE, contact_sheet
from fastcap.data.make import write_coco_data
from fastcap.train.metrics import decode_for_metrics, references_by_image
from fastcap.data.scenes import _PLACES
from fastcap.train.trainer import Trainer

# A tiny float64 run: 40 train images x 3 captions / batch 20 = 6 iterations per epoch.
DATA = {"num_train_images": 40, "num_val_images": 8, "captions_per_image": 3, "data_seed": 0}
OPTIONS = {"cell": "lstm", "hidden_dim": 16, "wordvec_dim": 16, "batch_size": 20, "epochs": 2,
           "dtype": "float64", "eval_images": 0, "lr": 5e-3, "num_samples": 0, **DATA}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(checkpoint path, model, its data) of a run trained with the trainer API."""
    out = tmp_path_factory.mktemp("run")
    with fastcap.use_backend("numpy"):
        trainer = Trainer(OPTIONS, out_dir=out, progress=False, stdout=io.StringIO())
        trainer.run()
    ckpt = load_checkpoint(out / "checkpoint.npz")
    return str(out / "checkpoint.npz"), ckpt.build_model(), trainer.data


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tile_text(fig, k):
    """The words of tile k's caption panel, labels included, in order."""
    text_axes = [ax for ax in fig.axes if not ax.axison][k]
    return " ".join(" ".join(t.get_text() for t in text_axes.texts).split())


def test_contact_sheet_shows_every_caption(run):
    _, model, data = run
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageUnavailableWarning)  # every image is drawn
        fig = contact_sheet(model, data, "val", n=5, beam_size=2, columns=3)
    assert isinstance(fig, Figure)
    image_axes = [ax for ax in fig.axes if ax.axison]
    assert len(image_axes) == 5 and all(len(ax.images) == 1 for ax in image_axes)
    ids, refs = references_by_image(data, "val", np.arange(5))
    feats = data["val_features"][ids]
    greedy = decode_for_metrics(model.sample(feats), data["idx_to_word"])
    beam = decode_for_metrics(beam_search(model, feats, beam_size=2), data["idx_to_word"])
    for k in range(5):
        text = _tile_text(fig, k)
        assert f"greedy {greedy[k]}" in text and f"beam 2 {beam[k]}" in text
        for r in refs[k]:
            assert f"GT {r}" in text
        # the picture is the generated image's own
        shown = image_axes[k].images[0].get_array()
        assert np.array_equal(shown, fastcap.image_utils.fetch_image(data["val_urls"][k]))
    # without beam_size there is no beam line
    assert "beam" not in _tile_text(contact_sheet(model, data, "val", n=1), 0)


def test_unreachable_images_get_placeholder_tiles(run):
    _, model, data = run
    data = dict(data)
    port = _closed_port()
    urls = data["val_urls"].copy().astype(object)
    urls[1] = f"http://127.0.0.1:{port}/train2014/COCO_val2014_000000000042.jpg"
    data["val_urls"] = urls
    with pytest.warns(ImageUnavailableWarning) as caught:
        fig = contact_sheet(model, data, "val", n=3)
    missing = [w.message for w in caught if issubclass(w.category, ImageUnavailableWarning)]
    assert [m.url for m in missing] == [urls[1]] and "refused" in missing[0].reason.lower()
    assert str(missing[0]).startswith(f"val image 1: {urls[1]} is unavailable")
    placeholder = [ax for ax in fig.axes if ax.axison][1]
    assert not placeholder.images
    words = " ".join(t.get_text() for t in placeholder.texts)
    assert "image unavailable" in words and "refused" in words.lower()


def test_bad_arguments(run):
    _, model, data = run
    for kwargs, match in (({"split": "test"}, "split"), ({"n": 0}, "n must"),
                          ({"beam_size": 0}, "beam_size"), ({"image_ids": [99]}, "image_ids")):
        with pytest.raises(ValueError, match=match):
            contact_sheet(model, data, **kwargs)


def _png(path):
    with Image.open(path) as im:
        return im.format, im.size, im.info.get("Software"), np.asarray(im.convert("RGB"))


def test_fastcap_show_writes_a_png(run, tmp_path, capsys):
    ckpt, _, data = run
    out = tmp_path / "sheet.png"
    assert main(["show", ckpt, "-n", "3", "--beam-size", "2", "--out", str(out),
                 "--backend", "numpy"]) == 0
    assert str(out) in capsys.readouterr().out
    fmt, (w, h), software, pixels = _png(out)
    assert fmt == "PNG" and software == SOFTWARE
    assert w == 3 * 330  # three tiles of 3.3 in at 100 dpi
    assert h > 300 and pixels.std() > 20  # not blank
    # the generated scenes are drawn: each image's ground colour fills part of the sheet
    from fastcap.data.generated import image_scene

    for url in data["val_urls"][:3]:
        ground = np.array(_PLACES[image_scene(url)["place"]][1], np.uint8)
        assert (pixels == ground).all(axis=-1).sum() > 2000, url

    # A sheet fastcap wrote is replaced; any other file only with --overwrite.
    assert main(["show", ckpt, "-n", "2", "--out", str(out)]) == 0
    assert _png(out)[1][0] == 2 * 330
    other = tmp_path / "mine.png"
    other.write_bytes(b"my own file")
    assert main(["show", ckpt, "-n", "1", "--out", str(other)]) == 1
    err = capsys.readouterr().err
    assert str(other) in err and "--overwrite" in err and other.read_bytes() == b"my own file"
    assert main(["show", ckpt, "-n", "1", "--out", str(other), "--overwrite"]) == 0
    assert _png(other)[0] == "PNG"


def test_fastcap_show_offline_with_coco_urls(run, tmp_path, capsys, monkeypatch):
    """A data directory whose URLs cannot be reached: placeholders, and the sheet is written."""
    ckpt, _, _ = run
    data_dir = write_coco_data(tmp_path / "coco", num_train_images=10, num_val_images=4,
                               captions_per_image=2, seed=3)
    port = _closed_port()
    urls = [f"http://127.0.0.1:{port}/val2014/COCO_val2014_{i:012d}.jpg" for i in range(4)]
    (data_dir / "val2014_urls.txt").write_text("".join(u + "\n" for u in urls))
    monkeypatch.setenv("FASTCAP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["show", ckpt, "--data", str(data_dir), "-n", "4"]) == 0  # default --out
    out = capsys.readouterr().out
    assert out.count("drew a placeholder") == 4 and all(u in out for u in urls)
    fmt, (w, _), _, pixels = _png(tmp_path / "contact_sheet_val.png")
    assert fmt == "PNG" and w == 4 * 330
    assert (pixels == (0xdd, 0xdd, 0xdd)).all(axis=-1).sum() > 4 * 10000  # four grey tiles
    assert load_coco_data(data_dir)["val_urls"].tolist() == urls


def test_show_usage_errors(run, capsys, tmp_path, monkeypatch):
    ckpt, _, _ = run
    monkeypatch.chdir(tmp_path)
    for argv in (["show"], ["show", ckpt, "-n", "0"], ["show", ckpt, "--beam-size", "x"],
                 ["show", ckpt, "--split", "test"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert main(["show", os.devnull + "-missing.npz"]) == 1


def test_show_html_is_a_self_contained_page_of_images_and_references(run, tmp_path, capsys,
                                                                     monkeypatch):
    import base64
    import html
    import re

    path, model, data = run
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "val.html"
    assert main(["show", path, "-n", "3", "--beam-size", "2", "--html", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    assert not (tmp_path / "contact_sheet_val.png").exists()  # --html alone: the page alone
    text = page.read_text()
    srcs = re.findall(r'<img src="([^"]*)"', text)
    assert len(srcs) == 3 and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    for s in srcs:  # the generated scenes, drawn offline and embedded
        Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).verify()
    assert not re.search(r'(src|href)="(https?|file):', text)
    ids, refs = references_by_image(data, "val", np.unique(data["val_image_idxs"])[:3])
    for r in refs:
        for caption in r:  # escaped: the references hold "<UNK>"
            assert html.escape(caption) in text
    assert "&lt;UNK&gt;" in text and "<UNK>" not in text
    assert text.count(">GT<") == sum(len(r) for r in refs) and text.count(">beam 2<") == 3
    # with --out too: both
    sheet = tmp_path / "s.png"
    assert main(["show", path, "-n", "2", "--html", str(page), "--out", str(sheet)]) == 0
    assert sheet.exists() and page.read_text() != text
