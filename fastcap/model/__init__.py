"""What the model computes, for every backend: input checks, the layer caches, packed
sequences and their products, decoding (greedy and beam search). The CS231n modules
(``fastcap.rnn_layers``, ``fastcap.classifiers.rnn``, ``fastcap.optim``) are built on it."""
