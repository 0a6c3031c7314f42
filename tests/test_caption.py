"""Your own data in, your own images out, offline: pictures drawn with Pillow and their
captions in COCO's format -> `fastcap prepare --weights none` -> `fastcap train` ->
`fastcap caption` on new pictures, which must name the colour it was taught."""
import json
import random
import shutil

import pytest
from PIL import Image, ImageDraw

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


def test_caption_checks_the_pca_and_finds_moved_data(trained, tmp_path):
    root, data, run, _ = trained
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    pic = root / "images" / "pic000.png"
    # another PCA than the record's: refused
    (moved / "fastcap_pca.h5").write_bytes((data / "val2014_vgg16_fc7_pca.h5").read_bytes())
    lines = failed(fastcap_cmd("caption", run / "checkpoint.npz", pic, "--data", moved))
    assert "fastcap_pca.h5" in lines[0]
    lines = failed(fastcap_cmd("caption", run / "checkpoint.npz", tmp_path / "nothing.png"))
    assert "nothing.png does not exist" in lines[0]


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
    """caption_files (and so `fastcap caption`) uses the precision the checkpoint records
    unless it is given one."""
    from fastcap.inference import caption as caption_mod
    from fastcap.runtime import precision

    root, data, run, _ = trained
    load = caption_mod.load_checkpoint

    def recording(path):
        ckpt = load(path)
        ckpt.config["train"]["precision"] = recorded
        return ckpt

    seen, generate = [], caption_mod.generate
    monkeypatch.setattr(caption_mod, "load_checkpoint", recording)
    monkeypatch.setattr(caption_mod, "generate",
                        lambda *a, **k: seen.append(precision.get_precision()) or generate(*a, **k))
    _, results = caption_mod.caption_files(str(run / "checkpoint.npz"), [str(root / "images")], batch_size=100,
                                           precision=asked)
    assert seen == [want] and len(results) == 48
