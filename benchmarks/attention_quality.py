"""Quality of the attention model on pictures of two coloured shapes side by side (issue 26).

Pictures drawn with Pillow (224 x 224: the network's centre crop keeps both shapes), each
captioned left to right, "a red circle left of a blue square", go through the command line as
a user's data would: ``fastcap prepare --grid`` (VGG-16's 14 x 14 grid by default, the paper's;
``--weights none`` unless ``--weights`` names a local file: ImageNet's cannot be downloaded
offline), then
``fastcap train --attention`` (float32 and bfloat16) and ``fastcap train`` (the pooled model) on
the same directory. On new pictures it reports, per model:

- ``both_in_order``: the share of pictures whose caption names both shapes (colour and shape)
  in their left-to-right order, as the captions do; ``both_named``: both, in any order;
- the bf16 model's validation BLEU-4 beside float32's (``fastcap evaluate``);
- for the attention model, ``colour_share``: the mean share of each colour word's attention
  on the cells its shape covers (a cell is the shape's when the shape's box covers at least
  a quarter of it), beside ``uniform_share``, what attention spread evenly would put there,
  and ``colour_side``: the share on the shape's half of the grid.

    python benchmarks/attention_quality.py /tmp/shapes --json shapes.json
    python benchmarks/attention_quality.py /tmp/shapes --attention-reg 0 --runs attention --tag reg0

Each step is printed as the command it runs. ``--epochs``, ``--train`` and friends size it.

Why these defaults: with random weights, ResNet-50's 7 x 7 grid keeps colour but loses much of
the shape (a ridge probe of 1520 training pictures' grids names the left shape 75-78% of the
time, the right 68-69%, with or without the 128-d PCA), which bounds its attention model near
45-50% in order even with 3000 pictures; random VGG-16, 13 layers shallower, keeps the shapes
(90% in order from 1000 pictures). ``--attention-reg`` 1 by default, the model's own: with
far more cells (196) than words (10) its penalty's floor is most of the loss, yet the colour
words still put 0.72 of their weight on their shape (uniform: 0.076), and each word's map
reads as the paper's; at 0 the figures barely move (91% in order, 0.64 on the shape), the
maps peak on one cell at the shape's edge.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))  # this checkout's fastcap

COLOURS = {"red": (215, 35, 35), "green": (35, 160, 50), "blue": (40, 70, 215),
           "yellow": (225, 200, 30)}
SHAPES = ("circle", "square", "triangle")
SIZE = 224  # the picture; prepare resizes it and centre-crops 224 of that


def draw(path, left, right, rng):
    """One picture: ``left`` and ``right`` (colour, shape) side by side; their boxes."""
    img = Image.new("RGB", (SIZE, SIZE), tuple(rng.randint(200, 250) for _ in range(3)))
    d = ImageDraw.Draw(img)
    boxes = []
    for (colour, shape), (lo, hi) in ((left, (50, 80)), (right, (144, 174))):
        s = rng.randint(20, 28)  # half the side
        cx, cy = rng.randint(lo, hi), rng.randint(60, 164)
        box = (cx - s, cy - s, cx + s, cy + s)
        if shape == "circle":
            d.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            d.rectangle(box, fill=COLOURS[colour])
        else:
            d.polygon([(cx, cy - s), (cx - s, cy + s), (cx + s, cy + s)], fill=COLOURS[colour])
        boxes.append(box)
    img.save(path)
    return boxes


def draw_set(folder, n, seed):
    """n pictures: [(file name, caption, (left, right), boxes)]."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    things = [(c, s) for c in COLOURS for s in SHAPES]
    out = []
    for i in range(n):
        left, right = rng.sample(things, 2)
        name = f"s{seed}_{i:04d}.png"
        boxes = draw(os.path.join(folder, name), left, right, rng)
        out.append((name, f"a {left[0]} {left[1]} left of a {right[0]} {right[1]}",
                    (left, right), boxes))
    return out


def seen(features):
    """The part of the picture the network's grid covers, in its pixels: prepare resizes the
    picture to ``resize`` and keeps the centre ``crop`` (resnet50: 232 then 224 keeps [3.9, 220.1))."""
    pre = features["preprocessing"]
    margin = (pre["resize"] - pre["crop"]) / 2 * SIZE / pre["resize"]
    return margin, SIZE - margin


