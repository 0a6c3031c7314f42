"""One self-contained HTML page of pictures and their captions (``fastcap caption --html``,
``fastcap show --html``).

Each picture is embedded as a ``data:`` URI (a JPEG, its longest side at most
``THUMB`` pixels, made with Pillow) and every text is escaped
(``html.escape``): the page loads nothing from anywhere, so it opens offline,
from a mail or from another machine. A picture that could not be had gets a
grey box saying why. The page names fastcap in ``<meta name="generator">``;
``write_page`` replaces only such a page unless told to overwrite.
"""
import base64
import dataclasses
import html
import io

import numpy as np

from ..runtime.files import atomic_write_text, check_target
from ..runtime.names import VERSION

__all__ = ["Item", "thumbnail", "render", "write_page", "check_page_path", "written_by_fastcap",
           "GENERATOR", "THUMB", "KINDS"]

GENERATOR = "fastcap"
THUMB = 320  # pixels, the longest side of an embedded picture
# What a caption line is, and its colour: generated (greedy), beam search, a reference.
KINDS = {"generated": "#1f4e9c", "beam": "#b34700", "reference": "#555555"}


@dataclasses.dataclass
class Item:
    """One picture of the page: ``title`` (its name), ``picture`` (its ``thumbnail``, or None),
    ``missing`` (why there is no picture), ``lines``: [(label, text, kind in KINDS)]."""

    title: str
    picture: str = None
    missing: str = None
    lines: list = dataclasses.field(default_factory=list)


def thumbnail(image, size=THUMB):
    """A ``data:image/jpeg;base64,...`` URI of uint8 (H, W, 3) ``image``, longest side <= size."""
    from PIL import Image

    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    im.thumbnail((size, size), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #222; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px; }
.sub { color: #555; font-size: 13px; margin: 0 0 18px; overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px;
         overflow: hidden; }
figure img { display: block; width: 100%; height: 220px; object-fit: contain; background: #eee; }
.missing { height: 220px; background: #ddd; color: #444; display: flex; align-items: center;
           justify-content: center; text-align: center; padding: 0 12px; font-size: 13px; }
figcaption { padding: 8px 10px 10px; font-size: 14px; }
.name { font-size: 12px; color: #777; margin-bottom: 6px; overflow-wrap: anywhere; }
.line { margin: 2px 0; }
.label { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; margin-right: 6px; }
footer { margin-top: 24px; font-size: 12px; color: #888; }
"""


def _line(label, text, kind):
    colour = KINDS[kind]
    weight = "600" if kind == "generated" else "400"
    label = f'<span class="label">{html.escape(label)}</span>' if label else ""
    return (f'<div class="line" style="color:{colour};font-weight:{weight}">'
            f'{label}{html.escape(text or "(empty)")}</div>')


def render(title, subtitle, items):
    """The page's HTML: ``title``, ``subtitle`` lines under it, then a card per Item."""
    cards = []
    for item in items:
        if item.picture is not None:
            picture = f'<img src="{html.escape(item.picture)}" alt="{html.escape(item.title)}">'
        else:
            picture = f'<div class="missing">{html.escape(item.missing or "no picture")}</div>'
        lines = "".join(_line(*line) for line in item.lines)
        cards.append(f'<figure>{picture}<figcaption><div class="name">{html.escape(item.title)}'
                     f'</div>{lines}</figcaption></figure>')
    sub = "<br>".join(html.escape(s) for s in subtitle)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="generator" content="{GENERATOR} {html.escape(VERSION)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>'
            f'<h1>{html.escape(title)}</h1><p class="sub">{sub}</p>'
            f'<div class="grid">\n' + "\n".join(cards) + '\n</div>'
            f'<footer>{len(items)} picture{"" if len(items) == 1 else "s"}; made by fastcap '
            f'{html.escape(VERSION)}</footer></body></html>\n')


def written_by_fastcap(path):
    """Whether ``path`` (a regular file) is a page fastcap wrote (its generator tag)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR} '.encode() in head


def check_page_path(path, overwrite=False, inputs=()):
    """``path``'s real path if a page may be written there (fastcap.runtime.files.check_target:
    new, or a page fastcap wrote, else ``overwrite``; never one of ``inputs``)."""
    return check_target(path, what="--html", inputs=inputs, overwrite=overwrite,
                        ours=written_by_fastcap)


def write_page(path, text, overwrite=False, inputs=()):
    """Write the page ``text`` to ``path`` atomically (see check_page_path); its real path."""
    return atomic_write_text(check_page_path(path, overwrite, inputs), text)
