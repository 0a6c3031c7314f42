"""Image features from an ImageNet CNN, written with ``torch.nn`` here (the [vision] extra).

PyPI's torchvision wheels do not import beside the CPU build of torch 2.13
(their compiled operators are built against the CUDA torch), so fastcap
defines the two networks itself, with torchvision's parameter names, and loads
their published ImageNet weights through ``torch.hub``'s own download cache
(``$TORCH_HOME/hub/checkpoints``; the file name's hash prefix is checked).

``EXTRACTORS`` is the one list of networks. Each records what a data
directory needs to reproduce its features (``Extractor.record``): the network,
its weights, the input preprocessing and the feature size. The weights are
``imagenet`` (the published file, downloaded once), ``none`` (a fixed random
initialisation, seed 0, so that offline data preparation, tests and ``fastcap
caption`` compute the same features again; it warns, because such features
carry no learned visual knowledge) or the path of a local file of the
network's weights (a ``torch.save`` state dict with torchvision's names: the
published file copied by hand for a machine that is offline, or weights of
one's own). A local file is recorded by its SHA-256 (``weights_sha256``): as
``imagenet`` when it is the published file (its name's hash prefix, as
torch.hub checks it), else as ``file`` with its path (``weights_file``), and
features are only made again with a file of the same SHA-256.

Shapes: an image is uint8 (H, W, 3) RGB; a batch of features is float32
(N, Extractor.dim); with ``grid=True`` also the network's last spatial map, the grid
features: float32 (N, L, C), L = rows * cols cells (``Spec.grid``), row-major from the top
left of the centre crop the network saw.
"""
import concurrent.futures
import dataclasses
import hashlib
import os
import re
import warnings

import numpy as np

from ..runtime.install import install_hint
from ..runtime.memory import allocating

__all__ = ["EXTRACTORS", "WEIGHTS", "RECORDED_WEIGHTS", "Extractor", "RandomWeightsWarning",
           "VisionUnavailable", "WeightsUnavailable", "extractor_from_record", "preprocess",
           "network_view",
           "describe_vision", "describe_weights", "INSTALL_VISION"]

# Where the [vision] extra comes from, said once for every message that needs it.
INSTALL_VISION = f"{install_hint('vision')}; torch 2.13.0, the CPU build"
WEIGHTS = ("imagenet", "none")  # the named weights; anything else given is a file's path
RECORDED_WEIGHTS = (*WEIGHTS, "file")  # what a record's "weights" says: "file", a file of one's own
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_WEIGHTS_BYTES = 2 << 30  # VGG-16's published file is 528 MB
_RANDOM_SEED = 0  # the initialisation of --weights none (recorded, so it is reproduced)


class VisionUnavailable(ImportError):
    """torch (the [vision] extra) is not installed."""


class RandomWeightsWarning(UserWarning):
    """Features from a randomly initialised CNN (``--weights none``)."""


