"""``fastcap make-data``: the generated dataset (fastcap.data.generated) written in the CS231n layout.

Every file is written atomically, between a manifest saying "incomplete" and
one saying "complete", under the directory's lock (fastcap.data.directory), so a
directory is whole or refused.
"""
import json
import os
import pathlib

from ..coco_utils import DATA_FILES
from ..runtime.files import atomic_write_h5 as _write_h5, atomic_write_text, real_path
from .directory import check_outputs, writing
from .generated import GRID_DEFAULTS, check_grid_args, generate_coco_data, generated_grid_blocks
from .grid import grid_name, write_grid

__all__ = ["write_coco_data"]


def write_coco_data(out_dir, overwrite=False, grid_size=None, grid_dim=GRID_DEFAULTS["grid_dim"],
                    **kwargs):
    """Write ``generate_coco_data(**kwargs)`` to ``out_dir`` in the CS231n layout.

    Files: ``coco2014_captions.h5`` (``train_captions``, ``val_captions``,
    ``train_image_idxs``, ``val_image_idxs``; int32), ``{train,val}2014_vgg16_fc7.h5``
    (``features``: float32 (num_images, full_dim)), ``{train,val}2014_vgg16_fc7_pca.h5``
    (``features``: float32 (num_images, pca_dim)), ``coco2014_vocab.json``
    (``idx_to_word``, ``word_to_idx``), ``{train,val}2014_urls.txt`` (one URL
    per line) and the manifest ``fastcap_data.json``; with ``grid_size`` (cells per side) also
    ``{train,val}2014_grid.h5``, the generated grid features (fastcap.data.grid: float16
    (num_images, grid_size**2, grid_dim)), written a block of images at a time. ``out_dir`` is created if
    needed; existing files of these names raise FileExistsError (listing them)
    before anything is generated, unless ``overwrite`` or an interrupted make-data left
    them; what is not a regular file is refused. Returns ``out_dir`` as a Path.

    Killed at any point, the directory holds the old data or the new, or is
    refused by ``load_coco_data`` as half-written: each file is written
    atomically, between a manifest saying "incomplete" and one saying "complete".
    A directory is written by one writer at a time (fastcap.data.directory).
    """
    out = pathlib.Path(real_path(out_dir))
    grid = tuple(grid_name(s) for s in ("train", "val"))  # written, or stale ones removed
    check_outputs(out, (*DATA_FILES, *grid), "make-data", overwrite)  # before the work
    kwargs["full_features"] = True  # the fc7 files need them
    if grid_size is not None:  # checked before anything is made
        grid_size, grid_dim = check_grid_args(grid_size, grid_dim)
    data = generate_coco_data(**kwargs)
    generated = {k: v for k, v in kwargs.items() if k != "full_features"}
    if grid_size is not None:
        generated.update(grid_size=grid_size, grid_dim=grid_dim)
    with writing(out, (*DATA_FILES, *grid), "make-data", overwrite, generated=generated):
        _write_h5(out / "coco2014_captions.h5", {
            k: data[k] for k in ("train_captions", "val_captions",
                                 "train_image_idxs", "val_image_idxs")
        })
        for split in ("train", "val"):
            _write_h5(out / f"{split}2014_vgg16_fc7.h5",
                      {"features": data[f"{split}_features_full"]})
            _write_h5(out / f"{split}2014_vgg16_fc7_pca.h5",
                      {"features": data[f"{split}_features"]})
            atomic_write_text(out / f"{split}2014_urls.txt",
                              "".join(f"{url}\n" for url in data[f"{split}_urls"]))
            if grid_size is None and os.path.lexists(out / grid_name(split)):
                os.unlink(out / grid_name(split))  # another data set's (--overwrite was given)
            if grid_size is not None:
                n = len(data[f"{split}_urls"])
                write_grid(out / grid_name(split), generated_grid_blocks(
                    split, n, kwargs.get("seed", 0), grid_size, grid_dim), n,
                    (grid_size, grid_size), grid_dim)
        vocab = {"idx_to_word": data["idx_to_word"], "word_to_idx": data["word_to_idx"]}
        atomic_write_text(out / "coco2014_vocab.json", json.dumps(vocab))
    return out
