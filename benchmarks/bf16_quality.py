"""Does bfloat16 training reach float32's caption quality? (issue: bf16 within 0.015 BLEU-4)

Writes the Flickr8k captions (a real English corpus, text only: see
find_flickr8k) in the CS231n layout, trains the same model twice with
``fastcap train`` (same seed, epochs and data), once per precision, and
prints both runs' validation BLEU-4 and CIDEr and their difference.

Flickr8k has no image features here, so each image's feature is made from
its own captions: a fixed random projection (to 512) of the bag of words of
its five captions, plus noise. The model must still learn to decode words
from it, as from a CNN feature; a precision that loses that signal loses
BLEU. Vocabulary: words seen at least 5 times in the training split;
Flickr_8k.trainImages is the training split, Flickr_8k.devImages the
validation split.

    python benchmarks/bf16_quality.py --epochs 8 [--out DIR]
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workload import find_flickr8k  # noqa: E402

SPECIAL = ["<NULL>", "<START>", "<END>", "<UNK>"]
T = 17  # <START>, up to 15 words, <END>, as the CS231n captions


def _tokens(caption):
    return re.findall(r"[a-z]+", caption.lower())


def write_flickr8k(corpus, out, dim=512, seed=0):
    """The CS231n layout of Flickr8k in `out` -> number of (train, val) captions."""
    split_of = {}
    for split, name in (("train", "Flickr_8k.trainImages.txt"), ("val", "Flickr_8k.devImages.txt")):
        with open(os.path.join(corpus, name)) as f:
            split_of.update({line.strip(): split for line in f if line.strip()})
    captions = collections.defaultdict(list)
    with open(os.path.join(corpus, "Flickr8k.token.txt"), encoding="utf-8") as f:
        for line in f:
            key, _, text = line.rstrip("\n").partition("\t")
            image = key.split("#")[0]
            if image in split_of:
                captions[image].append(_tokens(text)[:T - 2])
    counts = collections.Counter(w for image, caps in captions.items() if split_of[image] == "train"
                                 for c in caps for w in c)
    idx_to_word = SPECIAL + sorted(w for w, n in counts.items() if n >= 5)
    word_to_idx = {w: i for i, w in enumerate(idx_to_word)}
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((len(idx_to_word), dim)).astype(np.float32) / np.sqrt(dim)
    sizes = {}
    with h5py.File(os.path.join(out, "coco2014_captions.h5"), "w") as cap_file:
        for split in ("train", "val"):
            images = sorted(i for i in captions if split_of[i] == split)
            rows, image_idxs, feats = [], [], np.empty((len(images), dim), np.float32)
            for k, image in enumerate(images):
                bag = np.zeros(len(idx_to_word), np.float32)
                for c in captions[image]:
                    ids = [word_to_idx.get(w, 3) for w in c]
                    bag[ids] += 1
                    row = [1, *ids, 2] + [0] * (T - 2 - len(ids))
                    rows.append(row)
                    image_idxs.append(k)
                f = bag @ projection
                feats[k] = f / (np.linalg.norm(f) + 1e-6) * np.sqrt(dim) + 0.5 * rng.standard_normal(dim)
            cap_file[f"{split}_captions"] = np.array(rows, np.int32)
            cap_file[f"{split}_image_idxs"] = np.array(image_idxs, np.int32)
            for suffix in ("", "_pca"):
                with h5py.File(os.path.join(out, f"{split}2014_vgg16_fc7{suffix}.h5"), "w") as f:
                    f["features"] = feats
            with open(os.path.join(out, f"{split}2014_urls.txt"), "w") as f:
                f.write("".join(f"flickr8k/{i}\n" for i in images))
            sizes[split] = len(rows)
    with open(os.path.join(out, "coco2014_vocab.json"), "w") as f:
        json.dump({"idx_to_word": idx_to_word, "word_to_idx": word_to_idx}, f)
    return sizes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--hidden-dim", type=int, default=512)
    p.add_argument("--eval-images", type=int, default=1000)
    p.add_argument("--out", help="where the data and the two runs go (default: a temporary directory)")
    args = p.parse_args(argv)
    corpus = find_flickr8k()
    if corpus is None:
        sys.exit("bf16_quality: no Flickr8k corpus found (set FASTCAP_FLICKR8K_DIR)")
    out = args.out or tempfile.mkdtemp(prefix="fastcap-bf16-quality-")
    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    sizes = write_flickr8k(corpus, data)
    print(f"Flickr8k in the CS231n layout: {sizes['train']} train / {sizes['val']} val captions in {data}")
    results = {}
    for precision in ("float32", "bfloat16"):
        run = os.path.join(out, precision)
        cmd = [sys.executable, "-m", "fastcap", "train", "--data", data, "--cell", "lstm",
               "--hidden-dim", str(args.hidden_dim), "--wordvec-dim", "256", "--epochs", str(args.epochs),
               "--lr", "5e-3", "--lr-decay", "0.9", "--eval-images", str(args.eval_images),
               "--precision", precision, "--out", run, "--quiet", "--overwrite"]
        subprocess.run(cmd, check=True)
        with open(os.path.join(run, "metrics.json")) as f:
            results[precision] = json.load(f)
    keys = ("val_loss", "bleu1", "bleu4", "cider")
    print("| precision | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for precision, m in results.items():
        print(f"| {precision} | " + " | ".join(f"{m[k]:.4f}" for k in keys) + " |")
    gap = results["bfloat16"]["bleu4"] - results["float32"]["bleu4"]
    print(f"BLEU-4 bfloat16 - float32: {gap:+.4f} (target: within 0.015)")


if __name__ == "__main__":
    main()
