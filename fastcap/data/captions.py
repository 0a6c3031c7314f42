"""Caption files people have, read into one form: COCO annotations, Karpathy's splits, Flickr8k.

``read_captions(path, split_lists=None) -> Corpus``. The format is recognised
from the content (``FORMATS`` lists them):

- ``coco``: COCO's ``captions_*.json``: ``images`` (``id``, ``file_name``) and
  ``annotations`` (``image_id``, ``caption``); no split.
- ``karpathy``: ``dataset_coco.json`` / ``dataset_flickr8k.json``: ``images``
  with ``filename`` (and optional ``filepath``), ``split`` (train, restval,
  val, test) and ``sentences`` (``tokens`` or ``raw``). ``restval`` trains,
  ``test`` is left out (fastcap's layout has train and val only).
- ``flickr8k``: ``Flickr8k.token.txt``, lines ``IMAGE#K<TAB>caption``; the
  split comes from ``split_lists`` ({"train": file, "val": file}, one image
  name a line, as ``Flickr_8k.trainImages.txt``), else none.

Untrusted input: every field of the three formats is read through one checked
schema (``COCO_IMAGE``, ``COCO_ANNOTATION``, ``KARPATHY_IMAGE``,
``KARPATHY_SENTENCE``: ``Field`` declarations read by ``_record``), so a field
that is missing or of the wrong type raises ValueError naming the file, the
record and the field and what it should be. Image names must survive a line of
a text file (the urls files fastcap writes are read back line by line): no line
breaks of any kind (those ``str.splitlines`` splits on, U+2028 included) and
no control characters. An image listed twice under conflicting names, or a
caption id used twice, is an error; an exact repeat of an image entry is merged.
Captions with no words after tokenization and images left without captions
are dropped and counted in ``Corpus.dropped``.
"""
import collections
import dataclasses
import json
import os
import re
import unicodedata
from typing import Callable

__all__ = ["FORMATS", "Corpus", "read_captions", "tokenize"]

FORMATS = ("coco", "karpathy", "flickr8k")
SPLITS = ("train", "val")
_KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": None}
_MAX_FILE_BYTES = 2 << 30  # a captions file larger than 2 GiB is not one


def tokenize(text):
    """CS231n's caption tokenization: NFKC, lowercase, punctuation and symbols deleted
    ("don't" -> "dont"), split on whitespace. Letters of any script are kept."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = "".join(" " if ch.isspace() else ch for ch in text
                   if unicodedata.category(ch)[0] not in "PSC" or ch.isspace())
    return text.split()


@dataclasses.dataclass
class Corpus:
    """Images with their tokenized captions. ``images``: {file name: [token lists]} in file
    order; ``split``: {file name: "train" | "val"} (empty when the file has no split);
    ``format``: one of FORMATS; ``dropped``: Counter of what was left out and why."""

    format: str
    images: dict
    split: dict
    dropped: collections.Counter


def _read_text(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"captions file {path} does not exist or is not a regular file")
    if os.path.getsize(path) > _MAX_FILE_BYTES:
        raise ValueError(f"captions file {path} is larger than 2 GiB")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not UTF-8 text") from None


def _need(cond, path, what):
    if not cond:
        raise ValueError(f"{path}: {what}")


# ---------------------------------------------------------------- the records' schema
@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a record: what it must be (``expected``, as the error says it), the test
    (``ok(value)``), and whether a record may leave it out."""

    expected: str
    ok: Callable
    required: bool = True

    def optional(self):
        return dataclasses.replace(self, required=False)


def is_image_name(value):
    """A file name that survives a line of a text file: a non-empty string without line
    breaks (any ``str.splitlines`` splits on) or control characters."""
    return (isinstance(value, str) and value.strip() != "" and len(value.splitlines()) == 1
            and not any(unicodedata.category(ch) == "Cc" for ch in value))


NAME = Field("a non-empty file name on one line (no line breaks or control characters)",
             is_image_name)