def cells_of(box, grid, span):
    """bool (grid * grid,): the cells of the grid x grid map the box covers a quarter of."""
    edges = np.linspace(span[0], span[1], grid + 1)
    cover = np.zeros((grid, grid))
    for r in range(grid):
        for c in range(grid):
            w = max(0.0, min(box[2], edges[c + 1]) - max(box[0], edges[c]))
            h = max(0.0, min(box[3], edges[r + 1]) - max(box[1], edges[r]))
            cover[r, c] = w * h / (edges[1] - edges[0]) ** 2
    return (cover >= 0.25).reshape(-1)


def fastcap(*args, capture=False):
    cmd = ["fastcap", *map(str, args)]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, text=True)
    if proc.returncode not in (0,):
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return proc.stdout


def score(captions, truth):
    """(both_in_order, both_named) shares of generated captions against the pictures' things."""
    order = named = 0
    for text, (left, right) in zip(captions, truth):
        words = text.split()
        pairs = [(words[i], words[i + 1]) for i in range(len(words) - 1)]
        found = [p for p in pairs if p in (left, right)]
        named += left in found and right in found
        order += found[:2] == [left, right]
    return order / len(truth), named / len(truth)


def new_captions(run, data, test_dir, test):
    """A run's greedy captions of the new pictures (what ``fastcap caption RUN`` writes) and,
    for an attention model, [(words, weights (len(words), L))]. The pictures' features (the
    data folder's network and PCA) are computed once per data folder and kind, not per run."""
    import fastcap as fc
    from fastcap.inference.attention_map import attended_words
    from fastcap.runtime.precision import use_precision

    captioner = fc.load_captioner(run)
    grid = bool(captioner.model.GRID)
    cache = os.path.join(data, f"new_{len(test)}_{'grid' if grid else 'pooled'}.npy")
    if not os.path.isfile(cache):
        arrays = [np.asarray(Image.open(os.path.join(test_dir, t[0])).convert("RGB"))
                  for t in test]
        with open(cache + ".part", "wb") as f:  # whole or absent: runs in parallel share it
            np.save(f, np.concatenate([captioner.features(arrays[a:a + 32])
                                       for a in range(0, len(arrays), 32)]))
        os.replace(cache + ".part", cache)
    x = np.load(cache)
    captions = captioner.caption_features(x)
    if not grid:
        return captions, None
    with use_precision(captioner.precision):
        words, alpha = captioner.model.sample(x.astype(captioner.model.dtype), 30,
                                              return_attention=True)
    return captions, attended_words(captioner.model, words, alpha)


