"""Attention maps: where an attention model looked for each word it wrote (Show, Attend and
Tell's figure).

``attention_figure(picture, words, weights, grid_shape)`` returns a matplotlib Figure: the
picture, then one small panel per word, each the picture lit by that word's attention: the
word's weights over the L = rows x cols cells, upsampled to the picture (bicubic, so the
cells blend as in the paper's figures) and scaled by their largest value, light the picture
where the model looked and leave it dark elsewhere; the word is written above its panel and
its largest weight below. Panels wrap at ``PER_ROW`` a row. The picture must be what the grid
covers: the centre crop the CNN saw for prepared data (fastcap.data.features.network_view),
the whole picture for the generated world.

``map_paths`` names one PNG per image in a folder (from the image's source) and checks each
before anything is drawn (never a file fastcap did not write, unless ``overwrite``); then
``save_attention_map`` writes each: what ``fastcap caption --attention-map DIR`` and ``fastcap
show --attention-map DIR`` do.
"""
import os
import re
import textwrap

import numpy as np

from .contact_sheet import check_out_path, save_png

__all__ = ["attention_figure", "lit", "map_paths", "save_attention_map", "map_name", "PER_ROW",
           "SOFTWARE", "attended_words"]

PER_ROW = 6  # panels a row (the picture's included)
SOFTWARE = "fastcap attention map"  # the PNGs' Software tag: the files fastcap may replace
_PANEL = 1.55  # inches
_DARK = 0.22  # the share of a pixel's light left where a word's weight is 0


def _upsample(weights, size):
    """(rows, cols) weights -> float32 (height, width), bicubic, of ``size`` (width, height)."""
    from PIL import Image

    up = Image.fromarray(np.asarray(weights, np.float32), mode="F").resize(size, Image.BICUBIC)
    return np.clip(np.asarray(up, np.float32), 0, None)


def lit(picture, weights):
    """uint8 (H, W, 3): ``picture`` lit by ``weights`` (rows, cols), their largest value full
    light, 0 dark (``_DARK`` of the light kept)."""
    picture = np.asarray(picture)
    up = _upsample(weights, (picture.shape[1], picture.shape[0]))
    top = up.max()
    light = _DARK + (1 - _DARK) * (up / top if top > 0 else up)
    return (picture.astype(np.float32) * light[:, :, None]).round().clip(0, 255).astype(np.uint8)


def attended_words(model, captions, alpha):
    """[(words, weights float32 (len(words), L))] of an attention model's greedy captions
    (N, T) int and their weights (N, T, L) (``sample(..., return_attention=True)``): each
    caption's words up to its <END>, each with the weights it was written with."""
    end, out = model.word_to_idx.get("<END>"), []
    for row, weights in zip(np.asarray(captions).tolist(), alpha):
        k = row.index(end) if end in row else len(row)
        out.append(([model.idx_to_word[w] for w in row[:k]], np.asarray(weights[:k], np.float32)))
    return out


def attention_figure(picture, words, weights, grid_shape, title=None):
    """The Figure of one image: ``picture`` uint8 (H, W, 3), ``words`` (the caption's words, in
    order), ``weights`` float (len(words), L) (each word's attention over the L cells, as
    ``AttentionCaptioningRNN.sample(..., return_attention=True)`` gives it), ``grid_shape``
    (rows, cols) with rows * cols = L, cell l at row l // cols; ``title``: a line above."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    weights = np.asarray(weights, np.float64)
    rows, cols = (int(v) for v in grid_shape)
    if weights.ndim != 2 or weights.shape != (len(words), rows * cols):
        raise ValueError(f"weights must be (words, L) = ({len(words)}, {rows * cols}) for "
                         f"{len(words)} words over a {rows}x{cols} grid, got {weights.shape}")
    picture = np.asarray(picture, np.uint8)
    panels = 1 + len(words)
    per_row = min(PER_ROW, panels)
    lines = -(-panels // per_row)
    aspect = picture.shape[0] / picture.shape[1]
    if title:  # wrapped to the figure's width (about 11 characters an inch at its size)
        title = "\n".join(textwrap.fill(line, int(per_row * _PANEL * 11))
                          for line in str(title).splitlines())
    head = 0.1 + 0.17 * len(str(title).splitlines()) if title else 0.05
    height = lines * (_PANEL * aspect + 0.42) + head
    fig = Figure(figsize=(per_row * _PANEL, height), dpi=110)
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, y=1 - 0.06 / height, fontsize=8.5, va="top")
    grid = fig.add_gridspec(lines, per_row, left=0.01, right=0.99, bottom=0.02,
                            top=1 - head / height, hspace=0.32, wspace=0.04)
    for k in range(panels):
        ax = fig.add_subplot(grid[divmod(k, per_row)])
        ax.set_xticks([])
        ax.set_yticks([])
        if k == 0:
            ax.imshow(picture)
            ax.set_title("(picture)", fontsize=8, color="#555555", pad=3)
            continue
        w = weights[k - 1].reshape(rows, cols)
        ax.imshow(lit(picture, w))
        ax.set_title(words[k - 1], fontsize=10, pad=3, fontweight="bold")
        ax.set_xlabel(f"max {w.max():.2f}", fontsize=6.5, color="#555555", labelpad=2)
    return fig


def map_name(source, taken):
    """A file name for the map of image ``source`` (a path or URL): its stem, made safe, with
    ``.png``, numbered when ``taken`` (a set, updated) already has it."""
    stem = os.path.splitext(os.path.basename(str(source).split("?")[0].rstrip("/")))[0]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"
    name, k = f"{stem}.png", 1
    while name in taken:
        k += 1
        name = f"{stem}-{k}.png"
    taken.add(name)
    return name


def map_paths(out_dir, sources, overwrite=False, inputs=()):
    """The PNG path of each image source in ``out_dir`` (``map_name``), each checked as a
    file fastcap may write (fastcap.inference.contact_sheet.check_out_path) before any is."""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"--attention-map {out_dir} is not a directory")
    taken = set()
    paths = [os.path.join(out_dir, map_name(s, taken)) for s in sources]
    for path in paths:
        check_out_path(path, overwrite, inputs, what="--attention-map")
    return paths


def save_attention_map(path, picture, words, weights, grid_shape, title=None, overwrite=False,
                       inputs=()):
    """Draw ``attention_figure`` and write it to ``path`` (PNG, atomically); returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig = attention_figure(picture, words, weights, grid_shape, title)
    return save_png(fig, path, overwrite, inputs, software=SOFTWARE)
