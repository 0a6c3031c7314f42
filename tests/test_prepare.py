"""fastcap prepare without a CNN: the three caption formats, tokenization, vocabulary, the
17-column encoding, the PCA and the resumable feature extraction (the CNN itself and the
whole prepare -> train -> caption path: test_caption.py)."""
import json
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastcap.data import prepare as P
from fastcap.data.captions import FORMATS, read_captions, tokenize
from fastcap.data.generated import CAPTION_LENGTH, MAX_WORDS, SPECIAL_TOKENS

# ---------------------------------------------------------------- tokenization
@given(st.text(max_size=80))
def test_tokenize_is_lowercase_words_without_punctuation_and_idempotent(text):
    tokens = tokenize(text)
    for t in tokens:
        assert t == t.lower()
        assert not any(ch.isspace() or unicodedata.category(ch)[0] in "PSC" for ch in t)
    assert tokenize(" ".join(tokens)) == tokens


def test_tokenize_as_cs231n():
    assert tokenize("A Man's  dog, running!\tFAST.") == ["a", "mans", "dog", "running", "fast"]
    assert tokenize("Un café «très» noir") == ["un", "café", "très", "noir"]
    assert tokenize("<UNK> <end>") == ["unk", "end"]  # never a special token
    assert tokenize(" ,.! ") == []


# ---------------------------------------------------------------- the three formats
WORD = st.sampled_from(["a", "dog", "red", "Café", "ball", "runs", "zürich", "über", "the"])
CAPTION = st.lists(WORD, min_size=0, max_size=6).map(lambda ws: " ".join(ws) + "." if ws else "  ")
IMAGE_NAME = st.from_regex(r"[a-z0-9_]{1,8}\.(jpg|png)", fullmatch=True)
CORPUS = st.dictionaries(IMAGE_NAME, st.lists(CAPTION, min_size=1, max_size=4), min_size=1,
                         max_size=6)


def _write(fmt, tmp_path, corpus, splits):
    """One corpus ({name: [caption]}) and split ({name: split}) in a format."""
    names = list(corpus)
    if fmt == "coco":
        doc = {"images": [{"id": 100 + i, "file_name": n} for i, n in enumerate(names)],
               "annotations": [{"id": 10 * i + k, "image_id": 100 + i, "caption": c}
                               for i, n in enumerate(names) for k, c in enumerate(corpus[n])]}
        path = tmp_path / "captions.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path, None
    if fmt == "karpathy":
        doc = {"images": [{"filename": n, "split": splits[n], "imgid": i,
                           "sentences": [{"raw": c} for c in corpus[n]]}
                          for i, n in enumerate(names)]}
        path = tmp_path / "dataset.json"
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        return path, None
    path = tmp_path / "token.txt"
    path.write_text("".join(f"{n}#{k}\t{c}\n" for n in names for k, c in enumerate(corpus[n])),
                    encoding="utf-8")
    lists = {}
    for split in ("train", "val"):
        lists[split] = tmp_path / f"{split}.txt"
        lists[split].write_text("".join(f"{n}\n" for n in names if splits[n] == split))
    return path, lists


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=25, deadline=None)
@given(corpus=CORPUS, val=st.lists(st.booleans(), min_size=6, max_size=6))
def test_every_format_reads_the_same_corpus(tmp_path_factory, fmt, corpus, val):
    tmp_path = tmp_path_factory.mktemp(fmt)
    splits = {n: "val" if v else "train" for n, v in zip(corpus, val)}
    path, lists = _write(fmt, tmp_path, corpus, splits)
    want = {n: [tokenize(c) for c in caps if tokenize(c)] for n, caps in corpus.items()}
    want = {n: caps for n, caps in want.items() if caps}
    if not want:
        with pytest.raises(ValueError, match="no image has a caption"):
            read_captions(path, lists)
        return
    got = read_captions(path, lists)
    assert got.format == fmt
    assert got.images == want
    assert got.split == ({} if fmt == "coco" else {n: splits[n] for n in want})
    empties = sum(not tokenize(c) for caps in corpus.values() for c in caps)
    assert got.dropped["empty captions"] == empties
    assert got.dropped["images without captions"] == len(corpus) - len(want)