class WeightsUnavailable(OSError):
    """The network's weights cannot be had: the download failed, or a file is missing."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """A network: its feature size, the published weights' URL and the input transform
    (shorter side resized to ``resize`` pixels, bilinear, then a centred ``crop`` square);
    ``grid``: its grid features, (rows, cols, channels) of the map ``grid_layer``."""

    name: str
    dim: int
    url: str
    resize: int
    crop: int
    about: str
    grid: tuple
    grid_layer: str


# The networks fastcap can extract features with, declared once.
EXTRACTORS = {
    "resnet50": Spec("resnet50", 2048,
                     "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", 232, 224,
                     "ResNet-50 (torchvision IMAGENET1K_V2 weights, 80.9% top-1), global "
                     "average pool", (7, 7, 2048), "layer4"),
    "vgg16": Spec("vgg16", 4096, "https://download.pytorch.org/models/vgg16-397923af.pth",
                  256, 224, "VGG-16 fc7 after its ReLU (as the CS231n features; 71.6% top-1)",
                  (14, 14, 512), "conv5_3"),  # after its ReLU, before the last pool: the paper's
}
DEFAULT_EXTRACTOR = "resnet50"


def _torch():
    try:
        import torch
    except ImportError:
        raise VisionUnavailable(f"image features need PyTorch: {INSTALL_VISION}") from None
    return torch


def _vgg16(torch):
    nn = torch.nn
    layers, channels = [], 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v

    class VGG16(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))

        def forward(self, x, grid=False):  # (N, 3, 224, 224) -> fc7 (N, 4096)
            conv = self.features[:-1](x)  # conv5_3 after its ReLU: (N, 512, 14, 14)
            x = torch.flatten(self.avgpool(self.features[-1](conv)), 1)
            return (self.classifier[:5](x), conv) if grid else self.classifier[:5](x)

    return VGG16()


def _resnet50(torch):
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * 4
            self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride here: v1.5
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, (width, blocks, stride) in enumerate(
                    ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1):
                layer = []
                for b in range(blocks):
                    layer.append(Bottleneck(cin, width, stride if b == 0 else 1))
                    cin = width * 4
                setattr(self, f"layer{i}", nn.Sequential(*layer))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(2048, 1000)

        def forward(self, x, grid=False):  # (N, 3, 224, 224) -> pooled (N, 2048)
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 2048, 7, 7)
            pooled = torch.flatten(self.avgpool(x), 1)
            return (pooled, x) if grid else pooled

    return ResNet50()


_BUILDERS = {"resnet50": _resnet50, "vgg16": _vgg16}


def _random_init(torch, net):
    # He initialisation (as torchvision's ResNet), so a random network's activations
    # neither vanish nor explode with depth and its features still vary with the image.
    torch.manual_seed(_RANDOM_SEED)
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)


def published_prefix(spec):
    """The SHA-256 prefix in the published file's name (``resnet50-11ad3fa6.pth``), which
    torch.hub checks a download against."""
    m = re.search(r"-([0-9a-f]{8,})\.pth$", spec.url)
    return m.group(1) if m else "\0"  # no prefix: no file is taken for the published one


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_file(torch, net, path, name):
    """Load a state dict file into ``net``, strictly; ValueError naming the file when it is not
    one torch reads without running code, or not ``name``'s weights."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        first = (str(exc).splitlines() or [""])[0][:200]  # torch's messages run to pages
        raise ValueError(f"--weights {path}: not a weights file torch can read "
                         f"({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"--weights {path}: not a state dict (a mapping of parameter names to "
                         f"tensors, as torch.save(model.state_dict()) writes), got "
                         f"{type(state).__name__}")
    want = net.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or shapes:
        what = "; ".join(f"{len(keys)} {why}, e.g. {keys[0]!r}" for keys, why in (
            (missing, "of its tensors missing"), (extra, "unknown tensors"),
            (shapes, "tensors of another shape")) if keys)
        raise ValueError(f"--weights {path}: not {name} weights ({what})")
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise ValueError(f"--weights {path}: tensor {k!r} holds NaN or infinite values")
    net.load_state_dict(state)


def describe_weights(record):
    """A record's weights in a few words: ``imagenet``, ``none``, ``file w.pth (sha256 1a2b...)``."""
    if record.get("weights") == "file":
        return (f"file {record.get('weights_file')} (sha256 "
                f"{str(record.get('weights_sha256'))[:12]}...)")
    return str(record.get("weights"))


# Above this many pixels, the resized picture is not made whole: only the crop is resized out
# of it (Pillow's box resize, the filter still reading the whole picture). A picture of an
# extreme aspect ratio (100000 x 1, resized to 256 on its short side, is 25.6 M x 256 pixels,
# 20 GB) costs then what a square one does; the pixels may differ from the whole picture's
# by one level in rounding, so the usual pictures keep the plain path.
_WHOLE_RESIZE_PIXELS = 1 << 24


def network_view(image, spec):
    """uint8 (crop, crop, 3): the part of ``image`` (uint8 (H, W, 3) RGB) the network sees, as
    ``spec`` says: the short side resized to ``spec.resize`` (bilinear), the centre
    ``spec.crop`` square (what its grid of cells covers)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    w, h = img.size
    scale = spec.resize / min(w, h)
    W, H = max(spec.crop, round(w * scale)), max(spec.crop, round(h * scale))
    left, top = (W - spec.crop) // 2, (H - spec.crop) // 2
    if W * H <= _WHOLE_RESIZE_PIXELS:
        img = img.resize((W, H), Image.BILINEAR).crop((left, top, left + spec.crop, top + spec.crop))
    else:
        sx, sy = W / w, H / h  # the crop's box in the source's coordinates
        img = img.resize((spec.crop, spec.crop), Image.BILINEAR,
                         box=(left / sx, top / sy, (left + spec.crop) / sx, (top + spec.crop) / sy))
    return np.asarray(img, dtype=np.uint8)


def preprocess(image, spec):
    """uint8 (H, W, 3) RGB -> float32 (3, crop, crop): ``network_view``, ImageNet-normalised."""
    x = network_view(image, spec).astype(np.float32) / 255.0
    x = (x - np.float32(_IMAGENET_MEAN)) / np.float32(_IMAGENET_STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class Extractor:
    """A CNN that turns images into features: ``features(images) -> float32 (N, dim)``;
    ``threads``: torch's threads and the image decoders' (default: every core)."""

    def __init__(self, name=DEFAULT_EXTRACTOR, weights="imagenet", threads=None):
        if name not in EXTRACTORS:
            raise ValueError(f"extractor must be one of {', '.join(EXTRACTORS)}, got {name!r}")
        if not isinstance(weights, (str, os.PathLike)) or not os.fspath(weights):
            raise ValueError(f"--weights must be one of {', '.join(WEIGHTS)} or the path of a "
                             f"weights file, got {weights!r}")
        weights = os.fspath(weights)
        if weights not in WEIGHTS and not os.path.isfile(weights):
            what = "not a regular file" if os.path.exists(weights) else "no such file"
            raise ValueError(f"--weights {weights}: {what} (give {' or '.join(WEIGHTS)}, "
                             f"or the path of a file of {name}'s weights)")
        if weights not in WEIGHTS and os.path.getsize(weights) > MAX_WEIGHTS_BYTES:
            raise ValueError(f"--weights {weights}: {os.path.getsize(weights):,} bytes, more than "
                             f"the {MAX_WEIGHTS_BYTES:,} a network's weights file may be")
        torch = _torch()
        self.spec, self._torch = EXTRACTORS[name], torch
        self.weights, self.weights_file, self.weights_sha256 = weights, None, None
        net = _BUILDERS[name](torch)
        if weights == "none":
            warnings.warn(f"--weights none: {name} is randomly initialised (seed {_RANDOM_SEED}); "
                          "its features know nothing of ImageNet, so captions of real photos "
                          "will be poor (use it offline and for tests)", RandomWeightsWarning,
                          stacklevel=2)
            _random_init(torch, net)
        elif weights == "imagenet":
            net.load_state_dict(self._download())  # strict: torchvision's names, every tensor
        else:
            self.weights_file = os.path.abspath(weights)
            self.weights_sha256 = _sha256(self.weights_file)
            _load_file(torch, net, self.weights_file, name)
            # The published file, copied by hand, makes the published features.
            self.weights = "imagenet" if self.weights_sha256.startswith(
                published_prefix(self.spec)) else "file"
        self.net = net.eval()
        self.threads = threads or os.cpu_count() or 1

    def _download(self):
        """The published state dict, from torch.hub's cache or downloaded into it."""
        from torch.hub import load_state_dict_from_url

        try:
            return load_state_dict_from_url(self.spec.url, progress=True, check_hash=True,
                                            map_location="cpu")
        except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
            reason = getattr(exc, "reason", None) or exc
            raise WeightsUnavailable(
                f"cannot download the {self.spec.name} ImageNet weights ({self.spec.url}: "
                f"{reason}); offline, pass --weights PATH (a copy of "
                f"{os.path.basename(self.spec.url)}) or --weights none (random features, for "
                "tests)") from None

    @property
    def dim(self):
        return self.spec.dim

    def record(self):
        """What reproduces these features (stored in a data directory and its checkpoints)."""
        s = self.spec
        record = {"extractor": s.name, "weights": self.weights,
                  "weights_url": s.url if self.weights == "imagenet" else None,
                  "random_seed": _RANDOM_SEED if self.weights == "none" else None,
                  "dim": s.dim, "preprocessing": {"resize": s.resize, "crop": s.crop,
                                                  "interpolation": "bilinear",
                                                  "mean": list(_IMAGENET_MEAN),
                                                  "std": list(_IMAGENET_STD)},
                  "torch_version": self._torch.__version__}
        if self.weights_sha256 is not None:
            record["weights_sha256"] = self.weights_sha256
        if self.weights == "file":
            record["weights_file"] = self.weights_file
        return record

    def features(self, images, sources=None, grid=False):
        """uint8 (H, W, 3) images (any sizes) -> float32 (N, dim); with ``grid``, the pair
        (that, the grid features float32 (N, rows * cols, channels) of ``spec.grid``).
        ``sources``: the images' names (files, URLs), for the error when memory runs out."""
        torch = self._torch
        if not images:
            rows, cols, channels = self.spec.grid
            empty = np.zeros((0, self.dim), np.float32)
            return (empty, np.zeros((0, rows * cols, channels), np.float32)) if grid else empty
        what = (f"{self.spec.name} features of {len(images)} image{'s' if len(images) > 1 else ''}"
                + (f" ({sources[0]}{' ...' if len(sources) > 1 else ''})" if sources else ""))
        with concurrent.futures.ThreadPoolExecutor(self.threads) as pool, \
                allocating(f"the {what}", "the images given"):
            x = np.stack(list(pool.map(lambda im: preprocess(im, self.spec), images)))
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode(), allocating(f"the {what}", "the images given"):
                try:
                    x = torch.from_numpy(x)  # the grid output only when asked for
                    out = self.net(x, grid) if grid else self.net(x)
                except RuntimeError as exc:  # PyTorch's allocators raise RuntimeError
                    if "alloc" not in str(exc).lower() and "memory" not in str(exc).lower():
                        raise
                    raise MemoryError(" ".join(str(exc).split())[:200]) from None
                if grid:  # (N, C, rows, cols) -> (N, rows * cols, C), cells row-major
                    out = (out[0].numpy(), out[1].flatten(2).transpose(1, 2).numpy())
                else:
                    out = out.numpy()
        finally:
            torch.set_num_threads(previous)
        if grid:
            return tuple(np.ascontiguousarray(a, dtype=np.float32) for a in out)
        return np.ascontiguousarray(out, dtype=np.float32)


def describe_vision():
    """One line for `fastcap info`: whether prepare/caption can extract features here
    (read from the installed torch's metadata; torch is not imported)."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return f"image features: unavailable (prepare and caption need {INSTALL_VISION})"
    return f"image features: torch {version}: {', '.join(EXTRACTORS)}"


def _weights_for(record, source, given):
    """What to build the record's network with: its named weights, or the file (``given``, else
    the one the record names), after checking that it is the file the record's SHA-256 names."""
    recorded = record.get("weights")
    named = given if given in WEIGHTS else None
    if given is not None and named is None:  # a file given: it must be the one recorded
        if recorded == "none":
            raise ValueError(f"{source}: the features were made by a randomly initialised "
                             f"network (weights none), not from --weights {given}")
        return given
    if named is not None and named != recorded:
        raise ValueError(f"{source}: the features were made with weights "
                         f"{describe_weights(record)}, not {named}: --weights {named} would make "
                         "other features")
    if recorded != "file":
        return recorded
    path = record.get("weights_file")
    if not isinstance(path, str) or not os.path.isfile(path):
        raise WeightsUnavailable(
            f"{source}: the features were made with the weights file {path} (sha256 "
            f"{record.get('weights_sha256')}), which is not there; pass --weights PATH (that file)")
    return path


def extractor_from_record(record, source, threads=None, weights=None):
    """The Extractor a data directory's record names; ValueError when this fastcap cannot
    reproduce it (another network, preprocessing or weights file). ``weights``: what the
    user gave (--weights: a name, which must be the record's, or a file, which must be the
    recorded one; None: the record's own)."""
    name, recorded = record.get("extractor"), record.get("weights")
    if name not in EXTRACTORS or recorded not in RECORDED_WEIGHTS:
        raise ValueError(f"{source}: features were made by {name!r} with weights {recorded!r}, "
                         f"which this fastcap cannot reproduce (it has {', '.join(EXTRACTORS)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)  # the data said so already
        ext = Extractor(name, _weights_for(record, source, weights), threads)
    mine = ext.record()
    keys = ["dim", "preprocessing", "random_seed", "weights"]
    if ext.weights_file is not None:  # a file (a download is checked by torch.hub itself)
        keys.append("weights_sha256")
    for key in keys:
        if record.get(key) != mine.get(key):
            raise ValueError(f"{source}: the features' {key} is {record.get(key)!r}, but "
                             f"{name} here has {mine.get(key)!r}"
                             + (f" (--weights {ext.weights_file})" if ext.weights_file else ""))
    return ext
