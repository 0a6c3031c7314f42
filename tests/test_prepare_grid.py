"""`fastcap prepare --grid`: the CNN's spatial map of each image, beside the pooled features,
optionally reduced by a PCA of the cells, recorded so that it can be made again."""
import json
import warnings

import numpy as np
import pytest

from conftest import REQUIRE_ALL, fastcap_cmd
from test_cli import failed, ok

if not REQUIRE_ALL:
    pytest.importorskip("torch", reason='the CNN needs the `[vision]` extra: pip install -e ".[vision]"')

from test_caption import draw_pictures  # noqa: E402  (after the skip: it needs Pillow's torch-free part only)


def _captions(root, n=20):
    pictures = draw_pictures(root / "images", n, seed=1)
    images = [{"id": i, "file_name": name} for i, (name, _, _) in enumerate(pictures)]
    ann = [{"id": i, "image_id": i, "caption": f"a {c} {s}"} for i, (_, c, s) in enumerate(pictures)]
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": ann}))
    return root / "captions.json", pictures


def test_prepare_grid_writes_the_cnn_map_and_its_pca(tmp_path):
    from fastcap.data.features import Extractor
    from fastcap.data.grid import GridFile
    from fastcap.data.prepare import apply_pca, load_pca, read_features_record
    from fastcap.image_utils import fetch_image

    captions, _ = _captions(tmp_path)
    data = tmp_path / "data"
    proc = ok(fastcap_cmd("prepare", captions, "--images", tmp_path / "images", "--out", data,
                          "--weights", "none", "--min-count", "1", "--pca-dim", "8", "--quiet",
                          "--grid", "--grid-pca-dim", "6", timeout=300))
    assert "grid features layer4 7x7 cells x 2048 channels, PCA 6 channels (float16)" in proc.stdout
    record = read_features_record(data)
    assert record["grid"] == {"layer": "layer4", "shape": [7, 7], "channels": 2048, "dim": 6,
                              "dtype": "float16", "pca_dim": 6,
                              "pca_sha256": record["grid"]["pca_sha256"]}
    mean, comps = load_pca(data, record, grid=True)
    assert comps.shape == (2048, 6)
    urls = (data / "train2014_urls.txt").read_text().split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, spatial = Extractor("resnet50", "none", 2).features([fetch_image(urls[1])], grid=True)
    with GridFile(data / "train2014_grid.h5") as g:
        assert g.shape == (len(urls), 49, 6) and g.grid_shape == (7, 7)
        want = apply_pca(spatial, mean, comps)
        np.testing.assert_allclose(g.read([1]), want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    assert not (data / ".fastcap-prepare").exists()

    # again without --grid (--overwrite): the grids of the old data do not stay behind
    ok(fastcap_cmd("prepare", captions, "--images", tmp_path / "images", "--out", data,
                   "--weights", "none", "--min-count", "1", "--pca-dim", "8", "--quiet",
                   "--overwrite", timeout=300))
    assert not any((data / n).exists() for n in ("train2014_grid.h5", "fastcap_grid_pca.h5"))
    assert "grid" not in read_features_record(data)


def test_prepare_grid_keeps_every_channel_without_a_pca_and_resumes(tmp_path):
    from fastcap.data import prepare as P
    from fastcap.data.grid import GridFile

    captions, _ = _captions(tmp_path, n=6)
    data = tmp_path / "data"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P.prepare(captions, tmp_path / "images", data, weights="none", extractor="vgg16",
                  min_count=1, pca_dim=4, progress=False, grid=True, say=lambda *_: None)
    with GridFile(data / "val2014_grid.h5") as g:
        assert g.shape[1:] == (196, 512) and g.grid_shape == (14, 14)
        assert np.isfinite(g.read_all()).all()
    record = P.read_features_record(data)
    assert record["grid"]["layer"] == "conv5_3" and record["grid"]["pca_dim"] is None
    # an interrupted run's chunks: one whose grid is missing is made again, the rest are kept
    from fastcap.data.features import Extractor
    from fastcap.data.prepare_grid import grid_chunk_path

    paths = sorted(str(p) for p in (tmp_path / "images").iterdir())
    partial = str(tmp_path / "partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ext = Extractor("vgg16", "none", 2)
    pooled = P._extract_all(paths, ext, partial, False, grid=True)
    grid0 = np.load(grid_chunk_path(partial, 0))
    (tmp_path / "partial" / "grid-000000.npy").unlink()
    again = P._extract_all(paths, ext, partial, False, grid=True)
    np.testing.assert_array_equal(pooled, again)
    np.testing.assert_array_equal(np.load(grid_chunk_path(partial, 0)), grid0)
    with pytest.raises(ValueError, match="--grid-pca-dim reduces grid features: it goes with --grid"):
        P.prepare(captions, tmp_path / "images", tmp_path / "x", weights="none", grid_pca_dim=4)


def test_grid_pca_dim_without_grid_is_a_usage_error(tmp_path):
    captions, _ = _captions(tmp_path, n=2)
    lines = failed(fastcap_cmd("prepare", captions, "--images", tmp_path / "images", "--out",
                               tmp_path / "d", "--weights", "none", "--grid-pca-dim", "4"))
    assert "--grid-pca-dim reduces grid features: it goes with --grid" in lines[0]


def test_an_attention_model_of_prepared_grids_captions_pictures_with_their_maps(tmp_path):
    """prepare --grid --grid-pca-dim -> train --attention -> caption --attention-map: the
    checkpoint carries the grid's PCA, and the maps are the network's view with a panel a word."""
    from PIL import Image

    from fastcap.train.checkpoint import load_checkpoint

    captions, pictures = _captions(tmp_path, n=12)
    data, run = tmp_path / "data", tmp_path / "run"
    ok(fastcap_cmd("prepare", captions, "--images", tmp_path / "images", "--out", data,
                   "--weights", "none", "--min-count", "1", "--pca-dim", "8", "--quiet",
                   "--grid", "--grid-pca-dim", "6", timeout=300))
    ok(fastcap_cmd("train", "--attention", "--data", data, "--epochs", "2", "--batch-size", "5",
                   "--hidden-dim", "8", "--wordvec-dim", "8", "--quiet", "--out", run))
    ckpt = load_checkpoint(run / "checkpoint.npz")
    assert ckpt.pca[1].shape == (2048, 6) and ckpt.config["data"]["grid_shape"] == [7, 7]
    picture = tmp_path / "images" / pictures[0][0]
    proc = ok(fastcap_cmd("caption", run, picture, "--attention-map", tmp_path / "maps",
                          timeout=300))
    assert proc.stdout.startswith(f"{picture}\t") and "wrote 1 attention map" in proc.stderr
    with Image.open(tmp_path / "maps" / f"{picture.stem}.png") as im:
        assert im.info.get("Software") == "fastcap attention map"
    ok(fastcap_cmd("caption", run, picture, "--attention-map", tmp_path / "maps", timeout=300))
    Image.new("RGB", (4, 4)).save(tmp_path / "maps" / f"{picture.stem}.png")  # not fastcap's
    line, = failed(fastcap_cmd("caption", run / "checkpoint.npz", picture, "--attention-map",
                               tmp_path / "maps"))
    assert f"--attention-map {tmp_path / 'maps' / picture.stem}.png exists" in line
    assert "--overwrite" in line
