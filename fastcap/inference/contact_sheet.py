"""Contact sheets: images next to their ground-truth and generated captions.

``contact_sheet(model, data)`` returns a matplotlib Figure with one tile per
image: the picture (``fastcap.image_utils.fetch_image``; a tile that says why
when the image cannot be had, so a sheet of real COCO URLs is still made
offline), the image's ground-truth captions, the model's greedy caption and,
with ``beam_size``, its beam-search caption. ``save_png`` writes it (PNG, JPEG, WebP or TIFF, by suffix);
``fastcap show`` is the two together.
"""
import io
import os
import textwrap
import threading
import warnings

import numpy as np

from .. import image_utils
from ..runtime.files import atomic_write, check_target
from ..train.evaluation import caption_images, generate
from ..train.metrics import decode_for_metrics

__all__ = ["contact_sheet", "sheet_entries", "save_png", "check_out_path", "sheet_format",
           "SHEET_FORMATS",
           "SOFTWARE"]

SOFTWARE = "fastcap show"  # the PNG's Software text: marks sheets that fastcap may replace
# Every Software text fastcap's pictures carry (the attention maps' too): those it may replace.
SOFTWARES = (SOFTWARE, "fastcap attention map")
_GT, _GREEDY, _BEAM = "#444444", "#1f4e9c", "#b34700"
_WRAP = 44  # characters per caption line in a tile
_TILE_W, _IMAGE_H, _LINE_H = 3.3, 2.4, 0.145  # inches


