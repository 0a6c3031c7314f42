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

Untrusted input: every structural problem raises ValueError naming the file
and the entry. An image listed twice under conflicting names, or a caption id
used twice, is an error; an exact repeat of an image entry is merged.
Captions with no words after tokenization and images left without captions
are dropped and counted in ``Corpus.dropped``.
"""
import collections
import dataclasses
import json
import os
import re
import unicodedata

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


def _name(value, path, where):
    _need(isinstance(value, str) and value.strip() and "\0" not in value, path,
          f"{where} must be a non-empty file name, got {str(value)[:60]!r}")
    return value.strip()


def _coco(doc, path):
    images, anns = doc["images"], doc["annotations"]
    _need(isinstance(images, list) and isinstance(anns, list), path,
          "'images' and 'annotations' must be lists")
    corpus = Corpus("coco", {}, {}, collections.Counter())
    by_id = {}
    for k, im in enumerate(images):
        _need(isinstance(im, dict) and "id" in im and "file_name" in im, path,
              f"images[{k}] needs 'id' and 'file_name'")
        name = _name(im["file_name"], path, f"images[{k}].file_name")
        iid = im["id"]
        _need(isinstance(iid, (int, str)) and not isinstance(iid, bool), path,
              f"images[{k}].id must be an integer or string, got {iid!r}")
        if iid in by_id and by_id[iid] != name:
            raise ValueError(f"{path}: image id {iid!r} is listed twice, as {by_id[iid]!r} and "
                             f"{name!r}")
        by_id[iid] = name
        corpus.images.setdefault(name, [])
    seen = set()
    for k, a in enumerate(anns):
        _need(isinstance(a, dict) and "image_id" in a and "caption" in a, path,
              f"annotations[{k}] needs 'image_id' and 'caption'")
        _need(isinstance(a["caption"], str), path, f"annotations[{k}].caption must be a string")
        if "id" in a:
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
    _need(isinstance(doc["images"], list), path, "'images' must be a list")
    for k, im in enumerate(doc["images"]):
        _need(isinstance(im, dict) and "filename" in im and "sentences" in im, path,
              f"images[{k}] needs 'filename' and 'sentences'")
        name = _name(im["filename"], path, f"images[{k}].filename")
        if im.get("filepath"):
            name = os.path.join(_name(im["filepath"], path, f"images[{k}].filepath"), name)
        split = im.get("split", "train")
        _need(split in _KARPATHY_SPLITS, path, f"images[{k}].split must be one of "
                                               f"{', '.join(_KARPATHY_SPLITS)}, got {split!r}")
        if name in corpus.images or name in corpus.split:
            raise ValueError(f"{path}: image {name!r} is listed twice (images[{k}])")
        if _KARPATHY_SPLITS[split] is None:
            corpus.dropped[f"{split} images"] += 1
            continue
        corpus.split[name] = _KARPATHY_SPLITS[split]
        corpus.images[name] = []
        _need(isinstance(im["sentences"], list), path, f"images[{k}].sentences must be a list")
        for j, s in enumerate(im["sentences"]):
            _need(isinstance(s, dict) and ("tokens" in s or "raw" in s), path,
                  f"images[{k}].sentences[{j}] needs 'tokens' or 'raw'")
            if isinstance(s.get("raw"), str):
                tokens = tokenize(s["raw"])
            else:
                _need(isinstance(s["tokens"], list) and all(isinstance(t, str) for t in s["tokens"]),
                      path, f"images[{k}].sentences[{j}].tokens must be a list of strings")
                tokens = tokenize(" ".join(s["tokens"]))
            _add(corpus, name, tokens)
    return corpus


_FLICKR_LINE = re.compile(r"^(?P<name>[^\t#]+)#(?P<k>\d+)\t(?P<caption>.*)$")


def _flickr8k(text, path, split_lists):
    corpus = Corpus("flickr8k", {}, {}, collections.Counter())
    seen = set()
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _FLICKR_LINE.match(line.rstrip("\r"))
        if m is None:
            raise ValueError(f"{path}: line {n} is not IMAGE#K<TAB>caption: {line[:80]!r}")
        key = (m["name"].strip(), int(m["k"]))
        if key in seen:
            raise ValueError(f"{path}: line {n} repeats caption {key[0]}#{key[1]}")
        seen.add(key)
        _add(corpus, key[0], tokenize(m["caption"]))
    if split_lists:
        for split, list_path in split_lists.items():
            _need(split in SPLITS, path, f"split lists are for {', '.join(SPLITS)}, got {split!r}")
            for name in _read_text(list_path).split():
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
