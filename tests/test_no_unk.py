"""--no-unk: decoding that never generates <UNK>, greedy and beam, on every backend."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastcap import CaptioningRNN
from fastcap.model.beam import beam_search
from fastcap.train.evaluation import suppressing

from conftest import fastcap_cmd
from test_cli import ok, run_dir  # noqa: F401  (run_dir: the shared tiny run)

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


def test_no_unk_on_the_command_line(run_dir):  # noqa: F811
    out, _ = run_dir
    proc = ok(fastcap_cmd("sample", out / "checkpoint.npz", "-n", "8", "--no-unk", "--json"))
    generated = [s["generated"].split() for s in json.loads(proc.stdout)]
    assert len(generated) == 8 and not any("<UNK>" in g for g in generated)
    ok(fastcap_cmd("evaluate", out / "checkpoint.npz", "--no-unk", "--max-images", "4"))
