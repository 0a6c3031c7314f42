"""Pictures of generated images: each ``generated://`` image's scene drawn with Pillow.

A generated image has no pixels, only what the generator knows about it
(``fastcap.data.generated.image_scene``: subject, how many, adjective, action,
place, optional object with its adjective). ``render_generated(url)`` draws
that as a flat cartoon, so that "look at the data" cells and contact sheets
show something meaningful offline: the place as the background, ``count``
figures of the subject in the subject's colour (or its adjective's colour,
"small"/"large"/"young" as a size), posed by the action, and the object
beside them, each labelled with its noun. The layout's small jitter is drawn
from the URL, so a URL always gives the same picture.
"""
import zlib

import numpy as np

from .generated import image_scene
from .generated_grid import GROUND, HORIZON, OBJECT_X, SIZES, SUBJECT_LEFT, SUBJECT_RIGHT

__all__ = ["render_generated", "WIDTH", "HEIGHT"]

WIDTH, HEIGHT = 320, 240  # pixels; 4:3 like most COCO photos

_COLOURS = {  # the generator's colour adjectives
    "red": (215, 40, 40), "blue": (40, 90, 210), "green": (40, 160, 60),
    "yellow": (245, 215, 40), "white": (248, 248, 248), "black": (25, 25, 25),
    "brown": (130, 80, 40), "orange": (245, 140, 30),
}
# The layout (where the subject and the object stand, the size adjectives) is
# fastcap.data.generated_grid's, so the generated grid features match the pictures.
_SKIN, _OUTLINE = (240, 200, 160), (40, 40, 40)

_SKY = (150, 205, 240)
# place -> (sky or wall colour, ground colour, extra decoration, indoors)
_PLACES = {
    "beach": (_SKY, (238, 214, 160), "sea", False),
    "park": (_SKY, (110, 180, 90), "trees", False),
    "kitchen": ((236, 226, 200), (170, 120, 80), "counter", True),
    "street": (_SKY, (105, 105, 110), "buildings", False),
    "field": (_SKY, (160, 195, 85), "fence", False),
    "room": ((214, 204, 232), (150, 110, 90), "window", True),
    "forest": ((125, 170, 200), (70, 120, 60), "forest", False),
    "lake": (_SKY, (105, 170, 90), "lake", False),
    "road": (_SKY, (120, 175, 90), "road", False),
    "garden": (_SKY, (95, 170, 80), "flowers", False),
    "snow": ((205, 222, 240), (246, 248, 252), "mountains", False),
    "grass": (_SKY, (100, 185, 70), "tufts", False),
    "yard": (_SKY, (110, 175, 80), "house", False),
    "sidewalk": (_SKY, (185, 185, 180), "kerb", False),
    "zoo": (_SKY, (205, 185, 135), "bars", False),
}
_HUMANS = {  # subject -> (height scale, default shirt colour, extra)
    "man": (1.0, (60, 110, 170), None), "woman": (0.95, (190, 70, 120), "dress"),
    "boy": (0.75, (70, 150, 90), None), "girl": (0.72, (220, 120, 160), "dress"),
    "child": (0.65, (240, 180, 60), None), "person": (0.95, (120, 120, 140), None),
    "player": (1.0, (230, 230, 230), "number"), "skier": (1.0, (220, 60, 60), "skis"),
    "surfer": (1.0, (30, 150, 160), "board"),
}
_ANIMALS = {  # subject -> (body w, body h, leg, neck, head r, default colour, extra)
    "dog": (34, 16, 13, 4, 8, (150, 100, 60), "ears"), "cat": (28, 13, 10, 2, 7, (150, 150, 150), "cat"),
    "horse": (50, 22, 30, 14, 9, (140, 80, 40), "mane"), "cow": (52, 26, 22, 6, 10, (250, 250, 250), "spots"),
    "sheep": (40, 24, 14, 3, 8, (245, 245, 240), "wool"), "bear": (50, 30, 16, 3, 12, (100, 65, 35), "ears"),
    "elephant": (62, 38, 26, 0, 16, (150, 150, 160), "trunk"),
    "giraffe": (42, 20, 34, 44, 7, (235, 190, 90), "spots"),
    "zebra": (48, 22, 28, 12, 9, (250, 250, 250), "stripes"),
}
_BIRDS = {"bird": (18, 12, (90, 140, 220)), "duck": (24, 15, (250, 230, 90))}
# action -> pose: how the figures stand, sit, lie, leap or eat
_POSES = {"sitting": "low", "resting": "low", "relaxing": "low", "lying": "flat",
          "sleeping": "flat", "jumping": "air", "running": "run", "playing": "run",
          "eating": "food", "drinking": "food"}  # the rest stand


