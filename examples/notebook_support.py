"""What the example scripts need in place of Jupyter: figures saved, not shown.

The scripts are the CS231n captioning notebooks' cells, run top to bottom.
Where a notebook cell calls ``plt.show()``, a script calls ``show(name)``: the
current figure is saved as ``FIGURES/NN-name.png`` (NN counts the figures of
the run) and closed. Environment:

- ``FASTCAP_EXAMPLE_FIGURES``: where the figures go (default ``figures/<script>``
  under the working directory);
- ``FASTCAP_EXAMPLE_EPOCHS``: epochs of every training run (default: the
  notebooks' 50);
- ``FASTCAP_EXAMPLE_MAX_TRAIN``: at most this many training captions in each
  ``load_coco_data(max_train=...)`` (default: the notebooks' numbers).

The test suite runs the scripts with 1 epoch of 2 minibatches.
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display: figures go to files
import matplotlib.pyplot as plt  # noqa: E402

from fastcap.runtime import env as _env  # noqa: E402

EPOCHS = _env.read("FASTCAP_EXAMPLE_EPOCHS")
MAX_TRAIN = _env.read("FASTCAP_EXAMPLE_MAX_TRAIN")
_script = os.path.splitext(os.path.basename(sys.argv[0] or "example"))[0]
FIGURES = _env.read("FASTCAP_EXAMPLE_FIGURES") or os.path.join("figures", _script)
_count = [0]


def show(name):
    """The notebook's ``plt.show()``: save the current figure and close it."""
    os.makedirs(FIGURES, exist_ok=True)
    _count[0] += 1
    path = os.path.join(FIGURES, f"{_count[0]:02d}-{name}.png")
    plt.savefig(path)
    plt.close()
    print(f"[figure {path}]")
