"""Deterministic generator of a small, learnable captioning dataset.

The output mimics the CS231n ``coco_captioning`` data: the same keys, dtypes
and shapes as ``load_coco_data`` returns (and, written by
``fastcap.data.make.write_coco_data``, the same files on disk). The data are synthetic but not noise: every image has
latent attributes (subject, how many, colour/adjective, action, place,
optional second object with its own adjective), its captions are English
sentences about those attributes built from a few paraphrase templates, and
its features are a fixed random linear map of the attributes plus a little
Gaussian noise. A model can therefore learn features -> captions, and the
validation captions are predictable from the validation features.

Everything is drawn from ``np.random.default_rng`` children of one
``SeedSequence(seed)``, so the same arguments give bit-identical output.
"""
import functools
import re

import numpy as np

from ..model.validate import SPECIAL_TOKENS as MODEL_TOKENS
from ..runtime.memory import reserve
from .generated_grid import GRID_DEFAULTS, SIZES, grid_features, layout_boxes

# The data `fastcap train` makes when no --data is given (and `fastcap make-data`'s defaults).
GENERATED_DEFAULTS = {"num_train_images": 2000, "num_val_images": 500, "captions_per_image": 5,
                      "pca_dim": 512, "full_dim": 4096, "seed": 0}

__all__ = ["generate_coco_data", "generated_grid_blocks", "generated_url", "parse_generated_url",
           "image_scene", "check_grid_args", "GRID_DEFAULTS"]

NULL, START, END = MODEL_TOKENS  # the tokens the model feeds and compares
UNK = "<UNK>"
SPECIAL_TOKENS = (NULL, START, END, UNK)  # indices 0-3, as in CS231n
CAPTION_LENGTH = 17  # columns: <START>, up to 15 words, <END>, <NULL> padding
MAX_WORDS = CAPTION_LENGTH - 2

# ---------------------------------------------------------------- vocabulary
# Subjects need plural forms because "two"/"three" are attributes.
_SUBJECTS = (
    ("man", "men"), ("woman", "women"), ("boy", "boys"), ("girl", "girls"),
    ("child", "children"), ("person", "people"), ("player", "players"),
    ("skier", "skiers"), ("surfer", "surfers"), ("dog", "dogs"),
    ("cat", "cats"), ("horse", "horses"), ("cow", "cows"), ("sheep", "sheep"),
    ("bird", "birds"), ("bear", "bears"), ("elephant", "elephants"),
    ("giraffe", "giraffes"), ("zebra", "zebras"), ("duck", "ducks"),
)
# Second objects are always singular; disjoint from subjects and places so a
# caption's subject is its first subject-list word.
_OBJECTS = (
    "ball", "frisbee", "kite", "umbrella", "bicycle", "car", "truck", "boat",
    "bench", "tree", "bag", "hat",
)
_ADJECTIVES = (
    "red", "blue", "green", "yellow", "white", "black", "brown", "orange",
    "small", "large", "young", "old",
)
_N_OBJECT_ADJECTIVES = 10  # objects take only colours and sizes ("a young kite" is odd)
_ACTIONS = (
    "sitting", "standing", "walking", "running", "playing", "eating",
    "sleeping", "lying", "waiting", "jumping", "resting", "posing",
    "drinking", "relaxing", "wandering",
)
_PLACES = (  # (preposition, noun): the preposition is fixed by the place
    ("on", "beach"), ("in", "park"), ("in", "kitchen"), ("on", "street"),
    ("in", "field"), ("in", "room"), ("in", "forest"), ("near", "lake"),
    ("on", "road"), ("in", "garden"), ("in", "snow"), ("on", "grass"),
    ("in", "yard"), ("on", "sidewalk"), ("at", "zoo"),
)
_FUNCTION_WORDS = (
    "a", "an", "the", "two", "three", "is", "are", "there", "with", "next",
    "to", "near", "on", "in", "at",
)
# Deliberately outside the vocabulary: they are encoded as <UNK>, like the
# rare words CS231n's vocabulary threshold drops.
_RARE_WORDS = ("fluffy", "shaggy", "spotted", "scruffy", "lanky", "tiny")