def _coco(tmp_path, images, annotations):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


@pytest.mark.parametrize("images, annotations, message", [
    ([{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}], [],
     "image id 1 is listed twice"),
    ([{"id": 1, "file_name": "a.jpg"}], [{"id": 5, "image_id": 1, "caption": "x"},
                                         {"id": 5, "image_id": 1, "caption": "y"}],
     "annotation id 5 is used twice"),
    ([{"id": 1, "file_name": "a.jpg"}], [{"id": 5, "image_id": 2, "caption": "x"}],
     "refers to image id 2"),
    ([{"id": 1}], [], r"images\[0\].file_name is missing; it must be a non-empty file name"),
    ([{"id": 1, "file_name": ""}], [], "non-empty file name"),
    ([{"id": 1, "file_name": "a.jpg"}], [{"image_id": 1, "caption": 3}],
     r"annotations\[0\].caption must be a string, got 3"),
])
def test_coco_structural_errors_name_the_entry(tmp_path, images, annotations, message):
    with pytest.raises(ValueError, match=message):
        read_captions(_coco(tmp_path, images, annotations))


def test_coco_repeated_identical_image_is_merged(tmp_path):
    im = {"id": 7, "file_name": "a.jpg"}
    got = read_captions(_coco(tmp_path, [im, im], [{"id": 1, "image_id": 7, "caption": "A dog"}]))
    assert got.images == {"a.jpg": [["a", "dog"]]}


def test_karpathy_splits_and_duplicates(tmp_path):
    doc = {"images": [
        {"filename": "a.jpg", "filepath": "train2014", "split": "restval",
         "sentences": [{"tokens": ["a", "Dog"]}]},
        {"filename": "b.jpg", "split": "test", "sentences": [{"raw": "b"}]},
        {"filename": "c.jpg", "split": "val", "sentences": [{"raw": "A cat."}]}]}
    path = tmp_path / "k.json"
    path.write_text(json.dumps(doc))
    got = read_captions(path)
    assert got.split == {"train2014/a.jpg": "train", "c.jpg": "val"}
    assert got.dropped["test images"] == 1
    doc["images"].append(doc["images"][2])
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="'c.jpg' is listed twice"):
        read_captions(path)
    doc["images"][0]["split"] = "dev"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"images\[0\].split must be one of"):
        read_captions(path)


@pytest.mark.parametrize("text, message", [
    ("a.jpg#0\tA dog\nbad line\n", "line 2 is not IMAGE#K<TAB>caption"),
    ("a.jpg#0\tA dog\na.jpg#0\tA cat\n", "line 2 repeats caption a.jpg#0"),
])
def test_flickr8k_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_captions(path)


def test_flickr8k_image_in_two_lists_and_unlisted_images(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a.jpg#0\tA dog\nb.jpg#0\tA cat\nc.jpg#0\tA cow\n")
    (tmp_path / "tr").write_text("a.jpg\n")
    (tmp_path / "va").write_text("b.jpg\nmissing.jpg\n")
    got = read_captions(path, {"train": tmp_path / "tr", "val": tmp_path / "va"})
    assert got.split == {"a.jpg": "train", "b.jpg": "val"}
    assert got.dropped["images in no split list"] == 1
    (tmp_path / "va").write_text("a.jpg\n")
    with pytest.raises(ValueError, match="also in the train list"):
        read_captions(path, {"train": tmp_path / "tr", "val": tmp_path / "va"})


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00bad", "not UTF-8"), (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be an object with 'images'"), (b"[" * 100000, "not valid JSON|nested"),
])
def test_unreadable_captions_files(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_captions(path)


# ---------------------------------------------------------------- vocabulary and encoding
TOKENS = st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=20), min_size=1, max_size=30)


