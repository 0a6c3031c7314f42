"""Image features from an ImageNet CNN, written with ``torch.nn`` here (the [vision] extra).

PyPI's torchvision wheels do not import beside the CPU build of torch 2.13
(their compiled operators are built against the CUDA torch), so fastcap
defines the two networks itself, with torchvision's parameter names, and loads
their published ImageNet weights through ``torch.hub``'s own download cache
(``$TORCH_HOME/hub/checkpoints``; the file name's hash prefix is checked).

``EXTRACTORS`` is the one list of networks. Each records what a data
directory needs to reproduce its features (``Extractor.record``): the network,
its weights (``imagenet`` or ``none``), the input preprocessing and the
feature size. ``weights="none"`` builds the network with a fixed random
initialisation (seed 0), so that offline data preparation, tests and
``fastcap caption`` compute the same features again; it warns, because such
features carry no learned visual knowledge.

Shapes: an image is uint8 (H, W, 3) RGB; a batch of features is float32
(N, Extractor.dim).
"""
import concurrent.futures
import dataclasses
import os
import warnings

import numpy as np

from ..runtime.install import install_hint
from ..runtime.memory import allocating

__all__ = ["EXTRACTORS", "WEIGHTS", "Extractor", "RandomWeightsWarning", "VisionUnavailable",
           "extractor_from_record", "preprocess", "describe_vision", "INSTALL_VISION"]

# Where the [vision] extra comes from, said once for every message that needs it.
INSTALL_VISION = f"{install_hint('vision')}; torch 2.13.0, the CPU build"
WEIGHTS = ("imagenet", "none")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_RANDOM_SEED = 0  # the initialisation of --weights none (recorded, so it is reproduced)


class VisionUnavailable(ImportError):
    """torch (the [vision] extra) is not installed."""


class RandomWeightsWarning(UserWarning):
    """Features from a randomly initialised CNN (``--weights none``)."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """A network: its feature size, the published weights' URL and the input transform
    (shorter side resized to ``resize`` pixels, bilinear, then a centred ``crop`` square)."""

    name: str
    dim: int
    url: str
    resize: int
    crop: int
    about: str


# The networks fastcap can extract features with, declared once.
EXTRACTORS = {
    "resnet50": Spec("resnet50", 2048,
                     "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", 232, 224,
                     "ResNet-50 (torchvision IMAGENET1K_V2 weights, 80.9% top-1), global "
                     "average pool"),
    "vgg16": Spec("vgg16", 4096, "https://download.pytorch.org/models/vgg16-397923af.pth",
                  256, 224, "VGG-16 fc7 after its ReLU (as the CS231n features; 71.6% top-1)"),
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

        def forward(self, x):  # (N, 3, 224, 224) -> fc7 (N, 4096)
            x = torch.flatten(self.avgpool(self.features(x)), 1)
            return self.classifier[:5](x)

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

        def forward(self, x):  # (N, 3, 224, 224) -> pooled (N, 2048)
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

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


# Above this many pixels, the resized picture is not made whole: only the crop is resized out
# of it (Pillow's box resize, the filter still reading the whole picture). A picture of an
# extreme aspect ratio (100000 x 1, resized to 256 on its short side, is 25.6 M x 256 pixels,
# 20 GB) costs then what a square one does; the pixels may differ from the whole picture's
# by one level in rounding, so the usual pictures keep the plain path.
_WHOLE_RESIZE_PIXELS = 1 << 24


def preprocess(image, spec):
    """uint8 (H, W, 3) RGB -> float32 (3, crop, crop), ImageNet-normalised, as ``spec`` says:
    the short side resized to ``spec.resize`` (bilinear), the centre ``spec.crop`` square."""
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
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.float32(_IMAGENET_MEAN)) / np.float32(_IMAGENET_STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class Extractor:
    """A CNN that turns images into features: ``features(images) -> float32 (N, dim)``;
    ``threads``: torch's threads and the image decoders' (default: every core)."""

    def __init__(self, name=DEFAULT_EXTRACTOR, weights="imagenet", threads=None):
        if name not in EXTRACTORS:
            raise ValueError(f"extractor must be one of {', '.join(EXTRACTORS)}, got {name!r}")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
        torch = _torch()
        self.spec, self.weights, self._torch = EXTRACTORS[name], weights, torch
        net = _BUILDERS[name](torch)
        if weights == "none":
            warnings.warn(f"--weights none: {name} is randomly initialised (seed {_RANDOM_SEED}); "
                          "its features know nothing of ImageNet, so captions of real photos "
                          "will be poor (use it offline and for tests)", RandomWeightsWarning,
                          stacklevel=2)
            _random_init(torch, net)
        else:
            from torch.hub import load_state_dict_from_url

            state = load_state_dict_from_url(self.spec.url, progress=True, check_hash=True,
                                             map_location="cpu")
            net.load_state_dict(state)  # strict: torchvision's names, every tensor
        self.net = net.eval()
        self.threads = threads or os.cpu_count() or 1

    @property
    def dim(self):
        return self.spec.dim

    def record(self):
        """What reproduces these features (stored in a data directory and its checkpoints)."""
        s = self.spec
        return {"extractor": s.name, "weights": self.weights,
                "weights_url": s.url if self.weights == "imagenet" else None,
                "random_seed": _RANDOM_SEED if self.weights == "none" else None,
                "dim": s.dim, "preprocessing": {"resize": s.resize, "crop": s.crop,
                                                "interpolation": "bilinear",
                                                "mean": list(_IMAGENET_MEAN),
                                                "std": list(_IMAGENET_STD)},
                "torch_version": self._torch.__version__}

    def features(self, images, sources=None):
        """uint8 (H, W, 3) images (any sizes) -> float32 (N, dim). ``sources``: the images'
        names (files, URLs), for the error when memory runs out."""
        torch = self._torch
        if not images:
            return np.zeros((0, self.dim), np.float32)
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
                    out = self.net(torch.from_numpy(x)).numpy()
                except RuntimeError as exc:  # PyTorch's allocators raise RuntimeError
                    if "alloc" not in str(exc).lower() and "memory" not in str(exc).lower():
                        raise
                    raise MemoryError(" ".join(str(exc).split())[:200]) from None
        finally:
            torch.set_num_threads(previous)
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


def extractor_from_record(record, source, threads=None):
    """The Extractor a data directory's record names; ValueError when this fastcap cannot
    reproduce it (another network or preprocessing)."""
    name, weights = record.get("extractor"), record.get("weights")
    if name not in EXTRACTORS or weights not in WEIGHTS:
        raise ValueError(f"{source}: features were made by {name!r} with weights {weights!r}, "
                         f"which this fastcap cannot reproduce (it has {', '.join(EXTRACTORS)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)  # the data said so already
        ext = Extractor(name, weights, threads)
    mine = ext.record()
    for key in ("dim", "preprocessing", "random_seed"):
        if record.get(key) != mine[key]:
            raise ValueError(f"{source}: the features' {key} is {record.get(key)!r}, but "
                             f"{name} here uses {mine[key]!r}")
    return ext