_COUNT_WORDS = ("a", "two", "three")  # "a" becomes "an" before a vowel
_COUNT_PROBS = (0.6, 0.25, 0.15)
_P_SUBJECT_ADJ = 0.7
_P_OBJECT = 0.7
_P_OBJECT_ADJ = 0.7

# Paraphrase templates. Slots: NP = count [adj] [rare] subject, BE = is/are,
# ACT = action, PP = preposition "the" place, OBJ = relation "a" [adj] object
# (empty when the image has none). Without optional parts they are 3-8 words,
# with all of them at most 15 (template "there" + adj + rare + "next to a red car").
_TEMPLATES = (
    ("NP", "BE", "ACT", "PP", "OBJ"),
    ("NP", "ACT", "PP", "OBJ"),
    ("there", "BE", "NP", "ACT", "PP", "OBJ"),
    ("NP", "OBJ", "BE", "ACT", "PP"),
    ("NP", "BE", "ACT", "OBJ"),
    ("NP", "OBJ", "PP"),
    ("NP", "ACT"),  # terse, like "two dogs running"
)
_TEMPLATE_PROBS = (0.30, 0.20, 0.20, 0.15, 0.07, 0.05, 0.03)
_RELATIONS = (("with",), ("near",), ("next", "to"))
_RELATION_PROBS = (0.5, 0.25, 0.25)
_P_DROP_ADJ = 0.1  # a caption sometimes omits the subject's adjective, as people do
_P_RARE = 0.04  # chance a caption adds a rare (-> <UNK>) word before the subject

_NOISE_STD = 0.1  # feature noise; the attribute signal has unit variance per dimension


def _build_vocab():
    words = list(SPECIAL_TOKENS) + list(_FUNCTION_WORDS)
    for singular, plural in _SUBJECTS:
        words += [singular, plural]
    words += list(_OBJECTS) + list(_ADJECTIVES) + list(_ACTIONS)
    words += [noun for _, noun in _PLACES]
    idx_to_word = list(dict.fromkeys(words))  # drop repeats ("sheep"), keep order
    assert not set(idx_to_word) & set(_RARE_WORDS)
    return idx_to_word


_IDX_TO_WORD = _build_vocab()

# Attribute groups that feed the features, with how many values each takes.
# Optional attributes use value -1 for "absent", stored as row 0 of the group.
_GROUPS = (
    ("subject", len(_SUBJECTS), False),
    ("count", len(_COUNT_WORDS), False),
    ("subject_adj", len(_ADJECTIVES), True),
    ("action", len(_ACTIONS), False),
    ("place", len(_PLACES), False),
    ("object", len(_OBJECTS), True),
    ("object_adj", _N_OBJECT_ADJECTIVES, True),
)

# Independent RNG streams, so e.g. the train split does not change when
# num_val_images does, and the PCA features do not depend on full_features.
(_S_TABLES, _S_TRAIN_ATTRS, _S_VAL_ATTRS, _S_TRAIN_CAPS, _S_VAL_CAPS,
 _S_TRAIN_NOISE, _S_VAL_NOISE, _S_TRAIN_NOISE_FULL, _S_VAL_NOISE_FULL,
 _S_GRID_TABLE, _S_TRAIN_GRID_NOISE, _S_VAL_GRID_NOISE) = range(12)
# SeedSequence.spawn(n)'s first children do not depend on n: the streams added for the grid
# leave every other array as it was.
_STREAMS = 12


# ---------------------------------------------------------------- helpers
def _check_int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _optional(rng, n, n_values, p_present, present_mask=None):
    """Values in [0, n_values) with probability p_present, else -1."""
    present = rng.random(n) < p_present
    if present_mask is not None:
        present &= present_mask
    values = rng.integers(0, n_values, size=n)
    return np.where(present, values, -1)


