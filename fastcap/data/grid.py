"""Grid features files: each image's spatial features, L = rows x cols cells of D channels.

Beside a data directory's pooled features (the CS231n ``*_vgg16_fc7*.h5``), ``fastcap
prepare --grid`` and ``fastcap make-data --grid`` write ``train2014_grid.h5`` and
``val2014_grid.h5`` (``grid_name``). Each holds one dataset, ``features``: float16
(num_images, L, D), stored in chunks of one image (1, L, D) with HDF5's Fletcher-32
checksum on every chunk, so that a minibatch reads only its own images and a damaged image is
found, and named, when it is read. Its attribute ``grid_shape`` is (rows, cols): cell ``l``
is row ``l // cols``, column ``l % cols``, row 0 at the top of the picture. float16 halves
the file (COCO at 14 x 14 x 512 is about 25 GB as float16) and keeps the 3 significant digits
a CNN's activations carry; every value read is widened to the model's dtype.

``write_grid`` writes such a file atomically from blocks of images (never the whole array in
memory); ``GridFile`` opens one, checks it once (the dataset, its shape, the chunks it
stores) and reads images (``read``), raising ``FeatureReadError`` naming the file and the
image whose chunk is damaged, truncated or not finite.
"""
import math
import os
import re

import numpy as np

from ..coco_utils import _dataset, check_stored
from ..runtime.compute import resolve
from ..runtime.files import atomic_write

__all__ = ["GRID_DTYPE", "DATASET", "FeatureReadError", "grid_name", "grid_path", "write_grid",
           "GridFile", "default_grid_shape"]

GRID_DTYPE = np.dtype("float16")
DATASET = "features"
_MAX_FLOAT16 = float(np.finfo(np.float16).max)


class FeatureReadError(ValueError):
    """Grid features that cannot be read: the file and the image are named."""


def grid_name(split):
    """The grid file of a split: ``train2014_grid.h5`` or ``val2014_grid.h5``."""
    return f"{split}2014_grid.h5"


def grid_path(base_dir, split):
    return os.path.join(os.fspath(base_dir), grid_name(split))


def default_grid_shape(cells):
    """(rows, cols) of a file that does not say: square when ``cells`` is a square, else one
    row."""
    side = math.isqrt(cells)
    return (side, side) if side * side == cells else (1, cells)


def write_grid(path, blocks, num_images, grid_shape, dim):
    """Write a grid file atomically from ``blocks``, an iterable of float arrays (k, L, D)
    (L = rows * cols of ``grid_shape``) that together hold ``num_images`` images in order.
    A value that is not finite in float16 (beyond +-65504) raises ValueError naming the image
    before the file replaces anything. Returns the absolute path."""
    import h5py

    rows, cols = (int(v) for v in grid_shape)
    cells, dim = rows * cols, int(dim)

    def fill(tmp):
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset(DATASET, shape=(num_images, cells, dim), dtype=GRID_DTYPE,
                                  chunks=(1, cells, dim), fletcher32=True)
            ds.attrs["grid_shape"] = np.array([rows, cols], np.int64)
            done = 0
            for block in blocks:
                block = np.asarray(block)
                if block.ndim != 3 or block.shape[1:] != (cells, dim):
                    raise ValueError(f"{path}: a block of grid features must be (k, {cells}, "
                                     f"{dim}), got {block.shape}")
                if done + block.shape[0] > num_images:
                    raise ValueError(f"{path}: more than the {num_images} images announced")
                with np.errstate(over="ignore"):
                    half = block.astype(GRID_DTYPE)
                bad = ~np.isfinite(half).all(axis=(1, 2))
                if bad.any():
                    raise ValueError(f"{path}: image {done + int(np.argmax(bad))}'s grid features "
                                     f"are not finite in float16 (NaN, or beyond "
                                     f"+-{_MAX_FLOAT16:g})")
                ds[done:done + half.shape[0]] = half
                done += half.shape[0]
            if done != num_images:
                raise ValueError(f"{path}: {done} images written of the {num_images} announced")

    return atomic_write(path, fill)