def _font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):  # pragma: no cover - older or FreeType-less Pillow
        return ImageFont.load_default()


def _shade(c, f):
    return tuple(int(max(0, min(255, v * f))) for v in c)


def _background(d, place, rng, horizon):
    sky, ground, extra, indoors = _PLACES.get(place, (_SKY, (150, 150, 150), None, False))
    d.rectangle([0, 0, WIDTH, horizon], fill=sky)
    d.rectangle([0, horizon, WIDTH, HEIGHT], fill=ground)
    if not indoors:
        d.ellipse([WIDTH - 52, 10, WIDTH - 22, 40], fill=(255, 230, 120))  # sun
    if extra == "sea":
        d.rectangle([0, horizon - 18, WIDTH, horizon + 6], fill=(60, 130, 200))
    elif extra in ("trees", "forest"):
        n = 4 if extra == "trees" else 9
        for x in np.linspace(10, WIDTH - 10, n) + rng.uniform(-8, 8, n):
            _tree(d, x, horizon + 4, 0.8 if extra == "trees" else 1.2, (50, 120, 50))
    elif extra == "counter":
        d.rectangle([0, horizon - 40, WIDTH, horizon], fill=(200, 200, 205), outline=_OUTLINE)
        for x in range(10, WIDTH, 60):
            d.rectangle([x, horizon - 34, x + 45, horizon - 6], outline=(120, 120, 130))
    elif extra == "buildings":
        for x in range(0, WIDTH, 54):
            top = horizon - int(rng.integers(40, 90))
            d.rectangle([x, top, x + 46, horizon], fill=(170, 160, 150), outline=_OUTLINE)
        for x in range(8, WIDTH, 40):
            d.rectangle([x, horizon + 40, x + 18, horizon + 44], fill=(240, 240, 240))
    elif extra == "fence" or extra == "bars":
        step = 24 if extra == "fence" else 12
        for x in range(4, WIDTH, step):
            d.line([x, horizon - 22, x, horizon + 4], fill=(120, 90, 60) if extra == "fence"
                   else (80, 80, 80), width=3)
        d.line([0, horizon - 14, WIDTH, horizon - 14], fill=(120, 90, 60), width=3)
    elif extra == "window":
        d.rectangle([30, 20, 110, 80], fill=_SKY, outline=(255, 255, 255), width=4)
        d.rectangle([200, 30, 250, 70], fill=(230, 190, 120), outline=(90, 60, 40), width=3)
    elif extra == "lake":
        d.ellipse([20, horizon - 6, WIDTH - 20, horizon + 46], fill=(80, 150, 210))
    elif extra == "road":
        d.polygon([(WIDTH * 0.42, horizon), (WIDTH * 0.58, horizon), (WIDTH, HEIGHT),
                   (0, HEIGHT)], fill=(105, 105, 110))
    elif extra == "flowers":
        for x, y in zip(rng.uniform(0, WIDTH, 30), rng.uniform(horizon + 4, HEIGHT, 30)):
            c = _COLOURS[("red", "yellow", "white", "orange")[int(x) % 4]]
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
    elif extra == "mountains":
        d.polygon([(0, horizon), (70, horizon - 70), (150, horizon)], fill=(160, 170, 190))
        d.polygon([(100, horizon), (200, horizon - 95), (300, horizon)], fill=(140, 150, 175))
        d.polygon([(178, horizon - 70), (200, horizon - 95), (222, horizon - 70)], fill=(255, 255, 255))
    elif extra == "tufts":
        for x, y in zip(rng.uniform(0, WIDTH, 40), rng.uniform(horizon + 4, HEIGHT, 40)):
            d.line([x, y, x - 3, y - 6], fill=(60, 140, 50), width=1)
            d.line([x, y, x + 3, y - 6], fill=(60, 140, 50), width=1)
    elif extra == "house":
        d.rectangle([220, horizon - 60, 300, horizon], fill=(220, 200, 170), outline=_OUTLINE)
        d.polygon([(212, horizon - 60), (260, horizon - 95), (308, horizon - 60)], fill=(170, 60, 50))
        d.rectangle([250, horizon - 30, 268, horizon], fill=(120, 80, 50))
    elif extra == "kerb":
        d.rectangle([0, HEIGHT - 30, WIDTH, HEIGHT], fill=(100, 100, 105))
        for x in range(0, WIDTH, 32):
            d.line([x, horizon, x - 20, HEIGHT - 30], fill=(160, 160, 155))