def _draw_attributes(rng, n):
    """Latent attributes of n images: dict name -> int64 (n,), -1 = absent."""
    attrs = {
        "subject": rng.integers(0, len(_SUBJECTS), size=n),
        "count": rng.choice(len(_COUNT_WORDS), size=n, p=_COUNT_PROBS),
        "subject_adj": _optional(rng, n, len(_ADJECTIVES), _P_SUBJECT_ADJ),
        "action": rng.integers(0, len(_ACTIONS), size=n),
        "place": rng.integers(0, len(_PLACES), size=n),
        "object": _optional(rng, n, len(_OBJECTS), _P_OBJECT),
    }
    attrs["object_adj"] = _optional(
        rng, n, _N_OBJECT_ADJECTIVES, _P_OBJECT_ADJ, present_mask=attrs["object"] >= 0
    )
    return attrs


def _article_for(word):
    return "an" if word[0] in "aeiou" else "a"


def _caption_words(a, template, relation, drop_adj, rare):
    """English words (no special tokens) for one caption of attributes ``a``."""
    plural = a["count"] > 0
    singular_word, plural_word = _SUBJECTS[a["subject"]]
    np_words = []
    if a["subject_adj"] >= 0 and not drop_adj:
        np_words.append(_ADJECTIVES[a["subject_adj"]])
    if rare >= 0:
        np_words.append(_RARE_WORDS[rare])
    np_words.append(plural_word if plural else singular_word)
    det = _COUNT_WORDS[a["count"]] if plural else _article_for(np_words[0])
    np_words.insert(0, det)

    obj_words = []
    if a["object"] >= 0:
        tail = [_OBJECTS[a["object"]]]
        if a["object_adj"] >= 0:
            tail.insert(0, _ADJECTIVES[a["object_adj"]])
        obj_words = list(_RELATIONS[relation]) + [_article_for(tail[0])] + tail

    prep, place = _PLACES[a["place"]]
    slots = {
        "NP": np_words,
        "BE": ["are" if plural else "is"],
        "ACT": [_ACTIONS[a["action"]]],
        "PP": [prep, "the", place],
        "OBJ": obj_words,
    }
    words = []
    for slot in _TEMPLATES[template]:
        words += slots.get(slot, [slot])  # anything not a slot is a literal word
    return words


def _make_captions(rng, attrs, captions_per_image, word_to_idx):
    """int32 (n_images * captions_per_image, 17) captions and their image idxs."""
    n_images = len(attrs["subject"])
    n = n_images * captions_per_image
    image_idxs = np.repeat(np.arange(n_images, dtype=np.int32), captions_per_image)
    # Per-caption wording choices are drawn in bulk; only assembly loops.
    templates = rng.choice(len(_TEMPLATES), size=n, p=_TEMPLATE_PROBS)
    relations = rng.choice(len(_RELATIONS), size=n, p=_RELATION_PROBS)
    drop_adj = rng.random(n) < _P_DROP_ADJ
    rare = _optional(rng, n, len(_RARE_WORDS), _P_RARE)

    columns = {k: v.tolist() for k, v in attrs.items()}  # Python ints for the loop
    per_image = [dict(zip(columns, vals)) for vals in zip(*columns.values())]
    start, end, null, unk = (word_to_idx[t] for t in (START, END, NULL, UNK))
    rows = []
    for img, tmpl, rel, drop, rw in zip(image_idxs.tolist(), templates.tolist(),
                                        relations.tolist(), drop_adj.tolist(),
                                        rare.tolist()):
        words = _caption_words(per_image[img], tmpl, rel, drop, rw)
        assert len(words) <= MAX_WORDS, words
        tokens = [start] + [word_to_idx.get(w, unk) for w in words] + [end]
        rows.append(tokens + [null] * (CAPTION_LENGTH - len(tokens)))
    captions = np.array(rows, dtype=np.int32).reshape(n, CAPTION_LENGTH)
    return captions, image_idxs