ID = Field("an integer or a string", lambda v: isinstance(v, (int, str)) and not isinstance(v, bool))
TEXT = Field("a string", lambda v: isinstance(v, str))
TOKENS = Field("a list of strings", lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v))
RECORDS = Field("a list of records", lambda v: isinstance(v, list))
COCO_IMAGE = {"id": ID, "file_name": NAME}
COCO_ANNOTATION = {"image_id": ID, "caption": TEXT, "id": ID.optional()}
KARPATHY_IMAGE = {"filename": NAME, "filepath": NAME.optional(), "sentences": RECORDS,
                  "split": Field(f"one of {', '.join(_KARPATHY_SPLITS)}",
                                 lambda v: isinstance(v, str) and v in _KARPATHY_SPLITS, False)}
KARPATHY_SENTENCE = {"raw": TEXT.optional(), "tokens": TOKENS.optional()}


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _record(path, where, obj, spec):
    """The fields of record ``obj`` (``where``: its place, e.g. ``images[3]``) by ``spec``:
    {field: value, None where an optional field is absent}; ValueError naming the file, the
    record, the field and what it should be otherwise."""
    _need(isinstance(obj, dict), path, f"{where} must be a JSON object (a record), got {_short(obj)}")
    out = {}
    for name, field in spec.items():
        if name not in obj:
            _need(not field.required, path, f"{where}.{name} is missing; it must be {field.expected}")
            out[name] = None
            continue
        _need(field.ok(obj[name]), path, f"{where}.{name} must be {field.expected}, got "
                                         f"{_short(obj[name])}")
        out[name] = obj[name]
    return out


def _records(path, doc, key):
    """The list ``doc[key]``."""
    _need(key in doc, path, f"'{key}' is missing; it must be {RECORDS.expected}")
    _need(RECORDS.ok(doc[key]), path, f"'{key}' must be {RECORDS.expected}, got {_short(doc[key])}")
    return doc[key]


def _add(corpus, name, tokens):
    caps = corpus.images.setdefault(name, [])
    if tokens:
        caps.append(tokens)
    else:
        corpus.dropped["empty captions"] += 1


def _finish(corpus):
    for name in [n for n, caps in corpus.images.items() if not caps]:
        del corpus.images[name]
        corpus.split.pop(name, None)
        corpus.dropped["images without captions"] += 1
    return corpus


def _coco(doc, path):
    images, anns = _records(path, doc, "images"), _records(path, doc, "annotations")
    corpus = Corpus("coco", {}, {}, collections.Counter())
    by_id = {}
    for k, im in enumerate(images):
        im = _record(path, f"images[{k}]", im, COCO_IMAGE)
        name, iid = im["file_name"].strip(), im["id"]
        if iid in by_id and by_id[iid] != name:
            raise ValueError(f"{path}: image id {iid!r} is listed twice, as {by_id[iid]!r} and "
                             f"{name!r}")
        by_id[iid] = name
        corpus.images.setdefault(name, [])
    seen = set()
    for k, a in enumerate(anns):
        a = _record(path, f"annotations[{k}]", a, COCO_ANNOTATION)
        if a["id"] is not None:
            if a["id"] in seen:
                raise ValueError(f"{path}: annotation id {a['id']!r} is used twice "
                                 f"(annotations[{k}])")
            seen.add(a["id"])
        if a["image_id"] not in by_id:
            raise ValueError(f"{path}: annotations[{k}] refers to image id {a['image_id']!r}, "
                             "which 'images' does not list")
        _add(corpus, by_id[a["image_id"]], tokenize(a["caption"]))
    return corpus


