"""Sizes computed before work, naming the input (issue 27, class 3): what a picture will take is
checked before it is decoded, an extreme aspect ratio is not resized whole, and running out of
memory names the file and what was being made, never the model's options or a bug."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fastcap.data import features as F
from fastcap.runtime import memory

from conftest import ENV


@pytest.mark.parametrize("w, h", [(100000, 1), (1, 60000), (30000, 3)])
def test_an_extreme_aspect_ratio_is_preprocessed_without_the_whole_resize(w, h):
    """A 100000 x 1 picture resized whole on its short side to 256 would be 25.6 M x 256 pixels
    (~20 GB): only the crop is made, and it is the same picture the whole resize crops."""
    spec = F.EXTRACTORS["resnet50"]
    rng = np.random.default_rng(w + h)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = F.preprocess(image, spec)
    assert x.shape == (3, spec.crop, spec.crop) and np.isfinite(x).all()
    small = image[:, : max(1, w // 100)] if w > h else image[: max(1, h // 100)]  # same kind, small
    assert F.preprocess(small, spec).shape == x.shape


def test_the_box_path_gives_the_whole_resizes_picture_within_a_level():
    """Below the bound the picture is resized whole; the box path gives the same crop within
    one level of rounding (so the bound only moves work, not what the network sees)."""
    spec = F.EXTRACTORS["resnet50"]
    image = np.random.default_rng(0).integers(0, 256, (300, 5000, 3), dtype=np.uint8)
    whole = F.preprocess(image, spec)
    bound = F._WHOLE_RESIZE_PIXELS
    try:
        F._WHOLE_RESIZE_PIXELS = 0  # everything through the box
        boxed = F.preprocess(image, spec)
    finally:
        F._WHOLE_RESIZE_PIXELS = bound
    std = np.float32(np.array([0.229, 0.224, 0.225]))[:, None, None]
    assert np.abs((whole - boxed) * std).max() <= 1.0 / 255 + 1e-6


_DECODE_UNDER_A_LIMIT = """
import resource, sys
import numpy as np
from PIL import Image
Image.new("RGB", (6000, 6000), (9, 9, 9)).save(sys.argv[1])  # 36 M pixels: ~400 MB to decode
from fastcap.image_utils import fetch_image
from fastcap.runtime.memory import OutOfMemory
used = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (used + (150 << 20), resource.RLIM_INFINITY))
try:
    fetch_image(sys.argv[1])
except OutOfMemory as exc:
    print("OutOfMemory:", exc)
"""


def test_decoding_past_the_memory_limit_names_the_picture(tmp_path):
    """Under an address-space limit (ulimit -v) the decode is refused before it starts, naming
    the file, its size and what would not fit."""
    path = tmp_path / "big.png"
    out = subprocess.run([sys.executable, "-c", _DECODE_UNDER_A_LIMIT, str(path)], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OutOfMemory: decoding image ") and str(path) in out.stdout
    assert "6000 x 6000 pixels" in out.stdout and "more than the" in out.stdout


def test_the_address_space_limit_counts_as_memory_available():
    code = ("import resource; from fastcap.runtime import memory as m; "
            "used = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:')); "
            "resource.setrlimit(resource.RLIMIT_AS, (used + (300 << 20), resource.RLIM_INFINITY)); "
            "print(m.available_memory())")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    left = int(out.stdout)
    assert 0 < left <= 300 << 20 < memory._machine_available()


def test_the_networks_running_out_of_memory_names_the_pictures(monkeypatch):
    """PyTorch's allocator raises RuntimeError ("can't allocate memory"): reported as running out
    of memory making the features of the named pictures, not as a bug in fastcap."""
    ext = F.Extractor.__new__(F.Extractor)
    ext.spec, ext.threads = F.EXTRACTORS["resnet50"], 1

    class Net:
        def __call__(self, x):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                               "allocate memory: you tried to allocate 9999999999 bytes")

    class Torch:  # what features() uses of torch
        @staticmethod
        def get_num_threads():
            return 1

        @staticmethod
        def set_num_threads(n):
            pass

        @staticmethod
        def from_numpy(x):
            return x

        class inference_mode:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

    ext.net, ext._torch = Net(), Torch
    images = [np.zeros((40, 30, 3), np.uint8)] * 2
    with pytest.raises(memory.OutOfMemory, match=r"resnet50 features of 2 images \(a\.jpg \.\.\.\)"
                       r".*can't allocate memory"):
        ext.features(images, ["a.jpg", "b.jpg"])
    Net.__call__ = lambda self, x: (_ for _ in ()).throw(RuntimeError("shapes do not match"))
    with pytest.raises(RuntimeError, match="shapes do not match"):  # not every RuntimeError
        ext.features(images, ["a.jpg", "b.jpg"])
