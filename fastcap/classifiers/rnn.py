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

from ..model import sequence, validate
from ..model.decode import DecodeState, counter_uniforms, greedy_decode, image_operands, sample_decode
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
    def loss(self, features, captions, grads=True, weights=None):
        """Training loss and gradients.

        features (N, D) image features; captions (N, T) integer word indices
        with T >= 2 (the model reads captions[:, :-1] and predicts captions[:, 1:];
        '<NULL>' targets are not scored). Returns (loss, grads) with grads a
        dict shaped like self.params. The loss is summed over time and
        averaged over N; an empty batch has loss 0.0 and zero gradients.
        grads=False skips the backward pass and returns (loss, None): the
        validation loss is this same forward. weights (N,) finite numbers
        (default: 1): caption n's summed loss counts weights[n] times, as
        self-critical training weighs each sampled caption by its advantage
        (fastcap.train.scst); the loss is still divided by N.
        """
        params = self._check_params()
        features, captions = self._batch(params, features, captions)
        N = features.shape[0]
        if weights is not None:
            weights = validate.as_weights("weights", weights, N)
        cell = CELLS[self.cell_type]
        compute = resolve()

        packed = sequence.pack_captions(captions, self._null)
        order = packed.order
        h0 = sequence.affine(compute, features, params["W_proj"], params["b_proj"])[order]  # (N, H), sorted
        xw, projection = sequence.word_projection(compute, packed.words, params["W_embed"], params["Wx"],
                                                  params["b"])  # (P, G)
        core = cell.forward(compute, xw, h0, params["Wh"], packed.packing)
        loss, words = sequence.words_loss(compute, core.h, packed, params["W_vocab"], params["b_vocab"], N,
                                          weights)
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
        packs = self._decode_packs(compute)
        W_proj = image_operands(compute, packs, params, ("W_proj",))["W_proj"]
        h0 = sequence.affine(compute, features, W_proj, params["b_proj"])
        return DecodeState(compute, self.cell_type, params, h0, packs=packs)

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

    @threads.routed
    def sample_multinomial(self, features, num_samples=1, max_length=30, seed=0, keys=None):
        """Captions drawn from the model's word distributions (temperature 1), num_samples
        per image: features (N, D) -> captions (N, num_samples, max_length) int32, laid
        out as ``sample``'s (the first column the first word; '<NULL>' after '<END>').

        Every word is drawn from the softmax over the whole vocabulary (suppress words by
        setting their b_vocab to -inf, as fastcap.train.evaluation.suppressing does). The
        draws are counter-based (fastcap.model.decode.counter_uniforms): sample k of image
        n is a function of (seed, keys[n], k) and the weights alone, the same on every
        backend whose scores are the same and for any thread count. seed: a non-negative
        integer or a sequence of them; keys (N,) non-negative integers (default 0..N-1).
        """
        if self._start is None:
            raise ValueError("sampling needs a '<START>' token in word_to_idx")
        num_samples = validate.count("num_samples", num_samples, 1)
        max_length = validate.count("max_length", max_length)
        for s in np.atleast_1d(np.asarray(seed, dtype=object)):
            validate.count("seed", s)
        state = self._initial_hidden(resolve(), features)
        N = state.rows
        keys = np.arange(N) if keys is None else np.asarray(keys)
        if keys.shape != (N,) or not np.issubdtype(keys.dtype, np.integer) or (keys < 0).any():
            raise ValueError(f"keys must be {N} non-negative integers (one per image), got "
                             f"{keys.dtype} of shape {keys.shape}")
        uniforms = counter_uniforms(seed, keys, num_samples, max_length).reshape(N * num_samples, max_length)
        state = state.select(np.repeat(np.arange(N), num_samples))  # image n's rows: n*K .. n*K+K-1
        end = -1 if self._end is None else self._end
        captions = sample_decode(state, self._start, end, self._null, uniforms)
        return captions.reshape(N, num_samples, max_length)