@given(TOKENS, st.integers(1, 4))
def test_vocab_and_encoding(token_lists, min_count):
    vocab = P.build_vocab(token_lists, min_count)
    assert tuple(vocab[:4]) == SPECIAL_TOKENS and len(set(vocab)) == len(vocab)
    counts = {}
    for t in token_lists:
        for w in t[:MAX_WORDS]:
            counts[w] = counts.get(w, 0) + 1
    assert set(vocab[4:]) == {w for w, c in counts.items() if c >= min_count}
    assert [counts[w] for w in vocab[4:]] == sorted((counts[w] for w in vocab[4:]), reverse=True)
    w2i = {w: i for i, w in enumerate(vocab)}
    enc = P.encode_captions(token_lists, w2i)
    assert enc.shape == (len(token_lists), CAPTION_LENGTH) and enc.dtype == np.int32
    for row, tokens in zip(enc, token_lists):
        n = min(len(tokens), MAX_WORDS)
        assert row[0] == w2i["<START>"] and row[n + 1] == w2i["<END>"]
        assert (row[n + 2:] == w2i["<NULL>"]).all()
        assert [vocab[i] for i in row[1:n + 1]] == [w if w in w2i else "<UNK>" for w in tokens[:n]]


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.integers(1, 12), st.integers(1, 8), st.integers(0, 2**16))
def test_pca_is_orthonormal_and_keeps_the_top_variance(n, d, k, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32) * \
        np.linspace(3, 0.1, d, dtype=np.float32)
    mean, comps = P.fit_pca(x, k)
    kk = min(k, n, d)
    assert comps.shape == (d, kk) and mean.shape == (d,)
    np.testing.assert_allclose(comps.T @ comps, np.eye(kk), atol=1e-4)
    y = P.apply_pca(x, mean, comps)
    var = np.linalg.eigvalsh(np.cov((x - mean).T.astype(np.float64), bias=True).reshape(d, d))
    np.testing.assert_allclose(y.astype(np.float64).var(axis=0).sum(),
                               np.sort(var)[::-1][:kk].sum(), rtol=1e-3, atol=1e-4)
    assert (comps[np.abs(comps).argmax(axis=0), np.arange(kk)] >= 0).all()


# ---------------------------------------------------------------- resumable extraction
class CountingExtractor:
    """features = the image's mean colour, repeated; fails after ``fail_after`` batches."""

    dim = 3

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def record(self):
        return {"extractor": "mean-colour"}

    def features(self, images, sources=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        return np.stack([im.reshape(-1, 3).mean(0) for im in images]).astype(np.float32)


def test_interrupted_extraction_resumes_from_its_chunks(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(P, "CHUNK", 4)
    paths = []
    for i in range(10):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (4, 4), (i, 2 * i, 3 * i)).save(paths[-1])
    partial = str(tmp_path / P.PARTIAL_DIR)
    with pytest.raises(KeyboardInterrupt):
        P._extract_all(paths, CountingExtractor(fail_after=2), partial, progress=False)
    again = CountingExtractor()
    out = P._extract_all(paths, again, partial, progress=False)
    assert again.calls == 1  # chunks 0 and 1 were kept; only the last one was computed
    np.testing.assert_allclose(out[:, 0], np.arange(10))
    other = CountingExtractor()  # other inputs: nothing reused
    P._extract_all(paths[::-1], other, partial, progress=False)
    assert other.calls == 3
    # a damaged chunk is recomputed, not trusted
    (tmp_path / P.PARTIAL_DIR / "chunk-000000.npy").write_bytes(b"junk")
    last = CountingExtractor()
    np.testing.assert_allclose(P._extract_all(paths[::-1], last, partial, progress=False)[:, 0],
                               np.arange(10)[::-1])
    assert last.calls == 1


def test_prepare_refuses_to_replace_files_it_did_not_write(tmp_path):
    (tmp_path / "imgs").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "coco2014_vocab.json").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        P.prepare(tmp_path / "c.json", tmp_path / "imgs", out)
    assert (out / "coco2014_vocab.json").read_text() == "mine"


