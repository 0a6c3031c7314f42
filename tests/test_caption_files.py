"""Caption files whose fields have unexpected types (issue 27, class 1): every field of the three
formats is read through one checked schema, so any field of any record, missing or of another
type, is one ValueError naming the file, the record and the field, never a TypeError or
KeyError from deeper in the code."""
import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastcap.data.captions import (COCO_ANNOTATION, COCO_IMAGE, KARPATHY_IMAGE, KARPATHY_SENTENCE,
                                   is_image_name, read_captions)

COCO = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": "two", "file_name": "b.jpg"}],
        "annotations": [{"id": 10, "image_id": 1, "caption": "A dog."},
                        {"id": 11, "image_id": "two", "caption": "A cat."}]}
KARPATHY = {"images": [{"filename": "a.jpg", "filepath": "train2014", "split": "train",
                        "sentences": [{"tokens": ["a", "dog"], "raw": "A dog."}]},
                       {"filename": "b.jpg", "split": "val", "sentences": [{"raw": "A cat."}]}]}
# Where each record lives in its document, and its schema.
RECORDS = {"coco": [(("images", 0), COCO_IMAGE), (("images", 1), COCO_IMAGE),
                    (("annotations", 0), COCO_ANNOTATION), (("annotations", 1), COCO_ANNOTATION)],
           "karpathy": [(("images", 0), KARPATHY_IMAGE), (("images", 1), KARPATHY_IMAGE),
                        (("images", 0, "sentences", 0), KARPATHY_SENTENCE),
                        (("images", 1, "sentences", 0), KARPATHY_SENTENCE)]}
DOCS = {"coco": COCO, "karpathy": KARPATHY}
ODD = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.just([]), st.just({}),
                st.lists(st.integers(), min_size=1, max_size=3), st.just({"id": 1}),
                st.just([["nested"]]), st.text(max_size=5), st.integers())


def _where(path):
    """images[0].sentences[0] for ("images", 0, "sentences", 0)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("captions")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_field_of_any_type_is_named_or_read(folder, data):
    fmt = data.draw(st.sampled_from(sorted(DOCS)))
    where, spec = data.draw(st.sampled_from(RECORDS[fmt]))
    field = data.draw(st.sampled_from(sorted(spec)))
    doc = copy.deepcopy(DOCS[fmt])
    record = doc
    for part in where:
        record = record[part]
    remove = data.draw(st.booleans())
    if remove:
        record.pop(field, None)
    else:
        record[field] = data.draw(ODD)
    path = folder / f"{fmt}.json"
    path.write_text(json.dumps(doc))
    wrong = (remove and spec[field].required) or (not remove and not spec[field].ok(record[field]))
    try:
        read_captions(path)
    except ValueError as exc:
        message = str(exc)
        assert str(path) in message
        if wrong:  # the field itself is named, with what it should be
            assert f"{_where(where)}.{field}" in message and spec[field].expected in message
        return
    assert not wrong, f"{_where(where)}.{field} = {record.get(field)!r} was accepted"


@pytest.mark.parametrize("doc, message", [
    ({"images": {"a": 1}, "annotations": []}, "'images' must be a list of records"),
    ({"images": [], "annotations": "x"}, "'annotations' must be a list of records"),
    ({"images": ["a.jpg"], "annotations": []}, r"images\[0\] must be a JSON object"),
    ({"images": [{"filename": "a.jpg", "split": ["train"], "sentences": []}]},
     r"images\[0\].split must be one of train, restval, val, test, got \['train'\]"),
    ({"images": [{"filename": "a.jpg", "sentences": [{"raw": None}]}]},
     r"images\[0\].sentences\[0\].raw must be a string, got None"),
    ({"images": [{"filename": "a.jpg", "sentences": [{"raw": "A dog."}, {}]}]},
     r"images\[0\].sentences\[1\] has neither 'raw'"),
    ({"images": [{"id": [1], "file_name": "a.jpg"}], "annotations": []},
     r"images\[0\].id must be an integer or a string, got \[1\]"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": {"x": 1}, "caption": "a"}]},
     r"annotations\[0\].image_id must be an integer or a string"),
])
def test_the_cases_seen(tmp_path, doc, message):
    """The inputs that ended in a TypeError or KeyError: lists and objects as ids, a list as a
    split, a sentence with a raw that is not text and no tokens."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        read_captions(path)


@pytest.mark.parametrize("name", ["a\nb.jpg", "a\u2028b.jpg", "a\u2029.jpg", "a\x85b.jpg", "a\x0bb.jpg",
                                  "a\x1cb.jpg", "a\x00b.jpg", "a\tb.jpg", "\x7f.jpg", " ", ""])
@pytest.mark.parametrize("fmt", ["coco", "karpathy", "flickr8k"])
def test_names_that_would_not_survive_a_line_are_refused(tmp_path, name, fmt):
    """prepare writes the names into urls files read back line by line: a name with any line
    break or control character is refused when the captions file is read, naming it."""
    assert not is_image_name(name)
    path = tmp_path / "c.json"
    if fmt == "coco":
        path.write_text(json.dumps({"images": [{"id": 1, "file_name": name}],
                                    "annotations": [{"image_id": 1, "caption": "a dog"}]}))
    elif fmt == "karpathy":
        path.write_text(json.dumps({"images": [{"filename": name, "sentences": [{"raw": "a dog"}]}]}))
    else:
        path = tmp_path / "t.txt"
        path.write_text(f"ok.jpg#0\ta cat\n{name}#0\ta dog\n", encoding="utf-8", newline="")
    with pytest.raises(ValueError, match="file name|line 2"):
        read_captions(path)


def test_a_caption_may_hold_any_separator(tmp_path):
    """Only names must survive a line: a Flickr8k caption with U+2028 in it stays one line."""
    path = tmp_path / "t.txt"
    path.write_text("a.jpg#0\tA dog\u2028on grass.\nb.jpg#0\tA cat\n", encoding="utf-8")
    assert read_captions(path).images == {"a.jpg": [["a", "dog", "on", "grass"]], "b.jpg": [["a", "cat"]]}
