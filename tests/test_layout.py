"""The package's layout (docs/design.md): floors, no import circles, no hidden imports, files a
reader can take in, and every module path the CS231n notebooks and the docs show still works."""
import ast
import importlib
import pathlib
import re

import pytest

import layout

DOCS = [layout.ROOT.parent / "README.md", *sorted((layout.ROOT.parent / "docs").glob("*.md"))]


def test_every_module_stands_on_a_declared_floor():
    assert layout.report()["modules on no floor"] == []


def test_no_import_circle():
    assert layout.report()["circles"] == []


def test_arrows_back_up_are_the_declared_few():
    """An import of a floor above is allowed only where UP says why (at most three)."""
    up = layout.report()["arrows back up"]
    assert sorted(up) == sorted(layout.UP) and len(up) <= 3


def test_imports_of_the_package_are_at_module_level():
    """Imports inside functions hide circles: the package's own modules are imported at the
    top (optional dependencies, torch, mpi4py, matplotlib, PIL, pycocoevalcap, stay lazy)."""
    assert layout.report()["imports inside functions"] == []


def test_the_checker_sees_what_it_checks(tmp_path):
    """The checks above would fail on a tree that breaks them: a circle, an arrow up, an import
    inside a function and a module on no floor, in a package shaped like fastcap."""
    pkg = tmp_path / "fastcap"
    for folder in ("runtime", "model", "cli"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "runtime" / "a.py").write_text("from ..model import b\n")  # up
    (pkg / "model" / "b.py").write_text("from ..runtime import a\n\ndef f():\n    from . import c\n")
    (pkg / "model" / "c.py").write_text("")
    (pkg / "stray.py").write_text("")
    r = layout.report(pkg)
    assert r["circles"] == [["fastcap.model.b", "fastcap.runtime.a"]]
    assert r["arrows back up"] == [("fastcap.runtime.a", "fastcap.model.b")]
    assert r["imports inside functions"] == [("fastcap.model.b", "fastcap.model.c")]
    assert r["modules on no floor"] == ["fastcap.stray"]


@pytest.mark.parametrize("path", sorted(p for p in layout.ROOT.rglob("*") if p.suffix in
                                        (".py", ".pyx", ".pxi", ".c", ".h")),
                         ids=lambda p: str(p.relative_to(layout.ROOT)))
def test_files_fit_on_a_few_screens(path):
    """Each file has one job: at most 500 lines."""
    assert len(path.read_text().splitlines()) <= 500


# The assignment's modules and what the notebooks import from them (`cs231n` -> `fastcap`).
CS231N = {
    "fastcap.rnn_layers": ["rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward",
                           "lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward",
                           "word_embedding_forward", "word_embedding_backward",
                           "temporal_affine_forward", "temporal_affine_backward",
                           "temporal_softmax_loss"],
    "fastcap.captioning_solver": ["CaptioningSolver"],
    "fastcap.classifiers.rnn": ["CaptioningRNN"],
    "fastcap.coco_utils": ["load_coco_data", "sample_coco_minibatch", "decode_captions"],
    "fastcap.optim": ["sgd", "sgd_momentum", "rmsprop", "adam"],
    "fastcap.gradient_check": ["eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error"],
    "fastcap.image_utils": ["image_from_url"],
}


@pytest.mark.parametrize("module", sorted(CS231N))
def test_cs231n_paths(module):
    m = importlib.import_module(module)
    missing = [name for name in CS231N[module] if not callable(getattr(m, name, None))]
    assert not missing


def _documented_names():
    """(doc, dotted name) of every `fastcap.x.y` and `from fastcap.x import y` the docs show."""
    names = set()
    for doc in DOCS:
        text = doc.read_text()
        for mod, what in re.findall(r"from (fastcap(?:\.\w+)*) import ([\w, ]+)", text):
            names.update((doc.name, f"{mod}.{n.strip()}") for n in what.split(",") if n.strip())
        names.update((doc.name, m) for m in re.findall(r"(?<![\w/.])(fastcap(?:\.\w+)+)(?=[`(\s])", text))
    return sorted(names)


def _resolve(dotted):
    """The object a dotted name names (a module, or an attribute of one), else None."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


@pytest.mark.parametrize("doc, name", _documented_names())
def test_documented_names_resolve(doc, name):
    assert _resolve(name) is not None, f"{doc} shows {name}, which does not resolve"


def test_documented_names_are_found():
    """The scan above reads the docs: it finds the names the README's first example shows."""
    names = {n for _, n in _documented_names()}
    assert {"fastcap.CaptioningRNN", "fastcap.rnn_layers"} <= names
    assert _resolve("fastcap.no_such_module.thing") is None


def test_the_package_and_its_subpackages_say_what_they_hold():
    """Each folder's __init__.py opens with a docstring naming its job (the folder list of
    docs/design.md)."""
    for init in layout.ROOT.rglob("__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), init