def test_without_torch_prepare_says_what_to_install(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from fastcap.cli.main import main

    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / name)
    path = _coco(tmp_path, [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
                 [{"image_id": 1, "caption": "a dog"}, {"image_id": 2, "caption": "a cat"}])
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch now fails
    assert main(["prepare", str(path), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "out"), "--weights", "none", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastcap: error: image features need PyTorch")
    assert 'pip install "fastcap-rnn[vision]"' in err[0] and 'pip install ".[vision]"' in err[0]
    assert not (tmp_path / "out" / "coco2014_captions.h5").exists()


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["a.png", "sub/b.png", "./c.png", "../up.png"]),
       st.sampled_from(["http://x/y.jpg", "generated://val2014/000001.jpg?seed=0&images=2",
                        "file:///abs.jpg", "/abs/path.png"]))
def test_relative_image_paths_resolve_against_the_data_directory(tmp_path_factory, rel, kept):
    """Whatever the working directory, a relative path in *_urls.txt names a file beside the
    data; URLs and absolute paths are kept as written."""
    import os

    from fastcap.coco_utils import load_coco_data
    from fastcap.data.make import write_coco_data

    d = tmp_path_factory.mktemp("rel") / "data"
    write_coco_data(d, num_train_images=2, num_val_images=2, captions_per_image=1,
                    pca_dim=4, full_dim=8)
    (d / "val2014_urls.txt").write_text(f"{rel}\n{kept}\n")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path_factory.mktemp("elsewhere"))
        urls = load_coco_data(d)["val_urls"]
    finally:
        os.chdir(cwd)
    assert urls[0] == os.path.normpath(str(d / rel)) and urls[1] == kept


@pytest.mark.parametrize("content", [b"[]", b"{}", b'{"extractor": 1, "weights": "none"}',
                                     b"\xff", b"{" * 5000])
def test_a_damaged_features_record_is_one_clear_error(tmp_path, content):
    (tmp_path / P.FEATURES_FILE).write_bytes(content)
    with pytest.raises(ValueError, match=P.FEATURES_FILE):
        P.read_features_record(tmp_path)
    assert P.read_features_record(tmp_path / "nothing-here") is None


@pytest.mark.parametrize("kwargs, message", [
    ({"min_count": 0}, "--min-count must be an integer >= 1"),
    ({"val_fraction": 1.0}, r"--val-fraction must be a number in \[0, 1\)"),
    ({"extractor": "alexnet"}, "--extractor must be one of resnet50, vgg16"),
    ({"weights": None}, "--weights must be given"),
])
def test_prepare_checks_its_arguments_first(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        P.prepare(tmp_path / "no-captions.json", tmp_path, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_prepare_says_when_the_pca_is_smaller_than_asked(tmp_path, monkeypatch):
    """Fewer training images than --pca-dim: the PCA has as many dimensions as images, and
    prepare says so instead of dropping them silently."""
    from PIL import Image

    class Fake(CountingExtractor):
        dim = 6

        def __init__(self, *args):
            super().__init__()

        def features(self, images, sources=None):
            return np.stack([np.resize(im.reshape(-1).astype(np.float32), 6) for im in images])

    (tmp_path / "imgs").mkdir()
    images, anns = [], []
    for i in range(5):
        Image.new("RGB", (4, 4), (40 * i, 7 * i * i % 255, 3)).save(tmp_path / "imgs" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png"})
        anns.append({"image_id": i, "caption": "a dog"})
    path = _coco(tmp_path, images, anns)
    monkeypatch.setattr(P, "Extractor", Fake)
    said = []
    s = P.prepare(path, tmp_path / "imgs", tmp_path / "out", min_count=1, val_fraction=0.2,
                  pca_dim=512, progress=False, say=said.append)
    assert s["pca_dim"] == 4
    assert said == ["PCA: 4-d, not the 512 asked for (--pca-dim): a PCA has at most as many "
                    "dimensions as there are training images (4) and features (6)"]


def test_data_labels_name_the_network_that_made_the_features():
    from fastcap.data.load import describe_data

    spec = {"source": "dir", "path": "/d", "pca": True, "features": {"extractor": "resnet50"}}
    assert describe_data(spec) == "/d (resnet50 PCA features)"
    assert describe_data(dict(spec, pca=False)) == "/d (resnet50 features)"
    spec.pop("features")  # the CS231n files: VGG-16 fc7 and its PCA
    assert describe_data(spec) == "/d (PCA features)"
    assert describe_data(dict(spec, pca=False)) == "/d (fc7 features)"
