"""Beam-search decoding for a trained CaptioningRNN or AttentionCaptioningRNN.

Built on the model's step API (``initial_hidden``, ``step`` and the state's
``select``: the attention model's state selects its rows' features too), so each step is one recurrent step of the active backend (the
compiled engine in float32 under the Cython backend) with the recurrent
weights packed once per call. All images and all beams of an image advance
together as one (N*K, H) batch.

A hypothesis's score is the sum of the log-probabilities of its words,
``<END>`` included, without length normalization. Each step keeps, per image,
the ``beam_size`` best one-word extensions of the live hypotheses (ties go to
the lower beam, then the lower word index, as ``np.argmax`` does); a finished
hypothesis (one that emitted ``<END>``) stays in the beam with its score
unchanged. Decoding stops when every kept hypothesis has finished or after
``max_length`` words; each image's best-scoring hypothesis is returned. With
``beam_size=1`` this is exactly greedy decoding (the model's ``sample``).
"""
import numpy as np

from ..runtime import threads as _threads
from .validate import count

__all__ = ["beam_search"]


def _log_softmax(scores):
    # float64, so distinct scores stay distinct and the ranking is the scores' ranking
    s = scores.astype(np.float64)
    s -= s.max(axis=1, keepdims=True)
    s -= np.log(np.exp(s).sum(axis=1, keepdims=True))
    return s


@_threads.routed  # one install of the BLAS routing for the whole search
def beam_search(model, features, beam_size=3, max_length=30):
    """Captions of ``features`` (N, D), or (N, L, D) for the attention model, by beam search;
    int32 (N, max_length).

    The output has the layout of ``model.sample``: the first column is the
    first generated word, ``<END>`` is kept, and later positions are ``<NULL>``.
    """
    beam_size = count("beam_size", beam_size, minimum=1)
    max_length = count("max_length", max_length)
    if model.start_token is None:
        raise ValueError("beam search needs a '<START>' token in word_to_idx")
    state = model.initial_hidden(features)  # validates params and features
    N, K, L = state.rows, beam_size, int(max_length)
    start, null = model.start_token, model.null_token
    end = -1 if model.end_token is None else model.end_token

    state = state.select(np.repeat(np.arange(N), K))  # (N*K) rows: image n's beams are n*K .. n*K+K-1
    state.precompute_inputs(feeds=N * K * L)
    words = np.full(N * K, start, dtype=np.intp)
    scores = np.full((N, K), -np.inf)
    scores[:, 0] = 0.0  # one live hypothesis per image to begin with
    finished = np.zeros((N, K), dtype=bool)
    seqs = np.full((N, K, L), null, dtype=np.int32)
    base = (np.arange(N) * K)[:, None]  # (N, 1) first row of each image

    for t in range(L):
        if finished.all():
            break
        word_scores, state = model.step(state, words)
        V = word_scores.shape[1]
        logp = _log_softmax(word_scores).reshape(N, K, V)
        cand = scores[:, :, None] + logp  # (N, K, V)
        # A finished hypothesis has one continuation, <NULL>, that costs nothing.
        cand[finished] = -np.inf
        cand[finished, null] = scores[finished]
        flat = cand.reshape(N, K * V)
        best = np.argsort(-flat, axis=1, kind="stable")[:, :K]  # (N, K)
        beam, word = np.divmod(best, V)
        scores = np.take_along_axis(flat, best, axis=1)
        state = state.select((base + beam).reshape(-1))
        seqs = seqs[np.arange(N)[:, None], beam]
        was_finished = finished[np.arange(N)[:, None], beam]
        seqs[:, :, t] = np.where(was_finished, null, word)
        finished = was_finished | (word == end)
        words = word.reshape(-1)
    # Beams are kept sorted best first.
    return np.ascontiguousarray(seqs[:, 0, :])