def attention_shares(attended, test, features):
    """Mean share of each colour word's attention on its shape's cells, what uniform attention
    would put there, and the share on the shape's half of the grid."""
    grid, span = features["grid"]["shape"][0], seen(features)
    shares, uniform, side = [], [], []
    # the left half's cells (an odd grid's middle column counts as the left's)
    half = np.tile(np.arange(grid) < grid / 2, grid)
    for (words, weights), (_, _, things, boxes) in zip(attended, test):
        for k, ((colour, _), box) in enumerate(zip(things, boxes)):
            # the k-th thing's colour word: the k-th colour word of the caption
            at = [i for i, w in enumerate(words) if w in COLOURS]
            if len(at) <= k or words[at[k]] != colour:
                continue
            cells = cells_of(box, grid, span)
            w = weights[at[k]]
            shares.append(float(w[cells].sum()))
            uniform.append(float(cells.mean()))
            side.append(float(w[half if k == 0 else ~half].sum()))
    return {"colour_words": len(shares), "colour_share": float(np.mean(shares)),
            "uniform_share": float(np.mean(uniform)), "colour_side": float(np.mean(side))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", help="a folder for the pictures, the data and the runs")
    p.add_argument("--train", type=int, default=1000, help="pictures to prepare (default 1000)")
    p.add_argument("--test", type=int, default=200, help="new pictures to caption (default 200)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--hidden-dim", type=int, default=128)
    p.add_argument("--wordvec-dim", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lr-decay", type=float, default=0.95)
    p.add_argument("--extractor", default="vgg16", help="prepare's --extractor (default vgg16)")
    p.add_argument("--weights", default="none", help="prepare's --weights (default none)")
    p.add_argument("--grid-pca-dim", type=int, default=128, help="0: keep every channel")
    p.add_argument("--attention-reg", type=float, default=1.0,
                   help="train's --attention-reg (default 1, the model's)")
    p.add_argument("--runs", default="attention,attention_bf16,pooled",
                   help="which of attention, attention_bf16, pooled (default all)")
    p.add_argument("--tag", default="",
                   help="a name for this setting's runs (run_<name>_<tag>): the work folder's data "
                        "is reused, a finished run of the same name kept")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    train = draw_set(os.path.join(work, "images"), args.train, seed=0)
    test = draw_set(os.path.join(work, "new"), args.test, seed=1)
    coco = {"images": [{"id": i, "file_name": t[0]} for i, t in enumerate(train)],
            "annotations": [{"id": i, "image_id": i, "caption": t[1]}
                            for i, t in enumerate(train)]}
    with open(os.path.join(work, "captions.json"), "w") as f:
        json.dump(coco, f)
    # one data folder per network and PCA: the pictures are the same, the features not
    data = os.path.join(work, f"data_{args.extractor}_pca{args.grid_pca_dim}")
    prepared = None
    if not os.path.isfile(os.path.join(data, "fastcap_features.json")):
        t0 = time.perf_counter()
        pca = ["--grid-pca-dim", args.grid_pca_dim] if args.grid_pca_dim else []
        fastcap("prepare", os.path.join(work, "captions.json"), "--images",
                os.path.join(work, "images"), "--out", data, "--extractor", args.extractor,
                "--weights", args.weights, "--grid", *pca, "--pca-dim", args.grid_pca_dim or 128,
                "--min-count", 1, "--quiet", "--overwrite")
        prepared = time.perf_counter() - t0
    with open(os.path.join(data, "fastcap_features.json")) as f:
        features = json.load(f)
    common = ["--data", data, "--epochs", args.epochs, "--batch-size", 50, "--hidden-dim",
              args.hidden_dim, "--wordvec-dim", args.wordvec_dim, "--lr", args.lr, "--lr-decay",
              args.lr_decay, "--eval-images", 0, "--quiet", "--overwrite", "--seed", 0]
    att = ["--attention", "--attention-reg", args.attention_reg]
    runs = {"attention": att, "attention_bf16": [*att, "--precision", "bfloat16"], "pooled": []}
    runs = {k: v for k, v in runs.items() if k in args.runs.split(",")}
    tag = f"_{args.tag}" if args.tag else ""
    results = {"cpu": _cpu(), "pictures": {"train": args.train, "test": args.test},
               "prepare_seconds": prepared,
               "settings": {k: v for k, v in vars(args).items() if k not in ("json", "runs")}}
    for name, extra in runs.items():
        run = os.path.join(work, f"run_{name}{tag}")
        seconds = None
        if not os.path.isfile(os.path.join(run, "metrics.json")):  # a finished run is kept
            t0 = time.perf_counter()
            fastcap("train", *common, *extra, "--out", run)
            seconds = time.perf_counter() - t0
        captions, attended = new_captions(run, data, os.path.join(work, "new"), test)
        order, named = score(captions, [t[2] for t in test])
        ev = json.loads(fastcap("evaluate", run, "--json", capture=True))
        results[name] = {"both_in_order": order, "both_named": named, "val_bleu4": ev["bleu4"],
                         "val_cider": ev["cider"], "train_seconds": seconds,
                         "examples": captions[:5]}
        if attended is not None:
            results[name].update(attention_shares(attended, test, features))
        print(json.dumps({name: results[name]}, indent=1), flush=True)
    if len(runs) == 3:
        results["bf16_bleu4_gap"] = abs(results["attention_bf16"]["val_bleu4"]
                                        - results["attention"]["val_bleu4"])
        _summary(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def _summary(results):
    att, pooled, bf16 = results["attention"], results["pooled"], results["attention_bf16"]
    print(f"both shapes in order on new pictures: attention {att['both_in_order']:.3f}, pooled "
          f"{pooled['both_in_order']:.3f}; colour words' attention on their shape "
          f"{att['colour_share']:.3f} (uniform {att['uniform_share']:.3f}); val BLEU-4 float32 "
          f"{att['val_bleu4']:.4f}, bf16 {bf16['val_bleu4']:.4f} "
          f"(gap {results['bf16_bleu4_gap']:.4f})")


def _cpu():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                    "unknown")


if __name__ == "__main__":
    sys.exit(main())
