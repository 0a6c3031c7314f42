"""Decoding keeps its packed weights between calls only while they cannot go stale
(fastcap.model.decode.PackCache, Captioner.freeze): a frozen model packs once per backend
and precision, and a parameter replaced, made writable again or shared through a view
is packed again, so the captions are always those of the parameters as they are now.
"""
import numpy as np
import pytest

import fastcap
from fastcap import AttentionCaptioningRNN, CaptioningRNN
from fastcap.captioning_solver import CaptioningSolver
from fastcap.inference.captioner import Captioner
from fastcap.model import sequence
from fastcap.model.beam import beam_search
from fastcap.runtime import precision as _precision

V, D, W, H, L = 19, 6, 5, 8, 4
WORDS = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, **{f"w{i}": i for i in range(4, V)}}
KINDS = ("pooled", "attention")


def _model(kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "attention":
        return AttentionCaptioningRNN(WORDS, input_dim=D, wordvec_dim=W, hidden_dim=H, rng=rng)
    return CaptioningRNN(WORDS, input_dim=D, wordvec_dim=W, hidden_dim=H, rng=rng)


def _features(kind, n=3, seed=1):
    shape = (n, L, D) if kind == "attention" else (n, D)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _fresh(model):
    """A model with model's parameters as plain writable copies: packs per call."""
    other = _model("attention" if model.GRID else "pooled", seed=99)
    other.params = {k: np.array(v) for k, v in model.params.items()}
    return other


@pytest.fixture
def packs_made(monkeypatch):
    """A list that grows by one each time decoding packs its step weights."""
    made = []
    for name in ("pack_attention", "pack_recurrent"):
        real = getattr(sequence, name)

        def counting(*args, _real=real, **kw):
            made.append(1)
            return _real(*args, **kw)
        monkeypatch.setattr(sequence, name, counting)
    return made


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", KINDS)
def test_frozen_model_packs_once_and_decodes_alike(backend, kind, precision, packs_made, monkeypatch):
    monkeypatch.setattr(_precision, "_emulate_anywhere", True)  # the bf16 kernels on any CPU
    model, x = _model(kind), _features(kind)
    with fastcap.use_precision(precision):
        plain = model.sample(x, max_length=6)
        assert len(packs_made) == 1
        assert model.freeze() is model
        assert not any(a.flags.writeable for a in model.params.values())
        first = model.sample(x, max_length=6)
        again = model.sample(x, max_length=6)
    assert len(packs_made) == 2  # one pack for the frozen model, kept for the second call
    np.testing.assert_array_equal(first, plain)
    np.testing.assert_array_equal(again, plain)


@pytest.mark.parametrize("kind", KINDS)
def test_replaced_parameter_is_packed_again(backend, kind, packs_made):
    model, x = _model(kind).freeze(), _features(kind)
    model.sample(x, max_length=6)
    Wh = np.array(model.params["Wh"]) * -3.0
    Wh.flags.writeable = False
    model.params["Wh"] = Wh  # read-only and its own, but a new array: packed again
    got = model.sample(x, max_length=6)
    assert len(packs_made) == 2
    np.testing.assert_array_equal(got, _fresh(model).sample(x, max_length=6))


@pytest.mark.parametrize("kind", KINDS)
def test_parameter_made_writable_is_not_trusted(backend, kind, packs_made):
    model, x = _model(kind).freeze(), _features(kind)
    before = model.sample(x, max_length=6)
    W_vocab = model.params["W_vocab"]
    W_vocab.flags.writeable = True
    W_vocab[:] = np.random.default_rng(5).standard_normal(W_vocab.shape)  # changed in place
    got = model.sample(x, max_length=6)
    assert len(packs_made) == 2 and not model._pack_cache._entries
    np.testing.assert_array_equal(got, _fresh(model).sample(x, max_length=6))
    assert not np.array_equal(got, before)  # the change is one decoding can see


def test_read_only_view_is_packed_per_call(packs_made):
    """A read-only view of a writable array can change under it: never kept."""
    model, x = _model("pooled"), _features("pooled")
    bases = {k: np.array(v) for k, v in model.params.items()}
    model.params = {k: b[...] for k, b in bases.items()}
    for v in model.params.values():
        v.flags.writeable = False
    model.sample(x, max_length=6)
    bases["W_vocab"] *= -1.0
    got = model.sample(x, max_length=6)
    assert len(packs_made) == 2
    np.testing.assert_array_equal(got, _fresh(model).sample(x, max_length=6))


def test_frozen_model_trains_and_then_packs_per_call(small_data, packs_made):
    model = CaptioningRNN(small_data["word_to_idx"], input_dim=small_data["train_features"].shape[1],
                          wordvec_dim=8, hidden_dim=8, rng=np.random.default_rng(0)).freeze()
    solver = CaptioningSolver(model, small_data, update_rule="adam", num_epochs=1, batch_size=5,
                              optim_config={"learning_rate": 1e-2}, verbose=False)
    before = {k: np.array(v) for k, v in model.params.items()}
    solver.step()
    assert all(model.params[k].flags.writeable for k in before)  # the solver's copies
    assert any(not np.array_equal(model.params[k], before[k]) for k in before)
    x = small_data["val_features"][:4]
    packs_made.clear()  # the training step's own packs
    model.sample(x, max_length=5)
    model.sample(x, max_length=5)
    assert len(packs_made) == 2 and not model._pack_cache._entries


@pytest.mark.parametrize("kind", KINDS)
def test_no_unk_copy_of_a_frozen_model_is_kept_while_the_model_is(backend, kind, packs_made):
    model, x = _model(kind), _features(kind, n=5)
    model.params["b_vocab"][WORDS["<UNK>"]] = 50.0  # <UNK> wins unless suppressed
    captioner = Captioner(model.freeze())
    plain = captioner.caption_features(x, max_length=4)
    quiet = captioner.caption_features(x, max_length=4, no_unk=True)
    again = captioner.caption_features(x, max_length=4, no_unk=True)
    assert all("<UNK>" in c for c in plain) and not any("<UNK>" in c for c in quiet)
    assert again == quiet and len(packs_made) == 2  # the model's packs, the copy's packs
    b = np.array(model.params["b_vocab"])
    b[WORDS["w5"]] = 100.0
    b.flags.writeable = False
    model.params["b_vocab"] = b  # the copy made before would now be stale
    assert all(c.split() == ["w5"] * 4 for c in captioner.caption_features(x, max_length=4, no_unk=True))


@pytest.mark.parametrize("kind", KINDS)
def test_kept_word_table_is_full_and_only_read(backend, kind):
    """A frozen model's word table is made whole once and no decoding writes it (so decodings
    on several threads may share it): greedy, beam search and the step API alike."""
    model = _model(kind).freeze()
    model.sample(_features(kind), max_length=6)
    (entry,) = model._pack_cache._entries.values()
    table, known = entry[2]["table"]
    assert known.all()
    before = table.copy()
    for n in (1, 2, 7):
        x = _features(kind, n=n, seed=n)
        model.sample(x, max_length=8)
        beam_search(model, x, beam_size=3, max_length=5)
    np.testing.assert_array_equal(table, before)
    p = model.params
    Wx = p["Wx"][:W] if kind == "attention" else p["Wx"]
    np.testing.assert_allclose(table, p["W_embed"] @ Wx + p["b"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_model_packs_nothing_on_later_calls(backend, kind, monkeypatch):
    """In the bfloat16 mode every right-hand operand is packed (the step's weights, W_vocab,
    Wx, and the image's W_proj and W_enc): a frozen model's second decoding packs none."""
    monkeypatch.setattr(_precision, "_emulate_anywhere", True)
    kernels = fastcap.runtime.backends.load(backend)
    packed = []  # pack calls, and products handed an array to pack (not a packed operand)
    for name in ("pack_bf16", "recurrent_pack", "attention_pack", "matmul_bf16"):
        real = getattr(kernels, name)

        def spy(*a, _real=real, _name=name, **k):
            if _name != "matmul_bf16" or isinstance(a[1], np.ndarray):
                packed.append(_name)
            return _real(*a, **k)
        monkeypatch.setattr(kernels, name, spy)
    model, x = _model(kind).freeze(), _features(kind)
    with fastcap.use_precision("bfloat16"):
        first = model.sample(x, max_length=6)
        made = list(packed)
        second = model.sample(x, max_length=6)
    assert len(made) >= 3 and packed == made, packed[len(made):]
    np.testing.assert_array_equal(first, second)