def _tree(d, x, ground, s, crown):
    d.rectangle([x - 4 * s, ground - 40 * s, x + 4 * s, ground], fill=(110, 75, 40))
    d.ellipse([x - 20 * s, ground - 75 * s, x + 20 * s, ground - 30 * s], fill=crown, outline=_OUTLINE)


def _human(d, x, ground, s, kind, colour, pose, old):
    height, default, extra = _HUMANS[kind]
    s *= height
    shirt = colour or default
    hair = (200, 200, 200) if old else (70, 45, 25)
    if pose == "flat":  # lying on the ground, head to the left
        d.rounded_rectangle([x - 26 * s, ground - 12 * s, x + 30 * s, ground], 4, fill=shirt,
                            outline=_OUTLINE)
        d.ellipse([x - 42 * s, ground - 16 * s, x - 26 * s, ground], fill=_SKIN, outline=_OUTLINE)
        return ground - 16 * s
    lift = 22 * s if pose == "air" else 0
    leg = 12 * s if pose == "low" else 24 * s
    hip = ground - lift - leg
    spread = 12 * s if pose in ("run", "air") else 5 * s
    for dx in (-spread, spread):
        d.line([x, hip, x + dx, ground - lift], fill=(50, 50, 90), width=max(2, int(4 * s)))
    if extra == "dress":
        d.polygon([(x - 14 * s, hip + 2), (x + 14 * s, hip + 2), (x + 6 * s, hip - 28 * s),
                   (x - 6 * s, hip - 28 * s)], fill=shirt, outline=_OUTLINE)
    else:
        d.rounded_rectangle([x - 9 * s, hip - 30 * s, x + 9 * s, hip + 2], 3, fill=shirt,
                            outline=_OUTLINE)
    if extra == "number":
        d.text((x - 4 * s, hip - 24 * s), "7", fill=_OUTLINE, font=_font(max(8, int(12 * s))))
    arm = -16 * s if pose in ("air", "run") else 14 * s
    for dx in (-1, 1):
        d.line([x + dx * 8 * s, hip - 26 * s, x + dx * 18 * s, hip - 26 * s + arm], fill=shirt,
               width=max(2, int(4 * s)))
    head = hip - 30 * s
    d.ellipse([x - 9 * s, head - 18 * s, x + 9 * s, head], fill=_SKIN, outline=_OUTLINE)
    d.chord([x - 9 * s, head - 18 * s, x + 9 * s, head - 4 * s], 180, 360, fill=hair)
    if extra == "skis":
        d.line([x - 22 * s, ground - lift + 2, x + 22 * s, ground - lift + 2], fill=(30, 30, 30), width=3)
    elif extra == "board":
        d.ellipse([x + 14 * s, hip - 40 * s, x + 26 * s, ground], fill=(250, 240, 200), outline=_OUTLINE)
    return head - 18 * s


