"""--no-unk: decoding that never generates <UNK>, greedy and beam, on every backend."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastcap import CaptioningRNN
from fastcap.model.beam import beam_search
from fastcap.train.evaluation import suppressing

from fastcap.cli import evaluate
from fastcap.cli.main import main
from fastcap.train.checkpoint import Checkpoint

from test_cli import run_dir  # noqa: F401  (run_dir: the shared tiny run)

WORDS = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "dog", "cat", "runs"]
W2I = {w: i for i, w in enumerate(WORDS)}


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the backend stays set
@given(seed=st.integers(0, 2**16), boost=st.floats(-2, 20), beam=st.integers(1, 3))
def test_suppressed_word_is_never_generated(backend, cell, seed, boost, beam):
    model = CaptioningRNN(W2I, input_dim=6, wordvec_dim=5, hidden_dim=7, cell_type=cell,
                          dtype=np.float64)
    rng = np.random.default_rng(seed)
    for k, v in model.params.items():
        model.params[k] = rng.standard_normal(v.shape)
    model.params["b_vocab"][W2I["<UNK>"]] += boost  # a large boost: <UNK> everywhere
    features = rng.standard_normal((4, 6))

    def decode(m):
        return m.sample(features, 8) if beam == 1 else beam_search(m, features, beam, 8)

    plain, quiet = decode(model), decode(suppressing(model, ("<UNK>",)))
    assert not (quiet == W2I["<UNK>"]).any()
    if boost > 15:
        assert (plain == W2I["<UNK>"]).any()  # the suppression is what removed it
    if beam == 1 and not (plain == W2I["<UNK>"]).any():
        # greedy: nothing else changes (a beam's scores are renormalised without <UNK>)
        np.testing.assert_array_equal(quiet, plain)
    assert np.isfinite(model.params["b_vocab"]).all()  # the model itself is untouched
    with pytest.raises(ValueError, match="no such word"):
        suppressing(model, ("<UNKNOWN>",))


def test_no_unk_on_the_command_line(run_dir, monkeypatch, capsys):  # noqa: F811
    """A model that says <UNK> first (its bias boosted) says it without --no-unk (the control)
    and never with it, greedy and beam; evaluate scores the suppressed model too."""
    out, _ = run_dir
    ckpt = str(out / "checkpoint.npz")
    build = Checkpoint.build_model

    def unk_first(self):
        model = build(self)
        model.params["b_vocab"][model.word_to_idx["<UNK>"]] += 50
        return model

    monkeypatch.setattr(Checkpoint, "build_model", unk_first)

    def sample(*flags):
        assert main(["sample", ckpt, "-n", "8", "--json", *flags]) == 0
        return [s["generated"].split() for s in json.loads(capsys.readouterr().out)]

    assert all(g[:1] == ["<UNK>"] for g in sample())
    for beam in ("1", "3"):
        generated = sample("--no-unk", "--beam-size", beam)
        assert len(generated) == 8 and all(g for g in generated)
        assert not any("<UNK>" in g for g in generated)
    scored = []
    real = evaluate.evaluate_captions
    monkeypatch.setattr(evaluate, "evaluate_captions",
                        lambda model, *a, **k: scored.append(model) or real(model, *a, **k))
    for flags in ((), ("--no-unk",)):
        assert main(["evaluate", ckpt, "--max-images", "4", *flags]) == 0
    unk = scored[0].word_to_idx["<UNK>"]
    assert scored[0].params["b_vocab"][unk] > 0 and scored[1].params["b_vocab"][unk] == -np.inf
