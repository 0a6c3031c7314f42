"""fastcap.image_utils.image_from_url on every source, and the generated scenes it draws.

The HTTP tests talk only to a server this module starts on 127.0.0.1; the
unreachable address is a closed port on 127.0.0.1. Proxies are switched off,
so nothing else is ever contacted.
"""
import http.server
import io
import os
import socket
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

from fastcap.data import generated as datagen
from fastcap import image_utils
from fastcap.coco_utils import decode_captions
from fastcap.data.generated import generate_coco_data, image_scene, parse_generated_url
from fastcap.image_utils import (ImageUnavailableError, ImageUnavailableWarning, fetch_image,
                                 image_from_url)
from fastcap.data.scenes import HEIGHT, WIDTH, render_generated

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def _pixels(mode="RGB", size=(7, 5), seed=0):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((len(mode),) if mode != "L" else ())
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _png(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


RGB = _pixels()
RGB_PNG = _png(RGB)


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """A fresh cache directory per test, and no proxy between us and 127.0.0.1."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv(image_utils.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        server = self.server
        server.hits[self.path] = server.hits.get(self.path, 0) + 1
        if self.path == "/img.png":
            self._send(200, RGB_PNG, "image/png")
        elif self.path == "/gray.png":
            self._send(200, _png(_pixels("L"), "L"), "image/png")
        elif self.path == "/rgba.png":
            self._send(200, _png(_pixels("RGBA"), "RGBA"), "image/png")
        elif self.path == "/page.html":
            self._send(200, b"<html><body>not found, but 200</body></html>", "text/html")
        elif self.path == "/truncated.png":
            self._send(200, RGB_PNG[: len(RGB_PNG) // 2], "image/png")
        elif self.path == "/missing.jpg":
            self._send(404, b"no", "text/plain")
        elif self.path == "/declared-huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        elif self.path == "/endless":  # no Content-Length: bytes until the client gives up
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                while not server.stop.is_set():
                    self.wfile.write(b"\xff" * 65536)
            except OSError:
                pass
        elif self.path == "/silent":  # accepts, never answers
            server.stop.wait(60)
        elif self.path == "/trickle":  # one byte at a time, forever
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                while not server.stop.wait(0.05):
                    self.wfile.write(b"\x89")
                    self.wfile.flush()
            except OSError:
                pass

    def _send(self, code, body, content_type):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.hits, srv.stop = {}, threading.Event()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


def _unavailable(url, **kw):
    """image_from_url's None and the one warning's message."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert image_from_url(url, **kw) is None
    msgs = [str(w.message) for w in caught if issubclass(w.category, ImageUnavailableWarning)]
    assert len(msgs) == 1, [str(w.message) for w in caught]
    assert str(url) in msgs[0]
    return msgs[0]


# ---------------------------------------------------------------- local sources
def test_local_path_and_file_url(tmp_path):
    path = tmp_path / "a picture.png"
    path.write_bytes(RGB_PNG)
    for source in (str(path), path, path.as_uri(), str(path).encode(), np.str_(path)):
        img = image_from_url(source)
        assert img.dtype == np.uint8 and img.shape == (5, 7, 3)
        assert np.array_equal(img, RGB)


def test_missing_file_fifo_and_non_image_file(tmp_path):
    assert "No such file" in _unavailable(str(tmp_path / "nope.jpg"))
    assert "No such file" in _unavailable((tmp_path / "nope.jpg").as_uri())
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels")
    assert "not an image" in _unavailable(str(text))
    if hasattr(os, "mkfifo"):  # reading a FIFO would block for ever
        fifo = tmp_path / "fifo.png"
        os.mkfifo(fifo)
        assert "not a regular file" in _unavailable(str(fifo))


def test_file_larger_than_max_bytes(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(RGB_PNG)
    assert "more than max_bytes = 10" in _unavailable(str(path), max_bytes=10)


def test_too_many_pixels_are_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(RGB_PNG)
    monkeypatch.setattr(image_utils, "MAX_PIXELS", 34)  # the image has 35
    assert "7 x 5 pixels, more than MAX_PIXELS" in _unavailable(str(path))


# ---------------------------------------------------------------- http
def test_http_image_is_downloaded_once_then_read_from_the_cache(server, offline):
    srv, base = server
    url = base + "/img.png"
    before = srv.hits.get("/img.png", 0)
    first = image_from_url(url)
    assert np.array_equal(first, RGB)
    assert srv.hits["/img.png"] == before + 1
    cached = list((offline / "images").iterdir())
    assert len(cached) == 1 and cached[0].read_bytes() == RGB_PNG
    assert np.array_equal(image_from_url(url), RGB)
    assert srv.hits["/img.png"] == before + 1  # not fetched again
    assert np.array_equal(image_from_url(url, cache=False), RGB)
    assert srv.hits["/img.png"] == before + 2


def test_a_damaged_cache_entry_is_fetched_again(server, offline):
    srv, base = server
    url = base + "/img.png"
    image_from_url(url)
    (entry,) = (offline / "images").iterdir()
    entry.write_bytes(b"garbage")
    before = srv.hits["/img.png"]
    assert np.array_equal(image_from_url(url), RGB)
    assert srv.hits["/img.png"] == before + 1 and entry.read_bytes() == RGB_PNG


def test_an_unwritable_cache_warns_and_still_returns_the_image(server, tmp_path, monkeypatch):
    _, base = server
    blocker = tmp_path / "a file, not a directory"
    blocker.write_text("")
    monkeypatch.setenv(image_utils.CACHE_ENV, str(blocker))
    with pytest.warns(RuntimeWarning, match="could not cache"):
        assert np.array_equal(image_from_url(base + "/img.png"), RGB)


def test_grey_and_rgba_images_become_rgb(server):
    _, base = server
    grey = image_from_url(base + "/gray.png")
    assert grey.shape == (5, 7, 3) and np.array_equal(grey[..., 0], _pixels("L"))
    assert np.array_equal(grey[..., 0], grey[..., 2])
    rgba = image_from_url(base + "/rgba.png")
    assert rgba.shape == (5, 7, 3) and np.array_equal(rgba, _pixels("RGBA")[..., :3])


def test_unreachable_address_is_reported_not_raised():
    with socket.socket() as s:  # a port on 127.0.0.1 that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    msg = _unavailable(f"http://127.0.0.1:{port}/x.jpg", timeout=5)
    assert "refused" in msg.lower()


def test_http_errors_and_non_images(server, offline):
    _, base = server
    assert "HTTP 404" in _unavailable(base + "/missing.jpg")
    msg = _unavailable(base + "/page.html")
    assert "not an image" in msg and "text/html" in msg
    assert "damaged or truncated" in _unavailable(base + "/truncated.png")
    assert not (offline / "images").exists()  # failures are not cached


def test_huge_responses_are_refused_or_cut_off(server):
    srv, base = server
    assert "the response is 1,000,000,000,000 bytes, more than max_bytes" in \
        _unavailable(base + "/declared-huge")
    msg = _unavailable(base + "/endless", max_bytes=200_000)
    assert "cut off at max_bytes = 200,000 bytes" in msg


def test_silent_and_trickling_servers_time_out(server):
    _, base = server
    assert "no response within 0.5 s" in _unavailable(base + "/silent", timeout=0.5)
    msg = _unavailable(base + "/trickle", timeout=0.5)
    assert "within 0.5 s" in msg


def test_fetch_image_raises_and_the_warning_can_be_an_error(server):
    _, base = server
    with pytest.raises(ImageUnavailableError) as info:
        fetch_image(base + "/missing.jpg")
    assert info.value.url == base + "/missing.jpg" and info.value.reason.startswith("HTTP 404")
    assert isinstance(info.value, OSError)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageUnavailableWarning)
        with pytest.raises(ImageUnavailableWarning, match="HTTP 404"):
            image_from_url(base + "/missing.jpg")


def test_bad_arguments():
    with pytest.raises(TypeError, match="url must be a str"):
        image_from_url(3)
    for timeout in (0, -1, float("nan"), float("inf"), 1e12, image_utils.MAX_TIMEOUT * 1.01,
                    True, "5"):  # the extremes overflowed the socket and thread clocks
        with pytest.raises(ValueError, match=r"timeout must be .*at most 86400"):
            image_from_url("http://127.0.0.1:9/x.jpg", timeout=timeout)
    with pytest.raises(ValueError, match="max_bytes"):
        image_from_url("x.png", max_bytes=-1)
    assert "unsupported URL scheme 'ftp'" in _unavailable("ftp://127.0.0.1/x.jpg")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    assert image_utils.cache_dir() == str(tmp_path / "cache")
    monkeypatch.delenv(image_utils.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_utils.cache_dir() == str(tmp_path / "xdg" / "fastcap")


# ---------------------------------------------------------------- generated scenes
@pytest.fixture(scope="module")
def generated():
    return generate_coco_data(num_train_images=40, num_val_images=30, captions_per_image=5,
                              pca_dim=8, full_dim=16, seed=5)


_CONTENT = {"subject", "subject_plural", "subject_adj", "action", "place", "object", "object_adj"}


def test_image_scene_is_what_the_captions_say(generated):
    vocab = generated["idx_to_word"]
    content_words = set(vocab) - set(datagen._FUNCTION_WORDS) - set(datagen.SPECIAL_TOKENS)
    for split in ("train", "val"):
        urls = generated[f"{split}_urls"]
        assert parse_generated_url(urls[7]) == (split, 7, len(urls), 5)
        for i, url in enumerate(urls):
            scene = image_scene(url)
            caps = decode_captions(generated[f"{split}_captions"][generated[f"{split}_image_idxs"] == i],
                                   vocab)
            noun = scene["subject"] if scene["count"] == 1 else scene["subject_plural"]
            allowed = {scene[k] for k in _CONTENT} - {None}
            for cap in caps:
                words = cap.split()
                assert noun in words, (scene, cap)
                assert set(words) & content_words <= allowed, (scene, cap)
                if scene["count"] > 1:
                    assert scene["count_word"] in words


def test_malformed_generated_urls():
    for bad in ("generated://val2014/000003.jpg",  # no seed or size
                "generated://test2014/000003.jpg?seed=0&images=5",
                "generated://val2014/000009.jpg?seed=0&images=5",  # outside the split
                "generated://val2014/000000.jpg?seed=0&images=999999999999"):
        with pytest.raises(ValueError, match="generated"):
            parse_generated_url(bad)
        assert "generated" in _unavailable(bad)


def test_generated_pictures_show_their_scene(generated):
    urls = generated["val_urls"]
    a, b = image_from_url(urls[0]), image_from_url(urls[0])
    assert a.shape == (HEIGHT, WIDTH, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)  # a URL is always the same picture
    assert not np.array_equal(a, image_from_url(urls[1]))
    from fastcap.data.scenes import _COLOURS, _PLACES

    coloured = 0
    for url in urls:
        scene = image_scene(url)
        img = render_generated(url)
        # the place is the background: the ground colour fills much of the lower half
        ground = np.array(_PLACES[scene["place"]][1], dtype=np.uint8)
        assert (img[HEIGHT // 2:] == ground).all(axis=-1).mean() > 0.2, scene
        if scene["subject_adj"] in _COLOURS and scene["subject"] not in ("sheep",):
            colour = np.array(_COLOURS[scene["subject_adj"]], dtype=np.uint8)
            assert (img == colour).all(axis=-1).sum() >= 30 * scene["count"], scene
            coloured += 1
    assert coloured >= 3  # the check above ran on enough images to mean something