def _animal(d, x, ground, s, kind, colour, pose, old):
    bw, bh, leg, neck, hr, default, extra = (v * s if isinstance(v, (int, float)) else v
                                             for v in _ANIMALS[kind])
    body = colour or default
    if old:
        body = _shade(body, 0.75)
    if pose == "flat":
        leg = 0
    elif pose == "low":
        leg *= 0.4
    lift = 18 * s if pose == "air" else 0
    top = ground - lift - leg - bh
    spread = 6 * s if pose in ("run", "air") else 0
    for lx in (x - bw / 2 + 5 * s, x + bw / 2 - 7 * s):
        for dx in (-spread, spread):
            d.line([lx, top + bh - 2, lx + dx, ground - lift], fill=_shade(body, 0.7),
                   width=max(2, int(5 * s)))
    d.ellipse([x - bw / 2, top, x + bw / 2, top + bh], fill=body, outline=_OUTLINE)
    if extra == "spots":
        for k in range(4):
            cx, cy = x - bw / 3 + k * bw / 5, top + bh / 3 + (k % 2) * bh / 4
            d.ellipse([cx - 3 * s, cy - 3 * s, cx + 3 * s, cy + 3 * s],
                      fill=(40, 30, 20) if kind == "cow" else (150, 90, 30))
    elif extra == "stripes":
        for k in range(6):
            sx = x - bw / 2 + (k + 1) * bw / 7
            d.line([sx, top + 2, sx, top + bh - 2], fill=_OUTLINE, width=max(1, int(2 * s)))
    elif extra == "wool":
        for k in range(5):
            cx = x - bw / 2 + (k + 0.5) * bw / 5
            d.ellipse([cx - 6 * s, top - 4 * s, cx + 6 * s, top + 8 * s], fill=body, outline=_OUTLINE)
    hx, hy = x + bw / 2 + (2 if neck else -2) * s, top - neck + hr / 2
    if neck:
        d.line([x + bw / 2 - 6 * s, top + 6 * s, hx, hy], fill=body, width=max(3, int(7 * s)))
    if pose == "food":  # head down to a bowl
        hx, hy = x + bw / 2 + 6 * s, ground - lift - hr
        d.chord([hx + 2 * s, ground - 8 * s, hx + 22 * s, ground + 4 * s], 0, 180, fill=(200, 60, 60))
    d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=body, outline=_OUTLINE)
    d.ellipse([hx + hr / 3, hy - hr / 3, hx + hr / 3 + 3, hy - hr / 3 + 3], fill=_OUTLINE)
    if extra in ("ears", "cat"):
        for ex in (hx - hr * 0.6, hx + hr * 0.2):
            if extra == "cat":
                d.polygon([(ex, hy - hr * 0.6), (ex + hr * 0.4, hy - hr * 1.5), (ex + hr * 0.8, hy - hr * 0.6)],
                          fill=body, outline=_OUTLINE)
            else:
                d.ellipse([ex, hy - hr * 1.3, ex + hr * 0.6, hy - hr * 0.5], fill=_shade(body, 0.8))
    elif extra == "trunk":
        d.line([hx + hr * 0.7, hy, hx + hr * 1.1, hy + hr * 1.6], fill=body, width=max(3, int(6 * s)))
    elif extra == "mane":
        d.line([x + bw / 2 - 6 * s, top, hx - hr / 2, hy - hr / 2], fill=_shade(body, 0.5), width=3)
    d.line([x - bw / 2, top + bh / 3, x - bw / 2 - 10 * s, top + bh / 2 + 6 * s], fill=body, width=2)
    return min(top, hy - hr)


def _bird(d, x, ground, s, kind, colour, pose, old):
    bw, bh, default = _BIRDS[kind]
    bw, bh = bw * s, bh * s
    body = colour or default
    if old:
        body = _shade(body, 0.75)
    lift = 30 * s if pose == "air" else 0
    top = ground - lift - bh - (0 if pose in ("flat", "low") else 8 * s)
    if pose not in ("flat", "low"):
        d.line([x, top + bh, x, ground - lift], fill=(230, 140, 30), width=2)
    d.ellipse([x - bw / 2, top, x + bw / 2, top + bh], fill=body, outline=_OUTLINE)
    d.chord([x - bw / 3, top + 2, x + bw / 4, top + bh * 0.8], 0, 180, fill=_shade(body, 0.8))
    hx, hy, hr = x + bw / 2, top, bh * 0.45
    d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=body, outline=_OUTLINE)
    d.polygon([(hx + hr * 0.8, hy - 2), (hx + hr * 2, hy + 1), (hx + hr * 0.8, hy + 4)],
              fill=(240, 150, 30))
    return hy - hr