def _fetch_all(urls, timeout):
    """One image (array) or ImageUnavailableError per URL, downloaded concurrently."""
    out = [None] * len(urls)

    def get(i, url):
        try:
            out[i] = image_utils.fetch_image(url, timeout=timeout)
        except image_utils.ImageUnavailableError as exc:
            out[i] = exc

    threads = [threading.Thread(target=get, args=(i, u), daemon=True) for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    for t in threads:  # fetch_image returns within its timeout
        t.join()
    return out


_TITLE_SIZE, _TITLE_LEADING = 9, 1.3  # points; line height in font sizes
_TITLE_CHAR_W = 0.62  # the widest average glyph of the default sans font, in font sizes


def _wrap_title(title, width):
    """The title's lines wrapped to ``width`` inches (long words, as paths, are broken)."""
    chars = max(10, int(0.96 * width * 72 / (_TITLE_SIZE * _TITLE_CHAR_W)))
    return [w for line in str(title).splitlines()
            for w in (textwrap.wrap(line, chars, break_on_hyphens=False) or [""])]


def _lines(label, text, colour):
    wrapped = textwrap.wrap(text or "(empty)", _WRAP - len(label)) or [""]
    return [(label + wrapped[0], colour)] + [(" " * len(label) + w, colour) for w in wrapped[1:]]


def sheet_entries(model, data, split="val", n=8, *, image_ids=None, beam_size=None,
                  max_length=30, timeout=image_utils.DEFAULT_TIMEOUT):
    """What a contact sheet (or ``fastcap show --html``'s page) shows of ``n`` images of
    ``split``: (image_ids, urls, images, references, greedy, beam), where each image is a
    uint8 (H, W, 3) array or the ImageUnavailableError that says why there is none (with an
    ``ImageUnavailableWarning`` each: its ``url`` and ``reason``), references a list of
    strings per image and beam None without ``beam_size``. Arguments as contact_sheet's."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    for name, value in (("n", n), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if beam_size is not None and (isinstance(beam_size, bool) or
                                  not isinstance(beam_size, (int, np.integer)) or beam_size < 1):
        raise ValueError(f"beam_size must be None or a positive integer, got {beam_size!r}")
    if image_ids is None:
        image_ids = np.unique(np.asarray(data[f"{split}_image_idxs"]))[:n]
    image_ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
    n_images = data[f"{split}_features"].shape[0]
    if image_ids.size == 0 or image_ids.min() < 0 or image_ids.max() >= n_images:
        raise ValueError(f"image_ids must be rows of the {n_images} {split} images, got "
                         f"{image_ids.tolist()}")
    image_ids, refs, greedy = caption_images(model, data, split, image_ids, 1, max_length)
    beam = None
    if beam_size is not None:
        features = data[f"{split}_features"][image_ids]
        beam = decode_for_metrics(generate(model, features, beam_size, max_length), data["idx_to_word"])
    urls = [str(data[f"{split}_urls"][i]) for i in image_ids]
    images = _fetch_all(urls, timeout)
    for img_id, url, image in zip(image_ids.tolist(), urls, images):
        if isinstance(image, image_utils.ImageUnavailableError):
            warnings.warn(image_utils.ImageUnavailableWarning(
                f"{split} image {img_id}: {url} is unavailable ({image.reason}); drew a placeholder",
                url, image.reason), stacklevel=3)
    return image_ids, urls, images, refs, greedy, beam


def contact_sheet(model, data, split="val", n=8, *, image_ids=None, beam_size=None,
                  max_length=30, columns=4, timeout=image_utils.DEFAULT_TIMEOUT, title=None,
                  entries=None):
    """A Figure of ``n`` images of ``split`` with their captions.

    ``model``: a CaptioningRNN over ``data``'s vocabulary; ``data``: a
    ``load_coco_data``-style dict; the images are the first ``n`` images of the
    split that have captions, or ``image_ids`` (rows of the split's features).
    Each tile lists every ground-truth caption ("GT"), the greedy caption and,
    when ``beam_size`` is given, the beam-search caption. Images that cannot be
    had get a grey tile naming the reason, and an ``ImageUnavailableWarning`` each
    (its ``url`` and ``reason``). ``entries``: what ``sheet_entries`` made for these
    arguments, when it was made already. The figure uses the Agg canvas (no display).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    if entries is None:
        entries = sheet_entries(model, data, split, n, image_ids=image_ids, beam_size=beam_size,
                                max_length=max_length, timeout=timeout)
    image_ids, urls, images, refs, greedy, beam = entries

    texts = []
    for k in range(len(image_ids)):
        lines = []
        for r in refs[k]:
            lines += _lines("GT  ", r, _GT)
        lines += _lines("greedy  ", greedy[k], _GREEDY)
        if beam is not None:
            lines += _lines(f"beam {beam_size}  ", beam[k], _BEAM)
        texts.append(lines)

    columns = min(columns, len(image_ids))
    rows = -(-len(image_ids) // columns)
    text_h = [max(len(t) for t in texts[r * columns:(r + 1) * columns]) * _LINE_H + 0.15
              for r in range(rows)]
    # The title is wrapped to the sheet's width (a one-tile sheet is 3.3 in wide; a run
    # directory's path alone is wider), and the head grows with its lines, so it is never
    # clipped and never reaches the tiles' headings.
    title_lines = _wrap_title(title, _TILE_W * columns) if title else []
    head = 0.1 + len(title_lines) * _TITLE_SIZE * _TITLE_LEADING / 72 + (0.12 if title else 0)
    height = head + sum(_IMAGE_H + 0.25 + h for h in text_h)
    fig = Figure(figsize=(_TILE_W * columns, height), dpi=100)
    FigureCanvasAgg(fig)
    ratios = [x for h in text_h for x in (_IMAGE_H + 0.25, h)]
    grid = fig.add_gridspec(2 * rows, columns, height_ratios=ratios, left=0.01, right=0.99,
                            top=1 - head / height, bottom=0.0, hspace=0.0, wspace=0.06)
    if title:
        fig.suptitle("\n".join(title_lines), y=1 - 0.1 / height, fontsize=_TITLE_SIZE, va="top",
                     linespacing=_TITLE_LEADING)
    for k, (img_id, url, image) in enumerate(zip(image_ids.tolist(), urls, images)):
        r, c = divmod(k, columns)
        ax = fig.add_subplot(grid[2 * r, c])
        ax.set_xticks([])
        ax.set_yticks([])
        if isinstance(image, image_utils.ImageUnavailableError):
            ax.set_facecolor("#dddddd")
            msg = "image unavailable\n" + "\n".join(textwrap.wrap(image.reason, 40)[:4])
            ax.text(0.5, 0.55, msg, ha="center", va="center", fontsize=7.5, transform=ax.transAxes)
            ax.text(0.5, 0.08, "\n".join(textwrap.wrap(url, 52)[:2]), ha="center", va="bottom",
                    fontsize=5.5, color="#555555", transform=ax.transAxes)
        else:
            ax.imshow(image, interpolation="antialiased")
            for side in ax.spines.values():
                side.set_visible(False)
        ax.set_title(f"{split} image {img_id}", fontsize=7.5, pad=2)
        tax = fig.add_subplot(grid[2 * r + 1, c])
        tax.axis("off")
        for j, (line, colour) in enumerate(texts[k]):
            tax.text(0.0, 1.0 - j * _LINE_H / text_h[r],
                     line, ha="left", va="top", fontsize=6.6, color=colour, family="monospace",
                     transform=tax.transAxes)
    return fig


# The image formats a sheet is written in, by the --out suffix (lower case): each
# carries the EXIF Software tag, which marks a sheet fastcap may replace.
SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                 ".tif": "TIFF", ".tiff": "TIFF"}
_EXIF_SOFTWARE = 0x0131


def sheet_format(path):
    """The Pillow format ``path``'s suffix names; ValueError for any other suffix."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in SHEET_FORMATS:
        raise ValueError(f"--out {path}: a contact sheet is written as "
                         f"{', '.join(SHEET_FORMATS)} (named by the suffix), got "
                         f"{suffix or 'no suffix'}")
    return SHEET_FORMATS[suffix]


def _written_by_fastcap(path):
    # Called only on a regular file (check_target's lstat): opening a FIFO would block.
    try:
        from PIL import Image

        with Image.open(path) as im:
            return bool({im.info.get("Software"), im.getexif().get(_EXIF_SOFTWARE)} & set(SOFTWARES))
    except Exception:  # not an image, unreadable: not ours
        return False


def check_out_path(path, overwrite=False, inputs=(), what="--out"):
    """``path``'s real path if a sheet may be written there (fastcap.runtime.files.check_target):
    a known image suffix (SHEET_FORMATS), new or a sheet fastcap wrote (else ``overwrite``),
    a regular file, not one of ``inputs``. Raises ValueError / FileExistsError otherwise,
    naming ``what`` (the option that named the file)."""
    sheet_format(path)
    return check_target(path, what=what, inputs=inputs, overwrite=overwrite,
                        ours=_written_by_fastcap)


def save_png(fig, path, overwrite=False, inputs=(), software=SOFTWARE):
    """Write ``fig`` to ``path``, atomically, in the format its suffix names (SHEET_FORMATS;
    the name is historical), tagged ``software``; returns the absolute path.

    An existing file is replaced only if fastcap wrote it (its EXIF or PNG
    Software tag is one of SOFTWARES) or with ``overwrite``; never one of ``inputs``.
    """
    from PIL import Image

    path = check_out_path(path, overwrite, inputs)
    fmt = sheet_format(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    with Image.open(buf) as im:
        image = im.convert("RGB")  # the figure is opaque; JPEG has no alpha
    exif = Image.Exif()
    exif[_EXIF_SOFTWARE] = software
    extra = {}
    if fmt == "PNG":  # also the text chunk PNG readers show (and earlier sheets carry)
        from PIL.PngImagePlugin import PngInfo

        extra["pnginfo"] = PngInfo()
        extra["pnginfo"].add_text("Software", software)

    def write(tmp):
        image.save(tmp, format=fmt, exif=exif, **extra)

    return atomic_write(path, write)
