"""Grid features read from disk a minibatch at a time, the next minibatch read in the background.

``StreamedFeatures`` stands where a run's data dict holds a features array
(``data["train_features"]``, ``data["val_features"]``): it has the array's ``shape``
(num_images, L, D), ``ndim``, ``dtype`` and ``len``, and indexing it (an int array, a
slice, an int) reads those images from the grid file (fastcap.data.grid.GridFile) as
``dtype``. Memory holds the minibatch being trained on and the one being read, never the
file, so it does not grow with the data set.

``prefetch(images)`` starts reading ``images`` in one background thread; the next index with
exactly those images takes that read (and raises the error it met, fastcap.data.grid.
FeatureReadError naming the file and image), any other index reads at once. The solver asks
for the next minibatch's images as soon as it has drawn the current one
(fastcap.captioning_solver), so the reading overlaps the training step. ``select(images)`` is
a view of some images (an evaluation's), read a slice at a time; ``rows`` and ``chunk_rows``
let evaluation treat arrays and streams alike.
"""
import concurrent.futures
import hashlib
import threading

import numpy as np

from .grid import GridFile

__all__ = ["StreamedFeatures", "rows", "chunk_rows", "CHUNK_BYTES"]

CHUNK_BYTES = 64 << 20  # the most features evaluation holds at once (64 MiB)


class StreamedFeatures:
    """The images of a grid file (all, or those of ``index``) as a read-on-demand array of
    ``dtype``. ``close()`` stops the reader thread and closes the file (the views of one
    file share it)."""

    def __init__(self, grid, dtype=np.float32, index=None, _shared=None):
        self.grid = grid if isinstance(grid, GridFile) else GridFile(grid)
        self.dtype = np.dtype(dtype)
        self._index = None if index is None else np.asarray(index, np.int64).reshape(-1)
        n = len(self.grid) if self._index is None else self._index.size
        self.shape = (n, *self.grid.shape[1:])
        # the reader thread and the read in flight, shared by the views of one file
        self._shared = _shared if _shared is not None else {"lock": threading.Lock(),
                                                            "pool": None, "pending": None}

    ndim = 3

    @property
    def path(self):
        return self.grid.path

    @property
    def grid_shape(self):
        return self.grid.grid_shape

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self):
        return self.shape[0]

    def _images(self, index):
        """File rows of an index into this array (int, slice, int sequence) and whether it
        took one image (an int: the result drops its first axis)."""
        if isinstance(index, (int, np.integer)):
            index, single = [int(index)], True
        elif isinstance(index, slice):
            index, single = np.arange(self.shape[0])[index], False
        else:
            index, single = np.asarray(index), False
            if index.dtype.kind not in "iu":
                raise TypeError(f"grid features are indexed by image numbers, got {index.dtype}")
        index = np.asarray(index, np.int64).reshape(-1)
        n = self.shape[0]
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"image index out of range for {n} images of {self.path}")
        index = np.where(index < 0, index + n, index)
        return (index if self._index is None else self._index[index]), single

    def __getitem__(self, index):
        images, single = self._images(index)
        out = self._take_pending(images)
        if out is None:
            out = self.grid.read(images, self.dtype)
        return out[0] if single else out

    def __array__(self, dtype=None, copy=None):  # np.asarray(...): the whole array, read
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def select(self, index):
        """A view of the images ``index`` (int array) of this array, read when indexed."""
        images, _ = self._images(index)
        return StreamedFeatures(self.grid, self.dtype, images, self._shared)

    def prefetch(self, index):
        """Start reading the images of ``index`` in the background (see the module
        docstring); a read already in flight is dropped."""
        images, _ = self._images(index)
        shared = self._shared
        with shared["lock"]:
            if shared["pool"] is None:
                shared["pool"] = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="fastcap-grid-reader")
            future = shared["pool"].submit(self.grid.read, images, self.dtype)
            shared["pending"] = (self.path, self.dtype, images.tobytes(), future)

    def _take_pending(self, images):
        shared = self._shared
        with shared["lock"]:
            pending, shared["pending"] = shared["pending"], None
        if pending is None:
            return None
        path, dtype, key, future = pending
        if (path, dtype, key) != (self.path, self.dtype, images.tobytes()):
            future.cancel()
            return None
        return future.result()  # the reader's error, if it met one, is raised here

    def fingerprint(self):
        """SHA-256 of the shape and of up to 8 images spread over the file: what ranks of a
        data-parallel run compare (reading every image would read the whole file)."""
        h = hashlib.sha256(repr((self.shape, self.grid.grid_shape)).encode())
        n = self.shape[0]
        picks = np.unique(np.linspace(0, n - 1, min(n, 8)).astype(np.int64)) if n else []
        for i in picks:
            h.update(np.ascontiguousarray(self[int(i)], "<f4").tobytes())
        return h.hexdigest()

    def close(self):
        shared = self._shared
        with shared["lock"]:
            pool, shared["pool"], shared["pending"] = shared["pool"], None, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.grid.close()


def rows(features, images):
    """``features[images]`` of an array; a view read when sliced (``select``) of a stream."""
    if isinstance(features, StreamedFeatures):
        return features.select(images)
    return features[images]


def chunk_rows(features, most):
    """How many rows of ``features`` (an array or a stream, (n, ...)) one step of evaluation
    takes: ``most``, fewer when that many would hold more than CHUNK_BYTES."""
    row = int(np.prod(features.shape[1:], dtype=np.int64)) * np.dtype(features.dtype).itemsize
    return max(1, min(int(most), CHUNK_BYTES // max(row, 1)))
