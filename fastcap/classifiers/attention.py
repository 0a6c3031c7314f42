"""AttentionCaptioningRNN: Show, Attend and Tell's soft-attention captioner over a grid of image features.

At each word the decoder looks at the L cells of the image's feature grid: it scores them
from its hidden state, weighs them by a softmax and feeds their weighted sum, gated, to
the cell with the word. The model is the one of issue 26, written out in NumPy in
``fastcap.model.attention_reference`` (its parameters' names and shapes are
``PARAM_SHAPES`` there), and every backend is tested against that file.

Each public method resolves the backend and precision once (``fastcap.runtime.compute``)
and hands them down: the loss runs ``fastcap.model.attention`` (captions packed by length,
the large products as GEMMs, the recurrence as one kernel), decoding
``fastcap.model.decode``'s AttentionDecodeState (the step API that beam search drives)
and ``attention_greedy_decode`` (one kernel for the whole loop).
"""
import math

import numpy as np

from ..model import attention, sequence
from ..model.attention_reference import PARAM_SHAPES, init_params
from ..model.decode import AttentionDecodeState, attention_greedy_decode, image_operands
from ..runtime import threads
from ..runtime.compute import resolve
from .captioner import Captioner


ATTENTION_REG = 1.0  # the penalty's weight unless one is given
IMAGE = ("W_proj", "W_enc")  # the right-hand operands of an image's products


def _attention_reg(value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"attention_reg must be a finite number >= 0, got {value!r}")
    return float(value)


class AttentionCaptioningRNN(Captioner):
    """A soft-attention captioning model over a vocabulary ``word_to_idx`` (which must map '<NULL>').

    Parameters (``self.params``): W_embed (V, W); W_proj (D, H), b_proj (H,); W_enc (D, A),
    b_enc (A,); W_dec (H, A); w_att (A,); W_beta (H, D), b_beta (D,); Wx (W + D, G) (the
    first W rows take the word vector, the next D the gated context); Wh (H, G); b (G,);
    W_vocab (H, V), b_vocab (V,); G = 4H for 'lstm' (gates i, f, o, g), H for 'rnn'. D is
    input_dim (channels per cell), A attention_dim (default hidden_dim). Weights are drawn
    from ``rng`` (default: NumPy's global random state) as CaptioningRNN draws its own, and
    cast to ``dtype``. ``attention_reg`` weighs the penalty that asks each cell to get a
    total weight of about 1 over a caption's words.
    """

    PARAM_SHAPES = PARAM_SHAPES
    GRID = True
    STATE = AttentionDecodeState

    def __init__(self, word_to_idx, input_dim=512, wordvec_dim=128, hidden_dim=128, attention_dim=None,
                 cell_type="lstm", attention_reg=ATTENTION_REG, dtype=np.float32, rng=None):
        attention_dim = hidden_dim if attention_dim is None else attention_dim
        self._setup(word_to_idx, cell_type, dtype, dict(input_dim=input_dim, wordvec_dim=wordvec_dim,
                                                        hidden_dim=hidden_dim, attention_dim=attention_dim))
        self.attention_reg = _attention_reg(attention_reg)
        p = init_params(len(self.word_to_idx), int(input_dim), int(wordvec_dim), int(hidden_dim),
                        int(attention_dim), cell_type, np.random if rng is None else rng)
        self.params = {k: v.astype(self.dtype) for k, v in p.items()}

    def _check_dims(self, dims):
        if dims["E"] != dims["W"] + dims["D"]:
            raise ValueError(f"params['Wx'] must have W + D = {dims['W']} + {dims['D']} rows (the word "
                             f"vector's, then the context's), got {dims['E']}")

    @threads.routed  # one install of the BLAS routing for the whole step, not one per product
    def loss(self, features, captions, grads=True):
        """Training loss and gradients.

        features (N, L, D): L cells of D channels per image (L >= 1); captions (N, T)
        integer word indices with T >= 2 (the model reads captions[:, :-1] and predicts
        captions[:, 1:]; '<NULL>' targets are not scored). Returns (loss, grads) with grads
        a dict shaped like self.params: the words' softmax loss summed over time and
        averaged over N, plus attention_reg * sum_n sum_l (1 - sum over n's scored words of
        alpha[n, l])**2 / N. An empty batch has loss 0.0 and zero gradients. grads=False
        skips the backward pass and returns (loss, None).
        """
        params = self._check_params()
        features, captions = self._batch(params, features, captions)
        reg = _attention_reg(self.attention_reg)
        N = features.shape[0]
        compute = resolve()
        lstm = self.cell_type == "lstm"

        packed = sequence.pack_captions(captions, self._null)
        a = np.ascontiguousarray(features[packed.order])  # sorted as the packed sequences
        core, projection = attention.forward(compute, params, lstm, a, packed)
        loss, words = sequence.words_loss(compute, core.h, packed, params["W_vocab"], params["b_vocab"], N)
        loss += attention.penalty(core, reg, N)
        if not grads:
            return loss, None
        dh, dW_vocab, db_vocab = sequence.words_loss_backward(compute, words, packed, params["W_vocab"])
        grads = attention.backward(compute, params, lstm, core, packed, projection, dh, reg)
        grads.update(W_vocab=dW_vocab, b_vocab=db_vocab)
        return loss, {k: grads[k] for k in PARAM_SHAPES}

    # -- decoding (the step API: Captioner's initial_hidden and step) ----------------------

    def _initial_hidden(self, compute, features):
        # features (N, L, D): h0 = mean_L(features) @ W_proj + b_proj, enc = features @ W_enc + b_enc
        params = self._check_params()
        a = self._features(features, params["W_proj"].shape[0])
        packs = self._decode_packs(compute)
        _, h0, enc = attention.encode(compute, {**params, **image_operands(compute, packs, params, IMAGE)}, a)
        Wx_words, Wz = attention.split_wx(params)
        return AttentionDecodeState(compute, self.cell_type, {**params, "Wx": Wx_words, "Wz": Wz}, h0, a, enc,
                                    packs=packs)

    @threads.routed
    def sample(self, features, max_length=30, return_attention=False):
        """Greedy test-time captions.

        features (N, L, D) -> captions (N, max_length) int32, as CaptioningRNN.sample: the
        first column is the first generated word (not '<START>'); after a caption's '<END>'
        every position is '<NULL>'. With return_attention, (captions, alpha): alpha
        (N, max_length, L) the attention weights over the L cells with which each word was
        chosen (each row sums to 1; 0 after a caption's end).
        """
        if not isinstance(return_attention, (bool, np.bool_)):
            raise TypeError(f"return_attention must be True or False, got {return_attention!r}")
        start, end, max_length = self._decoding(max_length)
        state = self._initial_hidden(resolve(), features)
        captions, alpha = attention_greedy_decode(state, start, end, self._null, max_length)
        return (captions, alpha) if return_attention else captions
