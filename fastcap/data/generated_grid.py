"""The generated world's grid features: each image's things at their places in a grid of cells.

A generated image (fastcap.data.generated) has a layout, and its picture
(fastcap.data.scenes) draws it with the constants below: the place fills the picture (sky
above ``HORIZON``, ground below), the subject's figures stand on the ground line ``GROUND``
between ``SUBJECT_LEFT`` and ``SUBJECT_RIGHT`` (less room when there is an object), and the
object stands on the ground at ``OBJECT_X``. The grid features say the same, cell by cell
(``grid_features``): a cell is the sum of feature rows, one random row per attribute value
(the pooled features' construction, at the grid's size), each weighted by the share of the
cell that its thing covers: the place's row where the picture shows background, the
subject's rows (subject, count, adjective, action) where its figures stand, the object's
(object, adjective) where it stands; plus Gaussian noise. A word about the object is
predictable from the object's cells alone, which is what attention has to find.

Coordinates are shares of the picture's width (x, from the left) and height (y, from the
top); a grid of ``rows`` x ``cols`` cells covers the whole picture, cell ``l`` at row
``l // cols`` and column ``l % cols``. Shapes: n images, L = rows * cols cells, D channels.
"""
import numpy as np

__all__ = ["HORIZON", "GROUND", "SUBJECT_LEFT", "SUBJECT_RIGHT", "OBJECT_X", "SIZES",
           "GRID_DEFAULTS", "layout_boxes", "coverage", "grid_features"]

HORIZON = 0.45  # the sky (or wall) above, the ground below
GROUND = 1 - 44 / 240  # where figures and the object stand (44 pixels above a 240-pixel bottom)
SUBJECT_LEFT = 20 / 320  # the subject group's left edge
SUBJECT_RIGHT = {False: 0.95, True: 0.62}  # its right edge, without / with an object beside it
OBJECT_X = 0.8  # the object's centre
SIZES = {"small": 0.7, "large": 1.3, "young": 0.75}  # the size adjectives' scales
_SUBJECT_HEIGHT, _OBJECT_HEIGHT, _OBJECT_HALF_WIDTH = 0.32, 0.2, 0.1  # at scale 1
GRID_DEFAULTS = {"grid_size": 7, "grid_dim": 256}  # `make-data --grid`'s, and `train --attention`'s


def layout_boxes(subject_scale, object_scale, has_object):
    """The boxes (n, 4) as (x0, y0, x1, y1) of the subject group and of the object (its
    box is empty when ``has_object`` is False), from each image's size scales (n,)."""
    subject_scale = np.asarray(subject_scale, np.float64)
    object_scale = np.asarray(object_scale, np.float64)
    has_object = np.asarray(has_object, bool)
    n = subject_scale.shape[0]
    subject = np.empty((n, 4))
    subject[:, 0] = SUBJECT_LEFT
    subject[:, 1] = GROUND - _SUBJECT_HEIGHT * subject_scale
    subject[:, 2] = np.where(has_object, SUBJECT_RIGHT[True], SUBJECT_RIGHT[False])
    subject[:, 3] = GROUND
    half = _OBJECT_HALF_WIDTH * object_scale
    obj = np.stack([OBJECT_X - half, GROUND - _OBJECT_HEIGHT * object_scale, OBJECT_X + half,
                    np.full(n, GROUND)], axis=1)
    obj[~has_object] = 0.0
    return subject, obj


def coverage(boxes, grid_shape):
    """The share of each cell that each box covers: float64 (n, L), in [0, 1]."""
    rows, cols = grid_shape

    def overlap(lo, hi, cells):  # (n,) extents against the cells' [k/cells, (k+1)/cells]
        edges = np.arange(cells + 1) / cells
        inside = np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1])
        return np.clip(inside, 0, None) * cells

    ys = overlap(boxes[:, 1], boxes[:, 3], rows)
    xs = overlap(boxes[:, 0], boxes[:, 2], cols)
    return (ys[:, :, None] * xs[:, None, :]).reshape(boxes.shape[0], rows * cols)


def grid_features(table, place_rows, subject_rows, object_rows, boxes, grid_shape, noise_std,
                  rng):
    """float32 (n, L, D) grid features (see the module docstring).

    table: float32 (K, D), a row per attribute value; place_rows (n,), subject_rows (n, S)
    and object_rows (n, O): each image's rows of the table; boxes: (subject, object) of
    ``layout_boxes``; rng: the noise's generator (drawn (n, L, D), in that order).
    """
    subject_box, object_box = boxes
    w_subject = coverage(subject_box, grid_shape).astype(np.float32)
    w_object = coverage(object_box, grid_shape).astype(np.float32)
    w_place = np.clip(1 - w_subject - w_object, 0, 1)
    n, cells, dim = place_rows.shape[0], w_subject.shape[1], table.shape[1]
    out = rng.standard_normal((n, cells, dim), dtype=np.float32)
    out *= np.float32(noise_std)
    for weights, vectors in ((w_place, table[place_rows]),
                             (w_subject, table[subject_rows].sum(axis=1)),
                             (w_object, table[object_rows].sum(axis=1))):
        out += weights[:, :, None] * vectors[:, None, :]
    return out