_OBJECT_COLOURS = {"ball": (245, 245, 245), "frisbee": (240, 80, 60), "kite": (240, 60, 140),
                   "umbrella": (60, 60, 200), "bicycle": (30, 30, 30), "car": (200, 40, 40),
                   "truck": (60, 110, 180), "boat": (245, 245, 245), "bench": (140, 90, 50),
                   "tree": (50, 140, 50), "bag": (150, 90, 60), "hat": (60, 60, 60)}


def _object(d, x, ground, s, kind, colour, holder_top):
    """Draw the object at x on the ground line; returns the label's y."""
    c = colour or _OBJECT_COLOURS[kind]
    if kind == "ball":
        d.ellipse([x - 8 * s, ground - 16 * s, x + 8 * s, ground], fill=c, outline=_OUTLINE)
    elif kind == "frisbee":
        y = holder_top - 6
        d.ellipse([x - 14 * s, y - 4 * s, x + 14 * s, y + 4 * s], fill=c, outline=_OUTLINE)
        return y + 6 * s
    elif kind == "kite":
        kx, ky = x + 10, 34
        d.polygon([(kx, ky - 16 * s), (kx + 12 * s, ky), (kx, ky + 18 * s), (kx - 12 * s, ky)],
                  fill=c, outline=_OUTLINE)
        d.line([kx, ky + 18 * s, x - 20, holder_top + 10], fill=_OUTLINE, width=1)
        return ky + 20 * s
    elif kind == "umbrella":
        d.line([x, ground, x, ground - 50 * s], fill=_OUTLINE, width=2)
        d.pieslice([x - 26 * s, ground - 66 * s, x + 26 * s, ground - 34 * s], 180, 360, fill=c,
                   outline=_OUTLINE)
    elif kind == "bicycle":
        for wx in (x - 16 * s, x + 16 * s):
            d.ellipse([wx - 11 * s, ground - 22 * s, wx + 11 * s, ground], outline=c, width=3)
        d.line([x - 16 * s, ground - 11 * s, x, ground - 26 * s, x + 16 * s, ground - 11 * s,
                x - 16 * s, ground - 11 * s], fill=c, width=3)
    elif kind in ("car", "truck"):
        w, h = (34, 16) if kind == "car" else (44, 26)
        d.rounded_rectangle([x - w * s, ground - (h + 6) * s, x + w * s, ground - 6 * s], 4, fill=c,
                            outline=_OUTLINE)
        cab = [x - 18 * s, ground - (h + 18) * s, x + 14 * s, ground - (h + 4) * s] if kind == "car" \
            else [x + (w - 2) * s, ground - 30 * s, x + (w + 16) * s, ground - 6 * s]
        d.rounded_rectangle(cab, 3, fill=_shade(c, 0.85) if kind == "truck" else (200, 230, 250),
                            outline=_OUTLINE)
        for wx in (x - (w - 10) * s, x + (w - 10) * s):
            d.ellipse([wx - 7 * s, ground - 14 * s, wx + 7 * s, ground], fill=(30, 30, 30))
    elif kind == "boat":
        d.polygon([(x - 30 * s, ground - 14 * s), (x + 30 * s, ground - 14 * s), (x + 20 * s, ground),
                   (x - 20 * s, ground)], fill=c, outline=_OUTLINE)
        d.line([x, ground - 14 * s, x, ground - 60 * s], fill=_OUTLINE, width=2)
        d.polygon([(x + 2, ground - 58 * s), (x + 24 * s, ground - 18 * s), (x + 2, ground - 18 * s)],
                  fill=(250, 250, 250), outline=_OUTLINE)
    elif kind == "bench":
        d.rectangle([x - 30 * s, ground - 22 * s, x + 30 * s, ground - 16 * s], fill=c, outline=_OUTLINE)
        d.rectangle([x - 30 * s, ground - 40 * s, x + 30 * s, ground - 32 * s], fill=c, outline=_OUTLINE)
        for lx in (x - 26 * s, x + 24 * s):
            d.line([lx, ground - 40 * s, lx, ground], fill=_OUTLINE, width=3)
    elif kind == "tree":
        _tree(d, x, ground, s * 1.4, c)
    elif kind == "bag":
        d.arc([x - 8 * s, ground - 30 * s, x + 8 * s, ground - 14 * s], 180, 360, fill=_OUTLINE, width=2)
        d.rounded_rectangle([x - 14 * s, ground - 22 * s, x + 14 * s, ground], 3, fill=c, outline=_OUTLINE)
    elif kind == "hat":
        d.ellipse([x - 18 * s, ground - 8 * s, x + 18 * s, ground], fill=c, outline=_OUTLINE)
        d.rounded_rectangle([x - 10 * s, ground - 22 * s, x + 10 * s, ground - 4 * s], 3, fill=c,
                            outline=_OUTLINE)
    return ground + 2


