"""Images by URL, as the CS231n notebooks read them: ``image_from_url(url)``.

``image_from_url`` keeps the name and the contract of CS231n's
``cs231n.image_utils.image_from_url``: it returns the picture as a NumPy array,
and when the image cannot be had it reports why and returns ``None``. (CS231n's
version printed ``URL Error: <reason> <url>`` and returned None for network
and HTTP errors; a notebook cell's ``plt.imshow(None)`` then fails, which is
why the notebooks say to re-run the cell.) fastcap reports every failure as an
``ImageUnavailableWarning`` whose message names the URL and the reason, and
returns None; ``warnings.simplefilter("error", ImageUnavailableWarning)``
turns it into an exception, and ``fetch_image`` raises
``ImageUnavailableError`` instead of warning. The array is always uint8
(H, W, 3) RGB (grey, palette and alpha images are converted; EXIF rotation is
applied; the first frame of an animation).

Sources:

- ``http://`` and ``https://``: downloaded once into a cache directory
  (``$FASTCAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastcap``, else
  ``~/.cache/fastcap``; files ``images/<sha256 of the URL>``), then read from
  there. The whole download, name lookup included, is abandoned after
  ``timeout`` seconds; a response larger than ``max_bytes`` is refused (by its
  Content-Length) or cut off at ``max_bytes``.
- a local path, or a ``file://`` URL.
- ``generated://`` URLs of fastcap's generated data: a picture of the image's
  scene (``fastcap.data.scenes``), made offline.

Decoding is Pillow's; images of more than ``MAX_PIXELS`` pixels are refused
before they are decompressed.
"""
import hashlib
import io
import os
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings

import numpy as np

from .data.scenes import render_generated
from .runtime.files import atomic_write
from .runtime.memory import allocating
from .runtime.names import VERSION as __version__

__all__ = ["image_from_url", "fetch_image", "cache_dir", "ImageUnavailableError",
           "ImageUnavailableWarning", "CACHE_ENV", "DEFAULT_TIMEOUT", "MAX_TIMEOUT", "DEFAULT_MAX_BYTES",
           "MAX_PIXELS"]

CACHE_ENV = "FASTCAP_CACHE_DIR"
DEFAULT_TIMEOUT = 10.0  # seconds for one whole download
# Larger timeouts overflow the clocks of socket and thread waits (OverflowError); a day is
# already far beyond any download.
MAX_TIMEOUT = 24 * 3600.0
DEFAULT_MAX_BYTES = 20 * 2**20  # COCO's Flickr images are 50-500 KB
MAX_PIXELS = 40_000_000  # below Pillow's own decompression-bomb limit (89 M)
_CHUNK = 64 * 1024


class ImageUnavailableError(OSError):
    """An image that cannot be had; ``url`` and ``reason`` say which and why."""

    def __init__(self, url, reason):
        super().__init__(f"cannot get image {url}: {reason}")
        self.url, self.reason = url, reason


class ImageUnavailableWarning(UserWarning):
    """An image could not be had (``image_from_url`` returned None, or a contact sheet drew a
    placeholder); the message names it and the reason, ``url`` and ``reason`` hold them."""

    def __init__(self, message, url=None, reason=None):
        super().__init__(message)
        self.url, self.reason = url, reason


# Every failure is reported, not only the first one per line of code (a
# notebook cell that is re-run would otherwise fail silently). Appended, so a
# user's own filter for this category takes precedence.
warnings.simplefilter("always", ImageUnavailableWarning, append=True)


def cache_dir():
    """The download cache directory: $FASTCAP_CACHE_DIR, else $XDG_CACHE_HOME/fastcap,
    else ~/.cache/fastcap (it is created when the first image is cached)."""
    if os.environ.get(CACHE_ENV):
        return os.path.abspath(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "fastcap")


def _cache_path(url):
    return os.path.join(cache_dir(), "images", hashlib.sha256(url.encode()).hexdigest())


# ---------------------------------------------------------------- decoding
# Bytes a decoded pixel may take, at most: the decoder's own mode (4 for 32-bit modes), the
# EXIF rotation's copy of it, and the uint8 RGB result.
_DECODE_BYTES_PER_PIXEL = 4 + 4 + 3