class GridFile:
    """An open grid file, checked: ``path``, ``shape`` (num_images, L, D), ``grid_shape``
    (rows, cols). ``read(images)`` -> the images' features; ``close()`` (or ``with``)."""

    def __init__(self, path):
        import h5py

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            what = "is not a regular file" if os.path.exists(self.path) else "does not exist"
            raise FileNotFoundError(f"grid features {self.path} {what}")
        try:
            # No chunk cache: each image is read once an epoch, and every read is checked.
            self._file = h5py.File(self.path, "r", rdcc_nbytes=0)
        except OSError as exc:
            cut = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(exc))
            if cut:
                raise ValueError(f"{self.path} is truncated: {int(cut[1]):,} of its "
                                 f"{int(cut[2]):,} bytes are there (a copy or a write that "
                                 "stopped early); write it again") from None
            raise ValueError(f"{self.path} is not a readable HDF5 file ({exc})") from None
        try:
            self._ds = _dataset(self._file, self.path, DATASET)
            self.shape = tuple(int(n) for n in self._ds.shape)
            self.grid_shape = self._check()
        except BaseException:
            self._file.close()
            raise
        self.dtype = self._ds.dtype

    def _check(self):
        ds, where = self._ds, f"{self.path}: dataset {DATASET!r}"
        if len(self.shape) != 3 or ds.dtype.kind != "f":
            raise ValueError(f"{where} must be grid features, float (num_images, L cells, D "
                             f"channels), got {ds.dtype} {ds.shape}")
        n, cells, dim = self.shape
        if cells == 0 or dim == 0:
            raise ValueError(f"{where} has {cells} cells of {dim} channels (L = {cells}): grid "
                             "features need L >= 1 cells of D >= 1 channels")
        check_stored(ds, self.path, DATASET)
        given = ds.attrs.get("grid_shape")
        if given is None:
            return default_grid_shape(cells)
        given = np.asarray(given)
        if given.shape != (2,) or given.dtype.kind not in "iu" or (given < 1).any() or \
                int(given[0]) * int(given[1]) != cells:
            raise ValueError(f"{where}: attribute grid_shape must be two positive integers "
                             f"(rows, cols) whose product is its {cells} cells, got "
                             f"{given.tolist()}")
        return int(given[0]), int(given[1])

    def __len__(self):
        return self.shape[0]

    def read(self, images, dtype=np.float32):
        """Features of ``images`` (int array (k,), any order, repeats allowed): ``dtype``
        (k, L, D). A chunk that cannot be read, or holds values that are not finite, raises
        FeatureReadError naming the file and the image."""
        import h5py

        images = np.asarray(images, dtype=np.int64).reshape(-1)
        n, cells, dim = self.shape
        if images.size and (images.min() < 0 or images.max() >= n):
            bad = int(images.min()) if images.min() < 0 else int(images.max())
            raise IndexError(f"{self.path}: image {bad} is outside its {n} images")
        unique, inverse = np.unique(images, return_inverse=True)
        raw = np.empty((unique.size, cells, dim), self._ds.dtype)
        # One image a read (its own chunk: the checksum is checked image by image), through
        # h5py's low-level calls: half the time of Dataset.read_direct's selections.
        memory, selection = h5py.h5s.create_simple((1, cells, dim)), self._ds.id.get_space()
        for j, i in enumerate(unique.tolist()):
            try:
                selection.select_hyperslab((i, 0, 0), (1, cells, dim))
                self._ds.id.read(memory, selection, raw[j:j + 1])
            except (OSError, RuntimeError, ValueError) as exc:
                raise FeatureReadError(
                    f"{self.path}: image {i}'s grid features cannot be read ({_reason(exc)}): "
                    "the file is damaged; write it again (fastcap prepare --grid)") from None
        out = np.empty(raw.shape, dtype)
        if raw.dtype == np.float16:  # fastcap's own files: native halves
            # their values by the active backend's kernel (NumPy's cast was most of a read)
            bad = resolve().kernels.half_to_float(raw.reshape(unique.size, -1).view(np.uint16),
                                                  out.reshape(unique.size, -1))
        else:
            out[...] = raw
            finite = np.isfinite(raw).all(axis=(1, 2))
            bad = -1 if finite.all() else int(np.argmin(finite))
        if bad >= 0:
            raise FeatureReadError(f"{self.path}: image {int(unique[bad])}'s grid "
                                   "features hold NaN or infinite values")
        return out if unique.size == images.size and (np.diff(images) > 0).all() else out[inverse]

    def read_all(self, dtype=np.float32):
        """Every image, as one array (the caller has checked that it fits in memory)."""
        return self.read(np.arange(self.shape[0]), dtype)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _reason(exc):
    text = " ".join(str(exc).split())
    return text[:160] or type(exc).__name__