def _feature_tables(rng, full_dim, pca_dim):
    """Per-attribute-value feature rows: (K, full_dim) float32 and (K, pca_dim) float32.

    The full ("fc7") map is random Gaussian; the "PCA" map is that map followed
    by a fixed random reduction to pca_dim, so both see the same signal. Each
    row has variance 1/len(_GROUPS), so a summed image signal has unit variance.
    """
    n_rows = sum(size + optional for _, size, optional in _GROUPS)
    scale = 1.0 / np.sqrt(len(_GROUPS))
    full = rng.standard_normal((n_rows, full_dim), dtype=np.float32)
    full *= np.float32(scale)
    reduce = rng.standard_normal((full_dim, pca_dim), dtype=np.float32)
    reduce *= np.float32(1.0 / np.sqrt(full_dim))
    return full, full @ reduce


def _feature_rows(attrs):
    """Row of the feature table for each (image, attribute group): int (n, G)."""
    rows, offset = [], 0
    for name, size, optional in _GROUPS:
        values = attrs[name] + 1 if optional else attrs[name]  # absent -> row 0
        rows.append(values + offset)
        offset += size + optional
    return np.stack(rows, axis=1)


def _features(table, rows, rng):
    """Sum of the images' attribute rows plus Gaussian noise, float32 (n, dim)."""
    n, dim = rows.shape[0], table.shape[1]
    out = rng.standard_normal((n, dim), dtype=np.float32)
    out *= np.float32(_NOISE_STD)
    for g in range(rows.shape[1]):  # one gather per group, not per element
        out += table[rows[:, g]]
    return out


# ---------------------------------------------------------------- public API
def generate_coco_data(num_train_images=1000, num_val_images=200, captions_per_image=5,
                       pca_dim=512, full_dim=4096, seed=0, full_features=False, grid_size=None,
                       grid_dim=GRID_DEFAULTS["grid_dim"]):
    """Generate a synthetic captioning dataset shaped like CS231n's ``load_coco_data``.

    Returns a dict with
      - ``train_captions`` / ``val_captions``: int32 (num_images * captions_per_image, 17);
        ``<START>``, at most 15 words, ``<END>``, then ``<NULL>`` padding.
        Captions are grouped by image (image 0's captions first).
      - ``train_image_idxs`` / ``val_image_idxs``: int32 (num_captions,), row of the
        split's feature matrix.
      - ``train_features`` / ``val_features``: float32 (num_images, pca_dim), the
        "PCA" features.
      - with ``full_features=True`` also ``train_features_full`` /
        ``val_features_full``: float32 (num_images, full_dim), the "fc7" features.
      - with ``grid_size`` (cells per side) also ``train_grid`` / ``val_grid``: float32
        (num_images, grid_size**2, grid_dim), the spatial features (``generated_grid_blocks``),
        and ``grid_shape``: (grid_size, grid_size).
      - ``idx_to_word``: list of str; ``word_to_idx``: dict str -> int. Indices 0-3
        are ``<NULL>``, ``<START>``, ``<END>``, ``<UNK>``.
      - ``train_urls`` / ``val_urls``: str arrays (num_images,), ``generated_url``s
        (``generated://val2014/000003.jpg?seed=0&images=500``), which name the
        image completely: ``fastcap.image_utils.image_from_url`` draws its scene.

    Same arguments give bit-identical output; a different ``seed`` (non-negative
    int) gives different data. The vocabulary is fixed, independent of the seed.
    Raises ValueError for non-integer or out-of-range sizes.
    """
    num_train_images = _check_int("num_train_images", num_train_images, 1)
    num_val_images = _check_int("num_val_images", num_val_images, 1)
    captions_per_image = _check_int("captions_per_image", captions_per_image, 1)
    pca_dim = _check_int("pca_dim", pca_dim, 1)
    full_dim = _check_int("full_dim", full_dim, 1)
    if full_dim < pca_dim:
        raise ValueError(f"full_dim must be >= pca_dim ({pca_dim}), got {full_dim}")
    seed = _check_int("seed", seed, 0)
    cells = 0
    if grid_size is not None:
        grid_size, grid_dim = check_grid_args(grid_size, grid_dim)
        cells = grid_size ** 2
    # The features (and their noise, drawn at full size) dominate; checked before any is drawn.
    n_images = num_train_images + num_val_images
    reserve(2 * 4 * n_images * (pca_dim + (full_dim if full_features else 0) + cells * grid_dim)
            + 2 * 4 * n_images * captions_per_image * CAPTION_LENGTH, "the generated data",
            f"num_train_images={num_train_images}, num_val_images={num_val_images}, "
            f"captions_per_image={captions_per_image}, pca_dim={pca_dim}, full_dim={full_dim}")

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(_STREAMS)]
    idx_to_word = list(_IDX_TO_WORD)
    word_to_idx = {w: i for i, w in enumerate(idx_to_word)}
    table_full, table_pca = _feature_tables(rngs[_S_TABLES], full_dim, pca_dim)

    data = {}
    splits = (
        ("train", num_train_images, _S_TRAIN_ATTRS, _S_TRAIN_CAPS, _S_TRAIN_NOISE,
         _S_TRAIN_NOISE_FULL),
        ("val", num_val_images, _S_VAL_ATTRS, _S_VAL_CAPS, _S_VAL_NOISE, _S_VAL_NOISE_FULL),
    )
    for split, n_images, s_attrs, s_caps, s_noise, s_noise_full in splits:
        attrs = _draw_attributes(rngs[s_attrs], n_images)
        captions, image_idxs = _make_captions(rngs[s_caps], attrs, captions_per_image,
                                              word_to_idx)
        rows = _feature_rows(attrs)
        data[f"{split}_captions"] = captions
        data[f"{split}_image_idxs"] = image_idxs
        data[f"{split}_features"] = _features(table_pca, rows, rngs[s_noise])
        if full_features:
            data[f"{split}_features_full"] = _features(table_full, rows, rngs[s_noise_full])
        if grid_size is not None:
            data[f"{split}_grid"] = np.concatenate(list(generated_grid_blocks(
                split, n_images, seed, grid_size, grid_dim, attrs=attrs)))
        data[f"{split}_urls"] = np.array(
            [generated_url(split, i, n_images, seed) for i in range(n_images)]
        )
    data["idx_to_word"] = idx_to_word
    data["word_to_idx"] = word_to_idx
    if grid_size is not None:
        data["grid_shape"] = (grid_size, grid_size)
    return data