def _decode(data, url, content_type=None):
    """uint8 (H, W, 3) RGB from encoded image bytes. Before decoding, the size the picture
    will take is checked against the memory available (OutOfMemory naming ``url``)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageUnavailableError(url, f"the image is {w} x {h} pixels, more than "
                                                 f"MAX_PIXELS = {MAX_PIXELS:,}")
            with allocating(f"decoding image {url} ({w} x {h} pixels, mode {im.mode})", url,
                            w * h * _DECODE_BYTES_PER_PIXEL):
                return to_rgb8(ImageOps.exif_transpose(im))
    except UnidentifiedImageError:
        what = f"{len(data):,} bytes" + (f" of {content_type}" if content_type else "")
        raise ImageUnavailableError(url, f"not an image Pillow can read ({what})") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageUnavailableError):
            raise
        raise ImageUnavailableError(url, f"the image data is damaged or truncated ({exc})") from None


def to_rgb8(im):
    """A Pillow image as uint8 (H, W, 3) RGB. 8-bit modes convert as Pillow does; deeper ones
    are scaled from their range, not clipped: 16-bit samples by 65535, 32-bit integers by
    65535 when they hold 16-bit data (a 16-bit PNG in mode I) and by their own range
    otherwise, floats from [0, 1] (or [0, 255], or their own range)."""
    if im.mode.startswith("I;16"):
        grey = np.asarray(im, dtype=np.float64) / 65535.0
    elif im.mode in ("I", "F"):
        grey = np.asarray(im, dtype=np.float64)
        lo, hi = (float(grey.min()), float(grey.max())) if grey.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            grey = np.nan_to_num(grey, nan=0.0, posinf=0.0, neginf=0.0)
            lo, hi = float(grey.min()), float(grey.max())
        if im.mode == "F" and 0.0 <= lo and hi <= 1.0:
            pass
        elif 0.0 <= lo and hi <= (255.0 if im.mode == "F" else 65535.0):
            grey = grey / (255.0 if im.mode == "F" else 65535.0)
        else:
            grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
    else:
        return np.array(im.convert("RGB"), dtype=np.uint8)
    grey = np.rint(np.clip(grey, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


# ---------------------------------------------------------------- sources
def _read_local(path, url, max_bytes):
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ImageUnavailableError(url, exc.strerror or str(exc)) from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would hang or never end
        raise ImageUnavailableError(url, f"{path} is not a regular file")
    if st.st_size > max_bytes:
        raise ImageUnavailableError(url, f"the file is {st.st_size:,} bytes, more than "
                                         f"max_bytes = {max_bytes:,}")
    try:
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)
    except OSError as exc:
        raise ImageUnavailableError(url, exc.strerror or str(exc)) from None


def _download(url, timeout, max_bytes, result):
    """Fill ``result`` with (bytes, content type) or an ImageUnavailableError."""
    deadline = time.monotonic() + timeout
    try:
        req = urllib.request.Request(url, headers={"User-Agent": f"fastcap/{__version__}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length", "")
            if length.strip().isdigit() and int(length) > max_bytes:
                raise ImageUnavailableError(url, f"the response is {int(length):,} bytes, more "
                                                 f"than max_bytes = {max_bytes:,}")
            chunks, total = [], 0
            while True:
                # read1: one socket read at most, so a server that trickles bytes
                # meets the deadline between chunks
                chunk = resp.read1(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise ImageUnavailableError(url, f"the response was cut off at max_bytes = "
                                                     f"{max_bytes:,} bytes")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise ImageUnavailableError(url, f"no complete response within {timeout:g} s")
            result.append((b"".join(chunks), resp.headers.get("Content-Type")))
    except ImageUnavailableError as exc:
        result.append(exc)
    except urllib.error.HTTPError as exc:
        result.append(ImageUnavailableError(url, f"HTTP {exc.code} {exc.reason}"))
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            reason = f"no response within {timeout:g} s"
        result.append(ImageUnavailableError(url, str(reason)))
    except TimeoutError:
        result.append(ImageUnavailableError(url, f"no response within {timeout:g} s"))
    except Exception as exc:  # http.client errors (a bad status line, IncompleteRead), bad URLs
        result.append(ImageUnavailableError(url, f"{type(exc).__name__}: {exc}"))


def _fetch_http(url, timeout, max_bytes):
    # In a daemon thread, so that nothing (a name lookup, which has no timeout,
    # included) keeps the caller longer than `timeout`; an abandoned download
    # ends by its own socket timeout.
    result = []
    worker = threading.Thread(target=_download, args=(url, timeout, max_bytes, result),
                              name="fastcap-image-download", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if not result:
        raise ImageUnavailableError(url, f"no response within {timeout:g} s")
    if isinstance(result[0], ImageUnavailableError):
        raise result[0]
    return result[0]


def _cached_http(url, timeout, max_bytes, cache):
    path = _cache_path(url) if cache else None
    if path is not None and os.path.isfile(path) and os.path.getsize(path) <= max_bytes:
        try:
            with open(path, "rb") as f:
                return _decode(f.read(), url)
        except (OSError, ImageUnavailableError):
            pass  # a damaged cache entry (fastcap's own file): fetch the image again
    data, content_type = _fetch_http(url, timeout, max_bytes)
    image = _decode(data, url, content_type)
    if path is not None:
        def write(tmp):
            with open(tmp, "wb") as f:
                f.write(data)

        try:
            atomic_write(path, write)
        except OSError as exc:
            warnings.warn(f"could not cache {url} in {os.path.dirname(path)}: {exc}",
                          RuntimeWarning, stacklevel=3)
    return image


def _as_url(url):
    if isinstance(url, bytes):
        return url.decode("utf-8", "replace")
    if isinstance(url, str):
        return str(url)
    if isinstance(url, os.PathLike):
        return os.fspath(url)
    raise TypeError(f"url must be a str (a URL or a path), got {type(url).__name__}")


def fetch_image(url, *, timeout=DEFAULT_TIMEOUT, max_bytes=DEFAULT_MAX_BYTES, cache=True):
    """The image at ``url`` as uint8 (H, W, 3) RGB; raises ImageUnavailableError.

    ``url``: http(s) URL, ``file://`` URL, local path or ``generated://`` URL.
    ``timeout`` (seconds) bounds a whole download; ``max_bytes`` the size of a
    response or file; ``cache=False`` neither reads nor writes the download cache.
    """
    url = _as_url(url)
    if isinstance(timeout, bool) or not (isinstance(timeout, (int, float))
                                         and 0 < timeout <= MAX_TIMEOUT):
        raise ValueError(f"timeout must be a positive number of seconds, at most {MAX_TIMEOUT:g} "
                         f"(a day), got {timeout!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _cached_http(url, float(timeout), max_bytes, cache)
    if scheme == "generated":
        try:
            return render_generated(url)
        except ValueError as exc:
            raise ImageUnavailableError(url, str(exc)) from None
    if scheme == "file":
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ImageUnavailableError(url, f"file URLs on another host ({parts.netloc}) "
                                             "are not supported")
        path = urllib.request.url2pathname(parts.path)
        return _decode(_read_local(path, url, max_bytes), url)
    if scheme == "" or len(scheme) == 1:  # a path (a one-letter scheme is a Windows drive)
        return _decode(_read_local(url, url, max_bytes), url)
    raise ImageUnavailableError(url, f"unsupported URL scheme {scheme!r} (expected http, https, "
                                     "file, generated or a local path)")


def image_from_url(url, *, timeout=DEFAULT_TIMEOUT, max_bytes=DEFAULT_MAX_BYTES, cache=True):
    """Read an image from a URL: uint8 (H, W, 3) RGB, or None if it cannot be had.

    CS231n's contract: a failure returns None after an ImageUnavailableWarning
    naming the URL and the reason (see the module docstring; ``fetch_image``
    raises instead). The options are ``fetch_image``'s.
    """
    try:
        return fetch_image(url, timeout=timeout, max_bytes=max_bytes, cache=cache)
    except ImageUnavailableError as exc:
        warnings.warn(str(exc), ImageUnavailableWarning, stacklevel=2)
        return None