def _karpathy(doc, path):
    corpus = Corpus("karpathy", {}, {}, collections.Counter())
    for k, im in enumerate(_records(path, doc, "images")):
        im = _record(path, f"images[{k}]", im, KARPATHY_IMAGE)
        name = im["filename"].strip()
        if im["filepath"] is not None:
            name = os.path.join(im["filepath"].strip(), name)
        split = im["split"] or "train"
        if name in corpus.images or name in corpus.split:
            raise ValueError(f"{path}: image {name!r} is listed twice (images[{k}])")
        if _KARPATHY_SPLITS[split] is None:
            corpus.dropped[f"{split} images"] += 1
            continue
        corpus.split[name] = _KARPATHY_SPLITS[split]
        corpus.images[name] = []
        for j, s in enumerate(im["sentences"]):
            s = _record(path, f"images[{k}].sentences[{j}]", s, KARPATHY_SENTENCE)
            _need(s["raw"] is not None or s["tokens"] is not None, path,
                  f"images[{k}].sentences[{j}] has neither 'raw' ({TEXT.expected}) nor "
                  f"'tokens' ({TOKENS.expected})")
            # the raw sentence when there is one, tokenized as a COCO caption is
            _add(corpus, name, tokenize(s["raw"] if s["raw"] is not None else " ".join(s["tokens"])))
    return corpus


def _lines(text):
    """(line number, line) of the lines of ``text`` that hold something: split at newlines
    only (a caption may hold U+2028 and other separators str.splitlines splits at)."""
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield n, line


_FLICKR_LINE = re.compile(r"^(?P<name>[^\t#]+)#(?P<k>\d+)\t(?P<caption>.*)$")


def _flickr8k(text, path, split_lists):
    corpus = Corpus("flickr8k", {}, {}, collections.Counter())
    seen = set()
    for n, line in _lines(text):
        m = _FLICKR_LINE.match(line)
        if m is None:
            raise ValueError(f"{path}: line {n} is not IMAGE#K<TAB>caption: {line[:80]!r}")
        _need(is_image_name(m["name"]), path, f"line {n}: the image name must be {NAME.expected}, "
                                              f"got {_short(m['name'])}")
        key = (m["name"].strip(), int(m["k"]))
        if key in seen:
            raise ValueError(f"{path}: line {n} repeats caption {key[0]}#{key[1]}")
        seen.add(key)
        _add(corpus, key[0], tokenize(m["caption"]))
    if split_lists:
        for split, list_path in split_lists.items():
            _need(split in SPLITS, path, f"split lists are for {', '.join(SPLITS)}, got {split!r}")
            for n, name in _lines(_read_text(list_path)):
                _need(is_image_name(name), list_path, f"line {n} must be {NAME.expected}, got "
                                                      f"{_short(name)}")
                name = name.strip()
                if name in corpus.split and corpus.split[name] != split:
                    raise ValueError(f"{list_path}: image {name} is also in the "
                                     f"{corpus.split[name]} list")
                corpus.split[name] = split
        for name in [n for n in corpus.images if n not in corpus.split]:
            del corpus.images[name]
            corpus.dropped["images in no split list"] += 1
        for name in [n for n in corpus.split if n not in corpus.images]:
            del corpus.split[name]
    return corpus


def read_captions(path, split_lists=None):
    """The Corpus of a captions file (see the module docstring); ``split_lists`` is
    {"train": path, "val": path} for a Flickr8k token file."""
    text = _read_text(path)
    doc = None
    if text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except RecursionError:
            raise ValueError(f"{path} is JSON nested too deeply") from None
        except ValueError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if doc is None:
        corpus = _flickr8k(text, path, split_lists)
    else:
        if split_lists:
            raise ValueError(f"{path}: split lists go with a Flickr8k token file, not JSON")
        _need(isinstance(doc, dict) and "images" in doc, path,
              "a JSON captions file must be an object with 'images' (COCO: and 'annotations'; "
              "Karpathy: 'images' with 'sentences')")
        corpus = _coco(doc, path) if "annotations" in doc else _karpathy(doc, path)
    corpus = _finish(corpus)
    if not corpus.images:
        raise ValueError(f"{path}: no image has a caption with words")
    return corpus
