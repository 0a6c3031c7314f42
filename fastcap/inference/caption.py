"""``fastcap caption``'s part below the command line: which pictures its arguments name, and
their captions by a Captioner (fastcap.inference.captioner), a batch at a time.

A picture named on the command line that cannot be read is an error; one found in a folder
is skipped with a ``SkippedImageWarning`` (one line each) and the rest are captioned.
"""
import os
import urllib.parse
import warnings

from ..image_utils import ImageUnavailableError
from .captioner import as_image

__all__ = ["IMAGE_SUFFIXES", "Source", "expand_images", "caption_files", "SkippedImageWarning",
           "looks_like_image"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class SkippedImageWarning(UserWarning):
    """A file of a folder that could not be read as a picture, and was left out."""


warnings.simplefilter("always", SkippedImageWarning, append=True)  # one line for each file


def looks_like_image(path):
    """Whether ``path``'s name ends in one of IMAGE_SUFFIXES."""
    return os.fspath(path).lower().endswith(IMAGE_SUFFIXES)


class Source(str):
    """A picture's source (path or URL) and whether it was named (``named``) or found in a
    folder (then a file that cannot be read is skipped)."""

    named = True


def _found(path):
    s = Source(path)
    s.named = False
    return s


def expand_images(items):
    """Picture sources in order (Source strings): URLs as given, files as given, a folder's
    image files (by IMAGE_SUFFIXES, sorted, not recursive). A path that does not exist, or a
    folder without image files, raises."""
    out = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"images: give paths, folders or URLs, got {type(item).__name__} "
                            "(Captioner.caption takes PIL images and arrays)")
        item = os.fspath(item)
        scheme = urllib.parse.urlsplit(item).scheme.lower()
        if scheme in ("http", "https", "file"):
            out.append(Source(item))
        elif os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if looks_like_image(n) and os.path.isfile(os.path.join(item, n)))
            if not found:
                raise ValueError(f"folder {item} holds no image files "
                                 f"({', '.join(IMAGE_SUFFIXES)})")
            out.extend(_found(p) for p in found)
        elif os.path.isfile(item):
            out.append(Source(item))
        else:
            raise FileNotFoundError(f"image {item} does not exist (give image files, folders "
                                    "or http(s) URLs)")
    return out


def caption_files(captioner, sources, *, beam_size=1, max_length=30, no_unk=False,
                  batch_size=32, on_image=None):
    """([{"image", "caption"}], [(source, reason)] skipped) for Source strings (expand_images)
    by ``captioner``. ``on_image(result, array)`` is called for each captioned picture
    (its uint8 (H, W, 3) pixels), as the HTML page is made without keeping them all."""
    results, skipped = [], []
    for a in range(0, len(sources), batch_size):
        batch, arrays = [], []
        for src in sources[a:a + batch_size]:
            try:
                arrays.append(as_image(str(src), str(src)))
            except ImageUnavailableError as exc:
                if getattr(src, "named", True):
                    raise
                skipped.append((str(src), exc.reason))
                warnings.warn(SkippedImageWarning(f"skipped {src}: {exc.reason}"), stacklevel=2)
                continue
            batch.append(str(src))
        if not batch:
            continue
        captions = captioner.caption_arrays(arrays, beam_size=beam_size, max_length=max_length,
                                            no_unk=no_unk, sources=batch)
        for src, array, text in zip(batch, arrays, captions):
            results.append({"image": src, "caption": text})
            if on_image is not None:
                on_image(results[-1], array)
    return results, skipped