# ---------------------------------------------------------------- grid features
_ADJ_SCALE = np.array([SIZES.get(w, 1.0) for w in _ADJECTIVES] + [1.0])  # [-1]: no adjective
_GROUP_COLUMNS = {name: k for k, (name, _, _) in enumerate(_GROUPS)}
_SUBJECT_PARTS = [_GROUP_COLUMNS[k] for k in ("subject", "count", "subject_adj", "action")]
_OBJECT_PARTS = [_GROUP_COLUMNS[k] for k in ("object", "object_adj")]
_GRID_NOISE = {"train": _S_TRAIN_GRID_NOISE, "val": _S_VAL_GRID_NOISE}


def check_grid_args(grid_size, grid_dim):
    """(grid_size, grid_dim) as ints; ValueError unless both are positive integers."""
    return _check_int("grid_size", grid_size, 1), _check_int("grid_dim", grid_dim, 1)


def generated_grid_blocks(split, num_images, seed, grid_size=GRID_DEFAULTS["grid_size"],
                          grid_dim=GRID_DEFAULTS["grid_dim"], block=256, attrs=None):
    """The grid features of a generated split (fastcap.data.generated_grid), ``block`` images
    at a time: float32 (k, grid_size**2, grid_dim) arrays in image order, the same values
    whatever ``block``. attrs: the split's attributes, when the caller has drawn them."""
    streams = np.random.SeedSequence(seed).spawn(_STREAMS)
    attrs = attrs if attrs is not None else _split_attributes(split, num_images, seed)
    table = np.random.default_rng(streams[_S_GRID_TABLE]).standard_normal(
        (sum(size + optional for _, size, optional in _GROUPS), grid_dim), dtype=np.float32)
    table *= np.float32(1.0 / np.sqrt(len(_GROUPS)))  # as the pooled features' rows
    rows = _feature_rows(attrs)
    boxes = layout_boxes(_ADJ_SCALE[attrs["subject_adj"]], _ADJ_SCALE[attrs["object_adj"]],
                         attrs["object"] >= 0)
    noise = np.random.default_rng(streams[_GRID_NOISE[split]])
    for a in range(0, num_images, block):
        b = min(a + block, num_images)
        yield grid_features(table, rows[a:b, _GROUP_COLUMNS["place"]], rows[a:b, _SUBJECT_PARTS],
                            rows[a:b, _OBJECT_PARTS], (boxes[0][a:b], boxes[1][a:b]),
                            (grid_size, grid_size), _NOISE_STD, noise)


