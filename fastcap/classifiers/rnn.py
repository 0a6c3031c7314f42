"""CaptioningRNN: image feature -> initial hidden state -> RNN/LSTM language model.

Each public method resolves the backend and precision once
(``fastcap.runtime.compute``) and hands them down. The loss runs the
packed-sequence orchestration of ``fastcap.model.sequence``: the
captions are sorted by their number of scored words, each runs only up to its
last scored word, and only scored positions are projected onto the
vocabulary. Padding after '<END>' (about 28% of a real batch) costs nothing,
and the result equals scoring the full padded grid. The word embedding and the
input projection run per distinct word of the batch (``word_projection``).
Decoding (the step API's state, greedy decoding) is ``fastcap.model.decode``.
"""
import numpy as np

from ..model import sequence
from ..model.decode import DecodeState, greedy_decode
from ..model.sequence import CELLS
from ..runtime import threads
from ..runtime.compute import resolve
from .captioner import Captioner

# The model's parameters and their shapes in the dims V vocabulary, D feature,
# W word vector, H hidden, G = gates * H (gates per cell: CELLS).
PARAM_SHAPES = {"W_embed": ("V", "W"), "W_proj": ("D", "H"), "b_proj": ("H",),
                "Wx": ("W", "G"), "Wh": ("H", "G"), "b": ("G",),
                "W_vocab": ("H", "V"), "b_vocab": ("V",)}  # fmt: skip


class CaptioningRNN(Captioner):
    """A captioning model over a vocabulary ``word_to_idx`` (which must map '<NULL>').

    Parameters (``self.params``): W_embed (V, W), W_proj (D, H), b_proj (H,),
    Wx (W, GH), Wh (H, GH), b (GH,), W_vocab (H, V), b_vocab (V,), where GH is
    H for cell_type 'rnn' and 4H for 'lstm'. Weights are drawn from ``rng``
    (default: NumPy's global random state, as in CS231n) and cast to ``dtype``.
    """

    PARAM_SHAPES = PARAM_SHAPES
    STATE = DecodeState

    def __init__(self, word_to_idx, input_dim=512, wordvec_dim=128, hidden_dim=128,
                 cell_type="rnn", dtype=np.float32, rng=None):
        self._setup(word_to_idx, cell_type, dtype,
                    dict(input_dim=input_dim, wordvec_dim=wordvec_dim, hidden_dim=hidden_dim))
        V, D, W, H = len(self.word_to_idx), input_dim, wordvec_dim, hidden_dim
        G = CELLS[cell_type].gates * H
        randn = (np.random if rng is None else rng).standard_normal
        # Same draws, in the same order, as CS231n's CaptioningRNN.__init__.
        p = {}
        p["W_embed"] = randn((V, W)) / 100
        p["W_proj"] = randn((D, H)) / np.sqrt(D)
        p["b_proj"] = np.zeros(H)
        p["Wx"] = randn((W, G)) / np.sqrt(W)
        p["Wh"] = randn((H, G)) / np.sqrt(H)
        p["b"] = np.zeros(G)
        p["W_vocab"] = randn((H, V)) / np.sqrt(H)
        p["b_vocab"] = np.zeros(V)
        self.params = {k: v.astype(self.dtype) for k, v in p.items()}

    @threads.routed  # one install of the BLAS routing for the whole step, not one per product
    def loss(self, features, captions, grads=True):
        """Training loss and gradients.

        features (N, D) image features; captions (N, T) integer word indices
        with T >= 2 (the model reads captions[:, :-1] and predicts captions[:, 1:];
        '<NULL>' targets are not scored). Returns (loss, grads) with grads a
        dict shaped like self.params. The loss is summed over time and
        averaged over N; an empty batch has loss 0.0 and zero gradients.
        grads=False skips the backward pass and returns (loss, None): the
        validation loss is this same forward.
        """
        params = self._check_params()
        features, captions = self._batch(params, features, captions)
        N = features.shape[0]
        cell = CELLS[self.cell_type]
        compute = resolve()

        packed = sequence.pack_captions(captions, self._null)
        order = packed.order
        h0 = sequence.affine(compute, features, params["W_proj"], params["b_proj"])[order]  # (N, H), sorted
        xw, projection = sequence.word_projection(compute, packed.words, params["W_embed"], params["Wx"],
                                                  params["b"])  # (P, G)
        core = cell.forward(compute, xw, h0, params["Wh"], packed.packing)
        loss, words = sequence.words_loss(compute, core.h, packed, params["W_vocab"], params["b_vocab"], N)
        if not grads:
            return loss, None

        grads = {}
        dh, grads["W_vocab"], grads["b_vocab"] = sequence.words_loss_backward(compute, words, packed,
                                                                              params["W_vocab"])
        da, dh0_sorted, grads["Wh"] = cell.backward(compute, dh, core)  # da (P, G) gate gradients
        grads["W_embed"], grads["Wx"], grads["b"] = sequence.word_projection_backward(compute, da, projection)
        dh0 = np.empty_like(dh0_sorted)
        dh0[order] = dh0_sorted
        grads["W_proj"] = sequence.matmul(compute, features.T, dh0)
        grads["b_proj"] = dh0.sum(axis=0)
        return loss, grads

    # -- decoding (the step API: Captioner's initial_hidden and step) ----------------------

    def _initial_hidden(self, compute, features):
        # features (N, D): h0 = features @ W_proj + b_proj (and c0 = 0 for an LSTM)
        params = self._check_params()
        features = self._features(features, params["W_proj"].shape[0])
        h0 = sequence.affine(compute, features, params["W_proj"], params["b_proj"])
        return DecodeState(compute, self.cell_type, params, h0)

    @threads.routed
    def sample(self, features, max_length=30):
        """Greedy test-time captions.

        features (N, D) -> captions (N, max_length) int32. The first column is
        the first generated word (not '<START>'); after a caption's '<END>'
        every position is '<NULL>'.
        """
        start, end, max_length = self._decoding(max_length)
        state = self._initial_hidden(resolve(), features)
        return greedy_decode(state, start, end, self._null, max_length)

