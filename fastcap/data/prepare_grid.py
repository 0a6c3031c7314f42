"""``fastcap prepare --grid``: a prepared directory's grid features (fastcap.data.grid).

The CNN's pass over each chunk of images (fastcap.data.prepare) gives the pooled features and
the grid, (chunk, L, C); the grid chunk is saved as float16 under the resumable partial
directory, before the pooled chunk that marks the chunk done. Once every image is done, the
grid files are written a block at a time from those chunks (never the whole grid in memory):
``{train,val}2014_grid.h5``, each cell optionally reduced to K channels by a PCA fitted on
cells drawn from the training images (``sample_cells``; stored in ``GRID_PCA_FILE``: ``mean``
float32 (C,), ``components`` float32 (C, K), a cell's reduced features being
(cell - mean) @ components). The partial directory holds the grid twice over at the end
(chunks and files), as COCO's 123,000 images at 7 x 7 x 2048 take 25 GB each.
"""
import os

import numpy as np

from .grid import GRID_DTYPE, grid_path, write_grid

__all__ = ["GRID_PCA_FILE", "grid_chunk_path", "save_grid_chunk", "grid_chunk_ok",
           "sample_cells", "write_grid_files", "PCA_CELLS"]

GRID_PCA_FILE = "fastcap_grid_pca.h5"
PCA_CELLS = 200_000  # the most training cells the grid's PCA is fitted on (C = 2048: 1.6 GB)


def grid_chunk_path(partial, k):
    return os.path.join(partial, f"grid-{k:06d}.npy")


def save_grid_chunk(tmp, grid):
    """The body of an atomic write of one chunk's grid (float32 (k, L, C)) as float16."""
    with np.errstate(over="ignore"):
        half = grid.astype(GRID_DTYPE)
    with open(tmp, "wb") as f:
        np.save(f, half, allow_pickle=False)


def grid_chunk_ok(path, rows, cells, channels):
    """Whether ``path`` holds a whole saved chunk of ``rows`` images (one a run left)."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    return a.dtype == GRID_DTYPE and a.shape == (rows, cells, channels)


def _chunk(partial, k):
    return np.load(grid_chunk_path(partial, k), allow_pickle=False)


def _blocks(partial, chunk, lo, hi, reduce):
    """The grid of images [lo, hi) from the saved chunks (``chunk`` images each), a chunk at a
    time, each block through ``reduce`` (or as float32)."""
    for k in range(lo // chunk, -(-hi // chunk)):
        a, b = max(lo, k * chunk), min(hi, (k + 1) * chunk)
        block = _chunk(partial, k)[a - k * chunk:b - k * chunk].astype(np.float32)
        yield block if reduce is None else reduce(block)


def sample_cells(partial, chunk, n_train, most=PCA_CELLS, seed=0):
    """float32 (m, C): up to ``most`` cells drawn (without replacement, deterministic in
    ``seed``) from the training images' grids, for the PCA."""
    first = _chunk(partial, 0)
    cells = first.shape[1]
    total = n_train * cells
    pick = np.sort(np.random.default_rng(seed).choice(total, size=min(most, total), replace=False))
    out = []
    for k in range(-(-n_train // chunk)):
        lo, hi = k * chunk * cells, min(n_train, (k + 1) * chunk) * cells
        mine = pick[(pick >= lo) & (pick < hi)] - lo
        if mine.size:
            block = _chunk(partial, k) if k else first
            out.append(block.reshape(-1, block.shape[2])[mine].astype(np.float32))
    return np.concatenate(out)


def write_grid_files(out_dir, partial, chunk, n_train, n_total, grid_shape, dim, reduce=None):
    """Write ``{train,val}2014_grid.h5`` from the saved chunks (images [0, n_train) are the
    training split's); ``reduce``: a function (k, L, C) -> (k, L, dim) applied to each block
    (the PCA), or None when ``dim`` is C."""
    for split, lo, hi in (("train", 0, n_train), ("val", n_train, n_total)):
        write_grid(grid_path(out_dir, split), _blocks(partial, chunk, lo, hi, reduce), hi - lo,
                   grid_shape, dim)
