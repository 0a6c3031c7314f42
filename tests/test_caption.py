"""Your own data in, your own images out, offline: pictures drawn with Pillow and their
captions in COCO's format -> `fastcap prepare --weights none` -> `fastcap train` ->
`fastcap caption` on new pictures, which must name the colour it was taught."""
import base64
import io
import json
import random
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image, ImageDraw

import fastcap
from fastcap.train.checkpoint import load_checkpoint

from conftest import REQUIRE_ALL, fastcap_cmd
from test_cli import failed, ok

if not REQUIRE_ALL:  # CI installs the [vision] extra: there a missing torch is a failure
    pytest.importorskip("torch", reason='the CNN needs the `[vision]` extra: '
                                        'pip install -e ".[vision]"')

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220)}
SHAPES = ("circle", "square")


def draw_pictures(folder, n, seed):
    """n pictures of one coloured shape on a light background: [(file name, colour, shape)]."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        img = Image.new("RGB", (96, 80), tuple(rng.randint(200, 255) for _ in range(3)))
        s = rng.randint(50, 70)
        x, y = rng.randint(0, 96 - s), rng.randint(0, 80 - s)
        draw = ImageDraw.Draw(img)
        (draw.ellipse if shape == "circle" else draw.rectangle)((x, y, x + s, y + s),
                                                                fill=COLOURS[colour])
        name = f"pic{i:03d}.png"
        img.save(folder / name)
        out.append((name, colour, shape))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    pictures = draw_pictures(root / "images", 48, seed=0)
    images = [{"id": i, "file_name": name} for i, (name, _, _) in enumerate(pictures)]
    images.append({"id": 999, "file_name": "not-there.jpg"})  # a missing image is left out
    annotations = [{"id": 10 * i + k, "image_id": i, "caption": text}
                   for i, (_, colour, shape) in enumerate(pictures)
                   for k, text in enumerate((f"A {colour} {shape}.", f"a {colour} {shape} "
                                             "on white", "", f"There is a {colour} {shape}!"))]
    annotations.append({"id": 9999, "image_id": 999, "caption": "a red circle"})
    (root / "captions_train.json").write_text(json.dumps({"images": images,
                                                          "annotations": annotations}))
    data = root / "data"
    proc = ok(fastcap_cmd("prepare", root / "captions_train.json", "--images", root / "images",
                          "--out", data, "--weights", "none", "--min-count", "1", "--pca-dim", "16", "--quiet",
                          timeout=300))
    run = root / "run"
    ok(fastcap_cmd("train", "--data", data, "--epochs", "25", "--batch-size", "40",
                   "--hidden-dim", "64", "--wordvec-dim", "32", "--lr", "1e-2", "--quiet",
                   "--eval-images", "0", "--out", run, timeout=300))
    return root, data, run, proc


def test_prepare_reports_and_records(trained):
    root, data, run, proc = trained
    assert "left out: 1 images not found under --images" in proc.stdout
    assert "left out: 48 empty captions" in proc.stdout
    assert "fastcap: warning: --weights none" in proc.stderr
    record = json.loads((data / "fastcap_features.json").read_text())
    assert (record["extractor"], record["weights"], record["dim"]) == ("resnet50", "none", 2048)
    assert not (data / ".fastcap-prepare").exists()  # the chunks go once the data is complete
    vocab = json.loads((data / "coco2014_vocab.json").read_text())["idx_to_word"]
    assert vocab[:4] == ["<NULL>", "<START>", "<END>", "<UNK>"] and "red" in vocab
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["features"]["pca_sha256"] == record["pca_sha256"]


def test_caption_names_the_colour_of_new_pictures(trained):
    root, data, run, _ = trained
    new = draw_pictures(root / "new", 15, seed=1)
    proc = ok(fastcap_cmd("caption", run / "checkpoint.npz", root / "new", "--json",
                          timeout=300))
    results = json.loads(proc.stdout)
    assert [r["image"] for r in results] == [str(root / "new" / n) for n, _, _ in new]
    right = sum(colour in r["caption"].split() for r, (_, colour, _) in zip(results, new))
    assert right >= 11, results  # chance is 5 of 15
    # text output, beam search, one image as a file:// URL
    uri = (root / "new" / new[0][0]).as_uri()
    proc = ok(fastcap_cmd("caption", run / "checkpoint.npz", uri, "--beam-size", "3",
                          timeout=300))
    image, caption = proc.stdout.rstrip("\n").split("\t")
    assert image == uri and new[0][1] in caption.split()


def test_a_checkpoint_captions_after_its_data_is_gone(trained, tmp_path):
    """The checkpoint carries its PCA (format 2): copied to another folder, with the data
    directory moved away, it captions the pictures as before."""
    root, data, run, _ = trained
    before = ok(fastcap_cmd("caption", run / "checkpoint.npz", root / "images", "--json",
                            timeout=300)).stdout
    copy = tmp_path / "elsewhere" / "model.npz"
    copy.parent.mkdir()
    shutil.copy(run / "checkpoint.npz", copy)
    data.rename(tmp_path / "moved")
    try:
        after = ok(fastcap_cmd("caption", copy, root / "images", "--json", timeout=300)).stdout
        captioner = fastcap.load_captioner(copy)  # and from Python
        in_python = captioner.caption([r["image"] for r in json.loads(before)])
    finally:
        (tmp_path / "moved").rename(data)
    assert json.loads(after) == json.loads(before)
    assert in_python == [r["caption"] for r in json.loads(before)]
    ckpt = load_checkpoint(copy)
    assert ckpt.meta["pca_embedded"] and ckpt.pca[1].shape == (2048, 16)


def test_caption_refuses_features_it_cannot_make(tmp_path):
    out = tmp_path / "gen"
    ok(fastcap_cmd("train", "--num-train-images", "20", "--num-val-images", "4",
                   "--captions-per-image", "2", "--hidden-dim", "8", "--wordvec-dim", "8",
                   "--epochs", "1", "--eval-images", "0", "--quiet", "--out", out))
    pic = tmp_path / "p.png"
    Image.new("RGB", (8, 8)).save(pic)
    lines = failed(fastcap_cmd("caption", out / "checkpoint.npz", pic))
    assert "cannot compute them for a new image" in lines[0] and "--extractor" in lines[0]
    lines = failed(fastcap_cmd("caption", out / "checkpoint.npz", pic, "--extractor", "vgg16",
                               "--weights", "none"))
    assert "PCA" in lines[0]
    # a model of full features (4096-d, as VGG-16's fc7): captioned with the extractor named
    full = tmp_path / "full"
    ok(fastcap_cmd("train", "--num-train-images", "20", "--num-val-images", "4", "--no-pca",
                   "--captions-per-image", "2", "--hidden-dim", "8", "--wordvec-dim", "8",
                   "--epochs", "1", "--eval-images", "0", "--quiet", "--out", full))
    proc = ok(fastcap_cmd("caption", full / "checkpoint.npz", pic, "--extractor", "vgg16",
                          "--weights", "none", "--json", timeout=300))
    assert [r["image"] for r in json.loads(proc.stdout)] == [str(pic)]
    lines = failed(fastcap_cmd("caption", full / "checkpoint.npz", pic, "--extractor",
                               "resnet50", "--weights", "none"))
    assert "4096-dimensional" in lines[0] and "2048" in lines[0]


@pytest.mark.parametrize("name, parameters, tensors", [
    ("resnet50", 25_557_032, 320), ("vgg16", 138_357_544, 32)])
def test_networks_are_torchvisions_and_load_published_weights(name, parameters, tensors,
                                                               monkeypatch):
    """The published sizes, and the state-dict names torch.hub's file is loaded by (strictly);
    the download itself is replaced by a state dict of the right names (no network here)."""
    import warnings

    import numpy as np
    import torch

    from fastcap.data import features as F

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", F.RandomWeightsWarning)
        rand = F.Extractor(name, "none")
    assert sum(p.numel() for p in rand.net.parameters()) == parameters
    state = rand.net.state_dict()
    assert len(state) == tensors
    published = {k: v * 0.5 if v.is_floating_point() else v for k, v in state.items()}
    seen = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda url, **kw: seen.append((url, kw)) or published)
    ext = F.Extractor(name, "imagenet")
    assert seen == [(F.EXTRACTORS[name].url, {"progress": True, "check_hash": True,
                                              "map_location": "cpu"})]
    for k, v in ext.net.state_dict().items():
        assert torch.equal(v, published[k]), k
    assert ext.record()["weights"] == "imagenet" and ext.record()["weights_url"] == seen[0][0]
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    a, b = rand.features([image]), ext.features([image])
    assert a.shape == b.shape == (1, F.EXTRACTORS[name].dim) and not np.allclose(a, b)


@pytest.mark.parametrize("recorded, asked, want", [("bfloat16", None, "bfloat16"),
                                                   ("float32", None, "float32"),
                                                   ("bfloat16", "float32", "float32")])
def test_caption_computes_in_the_checkpoints_precision(trained, monkeypatch, recorded, asked, want):
    """load_captioner (and so `fastcap caption`) uses the precision the checkpoint records
    unless it is given one."""
    from fastcap.inference import captioner as captioner_mod
    from fastcap.runtime import precision

    root, data, run, _ = trained
    load = captioner_mod.load_checkpoint

    def recording(path):
        ckpt = load(path)
        ckpt.config["train"]["precision"] = recorded
        return ckpt

    seen, generate = [], captioner_mod.generate
    monkeypatch.setattr(captioner_mod, "load_checkpoint", recording)
    monkeypatch.setattr(captioner_mod, "generate",
                        lambda *a, **k: seen.append(precision.get_precision()) or generate(*a, **k))
    captioner = captioner_mod.load_captioner(str(run / "checkpoint.npz"), precision=asked)
    results = captioner.caption(sorted(str(p) for p in (root / "images").iterdir()),
                                batch_size=100)
    assert seen == [want] and len(results) == 48


# ---------------------------------------------------------------- the Python API
def test_python_api_captions_paths_pil_images_and_arrays(trained):
    """fastcap.load_captioner(run folder).caption(...) takes a path, a list of paths, PIL
    images or uint8 arrays alike, and `fastcap caption` prints the same captions."""
    root, data, run, _ = trained
    new = draw_pictures(root / "api", 6, seed=2)
    paths = [str(root / "api" / name) for name, _, _ in new]
    captioner = fastcap.load_captioner(run)  # a run folder: its best.npz
    assert captioner.path == str(run / "best.npz")
    assert isinstance(captioner.model, fastcap.CaptioningRNN)
    by_path = captioner.caption(paths)
    assert isinstance(by_path, list) and all(isinstance(c, str) and c for c in by_path)
    assert captioner.caption(paths[0]) == by_path[0]  # one picture in, one string out
    pil = [Image.open(p) for p in paths]
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    assert captioner.caption(pil) == by_path and captioner.caption(arrays) == by_path
    assert captioner.caption(tuple(arrays[:2]) + (paths[2],)) == by_path[:3]
    right = sum(colour in c.split() for c, (_, colour, _) in zip(by_path, new))
    assert right >= 4, by_path  # chance is 2 of 6
    proc = ok(fastcap_cmd("caption", run / "best.npz", *paths, "--json", timeout=300))
    assert [r["caption"] for r in json.loads(proc.stdout)] == by_path


@pytest.mark.parametrize("picture, words", [
    (np.zeros((8, 8), np.uint8), "images: an array picture must be uint8 (H, W, 3)"),
    (np.zeros((8, 8, 3), np.float32), "images: an array picture must be uint8 (H, W, 3)"),
    (np.zeros((2, 8, 8, 3), np.uint8), "a list of pictures is a list"),
    (np.zeros((0, 8, 3), np.uint8), "images: an array picture must be uint8"),
    (3, "images: a picture is a path, a URL, a PIL image or a uint8 (H, W, 3) array, got int"),
    ("no-such-picture.png", "no-such-picture.png"),
])
def test_python_api_names_a_bad_picture(trained, picture, words):
    root, data, run, _ = trained
    captioner = fastcap.load_captioner(run / "checkpoint.npz")
    with pytest.raises((TypeError, ValueError, OSError)) as info:
        captioner.caption(picture)
    assert words in str(info.value)
    with pytest.raises((TypeError, ValueError, OSError)) as info:  # in a list: its position
        captioner.caption([str(root / "images" / "pic000.png"), picture])
    assert "images[1]" in str(info.value) or words == "no-such-picture.png"
    for bad in ({"beam_size": 0}, {"max_length": 0}, {"batch_size": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            captioner.caption(str(root / "images" / "pic000.png"), **bad)
    with pytest.raises(ValueError, match=r"features must be a float \(N, 16\) array"):
        captioner.caption_features(np.zeros((2, 15), np.float32))


def test_a_captioner_saves_and_loads_without_the_trainer(trained, tmp_path):
    """Captioner.save writes a checkpoint that load_captioner and every command read: of a
    loaded checkpoint, and of a model trained in Python on the prepared directory."""
    root, data, run, _ = trained
    pictures = [str(root / "images" / f"pic{i:03d}.png") for i in range(6)]
    captioner = fastcap.load_captioner(run / "checkpoint.npz")
    saved = captioner.save(tmp_path / "m.npz")
    again = fastcap.load_captioner(saved)
    for name, value in captioner.model.params.items():
        np.testing.assert_array_equal(again.model.params[name], value)
    assert again.caption(pictures) == captioner.caption(pictures)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        captioner.save(saved)
    lines = failed(fastcap_cmd("train", "--resume", saved, "--quiet"))
    assert "without optimizer state" in lines[0] and "--init-from" in lines[0]

    d = fastcap.load_coco_data(str(data), max_train=None)
    model = fastcap.CaptioningRNN(d["word_to_idx"], input_dim=d["train_features"].shape[1],
                                  wordvec_dim=16, hidden_dim=32, cell_type="lstm",
                                  dtype=np.float32, rng=np.random.default_rng(0))
    fastcap.CaptioningSolver(model, d, update_rule="adam", num_epochs=2, batch_size=40,
                             optim_config={"learning_rate": 1e-2}, verbose=False).train()
    mine = fastcap.Captioner(model, data_dir=data)
    loaded = fastcap.load_captioner(mine.save(tmp_path / "mine.npz"))
    assert loaded.caption(pictures) == mine.caption(pictures)
    proc = ok(fastcap_cmd("caption", tmp_path / "mine.npz", *pictures[:2], timeout=300))
    assert [line.split("\t")[1] for line in proc.stdout.splitlines()] == mine.caption(pictures[:2])
    bare = fastcap.Captioner(model)  # told nothing of its features: it captions features
    with pytest.raises(ValueError, match="neither data_dir"):
        bare.caption(pictures[0])
    assert bare.caption_features(d["val_features"][:2]) == \
        mine.caption_features(d["val_features"][:2])


# ---------------------------------------------------------------- run folders, folders, pages
def test_a_run_folder_means_its_best_checkpoint_and_says_so(trained, tmp_path):
    root, data, run, _ = trained
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(run / "checkpoint.npz", folder / "best.npz")
    (folder / "checkpoint.npz").write_bytes(b"not a checkpoint")  # read it, and it fails
    pic = root / "images" / "pic000.png"
    proc = ok(fastcap_cmd("caption", folder, pic, timeout=300))
    assert f"fastcap: run folder {folder}: reading best.npz" in proc.stderr
    (folder / "best.npz").rename(folder / "checkpoint.npz")
    proc = ok(fastcap_cmd("caption", folder, pic, timeout=300))
    assert "reading checkpoint.npz (it has no best.npz)" in proc.stderr


def test_a_folder_with_bad_files_captions_the_rest_and_says_so(trained, tmp_path):
    root, data, run, _ = trained
    folder = tmp_path / "mixed"
    good = draw_pictures(folder, 3, seed=3)
    (folder / "notimage.jpg").write_bytes(b"abcdef")
    (folder / "empty.png").write_bytes(b"")
    proc = fastcap_cmd("caption", run / "checkpoint.npz", folder, "--json", timeout=300)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert [r["image"] for r in json.loads(proc.stdout)] == [str(folder / n) for n, _, _ in good]
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("fastcap: warning: skipped")]
    assert len(skipped) == 2 and "empty.png" in skipped[0] and "notimage.jpg" in skipped[1]
    assert "2 of 5 pictures skipped" in proc.stderr
    lines = failed(fastcap_cmd("caption", run / "checkpoint.npz", folder / "notimage.jpg"))
    assert "notimage.jpg" in lines[0] and "not an image" in lines[0]  # named: an error
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"zz")
    proc = fastcap_cmd("caption", run / "checkpoint.npz", only_bad)
    assert proc.returncode == 1 and "fastcap: error: none of the 1 pictures could be read" in proc.stderr


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.texts = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)


def test_caption_html_page_is_self_contained_and_escaped(trained, tmp_path):
    root, data, run, _ = trained
    folder = tmp_path / "pics"
    draw_pictures(folder, 3, seed=4)
    shutil.copy(folder / "pic000.png", folder / "<b>a&b<i>.png")
    (folder / "broken.jpg").write_bytes(b"nope")
    page = tmp_path / "page.html"
    proc = fastcap_cmd("caption", run / "checkpoint.npz", folder, "--html", page, "--json",
                       timeout=300)
    assert proc.returncode == 3, proc.stderr
    text = page.read_text()
    parsed = _Page()
    parsed.feed(text)
    images = [a["src"] for t, a in parsed.tags if t == "img"]
    assert len(images) == 4
    for src in images:  # embedded, and each a picture Pillow reads
        assert src.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert max(im.size) <= 320
    assert not [t for t, _ in parsed.tags if t in ("script", "link", "iframe")]
    assert not [v for _, a in parsed.tags for v in a.values()
                if v and v.split(":", 1)[0] in ("http", "https", "file")]
    assert "<b>a&b<i>" not in text and "&lt;b&gt;a&amp;b&lt;i&gt;.png" in text
    for r in json.loads(proc.stdout):  # each caption is on the page
        assert r["caption"] in "".join(parsed.texts)
    assert "broken.jpg" in text and "skipped" in text
    ok(fastcap_cmd("caption", run / "checkpoint.npz", folder / "pic001.png", "--html", page,
                   timeout=300))  # its own page: replaced
    assert text != page.read_text()
    foreign = tmp_path / "notes.html"
    foreign.write_text("my notes")
    lines = failed(fastcap_cmd("caption", run / "checkpoint.npz", folder / "pic001.png", "--html",
                               foreign))
    assert "--overwrite" in lines[0] and foreign.read_text() == "my notes"


def test_caption_weights_must_be_the_checkpoints_own(trained):
    """--weights imagenet for features made by a random network is refused, not ignored."""
    root, data, run, _ = trained
    pic = root / "images" / "pic000.png"
    lines = failed(fastcap_cmd("caption", run / "checkpoint.npz", pic, "--weights", "imagenet"))
    assert "weights none, not imagenet" in lines[0]