def _label(d, x, y, text, font):
    box = d.textbbox((0, 0), text, font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    x = min(max(x - w / 2, 2), WIDTH - w - 4)
    y = min(y, HEIGHT - h - 6)
    d.rectangle([x - 2, y - 1, x + w + 2, y + h + 4], fill=(255, 255, 255))
    d.text((x, y), text, fill=_OUTLINE, font=font)


def render_generated(url):
    """The picture of a generated image: uint8 (HEIGHT, WIDTH, 3) RGB.

    ``url`` is a ``fastcap.data.generated.generated_url``; a malformed one raises
    ValueError naming it.
    """
    from PIL import Image, ImageDraw

    scene = image_scene(url)
    rng = np.random.default_rng(zlib.crc32(str(url).encode()))
    img = Image.new("RGB", (WIDTH, HEIGHT))
    d = ImageDraw.Draw(img)
    horizon = int(HEIGHT * HORIZON)
    _background(d, scene["place"], rng, horizon)
    font = _font(11)

    adj = scene["subject_adj"]
    colour, size = _COLOURS.get(adj), SIZES.get(adj, 1.0)
    subject, count = scene["subject"], scene["count"]
    pose = _POSES.get(scene["action"], "stand")
    draw = _human if subject in _HUMANS else _bird if subject in _BIRDS else _animal
    width = 60 if subject in _HUMANS or subject in _BIRDS else 90
    has_obj = scene["object"] is not None
    left = WIDTH * SUBJECT_LEFT + width * size / 2
    span = WIDTH * SUBJECT_RIGHT[has_obj] - left - width * size / 2
    ground = HEIGHT * GROUND + rng.uniform(-6, 6)
    tops = []
    for k in range(count):
        x = left + (span * k / (count - 1) if count > 1 else span / 2) + rng.uniform(-5, 5)
        tops.append(draw(d, x, ground - 6 * k * (k % 2), size, subject, colour, pose, adj == "old"))
        if pose == "flat" and scene["action"] == "sleeping":
            d.text((x + 10, tops[-1] - 16), "z z", fill=(40, 40, 120), font=font)
    if pose in ("run", "air"):
        for k in range(3):
            y = ground - 20 - 8 * k
            d.line([left - 20 - width * size / 2, y, left - 6 - width * size / 2, y], fill=(80, 80, 80))
    words = ([scene["count_word"]] if count > 1 else []) + ([adj] if adj else []) + \
        [scene["subject_plural"] if count > 1 else subject]
    _label(d, left + span / 2, ground + 8, " ".join(words), font)

    if has_obj:
        o_adj = scene["object_adj"]
        o_size = SIZES.get(o_adj, 1.0)
        ox = min(WIDTH * OBJECT_X + rng.uniform(-8, 8), WIDTH - 64 * o_size - 2)  # a truck fits
        ly = _object(d, ox, ground + 2, o_size, scene["object"], _COLOURS.get(o_adj),
                     min(tops))
        _label(d, ox, ly + 6, f"{o_adj} {scene['object']}" if o_adj else scene["object"], font)
    _label(d, 40, 6, f"{scene['action']} {scene['preposition']} the {scene['place']}", font)
    return np.asarray(img, dtype=np.uint8)