# ---------------------------------------------------------------- one image's scene
# A generated image's URL names its split, index, the split's size and the
# seed: an image's attributes are drawn together with the whole split's, so
# all four are needed to recover them.
_SPLIT_STREAMS = {"train": _S_TRAIN_ATTRS, "val": _S_VAL_ATTRS}
_URL_RE = re.compile(r"generated://(train|val)2014/(\d{6,})\.jpg\?seed=(\d+)&images=(\d+)")
_URL_FORM = "generated://{train|val}2014/NNNNNN.jpg?seed=S&images=N"
MAX_URL_IMAGES = 2_000_000  # a URL is untrusted: bound the arrays it makes us draw


def generated_url(split, index, num_images, seed):
    """The URL of image ``index`` of a generated split of ``num_images`` images."""
    return f"generated://{split}2014/{index:06d}.jpg?seed={seed}&images={num_images}"


def parse_generated_url(url):
    """(split, index, num_images, seed) of a ``generated_url``.

    Raises ValueError naming the URL and the expected form when it is not one
    (including an index outside the split or more than MAX_URL_IMAGES images).
    """
    m = _URL_RE.fullmatch(str(url))
    if m is None:
        raise ValueError(f"{url!r} is not a generated image URL of the form {_URL_FORM}")
    split, index, seed, n = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    if not 1 <= n <= MAX_URL_IMAGES:
        raise ValueError(f"{url!r}: images must be between 1 and {MAX_URL_IMAGES:,}, got {n}")
    if index >= n:
        raise ValueError(f"{url!r}: image {index} is outside a split of {n} images")
    return split, index, n, seed


@functools.lru_cache(maxsize=4)
def _split_attributes(split, num_images, seed):
    # The same stream generate_coco_data draws the split's attributes from.
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(_STREAMS)[_SPLIT_STREAMS[split]])
    return _draw_attributes(rng, num_images)


def image_scene(url):
    """What the generator knows about the image of a ``generated_url``, as words.

    Returns a dict: ``subject`` (singular noun, e.g. "dog"), ``subject_plural``
    ("dogs"), ``count`` (1-3) and ``count_word`` ("a", "two", "three"),
    ``subject_adj`` (e.g. "red", "small", or None), ``action`` ("running"),
    ``preposition`` and ``place`` ("on", "beach"), ``object`` ("ball" or None)
    and ``object_adj`` (a colour or size, or None). Every caption of the image
    is a sentence about exactly these. Raises ValueError for a malformed URL.
    """
    split, index, num_images, seed = parse_generated_url(url)
    a = {k: int(v[index]) for k, v in _split_attributes(split, num_images, seed).items()}
    prep, place = _PLACES[a["place"]]
    return {
        "subject": _SUBJECTS[a["subject"]][0],
        "subject_plural": _SUBJECTS[a["subject"]][1],
        "count": a["count"] + 1,
        "count_word": _COUNT_WORDS[a["count"]],
        "subject_adj": _ADJECTIVES[a["subject_adj"]] if a["subject_adj"] >= 0 else None,
        "action": _ACTIONS[a["action"]],
        "preposition": prep,
        "place": place,
        "object": _OBJECTS[a["object"]] if a["object"] >= 0 else None,
        "object_adj": _ADJECTIVES[a["object_adj"]] if a["object_adj"] >= 0 else None,
    }

